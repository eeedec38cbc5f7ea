defmodule Bench.Footprint do
  @moduledoc false
  # 8. Footprint: BEAM memory per idle running program and the extra OS processes per
  # running program (anything beyond the program itself).

  alias Bench.{Format, Interleave, Memory, OsProcs, Ports, Section, Stats, Target}

  def run(config) do
    n = config.footprint_n
    sleep = Ports.exe("sleep")

    contenders = [
      {"Sluice.Process", fn -> once(n, fn -> sluice(sleep) end) end},
      {"Port.open", fn -> once(n, fn -> port(sleep) end) end}
    ]

    samples = Interleave.run(contenders, config.slow_reps)
    med = fn name, key -> samples[name] |> Enum.map(& &1[key]) |> Stats.median() end
    helpers = OsProcs.count("sluice_helper")

    rows =
      for {name, _} <- contenders do
        fixed = if name == "Sluice.Process", do: helpers, else: forkers()

        [
          name,
          Format.kb(med.(name, :bytes_per)),
          Format.count(med.(name, :extra_per)),
          "#{fixed} per node (#{Format.count(fixed / n)} per program at #{n})"
        ]
      end

    %Section{
      title: "8. Footprint",
      what:
        "#{n} idle `sleep 3600` programs held open at once (#{config.slow_reps} interleaved " <>
          "repetitions, median): growth of `:erlang.memory(:total)` per program (after a " <>
          "garbage collection), and OS processes below the BEAM beyond the #{n} programs, " <>
          "per program.",
      columns: [
        "contender",
        "BEAM memory per program",
        "extra OS processes per program",
        "fixed OS processes"
      ],
      rows: rows,
      targets: [
        Target.check(
          "Extra OS processes per running Sluice program",
          med.("Sluice.Process", :extra_per),
          :==,
          0,
          &Format.count/1
        )
      ],
      notes: [
        "Sluice's fixed cost is its helper (`sluice_helper`, one per node); a Port's is the " <>
          "BEAM's forker (`erl_child_setup`, one per node)."
      ]
    }
  end

  # Returns nil: Sluice stops the program when its owner (the holder) dies.
  defp sluice(sleep) do
    {:ok, _} = Sluice.Process.start_link([sleep, "3600"])
    nil
  end

  # Returns the OS pid: closing a Port leaves `sleep` running, so it is killed explicitly.
  defp port(sleep) do
    {:os_pid, os_pid} = [sleep, "3600"] |> Ports.open() |> Port.info(:os_pid)
    os_pid
  end

  # `start` runs in a holder process, which is killed at the end.
  defp once(n, start) do
    Interleave.settle()
    procs0 = OsProcs.count()
    mem0 = Memory.total()
    parent = self()

    holder =
      spawn(fn ->
        leftovers = Enum.map(1..n, fn _ -> start.() end)
        send(parent, {:started, self(), Enum.reject(leftovers, &is_nil/1)})
        Process.sleep(:infinity)
      end)

    leftovers =
      receive do
        {:started, ^holder, leftovers} -> leftovers
      after
        60_000 -> raise "programs did not start"
      end

    Enum.each(Process.list(), &:erlang.garbage_collect/1)
    mem1 = Memory.total()
    procs1 = OsProcs.count()
    Process.exit(holder, :kill)
    Enum.each(leftovers, &System.cmd("kill", ["-KILL", "#{&1}"]))

    %{bytes_per: (mem1 - mem0) / n, extra_per: (procs1 - procs0 - n) / n}
  end

  defp forkers, do: OsProcs.count("erl_child_setup")
end
