defmodule Sluice.Program.Framing do
  @moduledoc false
  # Message framing on a program's output, as a pure value (no fds, no process): the
  # decoder of `framing: {:packet, n} | {:line, max}`, and the encoder of a frame to write.
  # Sluice.Program feeds it the bytes it reads and asks it how many to read next, so that no
  # more is read from a pipe than it takes to complete the packet asked for; a line's end
  # is not known in advance, so line mode reads one chunk, whose further lines wait in
  # `ready` (nothing more is read until they were popped).
  #
  # The decoder's phase, explicitly:
  #   * `{:header, bytes}`: a packet's length prefix, `bytes` of it so far;
  #   * `{:body, length, parts, have}`: a packet's body, `have` of `length` bytes so far;
  #   * `{:line, parts, size}`: a line without its newline yet, `size` bytes so far;
  #   * `{:failed, reason}`: a packet announced more than `max_frame` bytes; nothing more
  #     is decoded (the program is stopped by the holder).
  # Complete frames wait in `ready` until they are asked for.

  defstruct [:framing, :max_frame, :phase, ready: :queue.new()]

  @type framing :: :raw | {:packet, 1 | 2 | 4} | {:line, pos_integer}
  @type frame :: binary | {:eol | :noeol, binary}
  @type phase ::
          {:header, binary}
          | {:body, non_neg_integer, iodata, non_neg_integer}
          | {:line, iodata, non_neg_integer}
          | {:failed, :frame_too_large}
  @type t :: %__MODULE__{
          framing: {:packet, 1 | 2 | 4} | {:line, pos_integer},
          max_frame: pos_integer,
          phase: phase,
          ready: :queue.queue(frame)
        }

  # Bytes asked for per read in line mode: a newline's place is not known in advance.
  @line_read 65_536

  @doc "A decoder for `framing`; `nil` for `:raw` (bytes pass as they are read)."
  @spec decoder(framing, pos_integer) :: t | nil
  def decoder(:raw, _max_frame), do: nil

  def decoder({:packet, _} = framing, max_frame),
    do: %__MODULE__{framing: framing, max_frame: max_frame, phase: {:header, ""}}

  def decoder({:line, _} = framing, max_frame),
    do: %__MODULE__{framing: framing, max_frame: max_frame, phase: {:line, [], 0}}

  @doc """
  The next complete frame: `{:ok, frame, decoder}`, `:more` when bytes must be read first,
  or `{:error, reason}` once decoding failed.
  """
  @spec pop(t) :: {:ok, frame, t} | :more | {:error, :frame_too_large}
  def pop(d) do
    case :queue.out(d.ready) do
      {{:value, frame}, ready} -> {:ok, frame, %{d | ready: ready}}
      {:empty, _} -> if match?({:failed, _}, d.phase), do: {:error, elem(d.phase, 1)}, else: :more
    end
  end

  @doc "Whether complete frames wait to be popped."
  @spec ready?(t) :: boolean
  def ready?(d), do: not :queue.is_empty(d.ready)

  @doc """
  How many bytes to read next: exactly what completes the current packet's header or body
  (so nothing of the next packet is read before it is asked for), or in line mode one
  chunk of up to `max + 1` bytes (a line of `max` and its newline), which may hold more
  lines.
  """
  @spec read_size(t) :: pos_integer
  def read_size(%{phase: {:header, got}, framing: {:packet, n}}), do: n - byte_size(got)
  def read_size(%{phase: {:body, len, _, have}}), do: max(len - have, 1)
  def read_size(%{phase: {:line, _, _}, framing: {:line, max}}), do: min(max + 1, @line_read)

  @doc "Decodes `data` into the ready frames."
  @spec feed(t, binary) :: t
  def feed(d, ""), do: d
  def feed(%{phase: {:failed, _}} = d, _data), do: d

  def feed(%{phase: {:header, got}, framing: {:packet, n}} = d, data) do
    need = n - byte_size(got)

    if byte_size(data) < need do
      %{d | phase: {:header, got <> data}}
    else
      <<more::binary-size(need), rest::binary>> = data
      <<len::unsigned-big-integer-size(n * 8)>> = got <> more

      cond do
        len > d.max_frame -> %{d | phase: {:failed, :frame_too_large}}
        len == 0 -> feed(%{d | phase: {:header, ""}, ready: :queue.in("", d.ready)}, rest)
        true -> feed(%{d | phase: {:body, len, [], 0}}, rest)
      end
    end
  end

  def feed(%{phase: {:body, len, parts, have}} = d, data) do
    need = len - have

    if byte_size(data) < need do
      %{d | phase: {:body, len, [parts, data], have + byte_size(data)}}
    else
      <<more::binary-size(need), rest::binary>> = data
      frame = IO.iodata_to_binary([parts, more])
      feed(%{d | phase: {:header, ""}, ready: :queue.in(frame, d.ready)}, rest)
    end
  end

  def feed(%{phase: {:line, parts, size}, framing: {:line, max}} = d, data) do
    case :binary.match(data, "\n") do
      {at, 1} when size + at <= max ->
        line = IO.iodata_to_binary([parts, binary_part(data, 0, at)])
        rest = binary_part(data, at + 1, byte_size(data) - at - 1)
        feed(%{d | phase: {:line, [], 0}, ready: :queue.in({:eol, line}, d.ready)}, rest)

      _too_long_or_no_newline when size + byte_size(data) > max ->
        # Port's rule: a line longer than `max` comes in `max`-byte `:noeol` pieces.
        room = max - size
        piece = IO.iodata_to_binary([parts, binary_part(data, 0, room)])
        rest = binary_part(data, room, byte_size(data) - room)
        feed(%{d | phase: {:line, [], 0}, ready: :queue.in({:noeol, piece}, d.ready)}, rest)

      :nomatch ->
        %{d | phase: {:line, [parts, data], size + byte_size(data)}}
    end
  end

  @doc """
  At EOF: a last line without newline becomes a `{:noeol, part}` frame; an incomplete
  packet is dropped, as `Port` does.
  """
  @spec finish(t) :: t
  def finish(%{phase: {:line, parts, size}} = d) when size > 0 do
    part = IO.iodata_to_binary(parts)
    %{d | phase: {:line, [], 0}, ready: :queue.in({:noeol, part}, d.ready)}
  end

  def finish(%{phase: {:failed, _}} = d), do: d
  def finish(%{phase: {:line, _, _}} = d), do: d
  def finish(d), do: %{d | phase: {:header, ""}}

  @doc """
  One frame to write: with `{:packet, n}` its length as an n-byte big-endian prefix
  (`{:error, expected}` when it does not fit, saying how long a frame may be); other
  framings write the bytes as they are.
  """
  @spec encode(framing, binary) :: {:ok, iodata} | {:error, String.t()}
  def encode({:packet, n}, data) do
    size = byte_size(data)

    if size < Bitwise.bsl(1, n * 8) do
      {:ok, [<<size::unsigned-big-integer-size(n * 8)>>, data]}
    else
      {:error,
       "a frame of at most #{Bitwise.bsl(1, n * 8) - 1} bytes " <>
         "(a longer one is too long for {:packet, #{n}})"}
    end
  end

  def encode(_framing, data), do: {:ok, data}

  @doc "Checks a `framing:` option value; returns it or `:error`."
  @spec check(term) :: {:ok, framing} | :error
  def check(:raw), do: {:ok, :raw}
  def check({:packet, n} = f) when n in [1, 2, 4], do: {:ok, f}

  def check({:line, max} = f) when is_integer(max) and max > 0 and max <= 1_073_741_824,
    do: {:ok, f}

  def check(_other), do: :error
end
