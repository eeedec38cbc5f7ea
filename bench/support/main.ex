defmodule Bench.Main do
  @moduledoc false
  # Runs the suite: builds the native baselines, runs every section (a crash is recorded
  # and the run goes on), writes the report and exits non-zero if anything crashed.

  alias Bench.{Config, Machine, Native, OsProcs, Report}

  @modules %{
    spawn: Bench.Spawn,
    throughput: Bench.Throughput,
    concurrent: Bench.Concurrent,
    output: Bench.Output,
    input: Bench.Input,
    unread: Bench.Unread,
    ticker: Bench.Ticker,
    footprint: Bench.Footprint,
    pty: Bench.Pty,
    worker: Bench.Worker,
    nodes: Bench.Nodes,
    pipeline: Bench.Pipeline,
    cmd: Bench.Cmd,
    sandbox: Bench.Sandbox
  }

  def run(argv) do
    config = Config.parse!(argv)
    t0 = System.monotonic_time(:millisecond)
    log("building native/sluice_bench")
    Native.build!()
    {:ok, _} = Application.ensure_all_started(:sluice)
    OsProcs.record_baseline()
    machine = Machine.info()

    sections =
      for name <- Config.sections(), name in config.only do
        log("#{name} ...")
        {us, result} = :timer.tc(fn -> run_section(@modules[name], config) end)
        log("#{name} done in #{Float.round(us / 1_000_000, 1)} s")
        {name, result}
      end

    seconds = (System.monotonic_time(:millisecond) - t0) / 1_000
    report = Report.render(config, machine, sections, seconds)
    File.write!(config.out, report)
    IO.puts(report)
    log("wrote #{config.out}")

    crashed = for {name, {:crashed, _}} <- sections, do: name

    if crashed != [] do
      log("crashed: #{Enum.join(crashed, ", ")}")
      exit({:shutdown, 1})
    end
  end

  defp run_section(module, config) do
    module.run(config)
  rescue
    e -> crashed(Exception.format(:error, e, __STACKTRACE__))
  catch
    kind, reason -> crashed(Exception.format(kind, reason, __STACKTRACE__))
  end

  defp crashed(message) do
    IO.puts(:stderr, message)
    {:crashed, message}
  end

  defp log(message), do: IO.puts(:stderr, "[bench] #{message}")
end
