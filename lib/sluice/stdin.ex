defmodule Sluice.Stdin do
  @moduledoc """
  A `Collectable` that writes into a program's stdin, with back-pressure: each element is
  written before the next is taken. It is what a `fn collectable -> ... end` given as the
  `:input` of `Sluice.run/2` or `Sluice.stream!/2` receives.

      iex> Sluice.run!(["cat"], input: fn stdin -> Enum.into(["a", "b"], stdin) end).stdout
      "ab"
  """
  defstruct [:process]

  @type t :: %__MODULE__{process: Sluice.Process.t()}

  defimpl Collectable do
    def into(%{process: p} = stdin) do
      collector = fn
        :ok, {:cont, data} ->
          case Sluice.Process.write(p, data) do
            :ok -> :ok
            {:error, _} -> throw(:sluice_input_done)
          end

        :ok, :done ->
          stdin

        :ok, :halt ->
          :ok
      end

      {:ok, collector}
    end
  end
end
