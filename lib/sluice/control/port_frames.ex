defmodule Sluice.Control.PortFrames do
  @moduledoc false
  # The frames on the helper program's port, cut here rather than by the port driver.
  # With `{:packet, 4}` the driver allocates whatever a length prefix announces before a
  # byte of the body arrives: 5 bytes written into the helper program's stdout made the VM
  # reserve (and keep) 2 GiB. The port is opened in stream mode and this pure value cuts
  # the frames: a length over `@max_frame` is reported and its bytes are skipped as they
  # come, never buffered, so the memory held is bounded by `@max_frame` plus one chunk.
  #
  # The helper program writes only `hello` and short error replies (docs/protocol.md).

  # Far above anything the helper program writes (a hello names a socket path).
  @max_frame 65_536

  defstruct buffer: "", skip: 0

  @type t :: %__MODULE__{buffer: binary, skip: non_neg_integer}
  @type event :: {:frame, binary} | {:oversize, non_neg_integer}

  @doc "An empty decoder."
  @spec new() :: t
  def new, do: %__MODULE__{}

  @doc "The largest frame accepted."
  @spec max_frame() :: pos_integer
  def max_frame, do: @max_frame

  @doc "Feeds bytes from the port; returns the frames (and oversize lengths) completed, in order."
  @spec feed(t, binary) :: {[event], t}
  def feed(%__MODULE__{skip: skip} = d, data) when skip > 0 do
    case data do
      <<_::binary-size(skip), rest::binary>> -> feed(%{d | skip: 0}, rest)
      _short -> {[], %{d | skip: skip - byte_size(data)}}
    end
  end

  def feed(%__MODULE__{buffer: buffer}, data), do: cut(buffer <> data, [])

  defp cut(<<length::32, rest::binary>>, events) when length > @max_frame do
    {more, d} = feed(%__MODULE__{skip: length}, rest)
    {Enum.reverse(events, [{:oversize, length} | more]), d}
  end

  defp cut(<<length::32, frame::binary-size(length), rest::binary>>, events),
    do: cut(rest, [{:frame, frame} | events])

  defp cut(partial, events), do: {Enum.reverse(events), %__MODULE__{buffer: partial}}
end
