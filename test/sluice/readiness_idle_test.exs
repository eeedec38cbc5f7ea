defmodule Sluice.ReadinessAndIdleTest do
  use Sluice.Case, async: false

  import ExUnit.CaptureLog

  alias Sluice.Daemon

  describe "Daemon ready:" do
    test "start_link returns once a line matches (a Regex or a function)" do
      script = "echo starting; sleep 0.3; echo 'listening on 7000' >&2; sleep 30"

      for ready <- [~r/listening on \d+/, &String.starts_with?(&1, "listening")] do
        t0 = System.monotonic_time(:millisecond)
        {:ok, d} = Daemon.start_link(argv: ["sh", "-c", script], ready: ready, log: false)
        assert System.monotonic_time(:millisecond) - t0 >= 250
        assert File.exists?("/proc/#{Daemon.os_pid(d)}")
        GenServer.stop(d)
      end
    end

    test "no matching line within ready_timeout: :not_ready and the program stopped" do
      log =
        capture_log(fn ->
          assert {:error, %Sluice.Error{reason: :not_ready}} =
                   Daemon.start_link(
                     argv: ["sh", "-c", "echo 'still warming up'; exec sleep 30"],
                     ready: ~r/listening/,
                     ready_timeout: 300
                   )
        end)

      # Lines before readiness are logged as usual.
      assert log =~ "still warming up"
    end

    test "ready_timeout holds while the program prints lines that do not match" do
      start = fn ->
        Daemon.start_link(argv: ["yes"], ready: ~r/never/, ready_timeout: 500, log: false)
      end

      task = Task.async(start)
      # Far past the 500 ms: a start that has not returned by then never will.
      answer = Task.yield(task, 15_000) || Task.shutdown(task, :brutal_kill)
      assert {:ok, {:error, %Sluice.Error{reason: :not_ready, message: message}}} = answer
      assert message =~ "within 500 ms"
    end

    test "a caller killed during the ready: wait takes the daemon and its program along" do
      argv = ["sleep", "39"]

      caller =
        spawn(fn ->
          Daemon.start_link(argv: argv, ready: ~r/never/, ready_timeout: 60_000, log: false)
        end)

      row = fn -> Enum.find(Sluice.list(), &(&1.argv == argv)) end
      assert Sluice.OsProbe.eventually(fn -> row.() != nil end, 10_000)
      # The program's owner is its Sluice.Process's owner: the daemon.
      %{owner: daemon, os_pid: os_pid} = row.()
      ref = Process.monitor(daemon)
      Process.exit(caller, :kill)
      assert_receive {:DOWN, ^ref, :process, ^daemon, _reason}, 10_000
      assert Sluice.OsProbe.eventually(fn -> not File.exists?("/proc/#{os_pid}") end, 10_000)
    end

    test "a program that exits before it is ready: :not_ready" do
      assert {:error, %Sluice.Error{reason: :not_ready, message: message}} =
               Daemon.start_link(argv: ["sh", "-c", "exit 2"], ready: ~r/x/, log: false)

      assert message =~ "status 2"
    end

    test "bad values name the option" do
      assert_raise ArgumentError, ~r/option :ready/, fn ->
        Daemon.start_link(argv: ["true"], ready: "listening")
      end

      assert_raise ArgumentError, ~r/option :ready_timeout/, fn ->
        Daemon.start_link(argv: ["true"], ready: ~r/x/, ready_timeout: -1)
      end
    end
  end

  describe "idle_timeout:" do
    @script "echo first; sleep 0.1; echo second; sleep 30; echo never"

    test "run stops a program that goes quiet and returns the partial result" do
      assert {:error, %Sluice.Error{reason: :idle_timeout, result: result}} =
               Sluice.run(["sh", "-c", @script], idle_timeout: 400)

      assert result.stdout == "first\nsecond\n"
      assert result.status == {:signal, :sigterm}
    end

    test "output keeps it alive: only a quiet stretch counts" do
      script = "for i in 1 2 3 4 5; do echo $i; sleep 0.1; done"
      assert {:ok, %{status: 0}} = Sluice.run(["sh", "-c", script], idle_timeout: 300)
    end

    test "streams raise Sluice.Error with :idle_timeout after the elements that came" do
      stream = Sluice.stream!(["sh", "-c", @script], idle_timeout: 400, lines: true)
      me = self()

      error =
        assert_raise Sluice.Error, fn ->
          Enum.each(stream, &send(me, {:line, &1}))
        end

      assert error.reason == :idle_timeout
      assert_received {:line, "first"}
      assert_received {:line, "second"}

      assert_raise Sluice.Error, ~r/idle_timeout/, fn ->
        Sluice.stream(["sleep", "30"], idle_timeout: 100) |> Enum.to_list()
      end
    end

    test "the consumer's own time between elements does not count" do
      # 400 ms between the lines: more than idle_timeout from the start, but the wait for
      # "b" begins after the consumer's 200 ms with "a".
      script = "echo a; sleep 0.4; echo b"
      stream = Sluice.stream!(["sh", "-c", script], idle_timeout: 300, lines: true)

      assert ["a", "b"] =
               Enum.map(stream, fn line ->
                 Process.sleep(200)
                 line
               end)
    end
  end
end
