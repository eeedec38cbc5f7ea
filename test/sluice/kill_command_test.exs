defmodule Sluice.KillCommandTest do
  @moduledoc """
  `kill_command:`: the helper program runs it instead of sending `kill_signal` on a stop,
  with `CHILD_PID` in its environment; SIGKILL follows after `kill_grace`; a kill command
  that hangs is killed too. And `core_dumped` in the result.
  """
  use Sluice.Case, async: false

  alias Sluice.OsProbe
  alias Sluice.Process, as: P

  # Ignores SIGTERM; ends on SIGUSR1 with status 7.
  @stubborn "trap '' TERM; trap 'exit 7' USR1; echo ready; while :; do sleep 0.05; done"

  defp start_ready(argv, opts) do
    {:ok, p} = P.start_link(argv, opts)
    assert {:ok, "ready\n"} = P.read(p, 100, 5_000)
    p
  end

  @tag :temp_dir
  test "a TERM-ignoring program obeys the kill command, which sees CHILD_PID", %{temp_dir: dir} do
    seen = Path.join(dir, "child_pid")
    command = ["sh", "-c", "echo $CHILD_PID > #{seen}; kill -USR1 $CHILD_PID"]
    p = start_ready(["sh", "-c", @stubborn], kill_command: command, kill_grace: 10_000)
    %{os_pid: os_pid} = P.info(p)

    started = System.monotonic_time(:millisecond)
    assert {:ok, 7} = P.stop(p, 10_000)
    # Ended by the command, long before the grace.
    assert System.monotonic_time(:millisecond) - started < 5_000
    assert File.read!(seen) == "#{os_pid}\n"
  end

  test "a kill command that hangs is killed, and the program still dies at the grace" do
    marker = "sluice-hanging-kill-#{System.unique_integer([:positive])}"
    command = ["sh", "-c", "sleep 100; : #{marker}"]
    p = start_ready(["sh", "-c", @stubborn], kill_command: command, kill_grace: 1_000)
    %{os_pid: os_pid} = P.info(p)
    running? = fn -> match?({_, 0}, System.cmd("pgrep", ["-f", marker])) end

    stop = Task.async(fn -> P.stop(p, 1_000) end)
    # The command runs during the grace (and the program ignores TERM anyway).
    assert OsProbe.eventually(running?, 900)
    assert OsProbe.alive?(os_pid)
    assert {:ok, {:signal, :sigkill}} = Task.await(stop, 10_000)
    refute OsProbe.alive?(os_pid)
    assert OsProbe.eventually(fn -> not running?.() end)
  end

  describe "everything a kill command starts is stopped at the deadline (issue 19, finding 9)" do
    # The kill command leaves a background child and a setsid child, each reporting its
    # pid, then ends (`wait: false`) or keeps running until the deadline (`wait: true`).
    defp leaving_children(pidfile, wait) do
      script =
        "sleep 300 & echo $! >> \"$1\"; setsid sleep 300 & echo $! >> \"$1\"; " <>
          if(wait, do: "exec sleep 300", else: "exit 0")

      # The path goes as an argument: the test's directory has parentheses and quotes.
      ["sh", "-c", script, "sh", pidfile]
    end

    defp children_of_kill_command(pidfile) do
      assert eventually(fn -> match?({:ok, text} when byte_size(text) > 0, File.read(pidfile)) end)

      assert eventually(fn ->
               pidfile |> File.read!() |> String.split() |> length() == 2
             end)

      pidfile |> File.read!() |> String.split() |> Enum.map(&String.to_integer/1)
    end

    # The program ignores SIGTERM: it lives until the deadline, whatever the command does.
    defp stop_with(kill_command, grace) do
      p = start_ready(["sh", "-c", @stubborn], kill_command: kill_command, kill_grace: grace)
      assert {:ok, {:signal, :sigkill}} = P.stop(p, grace)
    end

    @tag :temp_dir
    @tag :cgroup
    test "with cgroups: background and setsid children, the command ended or not",
         %{temp_dir: dir} do
      for wait <- [false, true] do
        pidfile = Path.join(dir, "kill-#{wait}.pids")
        stop_with(leaving_children(pidfile, wait), 500)
        children = children_of_kill_command(pidfile)
        # At the deadline, with the program: gone (reaped by the helper program).
        assert eventually(fn -> not Enum.any?(children, &alive?/1) end, 1_000),
               "kill command children left (wait: #{wait}): #{inspect(children)}"
      end
    end

    @tag :temp_dir
    @tag :cgroup
    test "with cgroups: a program that ends early still has its kill command's children " <>
           "stopped at the deadline",
         %{temp_dir: dir} do
      pidfile = Path.join(dir, "kill.pids")

      command = [
        "sh",
        "-c",
        "sleep 300 & echo $! >> \"$1\"; setsid sleep 300 & echo $! >> \"$1\"; " <>
          "kill -USR1 $CHILD_PID",
        "sh",
        pidfile
      ]

      p = start_ready(["sh", "-c", @stubborn], kill_command: command, kill_grace: 1_000)
      assert {:ok, 7} = P.stop(p, 1_000)
      children = children_of_kill_command(pidfile)
      assert eventually(fn -> not Enum.any?(children, &alive?/1) end, 2_000)
    end

    @tag :temp_dir
    test "without cgroups: its group, and its descendants while it runs", %{temp_dir: dir} do
      Sluice.Case.restart_helper(false)
      on_exit(fn -> Sluice.Case.restart_helper(:auto) end)

      # Still running at the deadline: every descendant is found and killed.
      pidfile = Path.join(dir, "running.pids")
      stop_with(leaving_children(pidfile, true), 500)
      children = children_of_kill_command(pidfile)
      assert eventually(fn -> not Enum.any?(children, &alive?/1) end, 1_000)

      # Ended before it: its group is killed; a setsid child, in no group or tree of
      # Sluice's any more, survives (docs/guarantees.md), and is killed here.
      pidfile = Path.join(dir, "ended.pids")
      stop_with(leaving_children(pidfile, false), 500)
      [background, setsid] = children_of_kill_command(pidfile)
      assert eventually(fn -> not alive?(background) end, 1_000)
      assert alive?(setsid)
      System.cmd("kill", ["-KILL", "#{setsid}"])
      assert eventually(fn -> not alive?(setsid) end)
    end
  end

  test "run's timeout uses the kill command too" do
    assert {:error, %Sluice.Error{reason: :timeout, result: %{status: 7}}} =
             Sluice.run(["sh", "-c", @stubborn],
               timeout: 300,
               kill_grace: 10_000,
               kill_command: ["sh", "-c", "kill -USR1 $CHILD_PID"]
             )
  end

  @tag :temp_dir
  test "a core dump is reported beside the status", %{temp_dir: dir} do
    assert {:ok, result} =
             Sluice.run(["sh", "-c", "kill -SEGV $$"], rlimits: [core: :infinity], cd: dir)

    assert result.status == {:signal, :sigsegv}
    core_pattern = File.read!("/proc/sys/kernel/core_pattern")
    # A pipe handler may refuse; a plain pattern writes the core.
    unless String.starts_with?(core_pattern, "|"), do: assert(result.core_dumped)

    assert {:ok, %{status: {:signal, :sigsegv}, core_dumped: false}} =
             Sluice.run(["sh", "-c", "kill -SEGV $$"], rlimits: [core: 0], cd: dir)

    # Sluice.Process tells it too, while its stdout is unread (the server still runs).
    {:ok, p} =
      P.start_link(["sh", "-c", "echo x; kill -SEGV $$"], rlimits: [core: :infinity], cd: dir)

    assert {:ok, {:signal, :sigsegv}} = P.await_exit(p, 5_000)
    assert {:ok, %{core_dumped: dumped, statuses: [{:signal, :sigsegv}]}} = P.stats(p)
    unless String.starts_with?(core_pattern, "|"), do: assert(dumped)
  end

  test "options are checked" do
    for bad <- [[], "kill", [1], Sluice.pipeline([["true"]])] do
      assert_raise ArgumentError, ~r/option :kill_command/, fn ->
        Sluice.run(["true"], kill_command: bad)
      end
    end
  end
end
