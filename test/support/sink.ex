defmodule Sluice.TestSink do
  @moduledoc """
  A `Collectable` whose function is a test's own (`Collectable.into/1` returns
  `{:ok, fun}`): to see what a collectable is told, `:halt` included. In test/support so
  that the consolidated protocol knows it.
  """
  defstruct [:fun]

  @type t :: %__MODULE__{fun: (term, Collectable.command() -> term)}

  defimpl Collectable do
    def into(%{fun: fun}), do: {:ok, fun}
  end
end
