defmodule Bench.Unread do
  @moduledoc false
  # 6. Memory with nobody reading: `yes` started and not read for a while; the growth of
  # BEAM memory. The Port case is stopped once it grew by the limit (500 MB).

  alias Bench.{Format, Interleave, Memory, Ports, Section, Stats, Target}

  @sample_ms 5

  def run(config) do
    yes = Ports.exe("yes")
    limit = config.unread_limit
    duration = config.unread_ms

    contenders = [
      {"Sluice.Process", fn -> once(duration, limit, fn -> sluice(yes) end) end},
      {"Port.open", fn -> once(duration, limit, fn -> port(yes) end) end}
    ]

    samples = Interleave.run(contenders, config.slow_reps)
    med = fn name, key -> samples[name] |> Enum.map(& &1[key]) |> Stats.median() end

    rows =
      for {name, _} <- contenders do
        s = samples[name]
        stopped = Enum.count(s, & &1.stopped)

        [
          name,
          Format.mb(med.(name, :growth)),
          Format.mb(s |> Enum.map(& &1.growth) |> Enum.max()),
          Format.ms(med.(name, :ms)),
          "#{stopped} of #{length(s)}"
        ]
      end

    %Section{
      title: "6. Memory with nobody reading",
      what:
        "`yes` started and not read for #{duration} ms; peak growth of " <>
          "`:erlang.memory(:total)` sampled every #{@sample_ms} ms (#{config.slow_reps} " <>
          "interleaved repetitions). The Port case is stopped at #{Format.mb(limit)} growth.",
      columns: ["contender", "median growth", "max growth", "time observed", "stopped at limit"],
      rows: rows,
      targets: [
        Target.check(
          "Unread: Sluice memory growth (max of repetitions)",
          samples["Sluice.Process"] |> Enum.map(& &1.growth) |> Enum.max(),
          :<,
          Memory.flat_bytes(),
          &Format.mb/1
        )
      ],
      notes: [
        "Sluice reads only on demand: `yes` fills the 64 KiB pipe and blocks in write(). " <>
          "A Port reads everything into its owner's mailbox."
      ]
    }
  end

  @doc false
  # `start` runs in an owner process that never reads; killing the owner stops the program.
  # Returns the peak growth of BEAM memory; also used by Bench.Worker.
  def once(duration, limit, start) do
    parent = self()

    owner =
      spawn(fn ->
        start.()
        send(parent, {:started, self()})
        Process.sleep(:infinity)
      end)

    base = Memory.total()

    receive do
      {:started, ^owner} -> :ok
    after
      10_000 -> raise "program did not start"
    end

    t0 = System.monotonic_time(:millisecond)
    {peak, stopped} = watch(t0 + duration, base + limit, base)
    ms = System.monotonic_time(:millisecond) - t0
    Process.exit(owner, :kill)
    %{growth: peak - base, stopped: stopped, ms: ms}
  end

  defp watch(deadline, limit, peak) do
    peak = max(peak, Memory.total())

    cond do
      peak >= limit ->
        {peak, true}

      System.monotonic_time(:millisecond) >= deadline ->
        {peak, false}

      true ->
        Process.sleep(@sample_ms)
        watch(deadline, limit, peak)
    end
  end

  defp sluice(yes), do: {:ok, _} = Sluice.Process.start_link([yes])
  defp port(yes), do: Ports.open([yes], [:stderr_to_stdout])
end
