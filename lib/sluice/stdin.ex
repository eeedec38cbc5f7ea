defmodule Sluice.Stdin do
  @moduledoc """
  A `Collectable` that writes into a program's stdin, with back-pressure: each element is
  written before the next is taken. It is what a `fn collectable -> ... end` given as the
  `:input` of `Sluice.run/2` or `Sluice.stream!/2` receives.

  The function runs in the calling process. While it waits for the program to take its
  input, the program's output is read and kept, so neither side can block the other; with
  a stream, output produced while the function runs is therefore buffered in memory. An
  Enumerable as `:input` has no such buffer.

      iex> Sluice.run!(["cat"], input: fn stdin -> Enum.into(["a", "b"], stdin) end).stdout
      "ab"
  """
  defstruct [:key]

  @type t :: %__MODULE__{key: term}

  defimpl Collectable do
    # The key names the module driving the program (Sluice.Pump, or for a program on
    # another node Sluice.Remote.Consumer).
    def into(%{key: {driver, _} = key} = stdin) do
      collector = fn
        :ok, {:cont, data} -> driver.push(key, Sluice.Input.chunk!(data))
        :ok, :done -> stdin
        :ok, :halt -> :ok
      end

      {:ok, collector}
    end
  end
end
