defmodule Sluice.Program.Output do
  @moduledoc false
  # The one reader of a program's output, for every holder and caller (Sluice.Caller.Pump under
  # `run` and streams, Sluice.Process's active mode and pending reads, Sluice.Worker,
  # Sluice.Holder.RemoteReader, Sluice.Program.Log). `next/3` is fair: the source that gave the
  # last chunk goes last (the turn order lives in the program value), so a chatty stdout
  # cannot starve stderr whoever reads. With a framing other than `:raw` (`frame/2`),
  # stdout is read through a Sluice.Program.Framing decoder: a read returns one whole frame, and
  # reads only what completes it. The bytes themselves come from Sluice.Program.Fds.

  alias Sluice.Program
  alias Sluice.Program.{Fds, Framing}

  @typedoc """
  What `next/3` found: a chunk (or frame; of a collected output, its byte count: see
  `Sluice.Program.Fds.collect/1`), nothing for now, the end, or an error.
  """
  @type next ::
          {:data, Program.source(), Framing.frame() | pos_integer, Program.t()}
          | {:blocked, Program.t()}
          | {:eof, Program.t()}
          | {:error, Program.source(), atom, Program.t()}

  @doc """
  The next chunk of at most `max` bytes (or the next frame) from whichever of `sources`
  has one, in turn order; the source that gave it goes last. `{:blocked, p}`: every open
  source would block (each is armed: a `:ready_input` message will come to the caller);
  `{:eof, p}`: none is open any more.
  """
  @spec next(Program.t(), [Program.source()], pos_integer) :: next
  def next(p, sources, max), do: next(p, p.turn, sources, max, false)

  # Walks the turn order once (this runs for every chunk: no list is built on the way);
  # `waiting` is whether a source that is still open would block.
  defp next(p, [], _sources, _max, waiting), do: if(waiting, do: {:blocked, p}, else: {:eof, p})

  defp next(p, [source | rest], sources, max, waiting) do
    if :lists.member(source, sources) and open?(p, source) do
      case read(p, source, max) do
        {:ok, data, p} -> {:data, source, data, last_turn(p, source)}
        {:error, reason, p} -> {:error, source, reason, p}
        {:wait, p} -> next(p, rest, sources, max, true)
        {:eof, p} -> next(p, rest, sources, max, waiting)
      end
    else
      next(p, rest, sources, max, waiting)
    end
  end

  # The source that gave data goes last.
  defp last_turn(%{turn: [source, other]} = p, source), do: %{p | turn: [other, source]}
  defp last_turn(p, _source), do: p

  @doc """
  Reads stdout in frames of the options' `:framing` (`:raw`, the default: as the bytes
  come), none larger than `:max_frame`.
  """
  @spec frame(Program.t(), map) :: Program.t()
  def frame(p, opts) do
    %{p | decoder: Framing.decoder(opts.framing, opts.max_frame)}
  end

  @doc "The framing stdout is read in (`:raw` unless `frame/2` said otherwise)."
  @spec framing(Program.t()) :: Framing.framing()
  def framing(%{decoder: %Framing{framing: framing}}), do: framing
  def framing(_p), do: :raw

  @doc "Whether decoding stdout failed (a frame over `max_frame`): the program must stop."
  @spec frame_error(Program.t()) :: atom | nil
  def frame_error(%{decoder: %Framing{phase: {:failed, reason}}}), do: reason
  def frame_error(_p), do: nil

  @doc "Whether reads of `source` return frames (stdout under a framing) rather than bytes."
  @spec framed?(Program.t(), Program.source()) :: boolean
  def framed?(%{decoder: %Framing{}}, :stdout), do: true
  def framed?(_p, _source), do: false

  @doc """
  One non-blocking read of at most `max` bytes from `source`. `{:wait, p}` means the pipe
  is empty and a `:ready_input` message will come to the caller.
  """
  @spec read(Program.t(), Program.source() | Program.log_source(), pos_integer) ::
          {:ok, Framing.frame() | pos_integer, Program.t()}
          | {:eof, Program.t()}
          | {:wait, Program.t()}
          | {:error, atom, Program.t()}
  def read(%{decoder: %Framing{} = d} = p, :stdout, _max) do
    case Framing.pop(d) do
      {:ok, frame, d} ->
        {:ok, frame, %{p | decoder: d}}

      {:error, reason} ->
        {:error, reason, p}

      :more ->
        case Fds.read(p, :stdout, Framing.read_size(d)) do
          {:ok, data, p} -> read(%{p | decoder: Framing.feed(d, data)}, :stdout, 1)
          {:eof, p} -> end_of_frames(p)
          other -> other
        end
    end
  end

  def read(p, source, max), do: Fds.read(p, source, max)

  # At EOF the decoder gives up what it holds (a last line without newline): stdout counts
  # as open (`open?/2`) until that frame was read.
  defp end_of_frames(%{decoder: d} = p) do
    case Framing.pop(Framing.finish(d)) do
      {:ok, frame, d} -> {:ok, frame, %{p | decoder: d}}
      _nothing -> {:eof, %{p | decoder: Framing.finish(d)}}
    end
  end

  @doc """
  Closes output `source` before its end (`Sluice.Program.Fds.close_output/2`), dropping
  what was read of it and not yet taken: the frames stdout's decoder holds.
  """
  @spec close_output(Program.t(), Program.source()) ::
          {:ok, Program.t()} | {:error, :terminal | :not_piped | :not_captured}
  def close_output(p, source) do
    with {:ok, p} <- Fds.close_output(p, source) do
      case p.decoder do
        %Framing{} = d when source == :stdout ->
          {:ok, %{p | decoder: Framing.decoder(d.framing, d.max_frame)}}

        _ ->
          {:ok, p}
      end
    end
  end

  @doc "Whether `source` is piped and not at EOF."
  @spec open?(Program.t(), Program.role()) :: boolean
  def open?(%{decoder: %Framing{} = d} = p, :stdout),
    do: match?(%{stdout: :open}, p.open) or Framing.ready?(d)

  def open?(%{open: open}, role), do: match?(%{^role => :open}, open)

  @doc "The outputs still open, stdout first."
  @spec open_outputs(Program.t()) :: [Program.source()]
  def open_outputs(p), do: for(s <- [:stdout, :stderr], open?(p, s), do: s)
end
