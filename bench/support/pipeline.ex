defmodule Bench.Pipeline do
  @moduledoc false
  # 12. Kernel pipeline: TOTAL bytes through three stages, `head -c TOTAL /dev/zero |
  # gzip -1 | gzip -dc`, the last stage's output consumed (and discarded) in the BEAM.
  # Sluice.pipeline (pipes made by the helper program, no byte through the BEAM between
  # stages) against the same stages chained as Sluice streams through the BEAM (each
  # stream the next one's input) and against `sh -c "a | b | c"` run by Sluice.stream!;
  # throughput and the peak growth of the BEAM's memory.

  alias Bench.{Format, Interleave, Memory, Ports, Section, Stats, Target}

  @timeout_ms 600_000

  def run(config) do
    total = config.pipeline_bytes
    [head, gzip] = Enum.map(~w(head gzip), &Ports.exe/1)
    stages = [[head, "-c", "#{total}", "/dev/zero"], [gzip, "-1"], [gzip, "-dc"]]
    shell = Enum.map_join(stages, " | ", &Enum.join(&1, " "))

    contenders = [
      {"Sluice.pipeline",
       fn -> once(total, fn -> Sluice.stream!(Sluice.pipeline(stages)) end) end},
      {"Sluice streams chained in the BEAM", fn -> once(total, fn -> chained(stages) end) end},
      {"sh -c pipe via Sluice.stream!",
       fn -> once(total, fn -> Sluice.stream!(["sh", "-c", shell]) end) end}
    ]

    # Warm-up: code loaded, helper and allocators warm.
    once(total, fn -> Sluice.stream!(Sluice.pipeline(stages)) end)
    samples = Interleave.run(contenders, config.slow_reps)
    med = fn name, key -> samples[name] |> Enum.map(& &1[key]) |> Stats.median() end
    max = fn name, key -> samples[name] |> Enum.map(& &1[key]) |> Enum.max() end
    shell_rate = med.("sh -c pipe via Sluice.stream!", :rate)

    rows =
      for {name, _} <- contenders do
        [
          name,
          Format.mib_s(med.(name, :rate)),
          Format.ratio(Stats.ratio(med.(name, :rate), shell_rate)),
          Format.mb(max.(name, :growth))
        ]
      end

    %Section{
      title: "12. Kernel pipeline",
      what:
        "#{Format.size(total)} through `head -c | gzip -1 | gzip -dc`, the last stage's " <>
          "output consumed and discarded in the BEAM; bytes/s including the spawns, and " <>
          "the peak growth of `:erlang.memory(:total)` (#{config.slow_reps} interleaved " <>
          "repetitions, median rate, max growth). \"vs shell\" compares with `sh -c` " <>
          "running the same pipe.",
      columns: ["contender", "median", "vs shell", "max growth"],
      rows: rows,
      targets: [
        Target.check(
          "Pipeline: Sluice.pipeline / sh -c pipe",
          Stats.ratio(med.("Sluice.pipeline", :rate), shell_rate),
          :>=,
          0.95,
          &Format.ratio/1
        ),
        Target.check(
          "Pipeline: Sluice.pipeline, BEAM growth",
          max.("Sluice.pipeline", :growth),
          :<,
          Memory.flat_bytes(),
          &Format.mb/1
        )
      ],
      notes: [
        "The chained streams move every byte between stages through the BEAM (read from " <>
          "one program, written to the next); Sluice.pipeline and the shell move them " <>
          "through kernel pipes, and the BEAM reads only the last stage's output."
      ]
    }
  end

  defp chained([first | rest]) do
    Enum.reduce(rest, Sluice.stream!(first), fn argv, input ->
      Sluice.stream!(argv, input: input)
    end)
  end

  defp once(total, stream_fun) do
    t0 = System.monotonic_time(:microsecond)

    {bytes, growth} =
      Memory.peak_growth(fn ->
        task = Task.async(fn -> Enum.reduce(stream_fun.(), 0, &(byte_size(&1) + &2)) end)
        Task.await(task, @timeout_ms)
      end)

    us = System.monotonic_time(:microsecond) - t0
    if bytes != total, do: raise("expected #{total} bytes, got #{bytes}")
    %{rate: bytes / (us / 1_000_000), growth: growth}
  end
end
