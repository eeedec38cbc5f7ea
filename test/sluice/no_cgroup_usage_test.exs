defmodule Sluice.NoCgroupUsageTest do
  @moduledoc """
  Accounting with cgroups forced off (`config :sluice, cgroup: false`): the usage is
  `wait4`'s rusage of the program, which includes the children it waited for, and
  `stats/2` counts its process group.
  """
  use Sluice.Case, async: false

  alias Sluice.Process, as: P

  setup_all do
    Sluice.Case.restart_helper(false)
    on_exit(fn -> Sluice.Case.restart_helper(:auto) end)
    :ok
  end

  test "a program tree's CPU time comes from rusage" do
    assert %{cgroup_root: nil} = Sluice.Helper.info()
    Sluice.UsageProbe.assert_tree_usage(:rusage)
  end

  test "stats/2 counts the process group" do
    {:ok, p} = P.start_link(["sh", "-c", "sleep 5 & sleep 5 & wait"])
    Process.sleep(100)
    assert {:ok, %{pids_current: 3, usage: %{source: :rusage}}} = P.stats(p)
    assert {:ok, {:signal, :sigterm}} = P.stop(p, 1_000)
  end
end
