defmodule Sluice.TrustBoundaryTest do
  @moduledoc """
  The trust boundary, attacked as a program started with `user:` would attack it: a real
  unprivileged user (created with `useradd`, removed afterwards) plants symlinks in its own
  directory and reads its environment; the files Sluice opens for its next program must be
  opened with that user's rights, never resolve to the helper program's memory or fds, and
  never freeze the helper program (a FIFO). Needs root (we are, in CI).
  """
  use Sluice.Case, async: false

  alias Sluice.TestUser

  @user "sl19lead"

  setup_all do
    if TestUser.root?() do
      user = TestUser.create(@user)
      secret_dir = "/tmp/sluice-secret-#{System.unique_integer([:positive])}"
      File.mkdir_p!(secret_dir)
      File.chmod!(secret_dir, 0o711)
      secret = Path.join(secret_dir, "secret")
      File.write!(secret, "root only\n")
      File.chmod!(secret, 0o600)
      on_exit(fn -> File.rm_rf!(secret_dir) end)
      {:ok, user: user, secret: secret}
    else
      {:ok, user: nil}
    end
  end

  defp as_user(script, user) do
    assert {:ok, %{status: 0}} = Sluice.run(["sh", "-c", script], user: user.name)
  end

  defp helper, do: Sluice.OsProbe.helper_pid()

  describe "files a user: program plants (needs root)" do
    setup %{user: user} do
      if user == nil, do: {:skip, "needs root to create a user"}, else: :ok
    end

    test "a symlink to a root-only file: opened with the user's rights, :eacces", ctx do
      %{user: user, secret: secret} = ctx
      log = Path.join(user.home, "app.log")
      as_user("ln -sf #{secret} #{log}", user)

      for stdout <- [{:file, log, append: true}, {:file, log}] do
        assert {:error, %Sluice.Error{reason: :eacces, stage: :stdout}} =
                 Sluice.run(["echo", "pwned"], user: user.name, stdout: stdout)
      end

      assert {:error, %Sluice.Error{reason: :eacces, stage: :stderr}} =
               Sluice.run(["echo", "pwned"], user: user.name, stderr: {:file, log})

      assert {:error, %Sluice.Error{reason: :eacces, stage: :stdin}} =
               Sluice.run(["cat"], user: user.name, stdin: {:file, log})

      assert File.read!(secret) == "root only\n"
    end

    test "its own files work, and a file created for it is its own", %{user: user} do
      log = Path.join(user.home, "own.log")

      assert {:ok, %{status: 0}} =
               Sluice.run(["echo", "one"], user: user.name, stdout: {:file, log, append: true})

      assert {:ok, %{status: 0, stdout: "one\n"}} =
               Sluice.run(["cat"], user: user.name, stdin: {:file, log})

      %File.Stat{uid: uid, gid: gid} = File.stat!(log)
      assert {uid, gid} == {user.uid, user.gid}
    end

    test "a symlink to /proc/self/mem never reaches the helper program's memory", ctx do
      %{user: user} = ctx
      link = Path.join(ctx.user.home, "mem.log")
      as_user("ln -sf /proc/self/mem #{link}", user)
      before = helper()

      for opts <- [[user: user.name], []] do
        assert {:error, %Sluice.Error{reason: :eacces, stage: :stdout}} =
                 Sluice.run(["echo", "x"], [stdout: {:file, link, append: true}] ++ opts)

        assert {:error, %Sluice.Error{reason: :eacces, stage: :stdin}} =
                 Sluice.run(["cat"], [stdin: {:file, link}] ++ opts)
      end

      assert helper() == before
      assert {:ok, %{stdout: "fine\n"}} = Sluice.run(["echo", "fine"])
    end

    test "a login environment, without the node's secrets", %{user: user} do
      System.put_env("RELEASE_COOKIE", "the-node-cookie")
      System.put_env("SLUICE_NODE_ONLY", "node")
      System.put_env("LC_TIME", "C.UTF-8")

      on_exit(fn ->
        Enum.each(~w(RELEASE_COOKIE SLUICE_NODE_ONLY LC_TIME), &System.delete_env/1)
      end)

      env = fn opts ->
        {:ok, %{status: 0, stdout: out}} = Sluice.run(["env"], [user: user.name] ++ opts)

        out
        |> String.split("\n", trim: true)
        |> Map.new(&List.to_tuple(String.split(&1, "=", parts: 2)))
      end

      login = env.([])
      refute Map.has_key?(login, "RELEASE_COOKIE")
      refute Map.has_key?(login, "SLUICE_NODE_ONLY")

      assert Map.take(login, ~w(HOME USER LOGNAME SHELL PATH LC_TIME)) == %{
               "HOME" => user.home,
               "USER" => user.name,
               "LOGNAME" => user.name,
               "SHELL" => "/bin/sh",
               "PATH" => "/usr/local/bin:/usr/bin:/bin",
               "LC_TIME" => "C.UTF-8"
             }

      # env: adds to it and wins over the login's values.
      added = env.(env: [{"PATH", "/bin"}, {"APP", "1"}])
      assert {added["PATH"], added["APP"]} == {"/bin", "1"}

      # The opt-in: the node's environment, still without its cookie unless named.
      inherited = env.(inherit_env: true)
      assert inherited["SLUICE_NODE_ONLY"] == "node"
      assert inherited["HOME"] == user.home
      refute Map.has_key?(inherited, "RELEASE_COOKIE")

      named = env.(inherit_env: true, env: [{"RELEASE_COOKIE", "given"}])
      assert named["RELEASE_COOKIE"] == "given"

      # A pipeline's every stage runs as the user, with the same environment.
      assert {:ok, %{stdout: out}} =
               Sluice.run(Sluice.pipeline([["env"], ["grep", "-c", "COOKIE"]]), user: user.name)

      assert out == "0\n"
    end
  end

  test "inherit_env with clear_env is a mistake naming the option" do
    assert_raise ArgumentError, ~r/inherit_env/, fn ->
      Sluice.run(["true"], inherit_env: true, clear_env: true)
    end
  end

  describe "paths that name the helper program's own fds" do
    test "/dev/stdout and /proc/self/fd/1 are refused, never written to the control port" do
      before = helper()

      for path <- ["/dev/stdout", "/dev/stderr", "/proc/self/fd/1", "/dev/fd/1"],
          key <- [:stdout, :stderr] do
        assert {:error, %Sluice.Error{reason: :eloop, stage: ^key} = e} =
                 Sluice.run(["echo", "hello"], [{key, {:file, path}}])

        assert Exception.message(e) =~ ":console"
      end

      assert {:error, %Sluice.Error{reason: :eloop, stage: :stdin}} =
               Sluice.run(["cat"], stdin: {:file, "/dev/stdin"})

      assert helper() == before
      assert {:ok, %{stdout: "still here\n"}} = Sluice.run(["echo", "still here"])
    end
  end

  describe "a FIFO as a redirect file" do
    setup do
      dir = Path.join(System.tmp_dir!(), "sluice-fifo-#{System.unique_integer([:positive])}")
      File.mkdir_p!(dir)
      fifo = Path.join(dir, "fifo")
      {_, 0} = System.cmd("mkfifo", [fifo])
      on_exit(fn -> File.rm_rf!(dir) end)
      {:ok, fifo: fifo}
    end

    test "with no reader: a clean error, and the helper program never waits", %{fifo: fifo} do
      {:ok, running} = Sluice.Process.start_link(["cat"])

      assert {:error, %Sluice.Error{reason: :enxio, stage: :stdout}} =
               Sluice.run(["echo", "x"], stdout: {:file, fifo})

      # Every other program carries on: a spawn, and a stop of another program.
      assert {:ok, %{stdout: "next\n"}} = Sluice.run(["echo", "next"])
      assert :ok = Sluice.Process.write(running, "a\n")
      assert {:ok, "a\n"} = Sluice.Process.read(running, 2)
      assert {:ok, _} = Sluice.Process.stop(running, 2_000)
    end

    test "as stdin it opens at once: no writer is end of input", %{fifo: fifo} do
      assert {:ok, %{status: 0, stdout: ""}} = Sluice.run(["cat"], stdin: {:file, fifo})
    end

    test "with a reader, the program writes into it", %{fifo: fifo} do
      reader = Task.async(fn -> File.read!(fifo) end)
      # The reader's open() waits for a writer; give it a moment to be in it.
      Process.sleep(100)

      result =
        Enum.find_value(1..50, fn _ ->
          case Sluice.run(["echo", "through"], stdout: {:file, fifo}) do
            {:ok, r} -> r
            {:error, %Sluice.Error{reason: :enxio}} -> Process.sleep(50) && nil
          end
        end)

      assert %{status: 0} = result
      assert Task.await(reader) == "through\n"
    end
  end
end
