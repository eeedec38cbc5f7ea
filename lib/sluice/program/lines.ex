defmodule Sluice.Program.Lines do
  @moduledoc false
  # Splits a byte stream into lines. A partial line is kept as iodata (linear time for a
  # long line), and never more than `max` bytes of it: a longer line is emitted in pieces
  # of `max` bytes, so memory stays bounded even for output without newlines (`\r`
  # progress bars, /dev/zero).

  defstruct parts: [], size: 0, max: 1_048_576

  @type t :: %__MODULE__{parts: iodata, size: non_neg_integer, max: pos_integer}

  @doc "An empty buffer for lines of at most `max` bytes."
  @spec new(pos_integer) :: t
  def new(max \\ 1_048_576), do: %__MODULE__{max: max}

  @doc "Returns the complete lines (and pieces) in `data`, without \"\\n\", and the buffer."
  @spec split(t, binary) :: {[binary], t}
  def split(buf, data) do
    {lines, buf} = split(buf, data, [])
    {Enum.reverse(lines), buf}
  end

  defp split(buf, data, acc) do
    case :binary.match(data, "\n") do
      {at, 1} ->
        line = binary_part(data, 0, at)
        rest = binary_part(data, at + 1, byte_size(data) - at - 1)
        {acc, buf} = append(buf, line, acc)
        split(%{buf | parts: [], size: 0}, rest, [IO.iodata_to_binary(buf.parts) | acc])

      :nomatch ->
        append(buf, data, acc)
    end
  end

  # Adds a piece without a newline, emitting full `max`-byte pieces.
  defp append(buf, data, acc) do
    room = buf.max - buf.size

    if byte_size(data) <= room do
      {acc, %{buf | parts: [buf.parts, data], size: buf.size + byte_size(data)}}
    else
      piece = IO.iodata_to_binary([buf.parts, binary_part(data, 0, room)])
      rest = binary_part(data, room, byte_size(data) - room)
      append(%{buf | parts: [], size: 0}, rest, [piece | acc])
    end
  end

  @doc "The last partial line, if any, at EOF."
  @spec flush(t) :: [binary]
  def flush(%{size: 0}), do: []
  def flush(buf), do: [IO.iodata_to_binary(buf.parts)]
end
