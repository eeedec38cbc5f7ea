defmodule Sluice.UsageTest do
  @moduledoc """
  Accounting: `result.usage` of a program tree (a shell whose child burns 0.5 s of CPU)
  from its cgroup's `cpu.stat`, and `Sluice.Process.stats/2` of a running program. The
  same without cgroups is in `no_cgroup_usage_test.exs`.
  """
  use Sluice.Case, async: false

  alias Sluice.Process, as: P
  alias Sluice.UsageProbe

  # Machines without a writable cgroup v2 exclude it (test_helper.exs); the rusage path has
  # its own test in no_cgroup_usage_test.exs.
  @tag :cgroup
  test "a program tree's CPU time comes from its cgroup" do
    assert %{cgroup_root: root} = Sluice.Helper.info()
    assert root, "the helper program runs without cgroups"
    UsageProbe.assert_tree_usage(:cgroup)
  end

  test "a quick program costs little; a pooled cgroup does not count earlier programs" do
    UsageProbe.assert_tree_usage(if Sluice.Helper.info().cgroup_root, do: :cgroup, else: :rusage)
    assert {:ok, %{usage: usage}} = Sluice.run(["true"])
    assert usage.cpu_user_us + usage.cpu_system_us < 300_000
  end

  test "Sluice.Process.stats/2 of a running program: usage, pids, bytes, age" do
    {:ok, p} = P.start_link(["sh", "-c", "cat; sleep 0.2 & sleep 0.2 & wait"])
    :ok = P.write(p, "12345")
    assert {:ok, "12345"} = P.read(p, 100, 5_000)

    assert {:ok, stats} = P.stats(p)
    assert %{bytes_read: 5, bytes_written: 5, pids_current: pids, usage: %{}} = stats
    assert pids >= 2
    assert stats.age_ms >= 0

    :ok = P.close_stdin(p)
    Process.sleep(100)
    assert {:ok, %{pids_current: 3}} = P.stats(p)
    assert {:ok, 0} = P.await_exit(p, 5_000)
  end
end
