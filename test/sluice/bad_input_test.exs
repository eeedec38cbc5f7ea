defmodule Sluice.BadInputTest do
  @moduledoc """
  Bad input gets an `ArgumentError` or `{:error, %Sluice.Error{}}` with a clear message,
  and afterwards the helper (same OS process) and a program running alongside are
  unaffected. Also: bad control frames and fd exhaustion (EMFILE) in the helper.
  """
  use Sluice.Case, async: false

  import ExUnit.CaptureLog

  alias Sluice.Process, as: P

  @moduletag :capture_log

  setup do
    {:ok, bystander} = P.start_link(["cat"])
    helper = helper_pid()

    check = fn ->
      assert helper_pid() == helper, "the helper was replaced"
      assert Process.alive?(bystander)
      assert :ok = P.write(bystander, "ping")
      assert {:ok, "ping"} = P.read(bystander, 65_536, 5_000)
    end

    %{check: check}
  end

  @big_arg String.duplicate("x", 200_000)

  # {description, function, expected message}
  defp bad_calls do
    [
      {"argv not a list", fn -> P.start("cat") end,
       ~r/argv must be a list of strings, one per argument.*\["cat"\]/},
      {"argv empty", fn -> Sluice.run([]) end, ~r/argv must be a non-empty list/},
      {"argv[0] empty", fn -> P.start([""]) end, ~r/argv\[0\] \(the program\) is not empty/},
      {"non-binary element", fn -> P.start(["echo", 1]) end, ~r/argv must be a list of strings/},
      {"atom element", fn -> Sluice.run([:echo]) end, ~r/argv must be a list of strings/},
      {"NUL in argv", fn -> Sluice.run(["echo", "a\0b"]) end, ~r/NUL/},
      {"NUL in env value", fn -> P.start(["true"], env: %{"A" => "x\0y"}) end, ~r/:env.*NUL/},
      {"NUL in env name", fn -> P.start(["true"], env: %{"A\0B" => "x"}) end, ~r/:env.*NUL/},
      {"= in env name", fn -> Sluice.run(["true"], env: [{"A=B", "x"}]) end,
       ~r/:env.*without "="/},
      {"empty env name", fn -> P.start(["true"], env: %{"" => "x"}) end, ~r/:env/},
      {"env not pairs", fn -> P.start(["true"], env: ["A=B"]) end, ~r/:env/},
      {"NUL in cwd", fn -> Sluice.run(["true"], cd: "/tmp\0x") end, ~r/:cd.*NUL/},
      {"empty cwd", fn -> P.start(["true"], cd: "") end, ~r/:cd/},
      {"negative timeout", fn -> Sluice.run(["true"], timeout: -1) end, ~r/:timeout/},
      {"float timeout", fn -> Sluice.run(["true"], timeout: 1.5) end, ~r/:timeout/},
      {"atom timeout", fn -> Sluice.run(["true"], timeout: :forever) end, ~r/:timeout/},
      {"negative kill_grace", fn -> P.start(["true"], kill_grace: -1) end, ~r/:kill_grace/},
      {"bad kill_signal", fn -> P.start(["true"], kill_signal: :sigbogus) end, ~r/:kill_signal/},
      {"unknown option (start)", fn -> P.start(["true"], bogus: 1) end,
       ~r/unknown option :bogus/},
      {"unknown option (run)", fn -> Sluice.run(["true"], tiemout: 1) end,
       ~r/unknown option :tiemout/},
      {"unknown option (stream)", fn -> Sluice.stream!(["true"], bogus: 1) end,
       ~r/unknown option :bogus/},
      {"options not a keyword list", fn -> Sluice.run(["true"], [:x]) end, ~r/keyword list/},
      # Past the timers' range: refused before anything starts (Sluice.Case checks that
      # no program is left).
      {"timeout past 2^32 - 1 ms", fn -> Sluice.run(["sleep", "5"], timeout: 2 ** 32) end,
       ~r/:timeout/},
      {"idle_timeout past 2^32 - 1 ms",
       fn -> Sluice.stream!(["sleep", "5"], idle_timeout: 2 ** 42) |> Enum.to_list() end,
       ~r/:idle_timeout/},
      {"exit_timeout past 2^32 - 1 ms",
       fn -> Sluice.stream(["sleep", "5"], exit_timeout: 2 ** 32) |> Enum.to_list() end,
       ~r/:exit_timeout/}
    ]
  end

  test "each bad argument raises ArgumentError with a clear message", %{check: check} do
    for {what, fun, message} <- bad_calls() do
      error = assert_raise ArgumentError, fun
      assert error.message =~ message, "#{what}: #{error.message}"
      check.()
    end
  end

  test "bad timeouts on a running program raise, and the program carries on", %{check: check} do
    {:ok, p} = P.start_link(["cat"])
    assert_raise ArgumentError, ~r/timeout/, fn -> P.read(p, 10, -1) end
    assert_raise ArgumentError, ~r/timeout/, fn -> P.await_exit(p, :soon) end
    assert_raise ArgumentError, ~r/timeout/, fn -> P.write(p, "x", -5) end
    assert_raise ArgumentError, ~r/grace_ms/, fn -> P.stop(p, -1) end
    assert_raise ArgumentError, ~r/max/, fn -> P.read(p, 0) end

    # Past the timers' range (2^32 - 1 ms): refused in the caller; the server carries on.
    for t <- [2 ** 32, 2 ** 42] do
      assert_raise ArgumentError, ~r/^timeout must be/, fn -> P.read(p, 10, t) end
      assert_raise ArgumentError, ~r/^timeout must be/, fn -> P.read_any(p, 10, t) end
      assert_raise ArgumentError, ~r/^timeout must be/, fn -> P.write(p, "x", t) end
      assert_raise ArgumentError, ~r/^timeout must be/, fn -> P.await_exit(p, t) end
      assert_raise ArgumentError, ~r/^timeout must be/, fn -> P.stats(p, t) end
      assert_raise ArgumentError, ~r/grace_ms/, fn -> P.stop(p, t) end
    end

    assert {:error, :timeout} = P.await_exit(p, 0)
    assert :ok = P.write(p, "still")
    assert {:ok, "still"} = P.read(p)
    check.()
  end

  # The longest timeouts accepted (2^32 - 1 ms) work where Sluice adds a margin of its own
  # to them (a start's, a stop's, a supervisor's shutdown): no :timeout_value.
  test "the longest timeouts accepted work, margins included", %{check: check} do
    max = 4_294_967_295

    {:ok, p} = P.start(["sleep", "10"], start_timeout: max, kill_grace: max)
    assert {:ok, {:signal, :sigterm}} = P.stop(p, max)

    assert {:error, %Sluice.Error{reason: :timeout}} =
             Sluice.run(["sleep", "10"], timeout: 100, kill_grace: max)

    assert ["y"] = Sluice.stream!(["yes"], kill_grace: max, lines: true) |> Enum.take(1)

    children = [
      {Sluice.Worker, argv: ["cat"], kill_grace: max},
      {Sluice.Daemon, argv: ["sleep", "10"], kill_grace: max, start_timeout: max, log: false}
    ]

    {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
    assert :ok = Supervisor.stop(sup)
    check.()
  end

  test "an argv too large for exec is {:error, %Sluice.Error{reason: :e2big}}", %{check: check} do
    # One argument over MAX_ARG_STRLEN (128 KiB), and 3 MB in total (over ARG_MAX).
    assert {:error, %Sluice.Error{reason: :e2big, stage: :exec} = e} =
             Sluice.run(["echo", @big_arg])

    assert e.message =~ "E2BIG"
    check.()

    many = List.duplicate(String.duplicate("y", 100_000), 30)

    assert {:error, %Sluice.Error{reason: :e2big}} = P.start(["echo" | many])
    check.()

    big_env = %{"SLUICE_BIG" => @big_arg}
    assert {:error, %Sluice.Error{reason: :e2big}} = Sluice.run(["true"], env: big_env)
    check.()
  end

  test "runtime spawn errors are {:error, %Sluice.Error{}} naming the program", %{check: check} do
    assert {:error, %Sluice.Error{reason: :enoent, stage: :exec} = e} =
             Sluice.run(["sluice-no-such-program"])

    assert e.message =~ "sluice-no-such-program"
    check.()

    assert {:error, %Sluice.Error{reason: :enoent, stage: :chdir}} =
             Sluice.run(["true"], cd: "/nonexistent-sluice-dir")

    check.()
  end

  test "an fd limit too low for the program's own stdio fails at stage :limits", %{check: check} do
    # The child cannot put the program's stdio on fds 0-2 (or 3 and 4) past the limit:
    # the limit is what failed, not the set-up.
    for {nofile, opts} <- [{0, []}, {1, []}, {4, [use_stdio: false, stdout: :null]}] do
      assert {:error, %Sluice.Error{stage: :limits, reason: :ebadf} = e} =
               Sluice.Process.start(["true"], [rlimits: [nofile: nofile]] ++ opts)

      assert e.message =~ "fd limit leaves no fd for its stdio"
      assert e.message =~ "EBADF"
      check.()
    end

    # A limit that leaves room for stdio runs the program.
    assert {:ok, %Sluice.Result{status: 0}} =
             Sluice.run(["sh", "-c", "exit 0"], rlimits: [nofile: 16])

    check.()
  end

  describe "a helper that never falls over" do
    test "bad and truncated control frames get an error reply and are skipped",
         %{check: check} do
      port = :sys.get_state(Sluice.Helper).helper.port
      valid = :erlang.term_to_binary({:spawn, 1_000_001, %{argv: ["true"], env: []}})

      frames = [
        "",
        "garbage",
        <<131>>,
        <<131, 104, 255>>,
        binary_part(valid, 0, div(byte_size(valid), 2)),
        binary_part(valid, 0, byte_size(valid) - 1),
        :erlang.term_to_binary(:hello),
        :erlang.term_to_binary({:spawn, 1_000_002, :not_a_map}),
        :erlang.term_to_binary({:spawn, 1_000_003, %{argv: []}}),
        :erlang.term_to_binary({:spawn, 1_000_004, %{argv: "sh"}}),
        :erlang.term_to_binary({:spawn, 1_000_005, %{argv: [1, 2]}}),
        :erlang.term_to_binary({:spawn, -1, %{argv: ["true"]}}),
        :erlang.term_to_binary({:kill, 1_000_006, 9}),
        :erlang.term_to_binary({:kill, 1_000_007, -3, 100}),
        :erlang.term_to_binary({:kill, 1_000_008, 9, -1}),
        :erlang.term_to_binary({:signal, 1_000_009, 1_000}),
        :erlang.term_to_binary({:signal, :x, 9}),
        :erlang.term_to_binary({:unknown_request, 1}),
        :erlang.term_to_binary(List.duplicate({:a, [1, 2]}, 10_000)),
        :erlang.term_to_binary({:kill, 2 ** 80, 9, 0}),
        :crypto.strong_rand_bytes(4096)
      ]

      log =
        capture_log(fn ->
          for frame <- frames do
            # The port is in stream mode: the 4-byte length prefix is ours to write.
            Port.command(port, <<byte_size(frame)::32, frame::binary>>)
            check.()
          end

          # The helper answers in order: once this spawn is answered, so was every frame.
          assert {:ok, %Sluice.Result{status: 0}} = Sluice.run(["true"])
        end)

      assert log =~ "sluice_helper rejected a request"

      # The same frames as spawn requests on the fd socket, each with a channel: each gets
      # an answer on its channel (or the channel closed), never a crash.
      {:ok, %{sock: sock}} = Sluice.Helper.conn()

      for frame <- frames, frame != "" do
        {:ok, channel} = Sluice.Native.spawn(sock, frame)
        assert {:answered, _} = await_answer(channel)
        Sluice.Native.close(channel)
        check.()
      end

      assert {:ok, %Sluice.Result{status: 0}} = Sluice.run(["true"])
    end

    test "fd exhaustion (EMFILE) in the helper is {:error, %Sluice.Error{reason: :emfile}}",
         %{check: check} do
      helper = helper_pid()

      {limits, 0} =
        System.cmd("prlimit", [
          "--pid",
          "#{helper}",
          "--nofile",
          "--output=SOFT,HARD",
          "--noheadings"
        ])

      [soft, hard] = String.split(limits)
      open = length(File.ls!("/proc/#{helper}/fd"))
      {_, 0} = System.cmd("prlimit", ["--pid", "#{helper}", "--nofile=#{open}:#{hard}"])

      try do
        for _ <- 1..3 do
          assert {:error, %Sluice.Error{reason: :emfile} = e} = Sluice.run(["true"])
          assert e.message =~ "EMFILE"
        end

        # Running programs are unaffected while the helper cannot open fds.
        check.()
      after
        {_, 0} = System.cmd("prlimit", ["--pid", "#{helper}", "--nofile=#{soft}:#{hard}"])
      end

      # ... and it carries on once fds are available again.
      assert {:ok, %Sluice.Result{stdout: "fine\n"}} = Sluice.run(["echo", "fine"])
      check.()
    end
  end

  defp await_answer(channel) do
    case Sluice.Native.recv(channel, false) do
      {:ok, payload, fds} ->
        Enum.each(fds, &Sluice.Native.close/1)
        {:answered, Sluice.Control.Protocol.decode(payload)}

      :eof ->
        {:answered, :closed}

      {:error, :eagain} ->
        receive do
          {:select, ^channel, _, :ready_input} -> await_answer(channel)
        after
          5_000 -> :no_answer
        end
    end
  end
end
