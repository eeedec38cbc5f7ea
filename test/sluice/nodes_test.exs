defmodule Sluice.NodesTest do
  # Programs on another node (`node:`), between real nodes on this machine: this VM (A)
  # and peers started with :peer on loopback. After each test nothing is left on A (Sluice.Case)
  # nor under the peer's helper program.
  use Sluice.Case, async: false

  alias Sluice.Nodes
  alias Sluice.Process, as: P

  @moduletag :external_vm
  @moduletag timeout: 120_000

  # A program that ignores SIGTERM: only the SIGKILL after kill_grace ends it.
  @stubborn ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.1; done"]

  setup_all do
    started = Nodes.distribute!()
    {peer, b} = Nodes.start_peer!("sluice_b")
    {plain, d} = Nodes.start_peer!("sluice_plain", sluice: false)

    on_exit(fn ->
      :peer.stop(peer)
      :peer.stop(plain)
      if started, do: Node.stop()
    end)

    %{peer: peer, b: b, plain: plain, d: d}
  end

  setup %{peer: peer, b: b} do
    # A test that disconnected B connects it again before the next one.
    true = Node.connect(b)
    on_exit(fn -> Nodes.assert_peer_clean(peer) end)
    :ok
  end

  test "run on another node: the result, input, status, stderr", %{peer: peer, b: b} do
    helper_b = :peer.call(peer, Sluice.Helper, :info, []).os_pid

    # The program is the child of B's helper program.
    assert {:ok, %Sluice.Result{status: 3, stdout: out, stderr: "err\n"}} =
             Sluice.run(["sh", "-c", "echo $PPID; echo err >&2; exit 3"], node: b)

    assert String.trim(out) == "#{helper_b}"

    assert %{stdout: "SLUICE", status: 0} =
             Sluice.run!(["tr", "a-z", "A-Z"], input: "sluice", node: b)

    assert {:error, %Sluice.Error{reason: :timeout}} =
             Sluice.run(["sleep", "10"], node: b, timeout: 200, kill_grace: 500)

    # The node itself is treated as local.
    assert %{stdout: "here\n"} = Sluice.run!(["echo", "here"], node: node())

    # into: a collectable here, fed as the output comes from there.
    assert {:ok, %{stdout: chunks, stderr: "e\n", status: 0}} =
             Sluice.run(["sh", "-c", "seq 1 30000; echo e >&2"], node: b, into: [])

    assert IO.iodata_to_binary(chunks) == Enum.map_join(1..30_000, &"#{&1}\n")
  end

  test "a remote run's result has what a local one has: statuses, pipefail, usage", %{b: b} do
    failing = Sluice.pipeline([["echo", "x"], ["sh", "-c", "cat; exit 1"], ["cat"]])

    # Every stage's status crossed from B, and pipefail reads them.
    assert {:ok, %{status: 0, statuses: [0, 1, 0], stdout: "x\n"}} = Sluice.run(failing, node: b)
    assert_raise Sluice.ExitError, fn -> Sluice.run!(failing, node: b) end
    assert %{statuses: [0, 1, 0]} = Sluice.run!(failing, node: b, pipefail: false)

    burn = [
      "python3",
      "-c",
      "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass"
    ]

    assert %{usage: usage, core_dumped: false} = Sluice.run!(burn, node: b)
    assert usage.cpu_user_us + usage.cpu_system_us >= 150_000
  end

  test "an unreachable node is :nodedown, a node without :sluice is :nosluice", %{d: d} do
    nobody = :"nobody_here@127.0.0.1"
    assert {:error, %Sluice.Error{reason: :nodedown}} = Sluice.run(["true"], node: nobody)
    assert {:error, %Sluice.Error{reason: :nosluice}} = Sluice.run(["true"], node: d)
    assert {:error, %Sluice.Error{reason: :nosluice}} = P.start(["true"], node: d)

    assert_raise Sluice.Error, ~r/not reachable/, fn ->
      Sluice.stream!(["true"], node: nobody) |> Enum.to_list()
    end

    assert_raise ArgumentError, ~r/option :node/, fn -> Sluice.run(["true"], node: "b") end
  end

  test "100 MiB through gzip and back on another node, byte-identical", %{b: b} do
    Process.put(:in_hash, :crypto.hash_init(:sha256))

    # The input is enumerated here, in the consumer, as for a local program.
    input =
      Stream.map(1..1_600, fn _ ->
        chunk = :crypto.strong_rand_bytes(65_536)
        Process.put(:in_hash, :crypto.hash_update(Process.get(:in_hash), chunk))
        chunk
      end)

    {size, hash} =
      Sluice.stream!(["sh", "-c", "gzip -1 -c | gzip -dc"], input: input, node: b)
      |> Enum.reduce({0, :crypto.hash_init(:sha256)}, fn chunk, {n, h} ->
        {n + byte_size(chunk), :crypto.hash_update(h, chunk)}
      end)

    assert size == 100 * 1_048_576
    assert :crypto.hash_final(hash) == :crypto.hash_final(Process.get(:in_hash))
  end

  test "an unread remote `yes` grows neither node's memory", %{peer: peer, b: b} do
    stream = Sluice.stream!(["yes"], node: b)

    {:suspended, first, cont} =
      Enumerable.reduce(stream, {:cont, nil}, fn x, _ -> {:suspend, x} end)

    assert binary_part(first, 0, 2) == "y\n"

    before_a = memory()
    before_b = :peer.call(peer, :erlang, :memory, [:total])
    Process.sleep(3_000)
    grown_a = memory() - before_a
    grown_b = :peer.call(peer, :erlang, :memory, [:total]) - before_b

    assert grown_a < 2_000_000, "A grew by #{grown_a} bytes"
    assert grown_b < 2_000_000, "B grew by #{grown_b} bytes"
    # What waits here is the rest of the window: batches of at most 128 KiB.
    {:messages, queued} = Process.info(self(), :messages)
    assert length(queued) <= Sluice.Caller.RemoteConsumer.window() - 1
    batches = for {:sluice_remote, _, {:data, :stdout, batch}} <- queued, do: batch
    assert length(batches) == length(queued)
    assert batches |> List.flatten() |> IO.iodata_length() <= length(batches) * 131_072
    assert {:halted, nil} = cont.({:halt, nil})
  end

  test "the end of a fast burst arrives though the program then waits", %{b: b} do
    # A batch part-filled while the consumer had others in hand is sent once it has
    # taken them; the program then waits, so only that can deliver the end marker.
    argv = ["sh", "-c", "head -c 3000000 /dev/zero; echo END; exec sleep 30"]

    task =
      Task.async(fn ->
        Sluice.stream!(argv, node: b)
        |> Enum.reduce_while(0, fn chunk, n ->
          n = n + byte_size(chunk)
          if n == 3_000_004, do: {:halt, n}, else: {:cont, n}
        end)
      end)

    assert Task.await(task, 10_000) == 3_000_004
  end

  test "remote chunks are at most chunk_size; empty frames are bounded too", %{
    peer: peer,
    b: b
  } do
    chunks = Sluice.stream!(["head", "-c", "1000000", "/dev/zero"], node: b, chunk_size: 1000)
    sizes = Enum.map(chunks, &byte_size/1)
    assert Enum.sum(sizes) == 1_000_000
    assert Enum.max(sizes) <= 1000

    # Every zero byte is an empty packet: a batch of them must end, and stay small.
    before_b = :peer.call(peer, :erlang, :memory, [:total])

    task =
      Task.async(fn ->
        Sluice.stream!(["cat", "/dev/zero"], framing: {:packet, 1}, node: b) |> Enum.take(3)
      end)

    assert Task.await(task, 10_000) == ["", "", ""]
    assert :peer.call(peer, :erlang, :memory, [:total]) - before_b < 2_000_000
  end

  test "input does not get ahead of a remote program that takes none", %{b: b} do
    made = :counters.new(1, [])

    input =
      Stream.repeatedly(fn ->
        :counters.add(made, 1, 1)
        :binary.copy("x", 65_536)
      end)

    assert {:error, %Sluice.Error{reason: :timeout}} =
             Sluice.run(["sleep", "30"], input: input, node: b, timeout: 2_000)

    # The stdin pipe (64 KiB) and the window of chunks in flight, not 2 s of a loop.
    assert :counters.get(made, 1) <= 8
  end

  test "an input of empty chunks for ever into a remote program: exit and timeout end the call",
       %{b: b} do
    empty = Stream.repeatedly(fn -> "" end)

    calls = [
      fn -> Sluice.run(["true"], input: empty, node: b) end,
      fn -> Sluice.run(["cat"], input: empty, node: b, timeout: 300, kill_grace: 100) end
    ]

    tasks = Enum.map(calls, &Task.async/1)
    answers = for t <- tasks, do: Task.yield(t, 15_000) || Task.shutdown(t, :brutal_kill)

    assert [{:ok, {:ok, %{status: 0}}}, {:ok, {:error, %Sluice.Error{reason: :timeout}}}] =
             answers
  end

  test "input_in: :process with a remote program: its exit ends the call, the input waiting",
       %{b: b} do
    test = self()

    # Fed by messages: grep exits after its second match, the input waits for a third.
    input =
      Stream.resource(
        fn -> send(test, {:input_process, self()}) end,
        fn acc -> receive(do: ({:line, line} -> {[line], acc})) end,
        fn _acc -> :ok end
      )

    grep = ["grep", "--line-buffered", "-m", "2", "match"]

    calls = [
      fn ->
        {:ok, result} = Sluice.run(grep, input: input, input_in: :process, node: b)
        {result.status, result.stdout}
      end,
      fn ->
        elements = Sluice.stream(grep, input: input, input_in: :process, node: b)
        {chunks, [{:exit, status}]} = Enum.split_with(elements, &is_binary/1)
        {status, Enum.join(chunks)}
      end
    ]

    for call <- calls do
      task = Task.async(call)
      assert_receive {:input_process, feeder}, 10_000
      assert feeder != task.pid
      watch = Process.monitor(feeder)
      for line <- ["a match\n", "no\n", "b match\n"], do: send(feeder, {:line, line})
      assert Task.await(task, 15_000) == {0, "a match\nb match\n"}
      assert_receive {:DOWN, ^watch, :process, ^feeder, :killed}, 5_000
    end
  end

  test "a remote sort fed by a local stream; a remote stream fed to a local program", %{b: b} do
    shuffled = Sluice.stream!(["sh", "-c", "seq 1 20000 | shuf"])
    sorted = Sluice.stream!(["sort", "-n"], input: shuffled, node: b) |> Enum.join()
    assert sorted == Enum.map_join(1..20_000, &"#{&1}\n")

    remote = Sluice.stream!(["seq", "1", "5000"], node: b)
    assert %{stdout: "5000\n"} = Sluice.run!(["wc", "-l"], input: remote)

    # A collectable function as the input of a remote program.
    into = fn stdin -> Enum.into(Stream.map(1..1000, &"#{&1}\n"), stdin) end
    assert %{stdout: "1000\n"} = Sluice.run!(["wc", "-l"], input: into, node: b)

    # Output kept while it ran comes first, in order (8 MiB through cat).
    lines = Enum.map(1..200, &String.duplicate("#{&1} ", 10_000))
    into = fn stdin -> Enum.into(lines, stdin) end
    assert Sluice.run!(["cat"], input: into, node: b).stdout == IO.iodata_to_binary(lines)
  end

  test "the owner killed: the remote program is stopped within kill_grace + 1 s", %{
    b: b,
    peer: peer
  } do
    test = self()

    owner =
      spawn(fn ->
        {:ok, p} = P.start(@stubborn, node: b, kill_grace: 1_500)
        {:ok, "up\n"} = P.read(p)

        consumer =
          spawn(fn ->
            Sluice.stream!(@stubborn, node: b, kill_grace: 1_500)
            |> Enum.each(fn _ -> send(test, {:streaming, self()}) end)
          end)

        send(test, {:started, P.os_pid(p), consumer})
        Process.sleep(:infinity)
      end)

    assert_receive {:started, os_pid, consumer}, 10_000
    assert_receive {:streaming, ^consumer}, 10_000
    [stream_pid] = Nodes.helper_children(peer) -- [os_pid]

    Process.exit(owner, :kill)
    Process.exit(consumer, :kill)
    t0 = System.monotonic_time(:millisecond)
    # SIGTERM is ignored: alive until the SIGKILL at kill_grace.
    Process.sleep(500)
    assert alive?(os_pid) and alive?(stream_pid)
    assert eventually(fn -> not alive?(os_pid) and not alive?(stream_pid) end, 2_500)
    assert System.monotonic_time(:millisecond) - t0 <= 2_500
  end

  test "Node.disconnect/1: the remote program is stopped, the caller sees :nodedown", %{
    b: b,
    peer: peer
  } do
    {:ok, p} = P.start(["sleep", "60"], node: b, kill_grace: 1_000)
    os_pid = P.os_pid(p)
    test = self()

    consumer =
      spawn(fn ->
        result =
          try do
            Sluice.stream!(["yes"], node: b)
            |> Stream.each(fn _ -> send(test, :chunk) end)
            |> Stream.run()
          rescue
            e in Sluice.Error -> e.reason
          end

        send(test, {:consumer, result})
      end)

    assert_receive :chunk, 10_000
    [stream_pid] = Nodes.helper_children(peer) -- [os_pid]

    true = Node.disconnect(b)
    assert_receive {:consumer, :nodedown}, 5_000
    assert P.read(p) in [{:error, :nodedown}, {:error, :closed}]
    assert eventually(fn -> not alive?(os_pid) and not alive?(stream_pid) end, 2_000)
    refute Process.alive?(consumer)
  end

  test "active mode over a disconnect: the controller receives {:sluice_error, p, :nodedown}",
       %{b: b} do
    {:ok, p} = P.start(["sh", "-c", "echo up; exec sleep 60"], node: b, kill_grace: 1_000)
    os_pid = P.os_pid(p)
    :ok = P.set_active(p, :once)
    assert_receive {:sluice_stdout, ^p, "up\n"}, 5_000
    :ok = P.set_active(p, 5)
    # A controller on B itself (handed over from here) hears it from the server there.
    {:ok, q} = P.start(["sleep", "60"], node: b, kill_grace: 1_000)
    keeper = Node.spawn(b, Nodes, :keep, [])
    :ok = P.controlling_process(q, keeper)
    :ok = P.set_active(q, 5)

    true = Node.disconnect(b)
    assert_receive {:sluice_error, ^p, :nodedown}, 5_000
    assert eventually(fn -> not alive?(os_pid) end, 3_000)
    # Connected again, the program's end brings no second message.
    true = Node.connect(b)
    refute_receive {:sluice_error, ^p, _}, 500
    refute_received {:sluice_exit, ^p, _}
    send(keeper, {:report, self()})
    assert_receive {:kept, [{:sluice_error, ^q, :nodedown}]}, 5_000

    # A program that ends normally in active mode: its exit, and nothing more.
    {:ok, r} = P.start(["echo", "done"], node: b)
    :ok = P.set_active(r, 5)
    assert_receive {:sluice_stdout, ^r, "done\n"}, 5_000
    assert_receive {:sluice_exit, ^r, 0}, 5_000
    refute_receive {:sluice_error, ^r, _}, 500
  end

  test "the remote node stopped: the consumer raises :nodedown within 5 s" do
    {peer, c} = Nodes.start_peer!("sluice_c")
    {:ok, p} = P.start(["sleep", "60"], node: c)
    os_pid = P.os_pid(p)
    {:ok, w} = Sluice.Worker.start_link(["cat"], framing: {:packet, 2}, node: c)
    Process.unlink(w)
    assert {:ok, "up"} = Sluice.Worker.call(w, "up")
    test = self()

    error =
      assert_raise Sluice.Error, fn ->
        Sluice.stream!(["yes"], node: c)
        |> Enum.each(fn _ ->
          unless Process.get(:stopping) do
            Process.put(:stopping, true)
            spawn(fn -> send(test, {:stopped, :peer.stop(peer)}) end)
            Process.put(:t0, System.monotonic_time(:millisecond))
          end
        end)
      end

    assert error.reason == :nodedown
    assert System.monotonic_time(:millisecond) - Process.get(:t0) < 5_000
    assert_receive {:stopped, :ok}, 10_000
    # Every call on what ran there answers :nodedown.
    assert P.read(p) == {:error, :nodedown}
    assert P.write(p, "x") == {:error, :nodedown}
    assert P.os_pid(p) == {:error, :nodedown}
    assert P.await_exit(p, 1_000) == {:error, :nodedown}
    assert P.stop(p) == {:error, :nodedown}
    assert Sluice.Worker.call(w, "more") == {:error, :nodedown}
    assert eventually(fn -> not alive?(os_pid) end, 5_000)
  end

  test "a node stopped but still connected: calls return in their timeout and a margin" do
    {peer, c} = Nodes.start_peer!("sluice_stuck")
    {:ok, p} = P.start(["cat"], node: c)
    {:ok, w} = Sluice.Worker.start_link(["cat"], framing: {:packet, 2}, node: c)
    Process.unlink(w)
    vm = peer |> :peer.call(:os, :getpid, []) |> List.to_string()
    {_, 0} = System.cmd("kill", ["-STOP", vm])

    try do
      t0 = System.monotonic_time(:millisecond)

      calls = [
        fn -> P.read(p, 10, 200) end,
        fn -> P.os_pid(p) end,
        fn -> Sluice.Worker.call(w, "x", 200) end
      ]

      answers = calls |> Enum.map(&Task.async/1) |> Task.await_many(30_000)
      assert answers == List.duplicate({:error, :timeout}, 3)
      # 200 ms and the 10 s margin, not the minute distribution takes to give B up.
      assert System.monotonic_time(:millisecond) - t0 < 20_000
    after
      System.cmd("kill", ["-CONT", vm])
    end

    # Resumed, the servers answer again (the late replies went nowhere).
    assert is_integer(P.os_pid(p))
    assert {:ok, "y"} = Sluice.Worker.call(w, "y")

    :peer.stop(peer)
  end

  test "every Sluice.Process function on a remote program", %{b: b} do
    {:ok, p} = P.start_link(["sort"], node: b, stderr: :consume)
    assert node(p) == b
    assert %{argv: ["sort"], owner: owner} = P.info(p)
    assert owner == self()
    assert :ok = P.write(p, "pear\napple\n")
    assert :ok = P.close_stdin(p)
    assert {:ok, "apple\npear\n"} = P.read(p, 65_536, 5_000)
    assert :eof = P.read_any(p)
    assert {:ok, 0} = P.await_exit(p, 5_000)

    # Active mode: the messages cross to the controller here.
    {:ok, q} = P.start_link(["sh", "-c", "echo one; read x; echo two"], node: b)
    assert :ok = P.set_active(q, :once)
    assert_receive {:sluice_stdout, ^q, "one\n"}, 5_000
    assert :ok = P.write(q, "\n")
    assert :ok = P.set_active(q, 2)
    assert_receive {:sluice_stdout, ^q, "two\n"}, 5_000
    assert_receive {:sluice_exit, ^q, 0}, 5_000

    {:ok, r} = P.start(["sleep", "60"], node: b)
    assert :ok = P.signal(r, :sigusr1)
    assert {:ok, {:signal, :sigusr1}} = P.await_exit(r, 5_000)
    {:ok, s} = P.start(["sleep", "60"], node: b)
    assert {:ok, {:signal, :sigterm}} = P.stop(s, 1_000)
  end

  test "a remote Sluice.Process read from a node that does not run :sluice", %{b: b, plain: plain} do
    {:ok, p} = P.start(["cat"], node: b)
    assert :ok = :peer.call(plain, Sluice.Process, :write, [p, "from d", 5_000])
    assert {:ok, "from d"} = :peer.call(plain, Sluice.Process, :read, [p, 65_536, 5_000])
    assert :ok = :peer.call(plain, Sluice.Process, :close_stdin, [p])
    assert {:ok, 0} = :peer.call(plain, Sluice.Process, :await_exit, [p, 5_000])

    # A program on this node, read from there.
    {:ok, q} = P.start(["echo", "from a"])
    assert {:ok, "from a\n"} = :peer.call(plain, Sluice.Process, :read, [q, 65_536, 5_000])
    assert {:ok, 0} = P.await_exit(q, 5_000)
  end

  test "a worker and a daemon on another node", %{b: b} do
    {:ok, w} = Sluice.Worker.start_link(["cat"], framing: {:packet, 2}, node: b)
    assert node(w) == b
    assert {:ok, "echo"} = Sluice.Worker.call(w, "echo")

    assert_raise ArgumentError, ~r/option :name/, fn ->
      Sluice.Worker.start_link(["cat"], node: b, name: :local_name)
    end

    {:ok, d} = Sluice.Daemon.start_link(argv: ["sleep", "60"], node: b, log: false)
    os_pid = Sluice.Daemon.os_pid(d)
    assert alive?(os_pid)
    GenServer.stop(d)
    Process.unlink(w)
    GenServer.stop(w)
    assert eventually(fn -> not alive?(os_pid) end)
  end

  defp memory do
    :erlang.garbage_collect()
    :erlang.memory(:total)
  end
end
