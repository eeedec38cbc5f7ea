# Not part of the suite: Sluice.run collecting a native producer's output against
# System.cmd collecting the same (and a Port that discards it, for reference), interleaved
# round-robin. Reports the median throughput and the BEAM's own CPU time per GiB (every
# thread of this VM, user and system, from /proc/self/task/*/schedstat), which load from
# elsewhere on the machine moves less than the wall time.
#
#   (cd native && cargo build --release -p sluice_bench)
#   MIX_ENV=prod mix run bench/collect.exs [--reps 5] [--total 268435456]

{opts, _, _} = OptionParser.parse(System.argv(), strict: [reps: :integer, total: :integer])
reps = Keyword.get(opts, :reps, 5)
total = Keyword.get(opts, :total, 268_435_456)
exe = System.get_env("SLUICE_BENCH", Path.expand("native/target/release/sluice_bench"))
File.exists?(exe) || raise "#{exe} missing: cd native && cargo build --release -p sluice_bench"
args = ["produce", "#{total}"]

cpu_ns = fn ->
  Enum.reduce(Path.wildcard("/proc/self/task/*/schedstat"), 0, fn path, acc ->
    case File.read(path) do
      {:ok, line} -> acc + String.to_integer(hd(String.split(line)))
      {:error, _} -> acc
    end
  end)
end

drain = fn drain, port, n ->
  receive do
    {^port, {:data, data}} -> drain.(drain, port, n + byte_size(data))
    {^port, {:exit_status, 0}} -> n
  end
end

contenders = [
  {"Sluice.run", fn -> byte_size(Sluice.run!([exe | args]).stdout) end},
  {"System.cmd", fn -> exe |> System.cmd(args) |> elem(0) |> byte_size() end},
  {"Port (discards)",
   fn ->
     port = Port.open({:spawn_executable, exe}, [:binary, :stream, :exit_status, args: args])
     drain.(drain, port, 0)
   end}
]

samples =
  Enum.reduce(1..reps, %{}, fn round, acc ->
    # Each round starts one contender later.
    {later, first} = Enum.split(contenders, rem(round, length(contenders)))

    Enum.reduce(first ++ later, acc, fn {name, fun}, acc ->
      :erlang.garbage_collect()
      cpu = cpu_ns.()
      {us, bytes} = :timer.tc(fun)
      cpu = cpu_ns.() - cpu
      bytes == total || raise "#{name} read #{bytes} bytes, expected #{total}"
      Map.update(acc, name, [{us, cpu}], &[{us, cpu} | &1])
    end)
  end)

median = fn list -> list |> Enum.sort() |> Enum.at(div(length(list), 2)) end
gib = total / 1_073_741_824

rows =
  for {name, _} <- contenders do
    runs = samples[name]
    {name, median.(Enum.map(runs, &elem(&1, 0))), median.(Enum.map(runs, &elem(&1, 1)))}
  end

{_, cmd_us, cmd_cpu} = List.keyfind(rows, "System.cmd", 0)
{_, port_us, _} = List.keyfind(rows, "Port (discards)", 0)
mib_s = fn us -> round(total / 1_048_576 / (us / 1.0e6)) end

IO.puts("#{div(total, 1_048_576)} MiB from `sluice_bench produce`, #{reps} interleaved rounds")

for {name, us, cpu} <- rows do
  IO.puts(
    "#{String.pad_trailing(name, 16)} #{mib_s.(us)} MiB/s  vs System.cmd #{Float.round(cmd_us / us, 2)}x" <>
      "  vs Port #{Float.round(port_us / us, 2)}x  BEAM CPU #{round(cpu / 1.0e6 / gib)} ms/GiB" <>
      " (System.cmd's / this: #{Float.round(cmd_cpu / cpu, 2)}x)"
  )
end
