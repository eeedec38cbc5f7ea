defmodule Bench.Worker do
  @moduledoc false
  # 10. Request/response workers: round trips per second through Sluice.Worker with
  # {:packet, 4} against the same worker behind a GenServer over Port.open with
  # {:packet, 4}, both on the program's fds 3 and 4 (use_stdio: false / :nouse_stdio); and
  # the memory of a worker that floods frames nobody asks for.

  alias Bench.{Format, Interleave, Memory, Native, Stats, Target, Unread}

  @payload :binary.copy("r", 100)

  def run(config) do
    echo = [Native.exe(), "echo-frames", "3", "4"]
    n = config.worker_calls

    contenders = [
      {"Sluice.Worker", fn -> round_trips(n, sluice_worker(echo), &Sluice.Worker.call/2) end},
      {"Port.open", fn -> round_trips(n, port_worker(echo), &GenServer.call/2) end}
    ]

    samples = Interleave.run(contenders, config.reps)
    rate = Map.new(samples, fn {name, s} -> {name, Stats.median(s)} end)
    ratio = Stats.ratio(rate["Sluice.Worker"], rate["Port.open"])
    flood = flood(config)

    rows = [
      [
        "round trips, #{n} calls of 100 B",
        per_s(rate["Sluice.Worker"]),
        per_s(rate["Port.open"]),
        Format.ratio(ratio)
      ],
      [
        "unasked frames for #{config.unread_ms} ms: memory growth (median / max)",
        "#{Format.mb(flood.sluice_median)} / #{Format.mb(flood.sluice_max)}",
        "#{Format.mb(flood.port_median)} / #{Format.mb(flood.port_max)}, " <>
          "stopped at the limit #{flood.port_stopped} of #{flood.reps}",
        "-"
      ]
    ]

    %Bench.Section{
      title: "10. Request/response workers",
      what:
        "A native worker (`sluice_bench echo-frames 3 4`) echoes {:packet, 4} frames on " <>
          "fds 3 and 4. Round trips: one caller, sequential `Sluice.Worker.call/3` against " <>
          "`GenServer.call/2` to a GenServer owning `Port.open(..., [{:packet, 4}, " <>
          ":nouse_stdio])` (#{config.reps} interleaved repetitions, median). Memory: " <>
          "`sluice_bench flood-frames 1024` started as a worker nobody calls (Sluice) or a " <>
          "port nobody reads; peak growth of `:erlang.memory(:total)`, the Port stopped at " <>
          "#{Format.mb(config.unread_limit)}.",
      columns: ["measurement", "Sluice.Worker", "Port.open", "Sluice vs Port"],
      rows: rows,
      targets: [
        Target.check("Worker round trips vs Port", ratio, :>=, 1.0, &Format.ratio/1),
        Target.check(
          "Worker flood: memory growth (max of repetitions)",
          flood.sluice_max,
          :<,
          Memory.flat_bytes(),
          &Format.mb/1
        )
      ],
      notes: [
        "A worker reads only the frame a caller waits for (header, then body), so frames " <>
          "nobody asked for stay in the pipe and the program blocks; a Port reads them all " <>
          "into its owner's mailbox."
      ]
    }
  end

  defp per_s(nil), do: "-"
  defp per_s(rate), do: "#{round(rate)}/s"

  # Calls per second of one caller, sequentially, after a warm-up call.
  defp round_trips(n, {:ok, worker}, call) do
    {:ok, @payload} = call.(worker, @payload)
    t0 = System.monotonic_time(:microsecond)
    Enum.each(1..n, fn _ -> {:ok, @payload} = call.(worker, @payload) end)
    us = System.monotonic_time(:microsecond) - t0
    Process.unlink(worker)
    GenServer.stop(worker)
    n / (us / 1_000_000)
  end

  defp sluice_worker(argv),
    do: Sluice.Worker.start_link(argv, use_stdio: false, framing: {:packet, 4})

  defp port_worker(argv), do: GenServer.start_link(Bench.PortWorker, argv)

  defp flood(config) do
    flood = [Native.exe(), "flood-frames", "1024"]
    limit = config.unread_limit
    ms = config.unread_ms

    contenders = [
      {"Sluice.Worker", fn -> Unread.once(ms, limit, fn -> sluice_flood(flood) end) end},
      {"Port.open", fn -> Unread.once(ms, limit, fn -> port_flood(flood) end) end}
    ]

    samples = Interleave.run(contenders, config.slow_reps)
    growth = fn name -> Enum.map(samples[name], & &1.growth) end

    %{
      sluice_median: Stats.median(growth.("Sluice.Worker")),
      sluice_max: Enum.max(growth.("Sluice.Worker")),
      port_median: Stats.median(growth.("Port.open")),
      port_max: Enum.max(growth.("Port.open")),
      port_stopped: Enum.count(samples["Port.open"], & &1.stopped),
      reps: config.slow_reps
    }
  end

  defp sluice_flood(argv), do: {:ok, _} = Sluice.Worker.start_link(argv)
  defp port_flood(argv), do: Bench.Ports.open(argv, [{:packet, 4}])
end

defmodule Bench.PortWorker do
  @moduledoc false
  # The Port contender of the worker benchmark: the usual GenServer over a
  # {:packet, 4} port, one request at a time, as Sluice.Worker does.
  use GenServer

  def init(argv) do
    {:ok, %{port: Bench.Ports.open(argv, [{:packet, 4}, :nouse_stdio]), from: nil}}
  end

  def handle_call(request, from, s) do
    true = Port.command(s.port, request)
    {:noreply, %{s | from: from}}
  end

  def handle_info({port, {:data, response}}, %{port: port} = s) do
    GenServer.reply(s.from, {:ok, response})
    {:noreply, %{s | from: nil}}
  end

  def handle_info(_other, s), do: {:noreply, s}

  def terminate(_reason, s) do
    Port.close(s.port)
  catch
    :error, _ -> :ok
  end
end
