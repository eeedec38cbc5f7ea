defmodule Sluice.ManageTest do
  @moduledoc """
  `Sluice.Process.manage/2`: processes Sluice did not start (a `sleep` put in the
  background by `sh`, so its parent is gone and it is nobody's child here), held by a
  pidfd in the helper program. Every process a test starts is killed in its teardown, if
  it is still the same process (its start time is checked, so a reused pid never is).
  """
  use Sluice.Case, async: false

  alias Sluice.Process, as: P

  @moduletag timeout: 120_000

  test "adopt a sleep: info, signals through the pidfd, stop" do
    pid = background("sleep 300")
    {:ok, p} = P.manage(pid, kill_grace: 1_000)
    me = self()

    assert %{pid: ^p, owner: ^me, os_pid: ^pid, argv: ["sleep", "300"], managed: true} = P.info(p)

    assert P.info(p).cgroup == nil
    assert P.os_pid(p) == pid
    assert :ok = P.signal(p, :sigstop)
    assert eventually(fn -> state(pid) == "T" end)
    assert :ok = P.signal(p, :sigcont)
    assert eventually(fn -> state(pid) == "S" end)
    # Not the helper program's child: how it ended is not Sluice's to know.
    assert {:ok, :unknown} = P.stop(p, 1_000)
    refute alive?(pid)
  end

  test "no pipes: reads and writes say so" do
    {:ok, p} = P.manage(background("sleep 300"))
    assert {:error, :not_piped} = P.read(p)
    assert {:error, :not_piped} = P.read_stderr(p, 10, 100)
    assert {:error, :not_piped} = P.read_any(p)
    assert {:error, :not_piped} = P.write(p, "x")
    assert {:error, :not_piped} = P.close_stdin(p)
    assert {:ok, :unknown} = P.stop(p, 1_000)
  end

  test "kill escalation: SIGKILL after kill_grace for a process that ignores SIGTERM" do
    pid = background("(trap '' TERM; exec sleep 300)")
    # The subshell may not have reached its trap yet.
    assert eventually(fn -> signal_mask(pid, "SigIgn") |> has_signal?(15) end)
    {:ok, p} = P.manage(pid, kill_grace: 500)
    t = System.monotonic_time(:millisecond)
    assert {:ok, :unknown} = P.stop(p, 500)
    assert System.monotonic_time(:millisecond) - t >= 450
    refute alive?(pid)
  end

  test "kill_signal starts the stop" do
    pid = background("(trap '' TERM; trap 'exit 0' HUP; while :; do sleep 0.1; done)")
    assert eventually(fn -> signal_mask(pid, "SigCgt") |> has_signal?(1) end)
    assert signal_mask(pid, "SigIgn") |> has_signal?(15)
    {:ok, p} = P.manage(pid, kill_signal: :sighup, kill_grace: 5_000)
    t = System.monotonic_time(:millisecond)
    assert {:ok, :unknown} = P.stop(p, 5_000)
    # It ended of SIGHUP (it ignores SIGTERM), long before SIGKILL was due.
    assert System.monotonic_time(:millisecond) - t < 3_000
  end

  test "its exit is noticed; a signal after it is refused, not sent" do
    pid = background("sleep 300")
    {:ok, p} = P.manage(pid)
    {_, 0} = System.cmd("kill", ["-KILL", to_string(pid)])
    assert eventually(fn -> not alive?(pid) end)
    # The helper program checks the pidfd before anything is sent: the process it names
    # has exited, so no signal goes to it, nor to whatever may have its pid now.
    assert {:error, :esrch} = P.signal(p, :sigterm)
    assert {:ok, :unknown} = P.await_exit(p, 5_000)
    # The exit was delivered: the Sluice.Process has ended.
    assert eventually(fn -> not Process.alive?(p) end)
    assert {:error, :closed} = P.signal(p, :sigterm)
  end

  test "an orphan of a Sluice program is the helper program's child: its status is known" do
    {:ok, prog} =
      P.start_link(["sh", "-c", "(sleep 300 > /dev/null & echo $!); exec sleep 300"],
        kill_grace: 500
      )

    {:ok, line} = P.read(prog)
    orphan = line |> String.trim() |> String.to_integer()
    # Its status is the helper's to learn once the subshell is gone (before that, a dying
    # orphan would be the subshell's zombie).
    helper = Sluice.OsProbe.helper_pid()
    assert Sluice.OsProbe.eventually(fn -> match?({_, ^helper}, Sluice.OsProbe.stat(orphan)) end)
    {:ok, p} = P.manage(orphan)
    assert {:ok, {:signal, :sigterm}} = P.stop(p, 1_000)
    assert {:ok, {:signal, :sigterm}} = P.stop(prog, 1_000)
  end

  test "group: true signals its process group, false only the process" do
    for group <- [true, false] do
      leader = background("setsid sh -c 'sleep 300 & exec sleep 300'")
      assert eventually(fn -> length(group_members(leader)) == 2 end)
      [other] = group_members(leader) -- [leader]
      track(other)
      {:ok, p} = P.manage(leader, group: group)
      assert {:ok, :unknown} = P.stop(p, 1_000)
      refute alive?(leader)
      assert eventually(fn -> alive?(other) != group end)
    end
  end

  test "refused: programming mistakes raise, runtime failures are errors" do
    for bad <- [0, -1, "12", 1.5, 2 ** 40] do
      assert_raise ArgumentError, ~r/os_pid/, fn -> P.manage(bad) end
    end

    assert_raise ArgumentError, ~r/init/, fn -> P.manage(1) end
    assert_raise ArgumentError, ~r/VM/, fn -> P.manage(String.to_integer(System.pid())) end
    assert_raise ArgumentError, ~r/helper/, fn -> P.manage(helper_pid()) end

    pid = background("sleep 300")
    assert_raise ArgumentError, ~r/:group/, fn -> P.manage(pid, group: :yes) end

    assert_raise ArgumentError, ~r/:stop_on_owner_exit/, fn ->
      P.manage(pid, stop_on_owner_exit: 1)
    end

    assert_raise ArgumentError, ~r/unknown option :cd/, fn -> P.manage(pid, cd: "/") end

    assert {:error, %Sluice.Error{reason: :esrch, stage: :manage}} = P.manage(ghost_pid())

    {:ok, p} = P.manage(pid)
    assert {:error, %Sluice.Error{reason: :ebusy}} = P.manage(pid)
    {:ok, prog} = P.start_link(["sleep", "300"])
    assert {:error, %Sluice.Error{reason: :ebusy}} = P.manage(P.os_pid(prog))
    assert {:ok, :unknown} = P.stop(p, 1_000)
    assert {:ok, _} = P.stop(prog, 1_000)
  end

  describe "refused: what the VM depends on, kernel threads, thread ids (issue 19, finding 5)" do
    # stop_on_owner_exit: false, so that an adoption that wrongly succeeds does not SIGTERM
    # what it adopted when the test ends (erl_child_setup's death aborts the VM).
    defp refused(os_pid) do
      case P.manage(os_pid, stop_on_owner_exit: false) do
        {:error, %Sluice.Error{stage: :manage, reason: :einval, message: message}} ->
          message

        other ->
          with {:ok, p} <- other, do: GenServer.stop(p)
          flunk("#{os_pid} was not refused: #{inspect(other)}")
      end
    end

    defp vm, do: String.to_integer(System.pid())

    test "the VM's erl_child_setup" do
      [child_setup] = for pid <- children(vm()), comm(pid) == "erl_child_setup", do: pid

      assert refused(child_setup) =~ ~r/#{child_setup} is the VM's erl_child_setup/
      assert alive?(child_setup)
    end

    test "epmd, which distributed nodes register with" do
      # Started as every distributed VM starts it (a no-op when one runs already).
      {_, 0} = System.cmd("epmd", ["-daemon"])

      # The oldest epmd: the daemon (one started while another runs exits at once).
      {epmd, 0} = System.cmd("pgrep", ["-o", "-x", "epmd"])
      epmd = epmd |> String.trim() |> String.to_integer()
      assert refused(epmd) =~ "#{epmd} is epmd"
      assert alive?(epmd)
    end

    test "kernel threads: kthreadd and a kworker" do
      assert comm(2) == "kthreadd"
      assert refused(2) =~ "2 is a kernel thread"
      [kworker | _] = for pid <- children(2), comm(pid) =~ "kworker", do: pid
      assert refused(kworker) =~ "#{kworker} is a kernel thread"
    end

    test "a thread id: the VM's threads, and another process's" do
      [tid | _] = for t <- File.ls!("/proc/self/task"), t != System.pid(), do: t
      tid = String.to_integer(tid)
      assert refused(tid) =~ "#{tid} is a thread of process #{vm()} (the VM)"

      # A thread of a program (a Python thread that sleeps beside the main one).
      code =
        "import threading, time; threading.Thread(target=time.sleep, args=(300,)).start(); " <>
          "print('ready', flush=True); time.sleep(300)"

      {:ok, prog} = P.start_link(["python3", "-c", code], kill_grace: 500)
      assert {:ok, "ready" <> _} = P.read(prog, 100, 5_000)
      leader = P.os_pid(prog)
      [thread] = File.ls!("/proc/#{leader}/task") -- ["#{leader}"]
      assert refused(String.to_integer(thread)) =~ "#{thread} is a thread of process #{leader}"
      {:ok, _} = P.stop(prog, 1_000)
    end

    test "the VM itself and the helper program are ArgumentErrors, as before" do
      assert_raise ArgumentError, ~r/VM/, fn -> P.manage(vm()) end
      assert_raise ArgumentError, ~r/helper/, fn -> P.manage(helper_pid()) end
    end
  end

  defp comm(pid) do
    case File.read("/proc/#{pid}/comm") do
      {:ok, name} -> String.trim_trailing(name, "\n")
      _ -> nil
    end
  end

  @tag :external_vm
  @tag :temp_dir
  test "eperm: a node that may not signal the process is refused", %{temp_dir: dir} do
    # Root may signal anyone, so the refusal needs a node that is not root: a separate VM
    # run as nobody (setpriv), whose own helper program tries to adopt our sleep.
    pid = background("sleep 300")

    result =
      Sluice.ChildVM.run([vm_script()],
        as: :nobody,
        dir: dir,
        env: %{"SLUICE_TEST_MODE" => "eperm", "SLUICE_TEST_PID" => "#{pid}"}
      )

    assert result.stdout =~ ~r/result \{:error, %Sluice.Error\{reason: :eperm.*stage: :manage/,
           result.stdout <> result.stderr

    assert alive?(pid)
  end

  test "the owner's death stops it with stop_on_owner_exit: true, and only lets go with false" do
    stopped = background("sleep 300")
    watched = background("sleep 300")

    test = self()

    owner =
      spawn(fn ->
        {:ok, _} = P.manage(stopped, kill_grace: 500)
        {:ok, _} = P.manage(watched, stop_on_owner_exit: false)
        send(test, :adopted)
        Process.sleep(:infinity)
      end)

    assert_receive :adopted, 10_000
    assert Enum.count(Sluice.list(), &(&1.owner == owner)) == 2
    Process.exit(owner, :kill)
    assert eventually(fn -> not alive?(stopped) end, 2_000)
    Process.sleep(500)
    assert alive?(watched)
    assert eventually(fn -> not Enum.any?(Sluice.list(), &(&1.owner == owner)) end)
  end

  @tag :capture_log
  test "the helper program SIGKILLed: the adopted process survives, its Sluice.Process ends" do
    pid = background("sleep 300")
    {:ok, p} = P.manage(pid)
    ref = Process.monitor(p)
    waiter = Task.async(fn -> P.await_exit(p) end)
    old = helper_pid()
    {_, 0} = System.cmd("kill", ["-KILL", to_string(old)])
    assert_receive {:DOWN, ^ref, :process, ^p, {:shutdown, :helper_down}}, 5_000
    assert Task.await(waiter) == {:error, :helper_down}

    assert eventually(fn ->
             match?({:ok, %{os_pid: new}} when new != old, Sluice.Helper.conn())
           end)

    # Not the helper program's child, nor in its cgroup: nothing reaches it.
    Process.sleep(300)
    assert alive?(pid)
    refute Enum.any?(Sluice.list(), &(&1.os_pid == pid))
  end

  test "Sluice.list/0 shows every program with its holder and owner, until it ends" do
    me = self()
    root = Sluice.Helper.info().cgroup_root
    {:ok, proc} = P.start_link(["sleep", "300"], kill_grace: 500)
    {:ok, daemon} = Sluice.Daemon.start_link(argv: ["sleep", "301"], kill_grace: 500)
    runner = spawn(fn -> Sluice.run(["sleep", "302"], kill_grace: 500) end)
    streamer = spawn(fn -> Sluice.stream!(["sleep", "303"], kill_grace: 500) |> Stream.run() end)
    adopted = background("sleep 304")
    {:ok, managed} = P.manage(adopted)

    assert eventually(fn -> length(mine()) == 5 end)
    by_argv = Map.new(mine(), &{&1.argv, &1})

    assert %{pid: ^proc, owner: ^me, managed: false} = by_argv[["sleep", "300"]]
    assert %{owner: ^daemon, managed: false} = by_argv[["sleep", "301"]]
    # run and streams hold their program in the calling process itself.
    assert %{pid: ^runner, owner: ^runner} = by_argv[["sleep", "302"]]
    assert %{pid: ^streamer, owner: ^streamer} = by_argv[["sleep", "303"]]
    assert %{pid: ^managed, owner: ^me, managed: true, cgroup: nil} = by_argv[["sleep", "304"]]
    assert P.info(proc) == by_argv[["sleep", "300"]]

    for {argv, e} <- by_argv, argv != ["sleep", "304"] do
      if root,
        do: assert(String.starts_with?(e.cgroup, root)),
        else: assert(e.cgroup == nil)

      assert e.os_pid > 0
      assert %DateTime{} = e.started_at
    end

    assert Sluice.Ps.table() =~ ~r/sleep 304/

    # Ended in every way: stopped, killed callers (whose rows no one removed), adopted.
    {:ok, _} = P.stop(proc, 1_000)
    Process.exit(runner, :kill)
    Process.exit(streamer, :kill)
    GenServer.stop(daemon)
    {:ok, :unknown} = P.stop(managed, 1_000)
    assert eventually(fn -> mine() == [] end)
    # The killed callers' rows are gone from the table too once swept.
    Sluice.Control.Registry.sweep()
    holders = for row <- :ets.tab2list(Sluice.Control.Registry), do: elem(row, 1)
    refute runner in holders or streamer in holders
  end

  @tag :external_vm
  test "mix sluice.ps against a running node" do
    {_, 0} = System.cmd("epmd", ["-daemon"])
    adopted = background("sleep 300")
    name = "sluice_ps_test_#{System.unique_integer([:positive])}@127.0.0.1"
    cookie = "sluice_test_cookie"

    # epmd runs already (started above, outside the helper program's tree).
    erl = "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}"
    dist = ["--name", name, "--cookie", cookie, "--erl", erl]

    {:ok, vm} =
      P.start_link(Sluice.ChildVM.argv([vm_script()], dist),
        env: %{"SLUICE_TEST_MODE" => "ps", "SLUICE_TEST_PID" => "#{adopted}"},
        kill_grace: 2_000
      )

    assert {:ok, "ready\n"} = read_until(vm, "ready\n")

    {:ok, %{status: 0, stdout: out}} =
      Sluice.run(["mix", "sluice.ps", "--node", name, "--cookie", cookie],
        env: %{"MIX_ENV" => "test"},
        timeout: 60_000
      )

    assert out =~ ~r/OS PID\s+STARTED \(UTC\)\s+OWNER\s+PID\s+MANAGED\s+CGROUP\s+COMMAND/
    assert out =~ ~r/\n#{adopted}\s.*\syes\s+-\s+sleep 300\n/
    assert out =~ ~r/\n\d+\s.*\sno\s+-\s+sleep 300\n/

    {:ok, %{status: 0, stdout: help}} =
      Sluice.run(["mix", "sluice.ps"], env: %{"MIX_ENV" => "test"}, timeout: 60_000)

    assert help =~ "Sluice.Ps.table()"

    {:ok, %{status: status, stderr: err}} =
      Sluice.run(["mix", "sluice.ps", "--node", "nobody_here@127.0.0.1"],
        env: %{"MIX_ENV" => "test"},
        timeout: 60_000
      )

    assert status != 0 and err =~ "cannot connect"

    # The node halts at stdin EOF: its helper program stops what it adopted.
    :ok = P.close_stdin(vm)
    assert {:ok, 0} = P.await_exit(vm, 30_000)
    assert eventually(fn -> not alive?(adopted) end)
  end

  ## Helpers

  defp mine do
    Enum.filter(Sluice.list(), &match?(["sleep", "30" <> _], &1.argv))
  end

  # Starts `command` in the background through sh, which exits at once: the process is
  # nobody's child in this VM. Killed at the test's end if it is still the same process.
  defp background(command) do
    {out, 0} = System.cmd("sh", ["-c", "#{command} > /dev/null 2>&1 & echo $!"])
    pid = out |> String.trim() |> String.to_integer()
    track(pid)
    pid
  end

  defp track(pid) do
    start = start_time(pid)

    on_exit(fn ->
      if start && start_time(pid) == start, do: System.cmd("kill", ["-KILL", to_string(pid)])
    end)
  end

  defp start_time(pid) do
    with {:ok, text} <- File.read("/proc/#{pid}/stat"),
         [_, rest] <- String.split(text, ") ", parts: 2) do
      rest |> String.split(" ") |> Enum.at(19)
    else
      _ -> nil
    end
  end

  defp state(pid), do: with({state, _} <- stat(pid), do: state)

  # A signal set of /proc/PID/status ("SigIgn", "SigCgt") as an integer, 0 when gone.
  defp signal_mask(pid, field) do
    with {:ok, text} <- File.read("/proc/#{pid}/status"),
         [_, hex] <- Regex.run(~r/^#{field}:\s*([0-9a-f]+)$/m, text) do
      String.to_integer(hex, 16)
    else
      _ -> 0
    end
  end

  defp has_signal?(mask, signum), do: Bitwise.band(mask, Bitwise.bsl(1, signum - 1)) != 0

  defp group_members(pgid) do
    for dir <- Path.wildcard("/proc/[0-9]*"),
        {:ok, text} <- [File.read(Path.join(dir, "stat"))],
        [_, rest] <- [String.split(text, ") ", parts: 2)],
        [st, _ppid, pgrp | _] = String.split(rest, " "),
        st != "Z" and pgrp == to_string(pgid),
        do: dir |> Path.basename() |> String.to_integer()
  end

  # A pid that no process has: counted down from pid_max.
  defp ghost_pid do
    max = "/proc/sys/kernel/pid_max" |> File.read!() |> String.trim() |> String.to_integer()
    Enum.find((max - 1)..2//-1, &(not File.exists?("/proc/#{&1}")))
  end

  defp vm_script, do: Path.expand("../fixtures/manage_vm.exs", __DIR__)

  defp read_until(vm, line, acc \\ "") do
    case P.read(vm, 65_536, 60_000) do
      {:ok, data} ->
        acc = acc <> data
        if String.contains?(acc, line), do: {:ok, line}, else: read_until(vm, line, acc)

      other ->
        {other, acc}
    end
  end
end
