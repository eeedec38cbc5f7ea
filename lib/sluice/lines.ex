defmodule Sluice.Lines do
  @moduledoc false
  # Splits a byte stream into lines of any length. A partial line is kept as iodata, so a
  # very long line costs linear time, not quadratic.

  def new, do: []

  @doc "Returns the complete lines in `data` (without \"\\n\") and the new buffer."
  def split(buffer, data) do
    case :binary.split(data, "\n", [:global]) do
      [partial] ->
        {[], [buffer | partial]}

      [first | rest] ->
        {complete, [partial]} = Enum.split(rest, -1)
        {[IO.iodata_to_binary([buffer | first]) | complete], partial_buffer(partial)}
    end
  end

  @doc "The last partial line, if any, at EOF."
  def flush(buffer) do
    case IO.iodata_to_binary(buffer) do
      "" -> []
      line -> [line]
    end
  end

  defp partial_buffer(""), do: []
  defp partial_buffer(partial), do: [partial]
end
