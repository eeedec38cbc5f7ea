defmodule Bench.Output do
  @moduledoc false
  # 3. Output throughput: `head -c TOTAL /dev/zero` consumed and discarded.

  alias Bench.{Format, Interleave, Native, Ports, Section, Stats, Target}
  alias Sluice.Process, as: P

  @small 65_536
  @big 1_048_576

  def run(config) do
    total = config.stream_bytes
    argv = [Ports.exe("head"), "-c", "#{total}", "/dev/zero"]

    contenders = [
      {"Sluice.stream! (chunk_size 64 KiB)", fn -> rate(total, fn -> stream(argv, []) end) end},
      {"Sluice.Process.read (64 KiB)", fn -> rate(total, fn -> read(argv, @small, []) end) end},
      {"Port.open", fn -> rate(total, fn -> port(argv) end) end},
      {"native reader (64 KiB reads)", fn -> Native.read(@small, total) end},
      {"Sluice.Process.read (1 MiB, pipe_size 1 MiB)",
       fn -> rate(total, fn -> read(argv, @big, pipe_size: @big) end) end},
      {"Sluice.stream! (64 KiB, pipe_size 1 MiB)",
       fn -> rate(total, fn -> stream(argv, pipe_size: @big) end) end},
      {"native reader (1 MiB reads, pipe 1 MiB)", fn -> Native.read(@big, total, @big) end}
    ]

    samples = Interleave.run(contenders, config.reps)
    medians = Map.new(samples, fn {name, s} -> {name, Stats.median(s)} end)
    port = medians["Port.open"]
    native_small = medians["native reader (64 KiB reads)"]
    native_big = medians["native reader (1 MiB reads, pipe 1 MiB)"]

    rows =
      for {name, _} <- contenders do
        native = if name =~ "1 MiB", do: native_big, else: native_small
        s = samples[name]

        [
          name,
          Format.mib_s(medians[name]),
          Format.mib_s(Enum.min(s)),
          Format.mib_s(Enum.max(s)),
          Format.ratio(Stats.ratio(medians[name], port)),
          Format.ratio(Stats.ratio(medians[name], native))
        ]
      end

    targets =
      for name <- ["Sluice.stream! (chunk_size 64 KiB)", "Sluice.Process.read (64 KiB)"] do
        [
          Target.check(
            "Output: #{name} / Port.open",
            Stats.ratio(medians[name], port),
            :>=,
            1.2,
            &Format.ratio/1
          ),
          Target.check(
            "Output: #{name} / native reader (64 KiB)",
            Stats.ratio(medians[name], native_small),
            :>=,
            0.85,
            &Format.ratio/1
          )
        ]
      end

    %Section{
      title: "3. Output throughput",
      what:
        "#{Format.size(total)} from `head -c #{total} /dev/zero`, consumed and discarded; " <>
          "bytes/s including the spawn (#{config.reps} interleaved repetitions, median). " <>
          "Higher is better; \"vs native\" compares with the native reader of the same read size.",
      columns: ["contender", "median", "min", "max", "vs Port", "vs native"],
      rows: rows,
      targets: List.flatten(targets),
      notes: [
        "The 1 MiB rows raise the pipe capacity with `pipe_size:` (F_SETPIPE_SZ) from the " <>
          "default 64 KiB to 1 MiB."
      ]
    }
  end

  defp rate(total, fun) do
    {us, bytes} = :timer.tc(fun)
    if bytes != total, do: raise("read #{bytes} bytes, expected #{total}")
    total / (us / 1_000_000)
  end

  defp stream(argv, opts) do
    argv
    |> Sluice.stream!([chunk_size: @small, exit_timeout: 60_000] ++ opts)
    |> Enum.reduce(0, fn chunk, acc -> acc + byte_size(chunk) end)
  end

  defp read(argv, size, opts) do
    {:ok, p} = P.start_link(argv, opts)
    bytes = read_loop(p, size, 0)
    {:ok, 0} = P.await_exit(p)
    {:ok, 0} = P.stop(p)
    bytes
  end

  defp read_loop(p, size, acc) do
    case P.read(p, size) do
      {:ok, data} -> read_loop(p, size, acc + byte_size(data))
      :eof -> acc
    end
  end

  defp port(argv) do
    {0, bytes} = argv |> Ports.open() |> Ports.drain()
    bytes
  end
end
