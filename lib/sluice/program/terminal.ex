defmodule Sluice.Program.Terminal do
  @moduledoc false
  # The BEAM's side of a program's pseudo-terminal, held by Sluice.Program: one master fd
  # is both the program's stdin and its stdout, and this module is the only code that
  # writes to it. What the terminal does with the bytes depends on its modes *now*,
  # read through the master before each write (Native.terminal_input/1), since a program
  # may switch them itself (line editors and REPLs go raw while they read a line):
  #
  #   * Raw (`icanon` off): bytes are the program's as they are; there is no end of input.
  #   * Canonical: n_tty edits a line in a 4,096-byte buffer and keeps at most 4,095 bytes
  #     of an unfinished line (room for its end): past that each byte replaces the last,
  #     so a longer line lost its middle while Sluice counted it written. A line about to
  #     pass 4,095 bytes is handed over first with the terminal's VEOF (^D after input
  #     hands that input to the program's read() without ending anything): the program
  #     reads the line in pieces, as from a pipe. Without a VEOF the write is refused
  #     (`:line_too_long`). End of input is VEOF at the start of a line, which makes the
  #     program's read() return 0; a second one is sent after an unfinished line.
  #
  # The line is tracked as written: `line` counts the bytes stored since the line was
  # last empty (an upper bound: an erase character is not subtracted, so a line with
  # erasures is handed over early, never late), `last` says whether the last byte was
  # stored (`:plain`: the line is not empty, a VEOF now hands it over rather than ending
  # input), ended or emptied the line (`:start`), or was another control character
  # (`:other`); `lnext` that it was VLNEXT, which makes the next byte a stored one.
  #
  # Stdin closes in two steps, as the VEOF write may find the terminal full: `:closing`
  # with the bytes still to write (enif_select armed for output), then `:closed`.

  alias Sluice.Native

  defstruct line: 0, last: :start, lnext: false, eof: ""

  @type t :: %__MODULE__{
          line: non_neg_integer,
          last: :start | :plain | :other,
          lnext: boolean,
          eof: binary
        }

  @typedoc "Why a terminal has no end of input: `icanon` off, or VEOF disabled."
  @type no_eof :: :raw_terminal | :no_eof

  # How far ahead one write looks: about what a terminal whose program reads takes at
  # once (n_tty's 4 KiB and some of the pty's buffer), so little is scanned twice.
  @window 8_192

  @doc "A terminal's state before anything was written."
  @spec new() :: t
  def new, do: %__MODULE__{}

  @doc """
  Writes as much of `data` as the terminal takes now, handing a canonical line over with
  VEOF before it passes 4,095 bytes. Returns the unwritten rest (not empty only
  when the terminal is full: enif_select is then armed for output), or
  `{:error, :line_too_long}` before writing a line the terminal would cut and cannot hand
  over (VEOF disabled), or the errno of a failed write.
  """
  @spec write(t, Native.fd(), binary) :: {:ok, binary, t} | {:error, atom}
  def write(t, _fd, ""), do: {:ok, "", t}

  def write(t, fd, data) do
    case Native.terminal_input(fd) do
      {:ok, :raw} -> write_raw(t, fd, data)
      {:ok, {:canonical, _, _, _, _, _} = mode} -> write_canonical(t, fd, data, input(mode))
      {:error, reason} -> {:error, reason}
    end
  end

  # A raw terminal holds no line: if the program goes canonical later, n_tty makes what
  # it holds one finished line.
  defp write_raw(t, fd, data) do
    case Native.write_ready(fd, data) do
      {:ok, rest} -> {:ok, rest, %{t | line: 0, last: :start, lnext: false}}
      error -> error
    end
  end

  defp write_canonical(t, _fd, "", _mode), do: {:ok, "", t}

  defp write_canonical(t, fd, data, mode) do
    case plan(t, data, mode) do
      {:ok, n, after_n} ->
        part = binary_part(data, 0, n)
        rest = binary_part(data, n, byte_size(data) - n)

        case Native.write_ready(fd, part) do
          {:ok, ""} ->
            write_canonical(after_n, fd, rest, mode)

          # The terminal is full: the rest is a sub-binary of data (no copy).
          {:ok, left} ->
            written = n - byte_size(left)
            {:fits, t} = scan(data, 0, written, t, nil, mode)
            {:ok, binary_part(data, written, byte_size(data) - written), t}

          error ->
            error
        end

      :hand_over ->
        case Native.write(fd, <<mode.veof>>) do
          {:ok, 1} -> write_canonical(empty(t), fd, data, mode)
          {:error, :eagain} -> {:ok, data, t}
          {:error, reason} -> {:error, reason}
        end

      {:error, reason} ->
        {:error, reason}
    end
  end

  defp input({:canonical, veof, max_line, ends, controls, lnexts}) do
    # Each byte is in one class at most (terminal.rs classifies each once).
    classes =
      for {bytes, class} <- [{ends, :end}, {controls, :control}, {lnexts, :lnext}],
          <<b <- bytes>>,
          into: %{},
          do: {b, class}

    specials = for {b, _} <- classes, do: <<b>>

    %{
      veof: veof,
      max_line: max_line,
      classes: classes,
      pattern: if(specials == [], do: nil, else: :binary.compile_pattern(specials))
    }
  end

  # What to write next: `{:ok, n, state after n bytes}`, `:hand_over` (VEOF now, then
  # the same data), or an error. With VEOF disabled the whole data is looked at, so a
  # line too long is refused before any of the data is written.
  defp plan(t, data, mode) do
    stop = if mode.veof == 0, do: byte_size(data), else: min(byte_size(data), @window)
    cut = if t.last == :plain, do: 0

    case scan(data, 0, stop, t, cut, mode) do
      {:fits, after_stop} -> {:ok, stop, after_stop}
      {:overflow, _cut} when mode.veof == 0 -> {:error, :line_too_long}
      {:overflow, nil} -> {:error, :line_too_long}
      {:overflow, 0} -> :hand_over
      {:overflow, n} -> {:ok, n, elem(scan(data, 0, n, t, nil, mode), 1)}
    end
  end

  # Walks data[pos, stop) from state `t`: `{:fits, state at stop}`, or `{:overflow, cut}`
  # when a stored byte would make the line longer than it may be, where `cut` is the
  # latest place in this line right after a stored byte (0: before data, when the last
  # byte written was stored), the place to hand the line over; nil if there is none.
  defp scan(data, pos, stop, t, cut, mode) do
    found =
      if mode.pattern && stop > pos,
        do: :binary.matches(data, mode.pattern, scope: {pos, stop - pos}),
        else: []

    walk(found, data, pos, stop, t, cut, mode)
  end

  # The byte after VLNEXT is stored as it is, special or not.
  defp walk(found, data, pos, stop, %{lnext: true} = t, cut, mode) when pos < stop do
    if t.line >= mode.max_line do
      {:overflow, cut}
    else
      found = with [{^pos, 1} | rest] <- found, do: rest
      t = %{t | line: t.line + 1, last: :plain, lnext: false}
      walk(found, data, pos + 1, stop, t, pos + 1, mode)
    end
  end

  # data[pos, at) are stored bytes, then the special byte at `at`.
  defp walk(found, data, pos, stop, t, cut, mode) do
    at = with [{at, 1} | _] <- found, do: at, else: (_ -> stop)
    run = at - pos
    room = mode.max_line - t.line

    cond do
      run > room and room > 0 ->
        {:overflow, pos + room}

      run > room ->
        {:overflow, cut}

      at == stop ->
        {:fits, stored(t, run)}

      true ->
        special(tl(found), data, at, stop, stored(t, run), if(run > 0, do: at, else: cut), mode)
    end
  end

  defp stored(t, 0), do: t
  defp stored(t, run), do: %{t | line: t.line + run, last: :plain}

  defp special(found, data, at, stop, t, cut, mode) do
    case Map.fetch!(mode.classes, :binary.at(data, at)) do
      :lnext -> walk(found, data, at + 1, stop, %{t | lnext: true, last: :other}, cut, mode)
      :end -> walk(found, data, at + 1, stop, empty(t), nil, mode)
      :control -> walk(found, data, at + 1, stop, %{t | last: :other}, cut, mode)
    end
  end

  defp empty(t), do: %{t | line: 0, last: :start, lnext: false}

  @doc """
  Starts the end of input: the VEOF bytes to write, read from the terminal's current
  modes: one at the start of a line, two after a partial line (the first hands it over),
  one more after a VLNEXT (which makes the next byte data). A raw terminal, or one whose
  VEOF is disabled, has no end of input: `{:error, reason}`, and nothing is to be written.
  A terminal that is gone has no one left to tell: nothing to write either.
  """
  @spec begin_eof(t, Native.fd()) :: {:ok, t} | {:error, no_eof}
  def begin_eof(t, fd) do
    case Native.terminal_input(fd) do
      {:ok, :raw} -> {:error, :raw_terminal}
      {:ok, {:canonical, 0, _, _, _, _}} -> {:error, :no_eof}
      {:ok, {:canonical, veof, _, _, _, _}} -> {:ok, %{t | eof: eof(t, veof)}}
      {:error, _} -> {:ok, %{t | eof: ""}}
    end
  end

  defp eof(%{lnext: true} = t, veof), do: <<veof>> <> eof(%{t | lnext: false, last: :plain}, veof)
  defp eof(%{last: :start}, veof), do: <<veof>>
  defp eof(_t, veof), do: <<veof, veof>>

  @doc """
  Writes what is left of the VEOF: `{:done, t}` once written (or when the terminal is
  gone), `{:pending, t}` when the rest waits for a `:ready_output` message.
  """
  @spec flush_eof(t, Native.fd()) :: {:done | :pending, t}
  def flush_eof(%{eof: ""} = t, _fd), do: {:done, empty(t)}

  def flush_eof(t, fd) do
    case Native.write(fd, t.eof) do
      {:ok, n} -> flush_eof(%{t | eof: binary_part(t.eof, n, byte_size(t.eof) - n)}, fd)
      {:error, :eagain} -> {:pending, t}
      {:error, _gone} -> {:done, %{t | eof: ""}}
    end
  end
end
