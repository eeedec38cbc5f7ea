defmodule Sluice.Caller.Input.Element do
  @moduledoc false
  # An element of an `:input` as the binary written to stdin, wherever the input is
  # enumerated: in the caller (Sluice.Caller.Input), in an input process of its own
  # (Sluice.Caller.Input.Feeder), or given to a collectable function's Sluice.Stdin. Its own
  # module, so that each of those depends on it and none on another.

  @doc "An input element as a binary; `ArgumentError` if it is not iodata."
  @spec chunk!(term) :: binary
  def chunk!(data) when is_binary(data), do: data

  def chunk!(data) do
    IO.iodata_to_binary(data)
  rescue
    ArgumentError ->
      Sluice.OptionError.raise!(
        kind: :invalid,
        option: :input,
        expected: "elements that are iodata",
        value: data
      )
  end
end
