defmodule Sluice.HelperNeverWaitsTest do
  @moduledoc """
  Issue 19, finding 3, as a program started with `user:` attacks it (a real unprivileged
  user, created with `useradd`): nothing a caller asks for, nor anything its user does, may
  block the single-threaded helper program or reach past the user's own rights.

    * W1: the user SIGSTOPs the next spawn's child between its setuid and its exec
      (`test/fixtures/sl19/stopper.c`): the helper program no longer waits for it in a
      vfork; the spawn fails with `:etimedout` at stage `:exec` and an unrelated spawn of
      the node answers meanwhile.
    * W2: a write lease on the user's executable (`lease.c`) makes execve wait 45 s: the
      same.
    * W3: `:console` with `user:` is the VM's stderr opened afresh with the user's rights:
      a root-only log or a root terminal as the VM's stderr is `:eacces`, never handed over
      (a separate VM whose stderr is that log or terminal).
    * a kill command of a `user:` program runs as that user, with the program's
      environment.

  Needs root (we are, in CI) and `cc` for the C tools; skipped with the reason otherwise.
  """
  use Sluice.Case, async: false

  alias Sluice.{ChildVM, TestUser}

  @user "sl19spw"
  @moduletag timeout: 180_000
  @fixtures Path.expand("../fixtures/sl19", __DIR__)

  setup_all do
    cond do
      not TestUser.root?() ->
        {:ok, skip: "needs root to create a user"}

      System.find_executable("cc") == nil ->
        {:ok, skip: "needs a C compiler (cc) for test/fixtures/sl19/*.c"}

      true ->
        user = TestUser.create(@user)
        # The tools are the user's to run: a directory anyone may enter.
        tools =
          Path.join(System.tmp_dir!(), "sl19spw-tools-#{System.unique_integer([:positive])}")

        File.mkdir_p!(tools)
        File.chmod!(tools, 0o755)
        on_exit(fn -> File.rm_rf!(tools) end)

        for t <- ~w(stopper lease) do
          src = Path.join(@fixtures, t <> ".c")
          out = Path.join(tools, t)
          {log, status} = System.cmd("cc", ["-O2", "-o", out, src], stderr_to_stdout: true)
          if status != 0, do: raise("cc #{src}: #{log}")
        end

        {:ok, skip: nil, user: user, tools: tools}
    end
  end

  setup ctx do
    if ctx.skip, do: {:skip, ctx.skip}, else: :ok
  end

  defp as_user(script, user) do
    assert {:ok, %{status: 0}} = Sluice.run(["sh", "-c", script], user: user.name)
  end

  # An unrelated spawn of the node (as root) answers within 10 s.
  defp assert_node_answers do
    task = Task.async(fn -> Sluice.run(["echo", "unrelated"]) end)

    case Task.yield(task, 10_000) || Task.shutdown(task, :brutal_kill) do
      {:ok, {:ok, %{stdout: "unrelated\n"}}} -> :ok
      other -> flunk("an unrelated spawn did not answer within 10 s: #{inspect(other)}")
    end
  end

  describe "a child held before its exec (W1, W2)" do
    test "a user SIGSTOPs its spawn before exec: :etimedout, and the node keeps answering",
         ctx do
      %{user: user, tools: tools} = ctx

      {:ok, attacker} =
        Sluice.Process.start_link([Path.join(tools, "stopper"), "120"],
          user: user.name,
          stderr: :null
        )

      assert {:ok, "started\n"} = Sluice.Process.read(attacker, 100, 5_000)

      # The stopper races the spawns for the moment between setuid and exec; it wins one
      # in a few hundred at most. Each spawn answers (ok, or :etimedout once stopped) within
      # 10 s, never waits for ever.
      deadline = System.monotonic_time(:millisecond) + 90_000

      hit =
        Enum.find_value(Stream.repeatedly(fn -> :spawn end), fn :spawn ->
          if System.monotonic_time(:millisecond) > deadline, do: flunk("the stopper never won")

          task = Task.async(fn -> Sluice.run(["true"], user: user.name) end)

          case Task.yield(task, 10_000) || Task.shutdown(task, :brutal_kill) do
            {:ok, {:ok, %{status: 0}}} -> nil
            {:ok, {:error, %Sluice.Error{reason: :etimedout} = e}} -> e
            other -> flunk("a spawn of the user did not answer within 10 s: #{inspect(other)}")
          end
        end)

      assert %Sluice.Error{stage: :exec, message: message} = hit
      assert message =~ "could not start within 2000 ms"
      assert_node_answers()
      Sluice.Process.stop(attacker, 5_000)
    end

    test "a write lease on the user's executable: :etimedout, and the node keeps answering",
         ctx do
      %{user: user, tools: tools} = ctx
      job = Path.join(user.home, "job.sh")
      as_user("printf '#!/bin/sh\\necho job\\n' > #{job} && chmod 755 #{job}", user)

      {:ok, holder} =
        Sluice.Process.start_link([Path.join(tools, "lease"), job, "120"],
          user: user.name,
          stderr: :null
        )

      assert {:ok, "leased\n"} = Sluice.Process.read(holder, 100, 5_000)

      victim = Task.async(fn -> Sluice.run([job], user: user.name) end)
      # While the victim's exec waits for the lease (45 s by default), the node answers.
      Process.sleep(200)
      assert_node_answers()

      assert {:ok, {:error, %Sluice.Error{stage: :exec, reason: :etimedout}}} =
               Task.yield(victim, 10_000)

      Sluice.Process.stop(holder, 5_000)
      # Without the lease it runs.
      assert {:ok, %{stdout: "job\n"}} = Sluice.run([job], user: user.name)
    end
  end

  describe ":console with user: (W3), in a VM whose stderr is the node's" do
    # Runs `code` in a separate VM (as root) whose stderr is `stderr` (Sluice.run's option
    # for it) and returns its reports.
    defp in_vm(code, opts) do
      {:ok, result} =
        Sluice.run(
          ChildVM.argv(["-e", ChildVM.start_sluice() <> ChildVM.reporter() <> code]),
          [timeout: 60_000] ++ opts
        )

      result = %{result | stdout: String.replace(result.stdout, "\r", "")}
      reports = ChildVM.reports(result)
      assert map_size(reports) > 0, "the VM reported nothing: #{inspect(result)}"
      reports
    end

    defp user_code(user) do
      ~s"""
      u = #{inspect(user.name)}
      short = fn
        {:ok, r} -> {:ok, r.status, r.stdout}
        {:error, e} -> {:error, e.reason, e.stage, e.message}
      end
      truncate = ["perl", "-e", "truncate(STDERR, 0) or die qq(no: $!); print qq(truncated)"]
      report.(:stderr, short.(Sluice.run(truncate, user: u, stderr: :console)))
      report.(:stdout, short.(Sluice.run(["echo", "x"], user: u, stdout: :console)))
      stage = Sluice.pipeline([["echo"], {truncate, stderr: :console}])
      report.(:stage, short.(Sluice.run(stage, user: u)))
      report.(:root, short.(Sluice.run(["sh", "-c", "echo root >&2"], stderr: :console)))
      """
    end

    test "a root-only log: :eacces, never truncated; root's own programs still write it",
         %{user: user} do
      dir = Path.join(System.tmp_dir!(), "sl19spw-log-#{System.unique_integer([:positive])}")
      File.mkdir_p!(dir)
      File.chmod!(dir, 0o700)
      on_exit(fn -> File.rm_rf!(dir) end)
      log = Path.join(dir, "vm.log")
      File.write!(log, "root log\n")
      File.chmod!(log, 0o600)

      reports = in_vm(user_code(user), stderr: {:file, log, append: true})

      for {tag, stage} <- [stderr: :stderr, stdout: :stdout, stage: :stderr] do
        assert {:error, :eacces, ^stage, message} = reports[Atom.to_string(tag)]
        assert message =~ ":null"
      end

      assert {:ok, 0, ""} = reports["root"]
      assert String.starts_with?(File.read!(log), "root log\n")
      assert File.read!(log) =~ "root\n"
    end

    test "a log the user may write: opened afresh, appended to", %{user: user} do
      dir = Path.join(System.tmp_dir!(), "sl19spw-open-#{System.unique_integer([:positive])}")
      File.mkdir_p!(dir)
      File.chmod!(dir, 0o755)
      on_exit(fn -> File.rm_rf!(dir) end)
      log = Path.join(dir, "vm.log")
      File.write!(log, "")
      File.chmod!(log, 0o666)

      code = ~s"""
      {:ok, r} = Sluice.run(["sh", "-c", "echo from-user >&2; cat /proc/self/fdinfo/2"],
        user: #{inspect(user.name)}, stderr: :console)
      report.(:flags, r.stdout)
      """

      reports = in_vm(code, stderr: {:file, log, append: true})
      [_, flags] = Regex.run(~r/flags:\s+(\d+)/, reports["flags"])
      flags = String.to_integer(flags, 8)
      # Write only and appending: its own open file, not the VM's.
      assert Bitwise.band(flags, 0o3) == 0o1
      assert Bitwise.band(flags, 0o2000) != 0
      assert File.read!(log) =~ "from-user\n"
    end

    test "a root terminal: :eacces, the program never gets it", %{user: user} do
      reports = in_vm(user_code(user), pty: true)
      assert {:error, :eacces, :stderr, _} = reports["stderr"]
      assert {:error, :eacces, :stdout, _} = reports["stdout"]
      assert {:error, :eacces, :stderr, _} = reports["stage"]
    end
  end

  test "a kill command of a user: program runs as the user, with the program's environment",
       %{user: user} do
    out = Path.join(user.home, "kill_command.out")
    as_user("rm -f #{out}", user)

    command = ["sh", "-c", "{ id -u; id -G; env; } > #{out}; kill -9 $CHILD_PID"]

    {:ok, p} =
      Sluice.Process.start_link(["sh", "-c", "echo ready; exec sleep 60"],
        user: user.name,
        env: [{"SL19_PROGRAM", "mine"}],
        kill_command: command,
        # The VM's stderr may be a file only root may write (CI's log).
        stderr: :null
      )

    assert {:ok, "ready\n"} = Sluice.Process.read(p, 100, 5_000)
    os_pid = Sluice.Process.os_pid(p)
    # The command, as the user, can still signal the user's program.
    assert {:ok, {:signal, :sigkill}} = Sluice.Process.stop(p, 10_000)

    [uid, groups | env] = String.split(File.read!(out), "\n", trim: true)
    assert String.to_integer(uid) == user.uid
    assert String.split(groups) == ["#{user.gid}"]
    env = Map.new(env, &List.to_tuple(String.split(&1, "=", parts: 2)))
    assert env["CHILD_PID"] == "#{os_pid}"
    assert env["SL19_PROGRAM"] == "mine"
    assert env["HOME"] == user.home
    assert env["USER"] == user.name

    # The helper program's environment is the node's; none of it that the program lacks.
    helper_env = File.read!("/proc/#{helper_pid()}/environ") |> String.split(<<0>>)
    assert "MIX_ENV=test" in helper_env
    refute Map.has_key?(env, "MIX_ENV")
    assert File.stat!(out).uid == user.uid
  end
end
