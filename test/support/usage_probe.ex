defmodule Sluice.UsageProbe do
  @moduledoc false
  # The accounting check shared by the tests with and without cgroups.

  import ExUnit.Assertions

  # A shell whose child (not the shell itself) burns a fixed amount of CPU: about 0.7 s
  # here (a million rounds of dash arithmetic), whatever the load on the machine.
  @burn [
    "sh",
    "-c",
    "timeout -s KILL 20 sh -c 'i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done'; true"
  ]

  @doc false
  @spec assert_tree_usage(:cgroup | :rusage) :: true
  def assert_tree_usage(expected_source) do
    assert {:ok, %{status: 0, usage: usage}} = Sluice.run(@burn)
    assert %{source: ^expected_source, max_rss_kb: rss} = usage
    cpu = usage.cpu_user_us + usage.cpu_system_us
    # At least 0.4 s (a busy machine's scheduling aside), less than the wall-clock bound.
    assert cpu >= 400_000, "usage #{inspect(usage)}"
    assert cpu < 5_000_000
    assert rss > 0
  end
end
