defmodule Sluice.InputInTest do
  # `input_in:`: where the `:input` of run and streams is enumerated. By default in the
  # caller, so an input waiting for its next element keeps the call waiting too (the
  # documented limit); with `input_in: :process` in a linked process of its own, so the
  # program's exit ends the call at once, and that process is gone when the call returns,
  # however the call ends.
  use Sluice.Case, async: false

  # Lines until two match: then grep exits, with lines of the input still to come.
  @grep ["grep", "--line-buffered", "-m", "2", "match"]

  # An input fed by messages, as from a socket or a PubSub: the process that enumerates it
  # says who it is to `test`, then yields each `{:line, line}` it receives.
  defp message_fed(test) do
    Stream.resource(
      fn -> send(test, {:input_process, self()}) end,
      fn acc ->
        receive do
          {:line, line} -> {[line], acc}
        end
      end,
      fn _acc -> :ok end
    )
  end

  defp input_process do
    assert_receive {:input_process, pid}, 10_000
    pid
  end

  # The processes that monitor `pid` (the input process's guard among them), itself aside.
  defp monitors(pid) do
    {:monitored_by, by} = Process.info(pid, :monitored_by)
    Enum.filter(by, &(is_pid(&1) and &1 != self()))
  end

  defp links(pid) do
    {:links, links} = Process.info(pid, :links)
    Enum.sort(links)
  end

  # Runs `fun` in a task that reports its links and monitors before and after `fun`.
  defp call_in_task(fun) do
    Task.async(fn ->
      before = {links(self()), monitors(self())}
      result = fun.()
      {result, before, {links(self()), monitors(self())}}
    end)
  end

  describe "the program exits while the input waits for its next message" do
    test "the default: the call waits for the input's next element (the documented limit)" do
      test = self()
      task = Task.async(fn -> Sluice.run(@grep, input: message_fed(test)) end)
      feeder = input_process()
      # Enumerated in the caller: the task itself.
      assert feeder == task.pid

      for line <- ["a match\n", "no\n", "b match\n"], do: send(feeder, {:line, line})
      # grep exited (after its second match), and the call goes on waiting for the input.
      assert eventually(fn -> children(helper_pid()) == [] end, 10_000)
      assert Task.yield(task, 300) == nil

      # The next element ends it: stdin is gone, the output is there.
      send(feeder, {:line, "c match\n"})
      assert {:ok, %{status: 0, stdout: "a match\nb match\n"}} = Task.await(task, 10_000)
    end

    test "input_in: :process: run returns once grep exits, the input process gone" do
      test = self()

      task =
        call_in_task(fn -> Sluice.run(@grep, input: message_fed(test), input_in: :process) end)

      feeder = input_process()
      assert feeder != task.pid
      # A linked process of the caller's own.
      assert feeder in links(task.pid)
      watch = Process.monitor(feeder)

      for line <- ["a match\n", "no\n", "b match\n"], do: send(feeder, {:line, line})

      assert {{:ok, %{status: 0, stdout: "a match\nb match\n"}}, before, after_call} =
               Task.await(task, 10_000)

      # Neither the input process nor its guard is linked to or watching the caller.
      assert after_call == before
      assert_receive {:DOWN, ^watch, :process, ^feeder, :killed}, 5_000
    end

    test "input_in: :process: stream! and stream end with grep's exit" do
      test = self()

      for {stream, last} <- [{&Sluice.stream!/2, []}, {&Sluice.stream/2, [{:exit, 0}]}] do
        task =
          call_in_task(fn ->
            @grep |> stream.(input: message_fed(test), input_in: :process) |> Enum.to_list()
          end)

        feeder = input_process()
        for line <- ["a match\n", "b match\n"], do: send(feeder, {:line, line})
        assert {elements, before, after_call} = Task.await(task, 10_000)
        {chunks, ^last} = Enum.split_with(elements, &is_binary/1)
        assert Enum.join(chunks) == "a match\nb match\n"
        assert after_call == before
        refute Process.alive?(feeder)
      end
    end

    test "input_in: :process: a collectable function that waits for messages" do
      test = self()

      fun = fn stdin ->
        send(test, {:input_process, self()})
        Stream.repeatedly(fn -> receive(do: ({:line, line} -> line)) end) |> Enum.into(stdin)
      end

      task = call_in_task(fn -> Sluice.run(@grep, input: fun, input_in: :process) end)
      feeder = input_process()
      for line <- ["a match\n", "b match\n"], do: send(feeder, {:line, line})

      assert {{:ok, %{stdout: "a match\nb match\n"}}, before, after_call} =
               Task.await(task, 10_000)

      assert after_call == before
    end

    test "input_in: :process: the timeout ends a call whose input never comes" do
      test = self()

      task =
        call_in_task(fn ->
          Sluice.run(["cat"],
            input: message_fed(test),
            input_in: :process,
            timeout: 300,
            kill_grace: 100
          )
        end)

      feeder = input_process()
      send(feeder, {:line, "partial\n"})

      assert {{:error, %Sluice.Error{reason: :timeout, result: result}}, before, after_call} =
               Task.await(task, 10_000)

      assert result.stdout == "partial\n"
      assert after_call == before
      refute Process.alive?(feeder)
    end
  end

  describe "input_in: :process and faults" do
    test "an input that raises: the caller sees the exception, as with the default" do
      raising =
        Stream.map(1..3, fn
          3 -> raise "bad input"
          n -> "#{n}\n"
        end)

      before = {links(self()), monitors(self())}

      for input_in <- [:caller, :process] do
        assert_raise RuntimeError, "bad input", fn ->
          Sluice.run(["cat"], input: raising, input_in: input_in)
        end

        assert_raise RuntimeError, "bad input", fn ->
          Sluice.stream!(["cat"], input: raising, input_in: input_in) |> Enum.to_list()
        end

        # An element that is not iodata: the same ArgumentError.
        assert_raise ArgumentError, ~r/option :input: expected elements that are iodata/, fn ->
          Sluice.run(["cat"], input: [[:not_iodata]], input_in: input_in)
        end

        # A collectable function that raises, and one that exits.
        assert_raise RuntimeError, "bad function", fn ->
          Sluice.run(["cat"], input: fn _stdin -> raise "bad function" end, input_in: input_in)
        end

        assert catch_exit(Sluice.run(["cat"], input: fn _ -> exit(:gone) end, input_in: input_in)) ==
                 :gone
      end

      assert {links(self()), monitors(self())} == before
      assert {:messages, []} = Process.info(self(), :messages)
    end

    test "a caller killed mid-run leaves no OS process and no input process" do
      test = self()

      caller = spawn(fn -> Sluice.run(["cat"], input: message_fed(test), input_in: :process) end)

      feeder = input_process()
      send(feeder, {:line, "x\n"})
      # The program was registered before its input started.
      [%{os_pid: os_pid}] = Enum.filter(Sluice.list(), &(&1.owner == caller))
      # The guard watches both the caller and the input process.
      [guard] = Enum.filter(monitors(caller), &(&1 in monitors(feeder)))
      refs = Enum.map([feeder, guard], &Process.monitor/1)

      Process.exit(caller, :kill)

      for ref <- refs, do: assert_receive({:DOWN, ^ref, :process, _, _}, 5_000)
      assert eventually(fn -> not alive?(os_pid) end, 10_000)
    end

    test "a caller that ends normally with its stream suspended leaves no input process" do
      test = self()
      stream = Sluice.stream!(["cat"], input: message_fed(test), input_in: :process)

      caller =
        spawn(fn ->
          {:suspended, "x\n", _cont} =
            Enumerable.reduce(stream, {:cont, nil}, fn chunk, _ -> {:suspend, chunk} end)

          send(test, :suspended)
          # Ends normally, the stream never halted: its link sends no exit signal.
        end)

      feeder = input_process()
      watch = Process.monitor(feeder)
      send(feeder, {:line, "x\n"})
      assert_receive :suspended, 10_000
      assert_receive {:DOWN, ^watch, :process, ^feeder, :killed}, 5_000
      refute Process.alive?(caller)
    end

    test "a stream halted early stops the input process" do
      test = self()

      task =
        call_in_task(fn ->
          Sluice.stream!(["cat"], input: message_fed(test), input_in: :process, lines: true)
          |> Enum.take(1)
        end)

      feeder = input_process()
      send(feeder, {:line, "first\n"})
      assert {["first"], before, after_call} = Task.await(task, 10_000)
      assert after_call == before
      refute Process.alive?(feeder)
    end

    test "an input process killed by someone else takes the caller with it (the link)" do
      Process.flag(:trap_exit, true)
      test = self()

      caller =
        spawn_link(fn -> Sluice.run(["cat"], input: message_fed(test), input_in: :process) end)

      feeder = input_process()
      Process.exit(feeder, :boom)
      assert_receive {:EXIT, ^caller, :boom}, 5_000
    end
  end

  describe "input_in: :process, the data" do
    test "10 MiB through cat, byte for byte, as an Enumerable and as a function" do
      chunks = Enum.map(1..160, &chunk/1)
      expected = IO.iodata_to_binary(chunks)

      assert Sluice.run!(["cat"], input: Stream.map(chunks, & &1), input_in: :process).stdout ==
               expected

      into = fn stdin -> Enum.into(chunks, stdin) end
      assert Sluice.run!(["cat"], input: into, input_in: :process).stdout == expected

      streamed =
        Sluice.stream!(["cat"], input: Stream.map(chunks, & &1), input_in: :process)
        |> Enum.join()

      assert streamed == expected
    end

    test "the input does not read ahead of a program that takes none" do
      made = :counters.new(1, [])

      input =
        Stream.repeatedly(fn ->
          :counters.add(made, 1, 1)
          :binary.copy("x", 65_536)
        end)

      assert {:error, %Sluice.Error{reason: :timeout}} =
               Sluice.run(["sleep", "30"], input: input, input_in: :process, timeout: 1_000)

      # The stdin pipe (64 KiB), the chunk being written, two in flight, one being made.
      assert :counters.get(made, 1) <= 8
    end

    test "iodata and an upstream Sluice stream, whose own input_in counts" do
      assert Sluice.run!(["cat"], input: "plain", input_in: :process).stdout == "plain"

      test = self()
      upstream = Sluice.stream!(["cat"], input: message_fed(test), input_in: :process)

      task =
        call_in_task(fn ->
          Sluice.run(@grep, input: upstream, input_in: :process, timeout: 10_000)
        end)

      feeder = input_process()
      for line <- ["a match\n", "b match\n"], do: send(feeder, {:line, line})

      # grep exited; the upstream cat still runs with its input waiting: the upstream is
      # stopped, and its input process with it.
      assert {{:ok, %{stdout: "a match\nb match\n"}}, before, after_call} =
               Task.await(task, 10_000)

      assert after_call == before
      refute Process.alive?(feeder)
    end
  end

  test "a program the input process started is stopped with it" do
    # Enumerated in the input process, `yes` is that process's program: head takes 10
    # bytes and exits, the input process is killed, and the helper program stops `yes`
    # as its owner is gone (Sluice.Case checks that nothing is left).
    input = Sluice.stream!(["yes"], lines: true) |> Stream.map(&(&1 <> "\n"))

    assert {:ok, %{status: 0, stdout: "y\ny\ny\ny\ny\n"}} =
             Sluice.run(["head", "-c", "10"], input: input, input_in: :process)
  end

  test "input_in is checked where the call is made" do
    for bad <- [:elsewhere, nil, "process"] do
      assert_raise ArgumentError, ~r/option :input_in: expected :caller or :process/, fn ->
        Sluice.run(["true"], input_in: bad)
      end

      assert_raise ArgumentError, ~r/option :input_in/, fn ->
        Sluice.stream!(["true"], input_in: bad)
      end
    end
  end

  # 64 KiB that differ for every n.
  defp chunk(n) do
    line = "chunk #{n} " <> Integer.to_string(:erlang.phash2(n), 36) <> "\n"
    binary_part(String.duplicate(line, div(65_536, byte_size(line)) + 1), 0, 65_536)
  end
end
