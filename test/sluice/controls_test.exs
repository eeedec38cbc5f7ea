defmodule Sluice.ControlsTest do
  @moduledoc """
  Controls of running programs (issue 22, items 8 and 9): `Sluice.Process.stop/1` with the
  program's own grace, terminal modes of a running program, closing one output, stopping
  a program of `run` from another process, and crash reports without internal state.
  """
  use Sluice.Case, async: false

  alias Sluice.Process, as: P

  describe "Sluice.Process.stop/1" do
    test "uses the kill_grace the program was started with" do
      {:ok, p} = P.start_link(["sh", "-c", "trap '' TERM; echo ready; sleep 60"], kill_grace: 200)

      assert {:ok, "ready\n"} = P.read(p)
      {micros, answer} = :timer.tc(fn -> P.stop(p) end)
      assert answer == {:ok, {:signal, :sigkill}}
      assert micros < 2_000_000, "stop/1 took #{div(micros, 1000)} ms"
    end
  end

  describe "Sluice.Process.set_terminal_modes/2" do
    # Reads until the output ends with `tail`; everything read.
    defp read_until(p, tail, acc \\ "") do
      {:ok, data} = P.read(p, 65_536, 5_000)
      acc = acc <> data
      if String.ends_with?(acc, tail), do: acc, else: read_until(p, tail, acc)
    end

    test "echo turned on and off again while the program runs" do
      {:ok, p} = P.start_link(["sh", "-c", ~S(while read l; do echo "got:$l"; done)], pty: true)
      :ok = P.write(p, "one\n")
      assert read_until(p, "got:one\r\n") == "got:one\r\n"

      assert :ok = P.set_terminal_modes(p, echo: true)
      :ok = P.write(p, "two\n")
      assert read_until(p, "got:two\r\n") == "two\r\ngot:two\r\n"

      assert :ok = P.set_terminal_modes(p, echo: 0, vintr: 3)
      :ok = P.write(p, "three\n")
      assert read_until(p, "got:three\r\n") == "got:three\r\n"

      # Raw: the terminal has no end of input any more, and says so.
      assert :ok = P.set_terminal_modes(p, icanon: false)
      assert {:error, %Sluice.Error{reason: :raw_terminal}} = P.close_stdin(p)
      assert :ok = P.set_terminal_modes(p, icanon: true)
      assert :ok = P.close_stdin(p)
      assert {:ok, 0} = P.await_exit(p, 5_000)
    end

    test "modes Linux or the terminal do not take, pipes, and bad modes" do
      {:ok, p} = P.start_link(["sleep", "60"], pty: true)

      assert {:error, %Sluice.Error{reason: :einval, message: message}} =
               P.set_terminal_modes(p, echo: true, tty_op_ospeed: 12_345)

      assert message =~ "tty_op_ospeed = 12345 is not supported"

      assert {:error, %Sluice.Error{reason: :einval, message: message}} =
               P.set_terminal_modes(p, veof: 256)

      assert message =~ "veof = 256"

      assert_raise ArgumentError, ~r/^modes must be .*unknown mode :bogus/, fn ->
        P.set_terminal_modes(p, bogus: 1)
      end

      assert_raise ArgumentError, ~r/^modes must be/, fn -> P.set_terminal_modes(p, :echo) end

      {:ok, q} = P.start_link(["sleep", "60"])
      assert {:error, :not_a_terminal} = P.set_terminal_modes(q, echo: true)
      Enum.each([p, q], &P.stop(&1, 1_000))
    end
  end

  describe "Sluice.Process.close_output/2" do
    defp read_to_eof(p, fun, acc \\ "") do
      case fun.(p) do
        {:ok, data} -> read_to_eof(p, fun, acc <> data)
        :eof -> acc
      end
    end

    test "the program gets EPIPE on its next write, and carries on if it ignores SIGPIPE" do
      script = ~S(trap "" PIPE; while echo x; do :; done; echo gone >&2)
      {:ok, p} = P.start_link(["sh", "-c", script], stderr: :consume)
      assert {:ok, "x\n" <> _} = P.read(p)
      assert :ok = P.close_output(p, :stdout)
      assert :eof = P.read(p)
      assert read_to_eof(p, &P.read_stderr(&1, 65_536, 5_000)) =~ "gone\n"
      assert {:ok, 0} = P.await_exit(p, 5_000)
    end

    test "a program that does not ignore SIGPIPE dies of it; stderr can be closed too" do
      {:ok, p} = P.start_link(["sh", "-c", "while echo x >&2; do :; done"], stderr: :consume)
      assert {:ok, "x\n" <> _} = P.read_stderr(p)
      assert :ok = P.close_output(p, :stderr)
      assert :ok = P.close_output(p, :stderr)
      assert :eof = P.read_stderr(p)
      assert {:ok, {:signal, :sigpipe}} = P.await_exit(p, 5_000)
    end

    test "a read waiting for the output gets :eof; frames already read are dropped" do
      {:ok, p} =
        P.start_link(["sh", "-c", "printf 'a\\nb\\nc\\n'; exec sleep 60"], framing: {:line, 100})

      assert {:ok, {:eol, "a"}} = P.read(p)
      # The other lines came with the first, most likely, and wait in the decoder.
      {:ok, {:eol, "b"}} = P.read(p)
      waiting = Task.async(fn -> P.read(p, 100, 5_000) end)
      Process.sleep(50)
      assert :ok = P.close_output(p, :stdout)
      assert Task.await(waiting) in [:eof, {:ok, {:eol, "c"}}]
      assert :eof = P.read(p)
      assert {:ok, {:signal, :sigterm}} = P.stop(p, 1_000)
    end

    test "in active mode no more of it is sent, and the exit still is" do
      {:ok, p} =
        P.start_link(["sh", "-c", "echo one; sleep 0.2; echo done >&2; echo two"],
          stderr: :consume
        )

      :ok = P.set_active(p, :once)
      assert_receive {:sluice_stdout, ^p, "one\n"}, 5_000
      assert :ok = P.close_output(p, :stdout)
      :ok = P.set_active(p, 10)
      assert_receive {:sluice_stderr, ^p, "done\n"}, 5_000
      assert_receive {:sluice_exit, ^p, {:signal, :sigpipe}}, 5_000
      refute_received {:sluice_stdout, ^p, _}
    end

    test "what cannot be closed says why" do
      {:ok, t} = P.start_link(["sleep", "60"], pty: true)
      assert {:error, :terminal} = P.close_output(t, :stdout)
      assert {:error, :not_captured} = P.close_output(t, :stderr)
      {:ok, n} = P.start_link(["sleep", "60"], stdout: :null)
      assert {:error, :not_piped} = P.close_output(n, :stdout)

      assert_raise ArgumentError, ~r/^output must be :stdout or :stderr/, fn ->
        P.close_output(n, :stdin)
      end

      Enum.each([t, n], &P.stop(&1, 1_000))
    end
  end

  describe "Sluice.stop/2" do
    # The list entry of the program `holder` holds, once it runs.
    defp entry_of(holder) do
      eventually(fn -> Enum.find(Sluice.list(), &(&1.pid == holder)) end)
    end

    test "stops a run of another process, which gets its result at once" do
      caller = Task.async(fn -> Sluice.run(["sleep", "60"]) end)
      entry = entry_of(caller.pid)
      assert %{argv: ["sleep", "60"]} = entry
      {micros, :ok} = :timer.tc(fn -> Sluice.stop(entry) end)
      assert micros < 100_000
      assert {:ok, %Sluice.Result{status: {:signal, :sigterm}}} = Task.await(caller, 2_000)
      assert {:error, :not_found} = Sluice.stop(entry)
    end

    test "stops a stream of another process" do
      caller = Task.async(fn -> Sluice.stream(["sleep", "60"]) |> Enum.to_list() end)
      assert :ok = Sluice.stop(entry_of(caller.pid), kill_signal: :sigint)
      assert Task.await(caller, 2_000) == [{:exit, {:signal, :sigint}}]
    end

    @tag :temp_dir
    test "uses the program's own kill_grace, or the one given; an OS pid names it too",
         %{temp_dir: dir} do
      # A program that ignores SIGTERM, and says so once it does.
      stubborn = fn name, opts ->
        file = Path.join(dir, name)
        script = ~s(trap '' TERM; : > "$0"; exec sleep 60)
        task = Task.async(fn -> Sluice.run(["sh", "-c", script, file], opts) end)
        assert eventually(fn -> File.exists?(file) end)
        {task, entry_of(task.pid)}
      end

      {own, entry} = stubborn.("own", kill_grace: 200)
      {micros, :ok} = :timer.tc(fn -> Sluice.stop(entry) end)
      assert {:ok, %{status: {:signal, :sigkill}}} = Task.await(own, 2_000)
      assert micros < 100_000

      {given, entry} = stubborn.("given", [])
      :ok = Sluice.stop(entry.os_pid, kill_grace: 100)
      assert {:ok, %{status: {:signal, :sigkill}}} = Task.await(given, 2_000)
    end

    test "a Sluice.Process hears of the exit as of any other" do
      {:ok, p} = P.start_link(["sleep", "60"])
      assert :ok = Sluice.stop(P.info(p))
      assert {:ok, {:signal, :sigterm}} = P.await_exit(p, 5_000)
    end

    test "nothing to stop, and bad arguments" do
      assert {:error, :not_found} = Sluice.stop(2_000_000_000)
      assert_raise ArgumentError, ~r/^program must be an entry/, fn -> Sluice.stop(:x) end
      assert_raise ArgumentError, ~r/^program must be an entry/, fn -> Sluice.stop(0) end
      assert_raise ArgumentError, ~r/unknown option :bogus/, fn -> Sluice.stop(1, bogus: 1) end
      assert_raise ArgumentError, ~r/:kill_grace/, fn -> Sluice.stop(1, kill_grace: -1) end
    end
  end

  describe "crash reports and :sys.get_status/1" do
    import ExUnit.CaptureLog

    # Neither the data a holder buffers nor its fds (references) may show.
    defp refute_internals(text) do
      refute text =~ "SECRET"
      refute text =~ "#Reference"
      refute text =~ "fds"
    end

    test "a Sluice.Process shows a summary, not its state" do
      argv = ["sh", "-c", "echo SECRET-OUT1; echo SECRET-OUT2; exec sleep 60"]
      {:ok, p} = P.start(argv, framing: {:line, 100})
      assert {:ok, {:eol, "SECRET-OUT1"}} = P.read(p)
      # A write larger than the pipe stays queued in the server, with its data.
      spawn(fn -> P.write(p, String.duplicate("SECRET-IN", 100_000)) end)

      assert eventually(fn -> match?(%{writes: 1}, :sys.get_state(p) |> summary()) end)

      {:status, ^p, _module, [_pdict, _sys, _parent, _debug, items]} = :sys.get_status(p)
      text = inspect(items, limit: :infinity, printable_limit: :infinity)
      refute_internals(text)
      assert text =~ "writes: 1"

      log =
        capture_log(fn ->
          assert {{%FunctionClauseError{}, _}, _} = catch_exit(GenServer.call(p, :bogus))
          Process.sleep(200)
        end)

      assert log =~ "terminating"
      refute_internals(log)
    end

    test "a Sluice.Worker shows a summary, and no request's data" do
      Process.flag(:trap_exit, true)
      {:ok, w} = Sluice.Worker.start_link(["sh", "-c", "exec sleep 60"])
      assert {:error, :timeout} = Sluice.Worker.call(w, "SECRET-REQ", 100)

      {:status, ^w, _module, [_pdict, _sys, _parent, _debug, items]} = :sys.get_status(w)
      text = inspect(items, limit: :infinity, printable_limit: :infinity)
      refute_internals(text)
      assert text =~ "phase: :awaiting"

      log =
        capture_log(fn ->
          # A bad timeout past the public API's check: the worker crashes with the request
          # as its last message.
          catch_exit(GenServer.call(w, {:call, "SECRET-2", :bad}))
          assert_receive {:EXIT, ^w, _reason}, 5_000
          Process.sleep(200)
        end)

      assert log =~ "terminating"
      assert log =~ "{:binary, 8}"
      refute_internals(log)
    end
  end

  test "a raising callback stops its holder with plain terms only" do
    state = %{secret: "SECRET"}

    assert {:stop, {%MatchError{term: {:error, :closed}}, [{_, _, arity, _} | _]}, ^state} =
             Sluice.Holder.guard(state, fn -> {:ok, _} = closed(state) end)

    assert is_integer(arity)

    assert {:stop, {%MatchError{term: :redacted}, _stack}, ^state} =
             Sluice.Holder.guard(state, fn -> {:ok, _} = failed(state) end)

    assert {:stop, {%FunctionClauseError{function: :closed, arity: 1}, _}, ^state} =
             Sluice.Holder.guard(state, fn -> closed(:not_a_map) end)
  end

  defp closed(%{}), do: {:error, :closed}
  defp failed(state), do: {:error, state}

  # The status summary of a Sluice.Process server's state.
  defp summary(state), do: Sluice.Holder.Process.Server.format_status(%{state: state}).state
end
