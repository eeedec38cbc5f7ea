defmodule Sluice.CredentialsTest do
  @moduledoc """
  What a program runs as and with: `user:` and `group:` (with the user's supplementary
  groups and login variables), `allowed_users`, `nice:`, `rlimits:`, `umask:` and `arg0:`,
  read back by real programs. Changing user needs root: the test user is created in
  `setup_all` (and removed after); without root those tests are skipped.
  """
  use Sluice.Case, async: false

  @user "sluicetest"
  @extra_group "sluicetestx"
  @root? match?({"0\n", 0}, System.cmd("id", ["-u"]))

  setup_all do
    if @root? do
      System.cmd("userdel", [@user], stderr_to_stdout: true)
      System.cmd("groupdel", [@extra_group], stderr_to_stdout: true)
      {_, 0} = System.cmd("groupadd", [@extra_group], stderr_to_stdout: true)

      {_, 0} =
        System.cmd(
          "useradd",
          ["-M", "-d", "/nonexistent", "-s", "/bin/sh", "-G", @extra_group, @user],
          stderr_to_stdout: true
        )

      on_exit(fn ->
        System.cmd("userdel", [@user], stderr_to_stdout: true)
        System.cmd("groupdel", [@extra_group], stderr_to_stdout: true)
      end)
    end

    :ok
  end

  defp out(argv, opts) do
    assert {:ok, %{status: 0, stdout: out}} = Sluice.run(argv, opts)
    String.trim(out)
  end

  defp id_of(flag, name), do: System.cmd("id", [flag, name]) |> elem(0) |> String.trim()

  describe "as another user (needs root)" do
    if not @root?, do: @describetag(skip: "changing user needs root (or CAP_SETUID)")

    test "id -u, -g and -G under user: and group:" do
      uid = id_of("-u", @user)
      gid = id_of("-g", @user)
      extra = id_of("-g", "root") |> then(fn _ -> group_id(@extra_group) end)

      assert out(["id", "-u"], user: @user) == uid
      assert out(["id", "-g"], user: @user) == gid

      assert out(["id", "-G"], user: @user) |> String.split() |> Enum.sort() ==
               Enum.sort([gid, extra])

      # By number, and with another primary group.
      assert out(["id", "-u"], user: String.to_integer(uid)) == uid
      assert out(["id", "-g"], user: @user, group: @extra_group) == extra
      assert out(["id", "-g"], user: @user, group: 0) == "0"
    end

    test "HOME, USER and LOGNAME come from the passwd entry unless env sets them" do
      script = "echo $HOME $USER $LOGNAME"
      assert out(["sh", "-c", script], user: @user) == "/nonexistent #{@user} #{@user}"

      assert out(["sh", "-c", script], user: @user, env: %{"HOME" => "/tmp"}) ==
               "/tmp #{@user} #{@user}"
    end

    test "allowed_users refuses other users before anything is spawned" do
      Application.put_env(:sluice, :allowed_users, ["nobody", 0])

      try do
        assert {:error, %Sluice.Error{reason: :eperm, stage: :credentials, message: message}} =
                 Sluice.run(["touch", "/tmp/sluice-should-not-exist"], user: @user)

        assert message =~ "allowed_users"
        refute File.exists?("/tmp/sluice-should-not-exist")
        assert out(["id", "-u"], user: "root") == "0"
        assert out(["id", "-un"], user: "nobody") == "nobody"
        # An allowed user with a group that is not one of its own: refused too.
        assert {:error, %Sluice.Error{reason: :eperm, stage: :credentials, message: message}} =
                 Sluice.run(["id", "-g"], user: "nobody", group: 0)

        assert message =~ "not one of"
        assert out(["id", "-gn"], user: "nobody", group: "nogroup") == "nogroup"
        # Without user: the helper program's own user, which is not refused.
        assert out(["id", "-u"], []) == "0"
      after
        Application.delete_env(:sluice, :allowed_users)
      end
    end

    test "rlimits: nproc under the test user refuses a fork bomb of sh" do
      # Bounded three ways: 20 processes of the test user at most, a timeout, and the
      # stop (cgroup.kill, or the group) that ends whatever is left.
      bomb = "f() { f & f & wait; }; f"

      result =
        case Sluice.run(["sh", "-c", bomb],
               user: @user,
               rlimits: [nproc: 20],
               timeout: 2_000,
               max_output: 200_000,
               kill_grace: 0
             ) do
          # dash gives up where a fork fails: the bomb may end by itself.
          {:ok, result} ->
            result

          {:error, %Sluice.Error{reason: r, result: result}} when r in [:timeout, :max_output] ->
            result
        end

      assert result.stderr =~ "Cannot fork"
      # dash names the process limit -p.
      assert out(["sh", "-c", "ulimit -p"], user: @user, rlimits: [nproc: 20]) == "20"
    end
  end

  @tag :external_vm
  @tag :temp_dir
  test "an unprivileged node: user:, group: and a negative nice are :eperm, and it carries on",
       %{temp_dir: dir} do
    # The tests run as root, who may do all of it: a second VM run as nobody has a helper
    # program without the privilege.
    code =
      Sluice.ChildVM.start_sluice() <>
        Sluice.ChildVM.reporter() <>
        ~S"""
        helper = Sluice.Helper.info().os_pid
        report.("whoami", Sluice.run(["id", "-u"]))
        report.("user", Sluice.run(["id", "-u"], user: "root"))
        report.("group", Sluice.run(["id", "-g"], group: 0))
        report.("lower_nice", Sluice.run(["true"], nice: -5))
        report.("higher_nice", Sluice.run(["cut", "-d", " ", "-f", "19", "/proc/self/stat"], nice: 5))
        report.("after", Sluice.run(["echo", "still here"]))
        report.("same_helper", Sluice.Helper.info().os_pid == helper)
        """

    vm = Sluice.ChildVM.run(["-e", code], as: :nobody, dir: dir)
    reports = Sluice.ChildVM.reports(vm)
    assert vm.status == 0, vm.stdout <> vm.stderr

    assert {:ok, %{status: 0, stdout: "65534\n"}} = reports["whoami"]
    assert {:error, %Sluice.Error{reason: :eperm, stage: :credentials}} = reports["user"]
    assert {:error, %Sluice.Error{reason: :eperm, stage: :credentials}} = reports["group"]
    assert {:error, %Sluice.Error{reason: :eperm, stage: :priority}} = reports["lower_nice"]
    # Raising it needs no privilege.
    assert {:ok, %{status: 0, stdout: "5\n"}} = reports["higher_nice"]
    assert {:ok, %{status: 0, stdout: "still here\n"}} = reports["after"]
    assert reports["same_helper"] == true
  end

  test "a missing user or group" do
    assert {:error, %Sluice.Error{reason: :nouser, stage: :credentials}} =
             Sluice.run(["true"], user: "sluice-no-such-user")

    assert {:error, %Sluice.Error{reason: :nogroup, stage: :credentials}} =
             Sluice.run(["true"], group: "sluice-no-such-group")
  end

  test "nice, read back from /proc/self/stat" do
    # Field 19 of stat; comm is "cut", without spaces.
    assert out(["cut", "-d", " ", "-f", "19", "/proc/self/stat"], nice: 7) == "7"
    assert out(["cut", "-d", " ", "-f", "19", "/proc/self/stat"], []) == "0"
  end

  test "rlimits: ulimit -n and -c" do
    assert out(["sh", "-c", "ulimit -n"], rlimits: [nofile: 64]) == "64"

    assert out(["sh", "-c", "ulimit -c; ulimit -Hc"], rlimits: [core: {0, :infinity}]) ==
             "0\nunlimited"

    assert out(["sh", "-c", "ulimit -Sn; ulimit -Hn"], rlimits: [nofile: {100, 200}]) ==
             "100\n200"
  end

  test "rlimits: an address space of 200 MB makes a 1 GB allocation fail" do
    assert {:ok, %{status: 1, stderr: stderr}} =
             Sluice.run(["/usr/bin/python3", "-c", "x = bytearray(10**9)"],
               rlimits: [as: 200_000_000]
             )

    assert stderr =~ "MemoryError"
    assert {:ok, %{status: 0}} = Sluice.run(["/usr/bin/python3", "-c", "x = bytearray(10**7)"])
  end

  test "umask" do
    assert out(["sh", "-c", "umask"], umask: 0o027) == "0027"
    assert out(["sh", "-c", "umask"], umask: 0) == "0000"
  end

  test "arg0 is what the program sees as argv[0], in /proc/self/cmdline" do
    assert {:ok, %{stdout: cmdline}} =
             Sluice.run(["sh", "-c", "cat /proc/$$/cmdline"], arg0: "renamed")

    assert ["renamed", "-c" | _] = String.split(cmdline, <<0>>)
  end

  test "options are checked" do
    for {opts, key} <- [
          {[user: -1], :user},
          {[user: ""], :user},
          {[group: :wheel], :group},
          {[nice: 20], :nice},
          {[nice: -21], :nice},
          {[rlimits: [nofile: -1]], :rlimits},
          {[rlimits: [files: 10]], :rlimits},
          {[rlimits: [nofile: {10, 5}]], :rlimits},
          {[rlimits: [nofile: {:infinity, 5}]], :rlimits},
          {[umask: 0o1000], :umask},
          {[arg0: ""], :arg0},
          {[arg0: "a\0b"], :arg0}
        ] do
      assert_raise ArgumentError, ~r/option #{inspect(key)}/, fn -> Sluice.run(["true"], opts) end
    end
  end

  defp group_id(name) do
    {line, 0} = System.cmd("getent", ["group", name])
    line |> String.split(":") |> Enum.at(2)
  end
end
