defmodule Bench.Ticker do
  @moduledoc false
  # 7. Scheduler responsiveness: a 1 ms ticker (absolute send_after deadlines) while N
  # programs stream output as fast as they can, each consumed by its own process, with
  # Sluice.stream! or with a Port.

  alias Bench.{Format, Interleave, Ports, Section, Stats, Target}

  def run(config) do
    n = config.ticker_programs
    ms = config.ticker_ms
    yes = Ports.exe("yes")

    sluice = "#{n} × Sluice.stream!(yes)"
    port = "#{n} × Port.open(yes)"

    contenders = [
      {"idle (no programs)", fn -> once(ms, 0, yes, &consume_sluice/2) end},
      {sluice, fn -> once(ms, n, yes, &consume_sluice/2) end},
      {port, fn -> once(ms, n, yes, &consume_port/2) end}
    ]

    samples = Interleave.run(contenders, config.slow_reps)
    med = fn name, key -> samples[name] |> Enum.map(& &1[key]) |> Stats.median() end

    rows =
      for {name, _} <- contenders do
        [
          name,
          Format.ms(med.(name, :p50)),
          Format.ms(med.(name, :p99)),
          Format.ms(samples[name] |> Enum.map(& &1.max) |> Enum.max()),
          Format.mib_s(med.(name, :rate))
        ]
      end

    %Section{
      title: "7. Scheduler responsiveness",
      what:
        "Lateness of a 1 ms ticker (`:erlang.send_after/3` armed again when a tick arrives) over " <>
          "#{ms} ms, while #{n} `yes` programs are streamed and discarded, each read by its " <>
          "own process: with `Sluice.stream!/2`, or with `Port.open` (`:binary`, `{:data, _}` " <>
          "messages consumed as they come: a Port has no back-pressure) " <>
          "(#{config.slow_reps} interleaved repetitions, median of each percentile).",
      columns: ["load", "p50 lateness", "p99 lateness", "worst", "output streamed"],
      rows: rows,
      targets: [
        Target.check(
          "Ticker p50 lateness: Sluice (≤ Port's)",
          med.(sluice, :p50),
          :<=,
          med.(port, :p50),
          &Format.ms/1
        ),
        Target.check(
          "Ticker p99 lateness: Sluice (≤ Port's)",
          med.(sluice, :p99),
          :<=,
          med.(port, :p99),
          &Format.ms/1
        ),
        Target.check(
          "Ticker p99 lateness under Sluice load",
          med.(sluice, :p99),
          :<,
          5.0,
          &Format.ms/1
        )
      ],
      notes: [
        "\"output streamed\" is the aggregate rate of all #{n} readers while the ticker ran."
      ]
    }
  end

  defp once(ms, n, yes, consume) do
    counter = :counters.new(1, [:write_concurrency])
    consumers = for _ <- 1..n//1, do: spawn(fn -> consume.(yes, counter) end)
    # Let every program start before ticking.
    Process.sleep(if n > 0, do: 200, else: 0)
    bytes0 = :counters.get(counter, 1)
    lateness = tick(ms)
    bytes = :counters.get(counter, 1) - bytes0
    Enum.each(consumers, &Process.exit(&1, :kill))
    lateness_ms = Enum.map(lateness, &(&1 / 1_000))

    %{
      p50: Stats.percentile(lateness_ms, 50),
      p99: Stats.percentile(lateness_ms, 99),
      max: Enum.max(lateness_ms),
      rate: bytes / (ms / 1_000)
    }
  end

  defp consume_sluice(yes, counter) do
    [yes]
    |> Sluice.stream!(exit_timeout: 60_000)
    |> Enum.each(&:counters.add(counter, 1, byte_size(&1)))
  end

  # The port is linked to this process: killing it closes the port (`yes` gets EPIPE).
  defp consume_port(yes, counter) do
    port = Ports.open([yes], [:stream, :stderr_to_stdout])
    port_loop(port, counter)
  end

  defp port_loop(port, counter) do
    receive do
      {^port, {:data, data}} ->
        :counters.add(counter, 1, byte_size(data))
        port_loop(port, counter)

      {^port, {:exit_status, _}} ->
        :ok
    end
  end

  # Lateness in µs of each tick, in a fresh process: each tick is armed 1 ms after the
  # previous one arrived (like `Process.sleep(1)` in a loop), so one stall counts once.
  defp tick(ms) do
    task =
      Task.async(fn ->
        now = System.monotonic_time(:microsecond)
        loop(now, now + ms * 1_000, [])
      end)

    Task.await(task, ms + 60_000)
  end

  defp loop(now, stop, acc) when now >= stop, do: acc

  defp loop(now, stop, acc) do
    :erlang.send_after(1, self(), :tick)

    receive do
      :tick -> :ok
    end

    arrived = System.monotonic_time(:microsecond)
    loop(arrived, stop, [arrived - now - 1_000 | acc])
  end
end
