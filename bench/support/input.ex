defmodule Bench.Input do
  @moduledoc false
  # 5. Input throughput: TOTAL bytes written into `cat > /dev/null`, until it exited.

  alias Bench.{Format, Interleave, Ports, Section, Stats}
  alias Sluice.Process, as: P

  @small 65_536
  @big 1_048_576

  def run(config) do
    total = config.stream_bytes
    argv = [Ports.exe("sh"), "-c", "cat > /dev/null"]
    small = :binary.copy(<<0>>, @small)
    big = :binary.copy(<<0>>, @big)

    contenders = [
      {"Sluice.Process.write (1 MiB writes)",
       fn -> rate(total, fn -> sluice(argv, big, total, []) end) end},
      {"Sluice.Process.write (64 KiB writes)",
       fn -> rate(total, fn -> sluice(argv, small, total, []) end) end},
      {"Port.command (1 MiB writes)", fn -> rate(total, fn -> port(argv, big, total) end) end},
      {"Port.command (64 KiB writes)", fn -> rate(total, fn -> port(argv, small, total) end) end},
      {"Sluice.Process.write (1 MiB writes, pipe_size 1 MiB)",
       fn -> rate(total, fn -> sluice(argv, big, total, pipe_size: @big) end) end}
    ]

    samples = Interleave.run(contenders, config.reps)
    medians = Map.new(samples, fn {name, s} -> {name, Stats.median(s)} end)

    rows =
      for {name, _} <- contenders do
        port =
          if name =~ "64 KiB",
            do: medians["Port.command (64 KiB writes)"],
            else: medians["Port.command (1 MiB writes)"]

        s = samples[name]

        [
          name,
          Format.mib_s(medians[name]),
          Format.mib_s(Enum.min(s)),
          Format.mib_s(Enum.max(s)),
          Format.ratio(Stats.ratio(medians[name], port))
        ]
      end

    %Section{
      title: "5. Input throughput",
      what:
        "#{Format.size(total)} written into `sh -c 'cat > /dev/null'` until the program " <>
          "exited (#{config.reps} interleaved repetitions, median). Higher is better; " <>
          "\"vs Port\" compares with the Port using the same write size.",
      columns: ["contender", "median", "min", "max", "vs Port"],
      rows: rows,
      notes: [
        "Sluice: `write/2` returns once the program took every byte, then `close_stdin/1` " <>
          "and `await_exit/1`. A Port cannot close stdin alone, so the Port case calls " <>
          "`Port.close/1` (which flushes the queue first) and polls `/proc` until the " <>
          "program is gone."
      ]
    }
  end

  defp rate(total, fun) do
    {us, :ok} = :timer.tc(fun)
    total / (us / 1_000_000)
  end

  defp sluice(argv, chunk, total, opts) do
    {:ok, p} = P.start_link(argv, opts)
    write_chunks(p, chunk, total)
    :ok = P.close_stdin(p)
    {:ok, 0} = P.await_exit(p)
    # Once the program exited and its output reached EOF, the new core may already have
    # ended the server: stopping it then answers {:error, :closed}.
    true = P.stop(p) in [{:ok, 0}, {:error, :closed}]
    :ok
  end

  defp write_chunks(_p, _chunk, left) when left <= 0, do: :ok

  defp write_chunks(p, chunk, left) do
    data = if left >= byte_size(chunk), do: chunk, else: binary_part(chunk, 0, left)
    :ok = P.write(p, data)
    write_chunks(p, chunk, left - byte_size(data))
  end

  defp port(argv, chunk, total) do
    argv |> Ports.open() |> Ports.feed(chunk, total)
  end
end
