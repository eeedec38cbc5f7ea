defmodule Bench.Concurrent do
  @moduledoc false
  # 3. Concurrent spawn: N `sleep 0.2` started at once, each by its own Erlang process;
  # wall time until all finished, and the peak growth of BEAM memory meanwhile.

  alias Bench.{Format, Interleave, Memory, Ports, Section, Stats, Target}

  @timeout_ms 30_000

  def run(config) do
    n = config.concurrent_n
    sleep = Ports.exe("sleep")
    argv = [sleep, "0.2"]

    contenders = [
      {"Sluice.run", fn -> once(n, fn -> {:ok, %{status: 0}} = Sluice.run(argv) end) end},
      {"Port.open", fn -> once(n, fn -> 0 = Ports.run(argv) end) end},
      {"System.cmd", fn -> once(n, fn -> {_, 0} = System.cmd(sleep, ["0.2"]) end) end}
    ]

    samples = Interleave.run(contenders, config.slow_reps)

    med = fn name, key -> samples[name] |> Enum.map(& &1[key]) |> Stats.median() end
    port_wall = med.("Port.open", :wall_ms)

    rows =
      for {name, _} <- contenders do
        [
          name,
          Format.ms(med.(name, :wall_ms)),
          Format.ratio(Stats.ratio(med.(name, :wall_ms), port_wall)),
          Format.mb(med.(name, :peak_bytes)),
          Format.kb(per_program(med.(name, :peak_bytes), n))
        ]
      end

    %Section{
      title: "3. Concurrent spawn",
      what:
        "#{n} × `sleep 0.2` started at once (one Erlang process each); wall time until all " <>
          "exited and peak growth of `:erlang.memory(:total)` (#{config.slow_reps} " <>
          "interleaved repetitions, median). 200 ms is the floor.",
      columns: ["contender", "wall time", "vs Port", "peak BEAM memory growth", "per program"],
      rows: rows,
      targets: [
        Target.check(
          "Concurrent: Sluice.run wall time / Port.open",
          Stats.ratio(med.("Sluice.run", :wall_ms), port_wall),
          :<=,
          1.0,
          &Format.ratio/1
        ),
        Target.check(
          "Concurrent: Sluice.run peak BEAM memory per program",
          per_program(med.("Sluice.run", :peak_bytes), n),
          :<=,
          4_000,
          &Format.kb/1
        )
      ]
    }
  end

  defp per_program(nil, _n), do: nil
  defp per_program(bytes, n), do: bytes / n

  defp once(n, fun) do
    {{us, :ok}, peak} =
      Memory.peak_growth(fn ->
        :timer.tc(fn ->
          1..n
          |> Enum.map(fn _ -> Task.async(fun) end)
          |> Task.yield_many(@timeout_ms)
          |> check_all_finished(n)
        end)
      end)

    %{wall_ms: us / 1_000, peak_bytes: peak}
  end

  defp check_all_finished(results, n) do
    hung = for {task, nil} <- results, do: Task.shutdown(task, :brutal_kill)
    if hung != [], do: raise("#{length(hung)} of #{n} did not finish within #{@timeout_ms} ms")
    Enum.each(results, fn {_task, {:ok, _}} -> :ok end)
  end
end
