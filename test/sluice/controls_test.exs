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
end
