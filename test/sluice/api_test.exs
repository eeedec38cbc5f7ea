defmodule Sluice.ApiTest do
  use Sluice.Case, async: false

  alias Sluice.Process, as: P

  doctest Sluice
  doctest Sluice.Stdin
  doctest Sluice.ExitError
  doctest Sluice.Error
  doctest Sluice.Signal
  doctest Sluice.Daemon
  doctest Sluice.Helper

  describe "run/2" do
    test "a non-zero exit is a result, with stdout, stderr and os_pid" do
      assert {:ok, %Sluice.Result{status: 7, stdout: "o\n", stderr: "e\n", os_pid: pid}} =
               Sluice.run(["sh", "-c", "echo o; echo e >&2; exit 7"])

      assert is_integer(pid)
    end

    test "a spawn failure is an error" do
      assert {:error, %Sluice.Error{reason: :enoent}} = Sluice.run(["sluice-missing"])
    end

    test "stderr modes" do
      script = "echo o; echo e >&2"

      assert {:ok, %{stdout: "o\ne\n", stderr: nil}} =
               Sluice.run(["sh", "-c", script], stderr: :stdout)

      assert {:ok, %{stdout: "o\n", stderr: nil}} =
               Sluice.run(["sh", "-c", script], stderr: :null)
    end

    test "input as iodata, an Enumerable and a collectable function" do
      assert Sluice.run!(["cat"], input: ["a", ?b, ["c"]]).stdout == "abc"
      assert Sluice.run!(["cat"], input: Stream.map(1..3, &"#{&1}\n")).stdout == "1\n2\n3\n"

      fun = fn stdin -> Enum.into(["x", "y"], stdin) end
      assert Sluice.run!(["cat"], input: fun).stdout == "xy"
    end

    test "a collectable function's input: output kept while it ran comes first, in order" do
      # cat's output fills its pipe while the function writes: the pump keeps what it
      # reads meanwhile, and output read after the function ended comes after it.
      chunks = Enum.map(1..160, &chunk/1)
      expected = IO.iodata_to_binary(chunks)
      into = fn stdin -> Enum.into(chunks, stdin) end

      for _ <- 1..5 do
        assert Sluice.run!(["cat"], input: into).stdout == expected
        assert Sluice.stream!(["cat"], input: into) |> Enum.join() == expected
      end
    end

    test "input that the program does not read does not crash" do
      assert {:ok, %{status: 0}} = Sluice.run(["true"], input: Stream.repeatedly(fn -> "x" end))
    end

    test "an input that yields empty chunks for ever: the program's exit still ends the call" do
      empty = Stream.repeatedly(fn -> "" end)

      calls = [
        fn -> Sluice.run(["true"], input: empty) end,
        fn -> Sluice.stream!(["true"], input: empty) |> Enum.to_list() end,
        # A program that waits for the input's end: the timeout still holds.
        fn -> Sluice.run(["cat"], input: empty, timeout: 300, kill_grace: 100) end
      ]

      tasks = Enum.map(calls, &Task.async/1)
      # Far past anything these take: a call still running then never returns.
      answers = for t <- tasks, do: Task.yield(t, 15_000) || Task.shutdown(t, :brutal_kill)

      assert [
               {:ok, {:ok, %{status: 0, stdout: ""}}},
               {:ok, []},
               {:ok, {:error, %Sluice.Error{reason: :timeout}}}
             ] = answers
    end

    test "run and streams leave nothing in the caller's mailbox" do
      endless = Stream.repeatedly(fn -> "x\n" end)

      for _ <- 1..20 do
        {:ok, _} = Sluice.run(["head", "-n", "1"], input: endless)
        {:ok, _} = Sluice.run(["sh", "-c", "echo o; echo e >&2"])
        {:error, _} = Sluice.run(["sleep", "5"], timeout: 10, kill_grace: 100)
        ["x"] = Sluice.stream!(["cat"], input: endless, lines: true) |> Enum.take(1)
      end

      Process.sleep(200)
      assert {:messages, []} = Process.info(self(), :messages)
    end

    test "an exception in the input propagates and stops the program" do
      input =
        Stream.map(1..3, fn
          3 -> raise "bad input"
          n -> "#{n}\n"
        end)

      assert_raise RuntimeError, "bad input", fn -> Sluice.run(["cat"], input: input) end
    end

    test "timeout on a program that traps SIGTERM: SIGKILL after the grace, group dead" do
      script = "trap '' TERM; sleep 30 & echo $!; echo partial; wait"
      t0 = System.monotonic_time(:millisecond)

      assert {:error, %Sluice.Error{reason: :timeout, result: result}} =
               Sluice.run(["sh", "-c", script], timeout: 300, kill_grace: 300)

      elapsed = System.monotonic_time(:millisecond) - t0
      assert elapsed >= 600
      assert result.status == {:signal, :sigkill}
      [child, "partial"] = String.split(result.stdout, "\n", trim: true)
      # the background sleep shared the group: it is gone too
      assert eventually(fn -> not alive?(String.to_integer(child)) end, 1_000)
    end

    test "max_output stops the program and returns the partial result" do
      assert {:error, %Sluice.Error{reason: :max_output, result: result}} =
               Sluice.run(["yes"], max_output: 100_000)

      assert byte_size(result.stdout) > 100_000
      assert String.starts_with?(result.stdout, "y\ny\n")
      assert result.status == {:signal, :sigterm}
    end

    test "run! raises ExitError with the stderr tail, honouring success_exit_codes" do
      error =
        assert_raise Sluice.ExitError, fn ->
          Sluice.run!(["sh", "-c", "echo broken >&2; exit 2"])
        end

      assert error.status == 2
      assert error.stderr_tail == "broken\n"
      assert Exception.message(error) =~ "exited with status 2"
      assert Sluice.run!(["sh", "-c", "exit 2"], success_exit_codes: [2]).status == 2
      assert_raise Sluice.Error, fn -> Sluice.run!(["sluice-missing"]) end
    end

    test "ExitError.new/4 takes a Result in place of options; an unknown failing stage is nil" do
      result = %Sluice.Result{status: 1, stdout: "x"}
      assert %{result: ^result, stage: 1} = Sluice.ExitError.new(["false"], 1, nil, result)

      pipeline = Sluice.pipeline([["false"], ["cat"]])
      unknown = Sluice.ExitError.new(pipeline, 0, nil)
      assert unknown.stage == nil
      assert Exception.message(unknown) =~ "false | cat exited with status 0"
    end

    test "bad options raise ArgumentError naming the option" do
      assert_raise ArgumentError, ~r/:timeout/, fn -> Sluice.run(["true"], timeout: -1) end
      assert_raise ArgumentError, ~r/:stderr/, fn -> Sluice.run(["true"], stderr: :consume) end
      assert_raise ArgumentError, ~r/:input/, fn -> Sluice.run(["true"], input: 42) end
      assert_raise ArgumentError, ~r/:max_output/, fn -> Sluice.run(["true"], max_output: 0) end
      assert_raise ArgumentError, ~r/:lines/, fn -> Sluice.run(["true"], lines: true) end

      assert_raise ArgumentError, ~r/:chunk_size/, fn ->
        Sluice.stream!(["true"], chunk_size: 0)
      end
    end
  end

  describe "streams" do
    test "100 MiB through gzip -c then gzip -dc, byte-identical, with flat memory" do
      chunks = 1_600
      source = Stream.map(1..chunks, &chunk/1)
      expected = Enum.reduce(source, :crypto.hash_init(:sha256), &:crypto.hash_update(&2, &1))

      :erlang.garbage_collect()
      base = :erlang.memory(:total)
      sampler = start_sampler()

      zipped = Sluice.stream!(["gzip", "-1", "-c"], input: source)

      {bytes, hash} =
        Sluice.stream!(["gzip", "-dc"], input: zipped)
        |> Enum.reduce({0, :crypto.hash_init(:sha256)}, fn data, {n, h} ->
          {n + byte_size(data), :crypto.hash_update(h, data)}
        end)

      peak = stop_sampler(sampler)
      assert bytes == chunks * 65_536
      assert :crypto.hash_final(hash) == :crypto.hash_final(expected)
      growth = peak - base
      assert growth < 30_000_000, "BEAM memory grew by #{growth} bytes for 100 MiB"
    end

    test "lazy: nothing runs until enumerated, and each enumeration runs again" do
      stream = Sluice.stream!(["sh", "-c", "echo $$"], lines: true)
      assert helper_programs() == []
      [a] = Enum.to_list(stream)
      [b] = Enum.to_list(stream)
      assert a != b
    end

    test "lines of any length, and the last partial line is flushed" do
      long = String.duplicate("z", 3_000_000)
      input = ["short\n", long, "\n", "tail without newline"]

      opts = [input: input, lines: true, max_line_length: 64 * 1024 * 1024]

      assert Sluice.stream!(["cat"], opts) |> Enum.to_list() ==
               ["short", long, "tail without newline"]
    end

    test "stream/2 ends with the exit status; stream!/2 raises after the last element" do
      assert Sluice.stream(["sh", "-c", "echo a; exit 4"]) |> Enum.to_list() ==
               ["a\n", {:exit, 4}]

      stream = Sluice.stream!(["sh", "-c", "echo a; echo why >&2; exit 4"], stderr: :capture)
      parent = self()

      error =
        assert_raise Sluice.ExitError, fn ->
          Enum.each(stream, &send(parent, {:got, &1}))
        end

      assert_received {:got, "a\n"}
      assert error.status == 4
      assert error.stderr_tail == "why\n"
    end

    test "stderr: :consume tags the elements" do
      elements =
        Sluice.stream!(["sh", "-c", "echo o; echo e >&2"], stderr: :consume) |> Enum.to_list()

      assert {:stdout, "o\n"} in elements
      assert {:stderr, "e\n"} in elements
    end

    test "halting early on yes stops it, without errors" do
      assert ["y", "y", "y"] = Sluice.stream!(["yes"], lines: true) |> Enum.take(3)
      assert Enum.find(Sluice.stream!(["seq", "1000000"], lines: true), &(&1 == "5")) == "5"
    end

    test "halting early also stops the input writer" do
      endless = Stream.repeatedly(fn -> "x\n" end)
      assert ["x"] = Sluice.stream!(["cat"], input: endless, lines: true) |> Enum.take(1)
    end

    test "a raising consumer propagates and leaves no OS process" do
      assert_raise RuntimeError, "consumer failed", fn ->
        Sluice.stream!(["yes"]) |> Enum.each(fn _ -> raise "consumer failed" end)
      end
    end

    test "streams chain with back-pressure" do
      numbers = Sluice.stream!(["seq", "100000"])

      assert Sluice.stream!(["wc", "-l"], input: numbers) |> Enum.join() |> String.trim() ==
               "100000"
    end

    test "any process may enumerate a stream" do
      stream = Sluice.stream!(["echo", "from a task"])
      assert Task.async(fn -> Enum.join(stream) end) |> Task.await() == "from a task\n"
    end
  end

  describe "active mode" do
    test ":once delivers one message at a time" do
      {:ok, p} = P.start_link(["cat"])
      :ok = P.write(p, "one")
      :ok = P.set_active(p, :once)
      assert_receive {:sluice_stdout, ^p, "one"}
      :ok = P.write(p, "two")
      refute_receive {:sluice_stdout, ^p, _}, 200
      assert {:ok, "two"} = P.read(p)
      :ok = P.close_stdin(p)
      :ok = P.set_active(p, :once)
      assert_receive {:sluice_exit, ^p, 0}
    end

    test "n messages, then passive; reads are refused while active" do
      {:ok, p} = P.start_link(["sh", "-c", "for i in 1 2 3 4 5; do echo $i; sleep 0.05; done"])
      :ok = P.set_active(p, 3)
      assert {:error, :active} = P.read(p)
      for _ <- 1..3, do: assert_receive({:sluice_stdout, ^p, _}, 2_000)
      assert_receive {:sluice_passive, ^p}, 2_000
      refute_receive {:sluice_stdout, ^p, _}, 300
      :ok = P.set_active(p, 10)
      assert_receive {:sluice_exit, ^p, 0}, 2_000
    end

    test "no more is read than was granted: back-pressure holds" do
      {:ok, p} = P.start_link(["yes"])
      :ok = P.set_active(p, 2)
      assert_receive {:sluice_stdout, ^p, _}
      assert_receive {:sluice_stdout, ^p, _}
      assert_receive {:sluice_passive, ^p}
      Process.sleep(300)
      assert {:messages, []} = Process.info(self(), :messages)
      assert {"S", _} = stat(P.os_pid(p))
    end

    test "a program flooding stdout does not starve stderr: the outputs take turns" do
      # stderr's line waits behind more stdout than two messages carry (64 KiB each), and
      # stdout never runs dry: `yes` refills it as fast as it is read.
      script = "head -c 150000 /dev/zero; echo err >&2; exec yes"
      {:ok, p} = P.start_link(["sh", "-c", script], stderr: :consume)

      os_pid = P.os_pid(p)
      assert running_yes?(os_pid, 100)
      :ok = P.set_active(p, 2)
      assert_receive {:sluice_stdout, ^p, _}, 2_000
      # Before, active mode read stdout first, every time: two stdout messages.
      assert_receive {:sluice_stderr, ^p, "err\n"}, 2_000
      assert_receive {:sluice_passive, ^p}, 2_000
    end

    test "controlling_process hands the messages over" do
      {:ok, p} = P.start_link(["echo", "handed"])
      parent = self()

      receiver =
        spawn(fn ->
          receive do
            {:sluice_stdout, ^p, data} -> send(parent, {:receiver_got, data})
          end
        end)

      assert :ok = P.controlling_process(p, receiver)
      assert {:error, :not_owner} = P.controlling_process(p, self())
      Task.async(fn -> P.set_active(p, :once) end) |> Task.await()
      assert_receive {:receiver_got, "handed\n"}
    end

    test "controlling_process to something that is not a pid names the argument" do
      {:ok, p} = P.start_link(["cat"])

      for not_a_pid <- [:receiver, nil, "pid"] do
        assert_raise ArgumentError, ~r/^pid must be a pid.*got: #{inspect(not_a_pid)}/, fn ->
          P.controlling_process(p, not_a_pid)
        end
      end

      # The program carries on, and so does its controller.
      :ok = P.write(p, "still\n")
      assert {:ok, "still\n"} = P.read(p, 100, 5_000)
      assert :ok = P.controlling_process(p, self())
    end
  end

  describe "Sluice.Daemon" do
    test "logs lines with metadata and is restarted by its supervisor" do
      import ExUnit.CaptureLog

      log =
        capture_log([metadata: [:os_pid, :stream]], fn ->
          {:ok, sup} =
            Supervisor.start_link(
              [
                {Sluice.Daemon,
                 argv: ["sh", "-c", "echo hello daemon; echo oops >&2; sleep 0.3; exit 3"],
                 name: TestDaemon}
              ],
              strategy: :one_for_one,
              max_restarts: 10
            )

          # between an exit and the restart the daemon may be gone for a moment (its name
          # unregistered: {:error, :closed}; or ending as it is called: an exit)
          os_pid = fn ->
            try do
              Sluice.Daemon.os_pid(TestDaemon)
            catch
              :exit, _ -> nil
            end
          end

          first = eventually(fn -> is_integer(pid = os_pid.()) and pid end, 3_000)

          second =
            eventually(fn -> (pid = os_pid.()) != first and is_integer(pid) and pid end, 3_000)

          assert is_integer(second)
          Supervisor.stop(sup)
        end)

      assert log =~ "hello daemon"
      assert log =~ "stream=stdout"
      assert log =~ "oops"
      assert log =~ "stream=stderr"
      assert log =~ "os_pid="
    end

    test "stopping the daemon stops the program's group" do
      {:ok, d} =
        Sluice.Daemon.start_link(
          argv: ["sh", "-c", "sleep 30 & sleep 30"],
          log: false,
          kill_grace: 500
        )

      os_pid = Sluice.Daemon.os_pid(d)
      # the shell forks its children after it started
      kids = eventually(fn -> match?([_, _], descendants(os_pid)) and descendants(os_pid) end)
      assert [_, _] = kids
      GenServer.stop(d)
      assert eventually(fn -> Enum.all?([os_pid | kids], &(not alive?(&1))) end, 1_500)
    end

    test "bad options raise" do
      assert_raise ArgumentError, ~r/:argv/, fn -> Sluice.Daemon.start_link(name: :x) end

      assert_raise ArgumentError, ~r/:log/, fn ->
        Sluice.Daemon.start_link(argv: ["true"], log: :loud)
      end
    end
  end

  # 64 KiB of text that differs for every n, so gzip has real work.
  defp chunk(n) do
    line = "chunk #{n} " <> Integer.to_string(:erlang.phash2(n), 36) <> "\n"
    reps = div(65_536, byte_size(line)) + 1
    binary_part(String.duplicate(line, reps), 0, 65_536)
  end

  defp helper_programs, do: children(helper_pid())

  defp start_sampler do
    parent = self()

    spawn_link(fn ->
      loop = fn loop, peak ->
        receive do
          :stop -> send(parent, {:peak, peak})
        after
          20 -> loop.(loop, max(peak, :erlang.memory(:total)))
        end
      end

      loop.(loop, :erlang.memory(:total))
    end)
  end

  defp stop_sampler(pid) do
    send(pid, :stop)
    assert_receive {:peak, peak}, 1_000
    peak
  end

  # Whether `os_pid` has become `yes` (its earlier output all written), within `tries` x 20 ms.
  defp running_yes?(_os_pid, 0), do: false

  defp running_yes?(os_pid, tries) do
    File.read("/proc/#{os_pid}/comm") == {:ok, "yes\n"} or
      (Process.sleep(20) && running_yes?(os_pid, tries - 1))
  end
end
