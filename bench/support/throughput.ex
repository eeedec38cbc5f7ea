defmodule Bench.Throughput do
  @moduledoc false
  # 2. Spawn throughput: C concurrent callers each run /bin/true K times in sequence;
  # total wall time and spawns per second, per contender.

  alias Bench.{Format, Interleave, Section, Stats, Target}

  @timeout_ms 60_000

  def run(config) do
    callers = config.throughput_callers
    each = config.throughput_per_caller
    total = callers * each

    contenders = [
      {"Sluice.run", fn -> once(callers, each, &Bench.Spawn.sluice/0) end},
      {"Port.open", fn -> once(callers, each, &Bench.Spawn.port/0) end},
      {"System.cmd", fn -> once(callers, each, &Bench.Spawn.cmd/0) end}
    ]

    # Warm-up: code loaded, helper and allocators warm.
    once(min(callers, 10), 2, &Bench.Spawn.sluice/0)
    once(min(callers, 10), 2, &Bench.Spawn.port/0)

    samples = Interleave.run(contenders, config.reps)
    walls = Map.new(samples, fn {name, s} -> {name, Stats.median(s)} end)
    rate = fn name -> if walls[name], do: total / (walls[name] / 1_000) end
    port_rate = rate.("Port.open")

    rows =
      for {name, _} <- contenders do
        s = samples[name]

        [
          name,
          Format.ms(walls[name]),
          Format.ms(Enum.min(s)),
          Format.ms(Enum.max(s)),
          "#{round(rate.(name))} /s",
          Format.ratio(Stats.ratio(rate.(name), port_rate))
        ]
      end

    %Section{
      title: "2. Spawn throughput",
      what:
        "#{total} spawns of `/bin/true` from #{callers} concurrent callers (each runs " <>
          "#{each} in sequence); wall time until all returned (#{config.reps} interleaved " <>
          "repetitions, median). Higher throughput is better.",
      columns: ["contender", "wall time", "min", "max", "spawns/s", "throughput vs Port"],
      rows: rows,
      targets: [
        Target.check(
          "Spawn throughput: Sluice.run / Port.open",
          Stats.ratio(rate.("Sluice.run"), port_rate),
          :>=,
          1.5,
          &Format.ratio/1
        )
      ]
    }
  end

  # Wall time in ms of `callers` processes each running `fun` `each` times in sequence.
  defp once(callers, each, fun) do
    {us, :ok} =
      :timer.tc(fn ->
        1..callers
        |> Enum.map(fn _ -> Task.async(fn -> Enum.each(1..each, fn _ -> fun.() end) end) end)
        |> Task.yield_many(@timeout_ms)
        |> check_all_finished(callers)
      end)

    us / 1_000
  end

  defp check_all_finished(results, n) do
    hung = for {task, nil} <- results, do: Task.shutdown(task, :brutal_kill)

    if hung != [],
      do: raise("#{length(hung)} of #{n} callers did not finish in #{@timeout_ms} ms")

    Enum.each(results, fn {_task, {:ok, _}} -> :ok end)
  end
end
