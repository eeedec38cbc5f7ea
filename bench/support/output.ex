defmodule Bench.Output do
  @moduledoc false
  # 4. Output throughput: TOTAL bytes of `head -c TOTAL /dev/zero` and of the native
  # producer `sluice_bench produce TOTAL`, consumed and discarded.

  alias Bench.{Format, Interleave, Native, Ports, Section, Stats, Target}
  alias Sluice.Process, as: P

  @small 65_536
  @big 1_048_576

  def run(config) do
    total = config.stream_bytes
    run_total = config.run_bytes
    head = [Ports.exe("head"), "-c", "#{total}", "/dev/zero"]
    produce = Native.produce_argv(total)
    produce_run = Native.produce_argv(run_total)

    # {name, sample fun, the Port row and the native row it is compared with}
    contenders = [
      {"head: Sluice.stream! (chunk_size 64 KiB)",
       fn -> rate(total, fn -> stream(head, chunk_size: @small) end) end, "head: Port.open",
       "head: native reader (64 KiB reads)"},
      {"head: Sluice.Process.read (64 KiB)",
       fn -> rate(total, fn -> read(head, @small, []) end) end, "head: Port.open",
       "head: native reader (64 KiB reads)"},
      {"head: Port.open", fn -> rate(total, fn -> port(head) end) end, "head: Port.open",
       "head: native reader (64 KiB reads)"},
      {"head: native reader (64 KiB reads)", fn -> Native.read(@small, total) end,
       "head: Port.open", "head: native reader (64 KiB reads)"},
      {"head: Sluice.Process.read (1 MiB, pipe_size 1 MiB)",
       fn -> rate(total, fn -> read(head, @big, pipe_size: @big) end) end, "head: Port.open",
       "head: native reader (1 MiB reads, pipe 1 MiB)"},
      {"head: Sluice.stream! (64 KiB, pipe_size 1 MiB)",
       fn -> rate(total, fn -> stream(head, chunk_size: @small, pipe_size: @big) end) end,
       "head: Port.open", "head: native reader (1 MiB reads, pipe 1 MiB)"},
      {"head: native reader (1 MiB reads, pipe 1 MiB)", fn -> Native.read(@big, total, @big) end,
       "head: Port.open", "head: native reader (1 MiB reads, pipe 1 MiB)"},
      {"produce: Sluice.stream! (defaults)", fn -> rate(total, fn -> stream(produce, []) end) end,
       "produce: Port.open", "produce: native reader (64 KiB reads)"},
      {"produce: Port.open", fn -> rate(total, fn -> port(produce) end) end, "produce: Port.open",
       "produce: native reader (64 KiB reads)"},
      {"produce: native reader (64 KiB reads)", fn -> Native.read_cmd(@small, produce, total) end,
       "produce: Port.open", "produce: native reader (64 KiB reads)"},
      {"produce #{Format.size(run_total)}: Sluice.run (defaults)",
       fn -> rate(run_total, fn -> sluice_run(produce_run) end) end,
       "produce #{Format.size(run_total)}: Port.open",
       "produce #{Format.size(run_total)}: native reader (64 KiB reads)"},
      {"produce #{Format.size(run_total)}: System.cmd (collects, like run)",
       fn -> rate(run_total, fn -> cmd(produce_run) end) end,
       "produce #{Format.size(run_total)}: Port.open",
       "produce #{Format.size(run_total)}: native reader (64 KiB reads)"},
      {"produce #{Format.size(run_total)}: Port.open",
       fn -> rate(run_total, fn -> port(produce_run) end) end,
       "produce #{Format.size(run_total)}: Port.open",
       "produce #{Format.size(run_total)}: native reader (64 KiB reads)"},
      {"produce #{Format.size(run_total)}: native reader (64 KiB reads)",
       fn -> Native.read_cmd(@small, produce_run, run_total) end,
       "produce #{Format.size(run_total)}: Port.open",
       "produce #{Format.size(run_total)}: native reader (64 KiB reads)"}
    ]

    samples =
      Interleave.run(Enum.map(contenders, fn {name, fun, _, _} -> {name, fun} end), config.reps)

    medians = Map.new(samples, fn {name, s} -> {name, Stats.median(s)} end)
    vs = fn name, other -> Stats.ratio(medians[name], medians[other]) end

    rows =
      for {name, _, port, native} <- contenders do
        s = samples[name]

        [
          name,
          Format.mib_s(medians[name]),
          Format.mib_s(Enum.min(s)),
          Format.mib_s(Enum.max(s)),
          Format.ratio(vs.(name, port)),
          Format.ratio(vs.(name, native))
        ]
      end

    targets =
      for {name, _, port, native} <- contenders,
          {port_min, native_min} <- targets(name) do
        [
          Target.check(
            "Output: #{name} / Port.open",
            vs.(name, port),
            :>=,
            port_min,
            &Format.ratio/1
          ),
          Target.check(
            "Output: #{name} / native reader",
            vs.(name, native),
            :>=,
            native_min,
            &Format.ratio/1
          )
        ]
      end

    %Section{
      title: "4. Output throughput",
      what:
        "#{Format.size(total)} from a producer, consumed and discarded; bytes/s including " <>
          "the spawn (#{config.reps} interleaved repetitions, median). Higher is better. " <>
          "Producers: `head -c #{total} /dev/zero` (\"head\"), and the native producer " <>
          "`sluice_bench produce TOTAL` (\"produce\": 1 MiB writes from one preallocated " <>
          "buffer, so the producer is not the bottleneck). `Sluice.run` collects the output " <>
          "in memory, so its rows use #{Format.size(run_total)}, compared with System.cmd " <>
          "(which collects too), Port (which discards) and the " <>
          "native reader on the same total. \"vs Port\" and \"vs native\" compare with the " <>
          "Port row and the native reader of the same producer and total.",
      columns: ["contender", "median", "min", "max", "vs Port", "vs native"],
      rows: rows,
      targets: List.flatten(targets),
      notes: [
        "The 1 MiB rows raise the pipe capacity with `pipe_size:` (F_SETPIPE_SZ) from the " <>
          "default 64 KiB to 1 MiB.",
        "Port rows: `Port.open({:spawn_executable, ...}, [:binary, :stream, :exit_status])`, " <>
          "reading `{:data, _}` until `exit_status`.",
        "\"(defaults)\": `Sluice.stream!(argv)` and `Sluice.run(argv)` with no options."
      ]
    }
  end

  # {minimum ratio to Port, minimum ratio to native} of the rows with targets.
  defp targets("head: Sluice.stream! (chunk_size 64 KiB)"), do: [{1.2, 0.85}]
  defp targets("head: Sluice.Process.read (64 KiB)"), do: [{1.2, 0.85}]
  defp targets("produce: Sluice.stream! (defaults)"), do: [{1.3, 0.9}]

  defp targets("produce " <> rest) do
    if String.ends_with?(rest, ": Sluice.run (defaults)"), do: [{1.3, 0.9}], else: []
  end

  defp targets(_name), do: []

  defp rate(total, fun) do
    {us, bytes} = :timer.tc(fun)
    if bytes != total, do: raise("read #{bytes} bytes, expected #{total}")
    total / (us / 1_000_000)
  end

  defp stream(argv, opts) do
    argv
    |> Sluice.stream!(opts)
    |> Enum.reduce(0, fn chunk, acc -> acc + byte_size(chunk) end)
  end

  defp sluice_run(argv) do
    {:ok, %{status: 0, stdout: out}} = Sluice.run(argv)
    byte_size(out)
  end

  defp read(argv, size, opts) do
    {:ok, p} = P.start_link(argv, opts)
    bytes = read_loop(p, size, 0)
    {:ok, 0} = P.await_exit(p)
    # Once the program exited and its output reached EOF, the new core may already have
    # ended the server: stopping it then answers {:error, :closed}.
    true = P.stop(p) in [{:ok, 0}, {:error, :closed}]
    bytes
  end

  defp read_loop(p, size, acc) do
    case P.read(p, size) do
      {:ok, data} -> read_loop(p, size, acc + byte_size(data))
      :eof -> acc
    end
  end

  defp port(argv) do
    {0, bytes} = argv |> Ports.open([:stream]) |> Ports.drain()
    bytes
  end

  defp cmd([exe | args]) do
    {out, 0} = System.cmd(exe, args)
    byte_size(out)
  end
end
