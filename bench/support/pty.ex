defmodule Bench.Pty do
  @moduledoc false
  # 9. Output through a pseudo-terminal: `head -c TOTAL /dev/zero` on a pty with output
  # processing off (`opost: 0`, so the bytes pass unchanged), read from the master by
  # Sluice and by a native reader of the same kind of master (`sluice_bench pty-read`).

  alias Bench.{Format, Interleave, Native, Ports, Section, Stats, Target}
  alias Sluice.Process, as: P

  @read 65_536
  @pty [modes: [opost: 0]]
  @native "native reader (64 KiB reads)"

  def run(config) do
    total = config.pty_bytes
    head = [Ports.exe("head"), "-c", "#{total}", "/dev/zero"]

    contenders = [
      {"Sluice.stream! (pty: [modes: [opost: 0]])",
       fn -> rate(total, fn -> stream(head) end) end},
      {"Sluice.Process.read (64 KiB, same pty)", fn -> rate(total, fn -> read(head) end) end},
      {@native, fn -> Native.pty_read(@read, total) end}
    ]

    samples = Interleave.run(contenders, config.reps)
    medians = Map.new(samples, fn {name, s} -> {name, Stats.median(s)} end)
    vs_native = fn name -> Stats.ratio(medians[name], medians[@native]) end

    rows =
      for {name, _} <- contenders do
        s = samples[name]

        [
          name,
          Format.mib_s(medians[name]),
          Format.mib_s(Enum.min(s)),
          Format.mib_s(Enum.max(s)),
          Format.ratio(vs_native.(name))
        ]
      end

    stream = "Sluice.stream! (pty: [modes: [opost: 0]])"

    %Section{
      title: "9. Output through a pseudo-terminal",
      what:
        "#{Format.size(total)} of `head -c #{total} /dev/zero` running on a pty with " <>
          "`opost` off, read from the master and discarded; bytes/s including the spawn " <>
          "(#{config.reps} interleaved repetitions, median). Higher is better. \"vs native\" " <>
          "compares with a native reader of the same kind of master (`sluice_bench pty-read`: " <>
          "`openpty`, the slave as the program's stdio, 64 KiB reads until EIO).",
      columns: ["contender", "median", "min", "max", "vs native"],
      rows: rows,
      targets: [
        Target.check(
          "Pty: #{stream} / native reader",
          vs_native.(stream),
          :>=,
          0.8,
          &Format.ratio/1
        )
      ],
      notes: [
        "A terminal moves data through the kernel's line discipline (n_tty), at most " <>
          "4 KiB per read: it is the limit for every reader, far below a pipe's."
      ]
    }
  end

  defp rate(total, fun) do
    {us, bytes} = :timer.tc(fun)
    if bytes != total, do: raise("read #{bytes} bytes, expected #{total}")
    total / (us / 1_000_000)
  end

  defp stream(argv) do
    argv
    |> Sluice.stream!(pty: @pty, chunk_size: @read)
    |> Enum.reduce(0, fn chunk, acc -> acc + byte_size(chunk) end)
  end

  defp read(argv) do
    {:ok, p} = P.start_link(argv, pty: @pty)
    bytes = read_loop(p, 0)
    {:ok, 0} = P.await_exit(p)
    true = P.stop(p) in [{:ok, 0}, {:error, :closed}]
    bytes
  end

  defp read_loop(p, acc) do
    case P.read(p, @read) do
      {:ok, data} -> read_loop(p, acc + byte_size(data))
      :eof -> acc
    end
  end
end
