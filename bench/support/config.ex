defmodule Bench.Config do
  @moduledoc false
  # Command-line options and the sizes of every measurement, for the full and quick modes.

  @sections [
    :spawn,
    :throughput,
    :concurrent,
    :output,
    :input,
    :unread,
    :ticker,
    :footprint,
    :pty,
    :worker,
    :nodes,
    :pipeline,
    :cmd,
    :sandbox
  ]

  @full %{
    quick: false,
    reps: 5,
    slow_reps: 3,
    spawn_n: 1_000,
    throughput_callers: 100,
    throughput_per_caller: 10,
    concurrent_n: 500,
    stream_bytes: 1_073_741_824,
    # Sluice.run collects the output in memory: a smaller total for the run rows.
    run_bytes: 268_435_456,
    unread_ms: 3_000,
    unread_limit: 500_000_000,
    ticker_programs: 200,
    ticker_ms: 3_000,
    footprint_n: 200,
    # A terminal moves ~100 MB/s: 256 MiB is a few seconds per repetition.
    pty_bytes: 268_435_456,
    worker_calls: 20_000,
    # Streamed from a second node; :erpc + System.cmd holds it all in memory.
    nodes_bytes: 1_073_741_824,
    # Through three stages (gzip -1 and gzip -dc of zeros).
    pipeline_bytes: 1_073_741_824,
    # Sluice.run against System.cmd: repetitions and runs per repetition of the ~40 ms sh
    # loop (more, shorter repetitions: load drift spreads better), the idle gaps (ms) and
    # the calls after a gap per repetition, the many callers, the collected output.
    # Sandboxed /bin/true: repetitions of this many runs per contender.
    sandbox_runs: 100,
    cmd_cpu_reps: 10,
    cmd_cpu_runs: 5,
    cmd_gaps: [60, 200],
    cmd_gap_calls: 30,
    cmd_callers: 60,
    cmd_per_caller: 10,
    cmd_bytes: 268_435_456
  }

  # Tiny sizes and one repetition: only checks that every measurement works.
  @quick %{
    quick: true,
    reps: 1,
    slow_reps: 1,
    spawn_n: 20,
    throughput_callers: 10,
    throughput_per_caller: 2,
    concurrent_n: 20,
    stream_bytes: 8_388_608,
    run_bytes: 4_194_304,
    unread_ms: 300,
    unread_limit: 500_000_000,
    ticker_programs: 10,
    ticker_ms: 300,
    footprint_n: 10,
    pty_bytes: 4_194_304,
    worker_calls: 200,
    nodes_bytes: 8_388_608,
    pipeline_bytes: 8_388_608,
    sandbox_runs: 5,
    cmd_cpu_reps: 1,
    cmd_cpu_runs: 3,
    cmd_gaps: [5],
    cmd_gap_calls: 3,
    cmd_callers: 10,
    cmd_per_caller: 2,
    cmd_bytes: 1_048_576
  }

  @doc "The measurement sections, in the order they run."
  def sections, do: @sections

  @doc "Parses `argv` into the configuration map."
  def parse!(argv) do
    {opts, rest} =
      OptionParser.parse!(argv, strict: [quick: :boolean, out: :string, only: :string])

    if rest != [], do: raise(ArgumentError, "unexpected arguments: #{Enum.join(rest, " ")}")

    base = if opts[:quick], do: @quick, else: @full

    Map.merge(base, %{
      out: opts[:out] || default_out(base.quick),
      only: only!(opts[:only]),
      command: command(argv)
    })
  end

  defp default_out(false), do: Path.join(__DIR__, "../RESULTS.md") |> Path.expand()
  defp default_out(true), do: Path.join(System.tmp_dir!(), "sluice-bench-quick.md")

  defp only!(nil), do: @sections

  defp only!(list) do
    names = list |> String.split(",", trim: true) |> Enum.map(&String.to_atom/1)
    unknown = names -- @sections
    if unknown != [], do: raise(ArgumentError, "unknown sections #{inspect(unknown)}")
    names
  end

  defp command(argv) do
    Enum.join(["MIX_ENV=#{Mix.env()} mix run bench/run.exs" | argv], " ")
  end
end
