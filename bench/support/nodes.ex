defmodule Bench.Nodes do
  @moduledoc false
  # 11. Across nodes: TOTAL bytes of `head -c TOTAL /dev/zero` run on a second node B (a
  # :peer on loopback, this machine) and consumed on this node A. Sluice with `node:`
  # against `:erpc.call(B, System, :cmd, ...)` (which holds the whole output in memory, on
  # B and then on A) and against a local Sluice stream; throughput and the peak memory
  # growth of both nodes.

  alias Bench.{Format, Interleave, Memory, OsProcs, Ports, Section, Stats, Target}

  @sample_ms 10
  # "distribution alone": message size and messages in flight.
  @channel_chunk 131_072
  @channel_window 3

  def run(config) do
    total = config.nodes_bytes
    {peer, b} = start_peer()
    # The peer VM and its helper program are our descendants while the section runs: count
    # them in the baseline, or every repetition would wait for them to go.
    peer_os_pid = peer |> :peer.call(:os, :getpid, []) |> List.to_integer()
    peer_tree = [peer_os_pid | for({pid, _comm} <- OsProcs.descendants(peer_os_pid), do: pid)]
    OsProcs.record_baseline()

    try do
      head = [Ports.exe("head"), "-c", "#{total}", "/dev/zero"]

      load_sender(b)

      contenders = [
        {"Sluice.stream! node: B", fn -> once(b, total, fn -> stream(head, node: b) end) end},
        {"distribution alone (no program)",
         fn -> once(b, total, fn -> channel(b, total) end) end},
        {"stream on B, sent by hand", fn -> once(b, total, fn -> hand_sent(b, head) end) end},
        {":erpc.call(B, System, :cmd, ...)", fn -> once(b, total, fn -> erpc(b, head) end) end},
        {"Sluice.stream! on A (local)", fn -> once(b, total, fn -> stream(head, []) end) end}
      ]

      samples = Interleave.run(contenders, config.slow_reps)
      med = fn name, key -> samples[name] |> Enum.map(& &1[key]) |> Stats.median() end
      max = fn name, key -> samples[name] |> Enum.map(& &1[key]) |> Enum.max() end
      local = med.("Sluice.stream! on A (local)", :rate)

      rows =
        for {name, _} <- contenders do
          [
            name,
            Format.mib_s(med.(name, :rate)),
            Format.ratio(Stats.ratio(med.(name, :rate), local)),
            Format.mb(max.(name, :growth_a)),
            Format.mb(max.(name, :growth_b))
          ]
        end

      remote = "Sluice.stream! node: B"

      %Section{
        title: "11. Across nodes",
        what:
          "#{Format.size(total)} of `head -c` run on a second node B (a `:peer` on loopback, " <>
            "this machine), consumed and discarded on this node A; bytes/s including the " <>
            "spawn, and the peak growth of `:erlang.memory(:total)` of A and of B (B sampled " <>
            "through `:erpc` every #{@sample_ms} ms) (#{config.slow_reps} interleaved " <>
            "repetitions, median rate, max growth). \"vs local\" compares with the local " <>
            "stream. \"distribution alone\" is the channel's ceiling: a process on B sends " <>
            "the same bytes to A as #{div(@channel_chunk, 1024)} KiB messages of one binary, " <>
            "#{@channel_window} in flight, with no program and no pipe. \"stream on B, sent " <>
            "by hand\" is the least a remote stream can cost: a local `Sluice.stream!` on B " <>
            "whose #{div(@channel_chunk, 1024)} KiB chunks a loop sends to A, " <>
            "#{@channel_window} in flight, with no protocol at all.",
        columns: ["contender", "median", "vs local", "max growth A", "max growth B"],
        rows: rows,
        targets: [
          Target.check(
            "Nodes: Sluice node: B / local stream",
            Stats.ratio(med.(remote, :rate), local),
            :>=,
            0.5,
            &Format.ratio/1
          ),
          Target.check(
            "Nodes: Sluice node: B, growth of A",
            max.(remote, :growth_a),
            :<,
            Memory.flat_bytes(),
            &Format.mb/1
          ),
          Target.check(
            "Nodes: Sluice node: B, growth of B",
            max.(remote, :growth_b),
            :<,
            Memory.flat_bytes(),
            &Format.mb/1
          )
        ],
        notes: [
          "With `node:` a reader on B holds the program and sends a batch (up to 128 KiB, " <>
            "usually one read) only against the consumer's credit (three batches ahead): memory " <>
            "stays flat on both nodes. `System.cmd` collects the whole output on B, then " <>
            "`:erpc` copies it to A.",
          "The channel alone is about as fast as a local stream, and so is the local stream " <>
            "on B alone; together they share this machine's two cores with `head`, and a " <>
            "remote stream costs both. \"stream on B, sent by hand\" runs exactly that with " <>
            "no protocol, so the gap between it and `node:` is what Sluice's remote " <>
            "protocol costs."
        ]
      }
    after
      :peer.stop(peer)
      await_gone(peer_tree, System.monotonic_time(:millisecond) + 10_000)
      OsProcs.record_baseline()
    end
  end

  defp await_gone(pids, deadline) do
    if Enum.any?(pids, &File.exists?("/proc/#{&1}")) and
         System.monotonic_time(:millisecond) < deadline do
      Process.sleep(20)
      await_gone(pids, deadline)
    end
  end

  defp once(b, total, fun) do
    base_a = :erlang.memory(:total)
    base_b = :erpc.call(b, :erlang, :memory, [:total])
    parent = self()
    sampler = spawn_link(fn -> sample(b, {base_a, base_b}, parent) end)
    {us, bytes} = :timer.tc(fun)
    send(sampler, :stop)
    {peak_a, peak_b} = receive(do: ({:peaks, peaks} -> peaks))
    if bytes != total, do: raise("read #{bytes} bytes, expected #{total}")
    %{rate: total / (us / 1_000_000), growth_a: peak_a - base_a, growth_b: peak_b - base_b}
  end

  # B is sampled over distribution (the peer's control channel, its standard I/O, stalled
  # under load in a full run).
  defp sample(node_b, {a, b}, parent) do
    receive do
      :stop -> send(parent, {:peaks, {a, b}})
    after
      @sample_ms ->
        b_now = :erpc.call(node_b, :erlang, :memory, [:total])
        sample(node_b, {max(a, :erlang.memory(:total)), max(b, b_now)}, parent)
    end
  end

  defp stream(argv, opts) do
    argv |> Sluice.stream!(opts) |> Enum.reduce(0, fn chunk, acc -> acc + byte_size(chunk) end)
  end

  # The sender of "distribution alone", compiled here and loaded on B (this section's
  # modules live only in this VM's memory).
  defp load_sender(b) do
    [{mod, bin}] =
      Code.compile_string("""
      defmodule Bench.Nodes.Sender do
        def run(to, bytes, chunk, window) do
          send_all(to, :binary.copy(<<0>>, chunk), div(bytes, chunk), window, 0)
        end

        # A local stream on B whose chunks are sent to A by hand, `window` unacknowledged.
        def pipe(to, argv, chunk, window) do
          argv
          |> Sluice.stream!(chunk_size: chunk)
          |> Enum.reduce(0, fn data, out ->
            out = if out >= window, do: await_ack(out), else: out
            send(to, {:channel, self(), data})
            out + 1
          end)

          send(to, {:channel_done, self()})
        end

        defp await_ack(out) do
          receive do
            :ack -> out - 1
          end
        end

        defp send_all(to, _bin, 0, _window, _out), do: send(to, {:channel_done, self()})

        defp send_all(to, bin, n, window, out) when out >= window do
          receive do
            :ack -> send_all(to, bin, n, window, out - 1)
          end
        end

        defp send_all(to, bin, n, window, out) do
          send(to, {:channel, self(), bin})
          send_all(to, bin, n - 1, window, out + 1)
        end
      end
      """)

    {:module, ^mod} = :erpc.call(b, :code, :load_binary, [mod, ~c"bench_sender", bin])
  end

  defp channel(b, total), do: sent_from(b, :run, [total])
  defp hand_sent(b, argv), do: sent_from(b, :pipe, [argv])

  # The sender is monitored: if it fails on B, or B goes, the section fails, never hangs.
  defp sent_from(b, fun, args) do
    args = [self() | args] ++ [@channel_chunk, @channel_window]
    {_pid, ref} = Node.spawn_monitor(b, Bench.Nodes.Sender, fun, args)
    bytes = take_channel(ref, 0)
    Process.demonitor(ref, [:flush])
    bytes
  end

  defp take_channel(ref, bytes) do
    receive do
      {:channel, from, bin} ->
        send(from, :ack)
        take_channel(ref, bytes + byte_size(bin))

      {:channel_done, _from} ->
        bytes

      {:DOWN, ^ref, :process, _, reason} ->
        raise "the sender on B ended: #{inspect(reason)}"
    end
  end

  defp erpc(b, [exe | args]) do
    {out, 0} = :erpc.call(b, System, :cmd, [exe, args])
    byte_size(out)
  end

  # This VM becomes a distributed node on loopback (epmd started for it), and B a peer
  # with this build's code paths and :sluice started.
  defp start_peer do
    unless Node.alive?() do
      {_, 0} = System.cmd("epmd", ["-daemon"])
      Application.put_env(:kernel, :inet_dist_use_interface, {127, 0, 0, 1})
      {:ok, _} = Node.start(:"sluice_bench_#{System.unique_integer([:positive])}@127.0.0.1")
    end

    {:ok, peer, b} =
      :peer.start(%{
        name: :"sluice_bench_b_#{System.unique_integer([:positive])}",
        host: ~c"127.0.0.1",
        longnames: true,
        connection: :standard_io,
        args: [
          ~c"-setcookie",
          Atom.to_charlist(Node.get_cookie()),
          ~c"-kernel",
          ~c"inet_dist_use_interface",
          ~c"{127,0,0,1}"
        ]
      })

    :ok = :peer.call(peer, :code, :add_pathsa, [:code.get_path()])
    {:ok, _} = :peer.call(peer, Application, :ensure_all_started, [:sluice], 30_000)
    true = Node.connect(b)
    {peer, b}
  end
end
