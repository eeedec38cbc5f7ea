# Tests that need a writable cgroup v2 (the helper program's `--cgroup auto` finds one)
# are tagged :cgroup and excluded where there is none, with the reason printed.
{:ok, _} = Application.ensure_all_started(:sluice)
cgroups? = Sluice.OsProbe.eventually(fn -> Sluice.Helper.info().cgroup_root != nil end, 5_000)
unless cgroups?, do: IO.puts("no writable cgroup v2 here: tests tagged :cgroup are excluded")
ExUnit.start(exclude: [:external_vm] ++ if(cgroups?, do: [], else: [:cgroup]))
