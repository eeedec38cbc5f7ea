defmodule Bench.Cmd do
  @moduledoc false
  # 13. Sluice.run against System.cmd on its own ground: what System.cmd is used for (a
  # short program run to completion, the whole output collected), where an extra cost per
  # spawn shows most. Four measurements:
  #
  #   * a short CPU-bound `sh` loop (~40 ms), the caller's wall time per run;
  #   * one `/bin/true` after an idle gap (no spawn at all during the gap);
  #   * many callers: C concurrent callers each running K `/bin/true` in sequence;
  #   * a program printing TOTAL bytes, collected into one binary.
  #
  # Sluice.run runs with per-program cgroups (the application's setting, `:auto` by
  # default: on when running as root) and with `cgroup: false`, in every measurement.
  # The setting is read when the helper server starts, so switching it restarts that
  # server (Supervisor.terminate_child/restart_child of Sluice.Helper, a few ms), outside
  # the timed part, followed by an untimed warm-up and a pause; every timed run checks
  # `result.usage.source` (:cgroup with cgroups, :rusage without), so a switch that did not
  # take effect crashes the section instead of mislabelling a row.

  alias Bench.{Format, Interleave, Memory, Native, OsProcs, Ports, Section, Stats, Target}

  @true_bin "/bin/true"
  @cpu_script "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"
  @timeout_ms 120_000

  @on "Sluice.run (cgroups on)"
  @off "Sluice.run (cgroups off)"
  @cmd "System.cmd"
  @port "Port.open"

  def run(config) do
    original = Application.get_env(:sluice, :cgroup, :auto)
    on = if original == false, do: :auto, else: original

    try do
      switch(on)
      on_source = if Sluice.Helper.info().cgroup_root, do: :cgroup, else: :rusage
      modes = %{on: {on, on_source}, off: {false, :rusage}}
      measure(config, modes)
    after
      switch(original)
    end
  end

  defp measure(config, modes) do
    {cpu_rows, cpu_targets} = cpu_bound(config, modes)

    {gap_rows, gap_targets} =
      config.cmd_gaps |> Enum.map(&idle_gap(config, modes, &1)) |> Enum.unzip()

    {callers_rows, callers_targets} = many_callers(config, modes)
    {collect_rows, collect_targets} = collected(config, modes)
    {on_setting, on_source} = modes.on

    %Section{
      title: "13. Sluice.run against System.cmd on its own ground",
      what:
        "What `System.cmd` is used for: a short program run to completion, its output " <>
          "collected. Per-run and per-call times and wall times are lower-is-better, and " <>
          "\"vs System.cmd\" is contender / System.cmd; for the collected output the median " <>
          "is a throughput (bytes/s including the spawn) and \"vs System.cmd\" its ratio " <>
          "(higher is better), with the peak growth of `:erlang.memory(:total)` (max over " <>
          "repetitions). Contenders interleaved round-robin in one run: the CPU-bound rows " <>
          "#{config.cmd_cpu_reps} repetitions of #{config.cmd_cpu_runs} runs (median of all " <>
          "runs), " <>
          "the idle-gap rows #{config.slow_reps} repetitions of #{config.cmd_gap_calls} " <>
          "calls each after a pause (median of all calls), many callers #{config.reps} " <>
          "repetitions (median wall time), collected output #{config.slow_reps} repetitions.",
      columns: [
        "measurement",
        "contender",
        "median",
        "min",
        "max",
        "vs System.cmd",
        "peak BEAM growth"
      ],
      rows: cpu_rows ++ Enum.concat(gap_rows) ++ callers_rows ++ collect_rows,
      targets: cpu_targets ++ Enum.concat(gap_targets) ++ callers_targets ++ collect_targets,
      notes: [
        "\"cgroups on\": `config :sluice, cgroup: #{inspect(on_setting)}` (every timed " <>
          "call's `result.usage.source` was checked to be `#{inspect(on_source)}`); " <>
          "\"cgroups off\": `cgroup: false` (checked: `:rusage`). The setting is read when " <>
          "the helper server starts: switching restarts it " <>
          "(`Supervisor.terminate_child/restart_child(Sluice.Supervisor, Sluice.Helper)`, " <>
          "3-5 ms, a new helper program), outside the timed part and followed by an " <>
          "untimed warm-up (one run; #{config.cmd_callers} concurrent ones before the many " <>
          "callers, filling the new helper program's cgroup pool) and a pause; the section " <>
          "restores the original setting at its end.",
        "Idle gap: each timed call follows a `Process.sleep(gap)` with no spawn by this " <>
          "VM, for every contender. Such gaps are why the helper clones a child straight " <>
          "into its cgroup (`clone3` with `CLONE_INTO_CGROUP`): a child that moved itself " <>
          "in by writing `cgroup.procs` took the kernel's cgroup threadgroup rwsem for " <>
          "writing, whose first writer after an idle spell waits for an RCU grace period " <>
          "(6-8 ms on a quiet machine, 5-27 ms under load), which back-to-back spawns hide.",
        "Port.open rows: `Port.open({:spawn_executable, \"/bin/true\"}, [:binary, " <>
          ":exit_status])` until `exit_status`. Collected output: `Sluice.run(argv)` " <>
          "(`max_output:` defaults to `:infinity`) against `System.cmd(exe, args)` " <>
          "(collects into a binary, `into: \"\"`), both without options, the producer " <>
          "`sluice_bench produce TOTAL` (1 MiB writes), each run in its own process."
      ]
    }
  end

  # 1. The CPU-bound `sh` loop, ms per run.
  defp cpu_bound(config, modes) do
    argv = ["sh", "-c", @cpu_script]
    runs = config.cmd_cpu_runs

    contenders =
      with_modes(modes, fn mode -> fn -> sluice(argv, mode) end end) ++
        [{@cmd, nil, fn -> {"", 0} = System.cmd("sh", ["-c", @cpu_script]) end}]

    samples = interleave(contenders, config.cmd_cpu_reps, &per_run(runs, &1))

    label = "CPU-bound `sh` loop (~40 ms), per run"
    times_rows(label, contenders, samples, &Format.ms/1, "CPU-bound sh loop", :<=, 1.02)
  end

  # 2. One /bin/true after `gap` ms without any spawn, µs per call.
  defp idle_gap(config, modes, gap) do
    calls = config.cmd_gap_calls
    samples = interleave(true_contenders(modes), config.slow_reps, &after_gaps(calls, gap, &1))
    label = "`/bin/true` after #{gap} ms idle, per call"

    times_rows(
      label,
      true_contenders(modes),
      samples,
      &Format.us/1,
      "/bin/true after #{gap} ms idle",
      :<=,
      1.0
    )
  end

  # 3. C callers each running K /bin/true in sequence, wall ms.
  defp many_callers(config, modes) do
    callers = config.cmd_callers
    each = config.cmd_per_caller
    contenders = true_contenders(modes)

    measure = fn call -> [callers(callers, each, call)] end
    # After a restart: the new helper program's cgroup pool as deep as the callers.
    warm = fn call -> callers(callers, 1, call) end
    samples = interleave(contenders, config.reps, measure, warm)

    label = "#{callers * each} × `/bin/true`, #{callers} callers × #{each}, wall time"

    times_rows(
      label,
      contenders,
      samples,
      &Format.ms/1,
      "#{callers * each} /bin/true from #{callers} callers",
      :<=,
      0.8
    )
  end

  # 4. TOTAL bytes collected into one binary: bytes/s and peak BEAM growth.
  defp collected(config, modes) do
    total = config.cmd_bytes
    [exe | args] = argv = Native.produce_argv(total)

    contenders =
      with_modes(modes, fn mode -> fn -> sluice(argv, mode).stdout end end) ++
        [{@cmd, nil, fn -> cmd_stdout(exe, args) end}]

    samples = interleave(contenders, config.slow_reps, &collect(total, &1))
    med = fn name, key -> samples[name] |> Enum.map(& &1[key]) |> Stats.median() end
    cmd_rate = med.(@cmd, :rate)
    label = "#{Format.size(total)} collected (`sluice_bench produce`), throughput"

    rows =
      for {name, _, _} <- contenders do
        rates = Enum.map(samples[name], & &1.rate)

        [
          label,
          name,
          Format.mib_s(med.(name, :rate)),
          Format.mib_s(Enum.min(rates)),
          Format.mib_s(Enum.max(rates)),
          Format.ratio(Stats.ratio(med.(name, :rate), cmd_rate)),
          Format.mb(samples[name] |> Enum.map(& &1.growth) |> Enum.max())
        ]
      end

    target =
      Target.check(
        "System.cmd ground: #{Format.size(total)} collected, #{@on} / System.cmd throughput",
        Stats.ratio(med.(@on, :rate), cmd_rate),
        :>=,
        1.2,
        &Format.ratio/1
      )

    {rows, [target]}
  end

  # The contenders running one /bin/true: Sluice.run in both modes, System.cmd, Port.open.
  defp true_contenders(modes) do
    with_modes(modes, fn mode -> fn -> sluice([@true_bin], mode) end end) ++
      [
        {@cmd, nil, fn -> {"", 0} = System.cmd(@true_bin, []) end},
        {@port, nil, fn -> 0 = Ports.run([@true_bin]) end}
      ]
  end

  # `{name, mode, call}` of Sluice.run with cgroups on and off; `call_for.(mode)` is the call.
  defp with_modes(modes, call_for) do
    [{@on, modes.on, call_for.(modes.on)}, {@off, modes.off, call_for.(modes.off)}]
  end

  # Interleave.run over `{name, mode, call}`: each sample first puts the helper in the
  # contender's cgroup mode (untimed; after a restart `warm.(call)`, then a settle, so that
  # the first timed call follows a pause as in every other sample), then is
  # `measure.(call)`.
  defp interleave(contenders, reps, measure, warm \\ fn call -> call.() end) do
    contenders
    |> Enum.map(fn {name, mode, call} ->
      {name,
       fn ->
         if mode && switch(elem(mode, 0)) do
           warm.(call)
           Interleave.settle()
         end

         measure.(call)
       end}
    end)
    |> Interleave.run(reps)
  end

  # Rows of times (lower is better), every sample a list of times pooled over repetitions,
  # and the target "Sluice.run (cgroups on) / System.cmd `op` `limit`".
  defp times_rows(label, contenders, samples, format, target_name, op, limit) do
    pooled = Map.new(samples, fn {name, reps} -> {name, Enum.concat(reps)} end)
    medians = Map.new(pooled, fn {name, s} -> {name, Stats.median(s)} end)

    rows =
      for {name, _, _} <- contenders do
        s = pooled[name]

        [
          label,
          name,
          format.(medians[name]),
          format.(Enum.min(s)),
          format.(Enum.max(s)),
          Format.ratio(Stats.ratio(medians[name], medians[@cmd])),
          "-"
        ]
      end

    target =
      Target.check(
        "System.cmd ground: #{target_name}, #{@on} / System.cmd",
        Stats.ratio(medians[@on], medians[@cmd]),
        op,
        limit,
        &Format.ratio/1
      )

    {rows, [target]}
  end

  # `n` runs of `fun` back to back: ms of each.
  defp per_run(n, fun) do
    for _ <- 1..n do
      {us, _} = :timer.tc(fun)
      us / 1_000
    end
  end

  # `n` calls of `fun`, each after `gap` ms without a spawn: µs of each.
  defp after_gaps(n, gap, fun) do
    # Untimed: the contender's own code paths warm, then the first gap.
    fun.()

    for _ <- 1..n do
      Process.sleep(gap)
      {us, _} = :timer.tc(fun)
      us
    end
  end

  # Wall ms of `callers` processes each running `fun` `each` times in sequence.
  defp callers(callers, each, fun) do
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

  # One collection of `total` bytes in a process of its own (its binary freed when it
  # ends): bytes/s and the peak growth of the BEAM's memory meanwhile.
  defp collect(total, fun) do
    t0 = System.monotonic_time(:microsecond)

    {bytes, growth} =
      Memory.peak_growth(fn ->
        task = Task.async(fn -> byte_size(fun.()) end)
        Task.await(task, @timeout_ms)
      end)

    us = System.monotonic_time(:microsecond) - t0
    if bytes != total, do: raise("collected #{bytes} bytes, expected #{total}")
    %{rate: bytes / (us / 1_000_000), growth: growth}
  end

  defp cmd_stdout(exe, args) do
    {out, 0} = System.cmd(exe, args)
    out
  end

  # Sluice.run of `argv` to status 0, checking that the run had the cgroup mode asked for.
  defp sluice(argv, {setting, source}) do
    case Sluice.run(argv) do
      {:ok, %{status: 0, usage: %{source: ^source}} = result} ->
        result

      other ->
        raise "Sluice.run(#{inspect(argv)}) with cgroup: #{inspect(setting)} expected " <>
                "status 0 and usage.source #{inspect(source)}, got: #{inspect(other, limit: 8)}"
    end
  end

  # Puts `setting` as the application's `:cgroup` and restarts the helper server to read
  # it, unless it is the setting already; true when it restarted. The old helper program
  # exits once its port is closed: waited for, so it cannot overlap a timed part.
  defp switch(setting) do
    if Application.get_env(:sluice, :cgroup, :auto) == setting do
      false
    else
      :ok = Supervisor.terminate_child(Sluice.Supervisor, Sluice.Helper)
      Application.put_env(:sluice, :cgroup, setting)
      {:ok, _} = Supervisor.restart_child(Sluice.Supervisor, Sluice.Helper)
      OsProcs.wait_baseline()
      true
    end
  end
end
