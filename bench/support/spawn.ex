defmodule Bench.Spawn do
  @moduledoc false
  # 1. Spawn latency: /bin/true run to completion N times in sequence, per contender.

  alias Bench.{Format, Interleave, Native, Ports, Section, Stats, Target}

  @true_bin "/bin/true"

  def run(config) do
    n = config.spawn_n

    contenders = [
      {"Sluice.run", fn -> per_spawn(n, &sluice/0) end},
      {"Sluice.run (stderr: :null)", fn -> per_spawn(n, &sluice_null/0) end},
      {"Port.open", fn -> per_spawn(n, &port/0) end},
      {"System.cmd", fn -> per_spawn(n, &cmd/0) end},
      {"native: std::process::Command", fn -> Native.spawn(n, "std") end},
      {"native: fork + execve", fn -> Native.spawn(n, "fork") end}
    ]

    # Warm-up: code loaded, helper and allocators warm.
    per_spawn(10, &sluice/0)
    per_spawn(10, &port/0)

    samples = Interleave.run(contenders, config.reps)
    medians = Map.new(samples, fn {name, s} -> {name, Stats.median(s)} end)
    port = medians["Port.open"]
    native = medians["native: std::process::Command"]

    rows =
      for {name, _} <- contenders do
        s = samples[name]

        [
          name,
          Format.us(medians[name]),
          Format.us(Enum.min(s)),
          Format.us(Enum.max(s)),
          Format.ratio(Stats.ratio(medians[name], port)),
          Format.ratio(Stats.ratio(medians[name], native))
        ]
      end

    sluice = medians["Sluice.run"]

    %Section{
      title: "1. Spawn latency",
      what:
        "`/bin/true` run to completion #{n} times in sequence; time per spawn " <>
          "(#{config.reps} interleaved repetitions, median). Lower is better.",
      columns: ["contender", "median per spawn", "min", "max", "vs Port", "vs native"],
      rows: rows,
      targets: [
        Target.check(
          "Spawn: Sluice.run / Port.open",
          Stats.ratio(sluice, port),
          :<=,
          0.8,
          &Format.ratio/1
        ),
        Target.check(
          "Spawn: Sluice.run / native (std::process::Command)",
          Stats.ratio(sluice, native),
          :<=,
          1.3,
          &Format.ratio/1
        )
      ],
      notes: [
        "`Sluice.run` captures stderr (3 pipes); `Port.open` and `System.cmd` use 2 pipes " <>
          "and inherit stderr; the `stderr: :null` row shows what the third pipe costs.",
        "native: `std::process::Command` uses posix_spawn (vfork-like); `fork + execve` is " <>
          "what a helper that must run code in the child (setsid, prctl, dup2) does."
      ]
    }
  end

  defp per_spawn(n, fun) do
    {us, :ok} = :timer.tc(fn -> Enum.each(1..n, fn _ -> fun.() end) end)
    us / n
  end

  @doc false
  def sluice do
    {:ok, %{status: 0}} = Sluice.run([@true_bin])
    :ok
  end

  @doc false
  def sluice_null do
    {:ok, %{status: 0}} = Sluice.run([@true_bin], stderr: :null)
    :ok
  end

  @doc false
  def port do
    0 = Ports.run([@true_bin])
    :ok
  end

  @doc false
  def cmd do
    {"", 0} = System.cmd(@true_bin, [])
    :ok
  end
end
