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

  # The status summary of a Sluice.Process server's state.
  defp summary(state), do: Sluice.Holder.Process.Server.format_status(%{state: state}).state
end
