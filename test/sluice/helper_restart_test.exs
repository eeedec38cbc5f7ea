defmodule Sluice.HelperRestartTest do
  @moduledoc """
  Row (g) in this VM: the helper OS process is SIGKILLed. The supervisor restarts it within
  1 s, new spawns work, the programs that ran under it end, their `Sluice.Process`es exit
  with `{:shutdown, :helper_down}` and no caller hangs. (All seven programs, with and
  without cgroups, are in `fault_matrix_vm_test.exs`.)
  """
  use Sluice.Case, async: false

  alias Sluice.FaultMatrix, as: M
  alias Sluice.Process, as: P

  # The supervisor logs each helper death.
  @moduletag :capture_log

  defp kill_helper do
    old = Sluice.Helper.info()
    {_, 0} = System.cmd("kill", ["-KILL", to_string(old.os_pid)])
    old
  end

  defp await_new_helper(old_pid, ms) do
    t0 = M.now()

    info =
      eventually(
        fn ->
          try do
            info = Sluice.Helper.info()
            is_integer(info.os_pid) and info.os_pid != old_pid and info
          catch
            :exit, _ -> false
          end
        end,
        ms
      )

    {info, M.now() - t0}
  end

  test "the helper restarts within 1 s; programs end; callers get errors; new spawns work" do
    Process.flag(:trap_exit, true)
    {:ok, linked} = P.start_link(["sleep", "30"])
    {:ok, p} = P.start(["sh", "-c", "sleep 30 & wait"])
    os_pids = [P.os_pid(linked), P.os_pid(p)]
    ref = Process.monitor(p)
    reader = Task.async(fn -> P.read(p) end)
    waiter = Task.async(fn -> P.await_exit(p) end)
    Process.sleep(50)

    old = kill_helper()
    t = M.now()
    {info, _} = await_new_helper(old.os_pid, 2_000)
    assert info, "no new helper"
    assert M.now() - t < 1_000, "the helper restarted after #{M.now() - t} ms"

    assert_receive {:DOWN, ^ref, :process, ^p, {:shutdown, :helper_down}}, 2_000
    assert_receive {:EXIT, ^linked, {:shutdown, :helper_down}}, 2_000
    assert Task.await(reader) in [:eof, {:error, :helper_down}]
    assert Task.await(waiter) == {:error, :helper_down}

    # Direct children die by PDEATHSIG at once, with or without cgroups.
    assert eventually(fn -> not Enum.any?(os_pids, &alive?/1) end, 1_000)

    # The dead helper's cgroup was swept by the new one.
    if old.cgroup_root, do: refute(File.exists?(Path.join(old.cgroup_root, "h#{old.os_pid}")))

    assert {:ok, %Sluice.Result{stdout: "back\n"}} = Sluice.run(["echo", "back"])
  end

  test "spawns racing a helper restart return a result or :helper_down, never hang or raise" do
    old = kill_helper()

    results =
      for _ <- 1..50 do
        case Sluice.run(["true"]) do
          {:ok, %Sluice.Result{status: 0}} -> :ok
          {:error, %Sluice.Error{reason: :helper_down}} -> :helper_down
        end
      end

    assert {info, _} = await_new_helper(old.os_pid, 2_000)
    assert info
    assert Enum.all?(results, &(&1 in [:ok, :helper_down]))
    assert {:ok, %Sluice.Result{status: 0}} = Sluice.run(["true"])
  end

  test "three helper deaths in a row: each is restarted, the application stays up" do
    for _ <- 1..3 do
      old = kill_helper()
      {info, ms} = await_new_helper(old.os_pid, 2_000)
      assert info && ms < 1_000
      assert {:ok, %Sluice.Result{stdout: "ok\n"}} = Sluice.run(["echo", "ok"])
    end

    assert Enum.any?(Application.started_applications(), &match?({:sluice, _, _}, &1))
  end
end
