defmodule Sluice.DaemonTest do
  @moduledoc """
  `Sluice.Daemon`'s logging controls (which streams, levels, prefix, metadata, a
  transform) and its exit reason, with real programs and a real supervisor.
  """
  use Sluice.Case, async: false

  import ExUnit.CaptureLog

  alias Sluice.Daemon

  # The runs of a program that appends a line to `file` each time it starts.
  defp runs(file) do
    case File.read(file) do
      {:ok, text} -> String.split(text, "\n", trim: true)
      {:error, :enoent} -> []
    end
  end

  # Waits until the supervisor's only child has ended for good (a :transient child that
  # stopped normally stays in the list, without a pid), then a while longer: a restart
  # would have come by then.
  defp await_child_gone(sup) do
    assert eventually(fn -> match?([{_, :undefined, _, _}], Supervisor.which_children(sup)) end)
    Process.sleep(300)
  end

  describe "exit reason under a supervisor" do
    @describetag :temp_dir

    test "a :transient daemon whose program exits 0 is not restarted", %{temp_dir: dir} do
      file = Path.join(dir, "runs")
      spec = {Daemon, argv: ["sh", "-c", "echo run >> \"$0\"", file], log: false}

      {:ok, sup} =
        Supervisor.start_link([Supervisor.child_spec(spec, restart: :transient)],
          strategy: :one_for_one
        )

      await_child_gone(sup)
      assert runs(file) == ["run"]
      Supervisor.stop(sup)
    end

    test "a :transient daemon whose program exits 1 is restarted, until it exits 0",
         %{temp_dir: dir} do
      file = Path.join(dir, "runs")
      # The first run fails, the second succeeds.
      script = """
      if [ -e "$0.failed" ]; then echo second >> "$0"; exit 0; fi
      touch "$0.failed"; echo first >> "$0"; exit 1
      """

      spec = {Daemon, argv: ["sh", "-c", script, file], log: false}

      log =
        capture_log(fn ->
          {:ok, sup} =
            Supervisor.start_link([Supervisor.child_spec(spec, restart: :transient)],
              strategy: :one_for_one
            )

          await_child_gone(sup)
          Supervisor.stop(sup)
        end)

      assert runs(file) == ["first", "second"]
      # The failure is reported as the daemon's reason; the normal end is not.
      assert log =~ "{:program_exited, 1}"
      refute log =~ "{:program_exited, 0}"
    end
  end

  describe "exit reason" do
    setup do
      Process.flag(:trap_exit, true)
      :ok
    end

    test "exit 0 is :normal, any other status {:program_exited, status}" do
      {:ok, d} = Daemon.start_link(argv: ["true"], log: false)
      assert_receive {:EXIT, ^d, :normal}, 5_000

      capture_log(fn ->
        {:ok, d} = Daemon.start_link(argv: ["sh", "-c", "exit 2"], log: false)
        assert_receive {:EXIT, ^d, {:program_exited, 2}}, 5_000

        {:ok, d} = Daemon.start_link(argv: ["sh", "-c", "kill -KILL $$"], log: false)
        assert_receive {:EXIT, ^d, {:program_exited, {:signal, :sigkill}}}, 5_000
      end)
    end

    test ":exit_reason maps the status to the daemon's reason" do
      reason = fn
        3 -> {:shutdown, :done}
        status -> {:failed, status}
      end

      {:ok, d} = Daemon.start_link(argv: ["sh", "-c", "exit 3"], log: false, exit_reason: reason)
      assert_receive {:EXIT, ^d, {:shutdown, :done}}, 5_000

      capture_log(fn ->
        {:ok, d} = Daemon.start_link(argv: ["true"], log: false, exit_reason: reason)
        assert_receive {:EXIT, ^d, {:failed, 0}}, 5_000
      end)
    end
  end

  describe "logging" do
    # Runs `script` as a daemon until it exits, and returns what was logged, with the
    # `stream`, `job` and `os_pid` metadata shown.
    defp logged(script, opts) do
      Process.flag(:trap_exit, true)

      capture_log([format: "[$level] $metadata| $message\n", metadata: [:stream, :job]], fn ->
        {:ok, d} = Daemon.start_link([argv: ["sh", "-c", script]] ++ opts)
        assert_receive {:EXIT, ^d, :normal}, 5_000
      end)
    end

    @script "echo out1; echo err1 >&2; echo skip-me; echo out2; echo err2 >&2"

    test "each stream at its level, with the prefix and the user's metadata" do
      log =
        logged(@script,
          log: [stdout: :info, stderr: :warning],
          log_prefix: "job: ",
          log_metadata: [job: :nightly, stream: :overridden]
        )

      assert log =~ "[info] stream=stdout job=nightly | job: out1\n"
      assert log =~ "[info] stream=stdout job=nightly | job: out2\n"
      assert log =~ "[warning] stream=stderr job=nightly | job: err1\n"
      assert log =~ "[warning] stream=stderr job=nightly | job: err2\n"
    end

    test "a stream left out is not logged, false logs nothing" do
      log = logged(@script, log: [stderr: :error])
      assert log =~ "[error] stream=stderr | err1\n"
      refute log =~ "out1"

      assert logged(@script, log: false) == ""
      assert logged(@script, log: [stdout: false, stderr: false]) == ""
      assert logged(@script, log: []) == ""
    end

    test "log: :warn is :warning for both streams" do
      log = logged(@script, log: :warn)
      assert log =~ "[warning] stream=stdout | out1\n"
      assert log =~ "[warning] stream=stderr | err1\n"
    end

    test ":log_transform changes or drops each line before the prefix" do
      upcase_stderr = fn
        "skip" <> _, _stream -> nil
        "out2", :stdout -> false
        line, :stderr -> String.upcase(line)
        line, :stdout -> ["<", line, ">"]
      end

      log = logged(@script, log_transform: upcase_stderr, log_prefix: "p: ")
      assert log =~ "[info] stream=stdout | p: <out1>\n"
      assert log =~ "[info] stream=stderr | p: ERR1\n"
      refute log =~ "skip"
      refute log =~ "out2"

      log = logged(@script, log_transform: &String.reverse/1)
      assert log =~ "| 1tuo\n"
      assert log =~ "| em-piks\n"
    end

    test ":ready sees the lines as the program wrote them" do
      Process.flag(:trap_exit, true)

      log =
        capture_log(fn ->
          {:ok, d} =
            Daemon.start_link(
              argv: ["sh", "-c", "echo listening; sleep 0.2"],
              ready: ~r/^listening$/,
              ready_timeout: 5_000,
              log_transform: fn _ -> "hidden" end
            )

          assert_receive {:EXIT, ^d, :normal}, 5_000
        end)

      assert log =~ "hidden"
    end

    test "a transform that returns something else stops the daemon" do
      Process.flag(:trap_exit, true)

      capture_log(fn ->
        {:ok, d} =
          Daemon.start_link(argv: ["sh", "-c", "echo x; sleep 30"], log_transform: &(&1 && 42))

        assert_receive {:EXIT, ^d, {%ArgumentError{message: message}, _stack}}, 5_000
        assert message =~ ":log_transform"
      end)
    end
  end

  test "bad options raise ArgumentError naming the option" do
    for {opts, option} <- [
          {[log: [stdout: :loud]], ":log"},
          {[log: [stdin: :info]], ":log"},
          {[log: :loud], ":log"},
          {[log_prefix: 1], ":log_prefix"},
          {[log_metadata: [1]], ":log_metadata"},
          {[log_metadata: :job], ":log_metadata"},
          {[log_transform: fn _, _, _ -> nil end], ":log_transform"},
          {[exit_reason: :normal], ":exit_reason"}
        ] do
      assert_raise ArgumentError, ~r/#{option}\b/, fn ->
        Daemon.child_spec([argv: ["true"]] ++ opts)
      end
    end
  end
end
