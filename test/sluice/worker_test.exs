defmodule Sluice.WorkerTest do
  use Sluice.Case, async: false

  import ExUnit.CaptureLog

  alias Sluice.Worker, as: W

  doctest Sluice.Worker

  @python Path.expand("../../examples/python_worker.py", __DIR__)
  @frames Path.expand("../fixtures/frames.py", __DIR__)
  @lines Path.expand("../fixtures/lines.py", __DIR__)

  defp python(opts \\ []),
    do: W.start_link(["python3", @python], [use_stdio: false, framing: {:packet, 4}] ++ opts)

  test "concurrent callers are served one at a time, in order, each with its own response" do
    {:ok, w} = python()
    {:ok, "None"} = W.call(w, "import time; log = []")
    # The program is busy while the callers queue up, 10 ms apart.
    busy = Task.async(fn -> W.call(w, "time.sleep(0.3)") end)
    Process.sleep(20)

    tasks =
      for i <- 1..10 do
        Process.sleep(10)
        Task.async(fn -> W.call(w, "log.append(#{i}) or #{i}") end)
      end

    assert {:ok, "None"} = Task.await(busy)
    assert Enum.map(tasks, &Task.await/1) == for(i <- 1..10, do: {:ok, "#{i}"})
    # The program saw every request once, in the order they were made.
    assert {:ok, "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"} = W.call(w, "log")
  end

  test "a timed-out call leaves the worker usable and its late response goes nowhere" do
    {:ok, w} = python()
    {:ok, "None"} = W.call(w, "import time")
    assert {:error, :timeout} = W.call(w, "time.sleep(0.3) or 'late'", 50)
    # Queued behind the slow request: answered with its own response, not 'late'.
    assert {:ok, "'mine'"} = W.call(w, "'mine'")
    refute_received _
    # A call whose timeout passes while it is queued is never sent.
    {:ok, "None"} = W.call(w, "count = 0")
    slow = Task.async(fn -> W.call(w, "time.sleep(0.3)") end)
    Process.sleep(50)
    assert {:error, :timeout} = W.call(w, "count += 1", 50)
    assert {:ok, "None"} = Task.await(slow)
    assert {:ok, "0"} = W.call(w, "count")
  end

  test "the program's exit answers the running and the queued calls, and stops the worker" do
    Process.flag(:trap_exit, true)
    {:ok, w} = python(stderr: :null)
    {:ok, "None"} = W.call(w, "import time, sys")

    capture_log(fn ->
      running = Task.async(fn -> W.call(w, "time.sleep(0.2); sys.exit(3)") end)
      Process.sleep(50)
      queued = Task.async(fn -> W.call(w, "'never'") end)
      assert {:error, {:exit, 3}} = Task.await(running)
      assert {:error, {:exit, 3}} = Task.await(queued)
      assert_receive {:EXIT, ^w, {:program_exited, 3}}, 5_000
    end)

    assert {:error, :closed} = W.call(w, "1")
  end

  test "a program that exits during start-up stops its worker, however early (20 of 20)" do
    Process.flag(:trap_exit, true)

    capture_log(fn ->
      for argv <- [["cat", "/nonexistent"], ["false"]], _ <- 1..20 do
        {:ok, w} = W.start_link(argv, stderr: :null)
        # The exit is seen whether it came before, during or after the worker took the
        # program on: the worker stops (its supervisor would restart it), never waits.
        assert_receive {:EXIT, ^w, {:program_exited, 1}}, 5_000
        assert {:error, :closed} = W.call(w, "x", 100)
      end
    end)
  end

  # One answer shape for calls on an ended holder: os_pid/1 of an ended worker or daemon
  # answers as Sluice.Process.os_pid/1 does, and does not exit the caller.
  test "os_pid/1 of an ended worker, daemon or process is {:error, :closed}" do
    {:ok, w} = W.start_link(["cat"])
    assert is_integer(W.os_pid(w))
    {:ok, d} = Sluice.Daemon.start_link(argv: ["sleep", "10"], log: false)
    assert is_integer(Sluice.Daemon.os_pid(d))
    {:ok, p} = Sluice.Process.start_link(["sleep", "10"])

    :ok = GenServer.stop(w)
    :ok = GenServer.stop(d)
    {:ok, _} = Sluice.Process.stop(p)

    assert {:error, :closed} = W.os_pid(w)
    assert {:error, :closed} = Sluice.Daemon.os_pid(d)
    assert {:error, :closed} = Sluice.Process.os_pid(p)
    assert {:error, :closed} = W.call(w, "x")
    assert {:error, :closed} = Sluice.Process.os_pid(nil)
    assert {:error, :closed} = W.os_pid(:sluice_no_such_worker)

    # A server argument that is no process is a mistake, named.
    for bad <- [42, "w", {:a, :b, :c}] do
      assert_raise ArgumentError, ~r/^worker must be a pid/, fn -> W.os_pid(bad) end
      assert_raise ArgumentError, ~r/^worker must be a pid/, fn -> W.call(bad, "x") end
      assert_raise ArgumentError, ~r/^daemon must be a pid/, fn -> Sluice.Daemon.os_pid(bad) end
      assert_raise ArgumentError, ~r/^process must be a pid/, fn -> Sluice.Process.os_pid(bad) end
      assert_raise ArgumentError, ~r/^process must be a pid/, fn -> Sluice.Process.read(bad) end
    end
  end

  test "the Python worker under a supervisor: state, console prints, an exception, a restart" do
    children = [
      {W,
       argv: ["python3", @python],
       name: PythonTest,
       use_stdio: false,
       stdout: :null,
       stderr: :null}
    ]

    {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
    assert {:ok, "None"} = W.call(PythonTest, "x = 20")
    # A print goes to the program's stdout (here /dev/null; the console in the example
    # run below), never into the responses.
    assert {:ok, "None"} = W.call(PythonTest, "print('debug', x)")
    assert {:ok, "42"} = W.call(PythonTest, "x * 2 + 2")
    first = Process.whereis(PythonTest)

    capture_log(fn ->
      assert {:error, {:exit, 1}} = W.call(PythonTest, "1 / 0")

      assert Sluice.OsProbe.eventually(
               fn -> Process.whereis(PythonTest) not in [nil, first] end,
               5_000
             )
    end)

    assert {:ok, "False"} = W.call(PythonTest, "'x' in globals()")
    Supervisor.stop(sup)
  end

  test "a response over max_frame is :frame_too_large and the worker stops" do
    Process.flag(:trap_exit, true)
    {:ok, w} = W.start_link(["python3", @frames, "oversized"], max_frame: 100)

    capture_log(fn ->
      assert {:error, :frame_too_large} = W.call(w, "anything")
      assert_receive {:EXIT, ^w, {:program_exited, {:signal, :sigterm}}}, 5_000
    end)
  end

  describe "line framing: one request line, one response line" do
    defp lines(opts \\ []) do
      {args, opts} = Keyword.pop(opts, :args, [])
      W.start_link(["python3", @lines | args], [framing: {:line, 16}] ++ opts)
    end

    test "a line of max bytes is a response; a longer one is :frame_too_large and stops it" do
      Process.flag(:trap_exit, true)
      {:ok, w} = lines()
      assert {:ok, {:eol, "echo hi"}} = W.call(w, "hi\n")
      assert {:ok, {:eol, "xxxxxxxxxxxxxxxx"}} = W.call(w, "long 16\n")

      capture_log(fn ->
        # The next call queues while the long response is being written: it must not
        # receive the rest of that line.
        long = Task.async(fn -> W.call(w, "long 40 0.2\n") end)
        Process.sleep(50)
        queued = Task.async(fn -> W.call(w, "hi\n") end)
        assert {:error, :frame_too_large} = Task.await(long)
        assert {:error, {:exit, {:signal, :sigterm}}} = Task.await(queued)
        assert_receive {:EXIT, ^w, {:program_exited, {:signal, :sigterm}}}, 5_000
      end)
    end

    test "while the broken program is being stopped, a call never sees the leftover" do
      Process.flag(:trap_exit, true)
      # The program ignores SIGTERM: it runs on for kill_grace after the failed call.
      {:ok, w} = lines(args: ["--ignore-term"], kill_grace: 500)
      assert {:ok, {:eol, "echo ready"}} = W.call(w, "ready\n")

      capture_log(fn ->
        assert {:error, :frame_too_large} = W.call(w, "long 40\n")
        assert {:error, {:exit, {:signal, :sigkill}}} = W.call(w, "hi\n")
        assert_receive {:EXIT, ^w, {:program_exited, {:signal, :sigkill}}}, 5_000
      end)
    end

    test "a last line without newline is no response: the exit answers the call" do
      Process.flag(:trap_exit, true)
      {:ok, w} = lines()

      capture_log(fn ->
        assert {:error, {:exit, 3}} = W.call(w, "partial\n")
        assert_receive {:EXIT, ^w, {:program_exited, 3}}, 5_000
      end)
    end
  end

  test "line framing, errors and option mistakes" do
    {:ok, w} = W.start_link(["cat"], framing: {:line, 100})
    assert {:ok, {:eol, "hi"}} = W.call(w, "hi\n")

    assert_raise ArgumentError, ~r/option :framing/, fn ->
      W.start_link(["cat"], framing: :raw)
    end

    assert_raise ArgumentError, ~r/option :stderr/, fn ->
      W.start_link(["cat"], stderr: :consume)
    end

    assert_raise ArgumentError, ~r/unknown option :lines/, fn ->
      W.start_link(["cat"], lines: true)
    end

    {:ok, small} = W.start_link(["cat"], framing: {:packet, 1})
    assert_raise ArgumentError, ~r/too long/, fn -> W.call(small, :binary.copy("x", 300)) end
    assert {:ok, "fine"} = W.call(small, "fine")

    # A timeout past the timers' range (2^32 - 1 ms) is refused in the caller: the
    # worker (and its linked owner, this test) carry on.
    for t <- [2 ** 32, 2 ** 42] do
      assert_raise ArgumentError, ~r/^timeout must be/, fn -> W.call(small, "x", t) end
    end

    assert {:ok, "still"} = W.call(small, "still")
    assert {:error, %Sluice.Error{reason: :enoent}} = W.start_link(["no-such-program-here"])
  end

  @tag :external_vm
  test "examples/python_worker.exs runs: prints on the console, results on stdout" do
    ebin = Path.join(Mix.Project.build_path(), "lib/sluice/ebin")
    example = Path.expand("../../examples/python_worker.exs", __DIR__)
    {:ok, result} = Sluice.run(["elixir", "-pa", ebin, example], timeout: 60_000)
    assert result.status == 0, result.stderr
    assert result.stdout =~ "state kept between requests"
    assert result.stdout =~ "{:error, {:exit, 1}}"
    assert result.stdout =~ "fresh namespace"
    # The Python print reached the console (the VM's stderr), not the protocol.
    assert result.stderr =~ "debug: x is 20"
    refute result.stdout =~ "debug: x is 20"
  end
end
