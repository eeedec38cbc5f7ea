defmodule Sluice.Case do
  @moduledoc """
  The case template of Sluice's tests: after every test the helper must have no children
  left (no program, no orphan) and there must be no zombies.
  """
  use ExUnit.CaseTemplate

  import ExUnit.Assertions

  using do
    quote do
      import Sluice.OsProbe
    end
  end

  setup do
    on_exit(fn -> assert_nothing_left() end)
    :ok
  end

  @doc "Asserts that the helper has no children and there are no zombies (waiting briefly)."
  @spec assert_nothing_left(non_neg_integer) :: :ok
  def assert_nothing_left(ms \\ 7_000) do
    helper = Sluice.OsProbe.helper_pid()
    left = Sluice.OsProbe.eventually(fn -> Sluice.OsProbe.children(helper) == [] end, ms)
    assert left, "processes left behind: #{inspect(Sluice.OsProbe.descendants(helper))}"
    zombies = Sluice.OsProbe.eventually(fn -> Sluice.OsProbe.zombies() == [] end, 1_000)
    assert zombies, "zombies left behind: #{inspect(Sluice.OsProbe.zombies())}"
    :ok
  end
end
