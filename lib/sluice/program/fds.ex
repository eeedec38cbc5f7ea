defmodule Sluice.Program.Fds do
  @moduledoc false
  # The only code that reads, writes and closes a program's fds (its pipes, or a
  # pseudo-terminal's master through Sluice.Program.Terminal, the only code that writes to
  # a terminal), and the input writer: writes that take what the pipe takes now, the end
  # of input (a pipe's close, a terminal's VEOF), a terminal's window size. Every read
  # and write is non-blocking: a pipe that is empty or full answers at once, and the NIF
  # arms `enif_select`, so a readiness message comes to the holder. Reads of frames go
  # through Sluice.Program.Output, which calls `read/3` here for the bytes.

  alias Sluice.{Error, Native, Program}
  alias Sluice.Program.{Errors, Terminal}

  @doc """
  One non-blocking read of at most `max` bytes from `source`. `{:wait, p}` means the pipe
  is empty and a `:ready_input` message will come to the caller. An output that is
  collected (`collect/1`) returns the number of bytes read, kept in its collector.
  """
  @spec read(Program.t(), Program.source() | Program.log_source(), pos_integer) ::
          {:ok, binary | pos_integer, Program.t()}
          | {:eof, Program.t()}
          | {:wait, Program.t()}
          | {:error, atom, Program.t()}
  def read(p, source, max) do
    case p.open do
      %{^source => :open} ->
        case read_fd(p, source, max) do
          {:ok, _data, _p} = ok -> ok
          :eof -> {:eof, close_role(p, source, :eof)}
          {:error, :eagain} -> {:wait, p}
          # A terminal's end: no slave fd open anywhere and nothing left to read.
          {:error, :eio} when p.terminal != nil and source == :stdout -> {:eof, terminal_gone(p)}
          {:error, reason} -> {:error, reason, p}
        end

      # At its end, or closed by the holder (close_output/2).
      %{^source => state} when state in [:eof, :closed] ->
        {:eof, p}

      # stdout went to a file, /dev/null or the console.
      _ when source == :stdout ->
        {:error, :not_piped, p}

      _ ->
        {:error, :not_captured, p}
    end
  end

  # A collected output's collector is made by its first read that brings bytes.
  defp read_fd(%{collectors: collectors} = p, source, max)
       when is_map_key(collectors, source) do
    case Native.read_into(p.fds[source], collectors[source], max) do
      {:ok, n} ->
        {:ok, n, %{p | bytes_read: p.bytes_read + n}}

      {:ok, n, collector} ->
        collectors = %{collectors | source => collector}
        {:ok, n, %{p | bytes_read: p.bytes_read + n, collectors: collectors}}

      other ->
        other
    end
  end

  defp read_fd(p, source, max) do
    case Native.read(p.fds[source], max) do
      {:ok, data} -> {:ok, data, %{p | bytes_read: p.bytes_read + byte_size(data)}}
      other -> other
    end
  end

  @doc """
  From now on the piped stdout and stderr are read into collectors of the program's own
  (a stdout read in frames is not): each read returns its byte count, and `collected/2`
  hands over all the bytes as one binary. The bytes are copied once, from the pipe into
  that binary (`Sluice.run`, which keeps the whole output).
  """
  @spec collect(Program.t()) :: Program.t()
  def collect(p) do
    stdout? = Map.has_key?(p.fds, :stdout) and p.decoder == nil
    %{p | collectors: collectors(stdout?, Map.has_key?(p.fds, :stderr))}
  end

  # Literals, nothing on the heap: no collector exists before its output has bytes.
  defp collectors(true, true), do: %{stdout: nil, stderr: nil}
  defp collectors(true, false), do: %{stdout: nil}
  defp collectors(false, true), do: %{stderr: nil}
  defp collectors(false, false), do: %{}

  @doc "Every byte collected from `source` so far (`\"\"` when it is not collected)."
  @spec collected(Program.t(), Program.source()) :: binary
  def collected(%{collectors: collectors}, source) do
    case collectors do
      %{^source => collector} when collector != nil -> Native.collected(collector)
      _ -> ""
    end
  end

  @doc """
  Writes as much of `data` as stdin takes now. Returns the unwritten rest; when it is
  not empty, a `:ready_output` message will come to the caller. A terminal whose program
  side is gone answers `:epipe`, like a pipe; a canonical terminal hands a line longer
  than it holds over in pieces, or refuses it with `:line_too_long` when it has no VEOF
  to do that with (Sluice.Program.Terminal).
  """
  @spec write(Program.t(), binary) :: {:ok, binary, Program.t()} | {:error, atom}
  def write(%{open: %{stdin: :open}, terminal: %Terminal{}} = p, data) do
    case Terminal.write(p.terminal, p.fds.stdin, data) do
      {:ok, rest, terminal} ->
        written = byte_size(data) - byte_size(rest)
        {:ok, rest, %{p | terminal: terminal, bytes_written: p.bytes_written + written}}

      {:error, :eio} ->
        {:error, :epipe}

      {:error, reason} ->
        {:error, reason}
    end
  end

  def write(%{open: %{stdin: :open}} = p, data) do
    case Native.write_ready(p.fds.stdin, data) do
      {:ok, rest} ->
        {:ok, rest, %{p | bytes_written: p.bytes_written + byte_size(data) - byte_size(rest)}}

      {:error, reason} ->
        {:error, reason}
    end
  end

  def write(_p, _data), do: {:error, :closed}

  @doc """
  Ends the program's input, or says why it cannot. On pipes stdin closes, so the
  program sees EOF. On a terminal nothing is closed: the terminal's EOF character is
  written at the start of a line; if the terminal is full, stdin stays `:closing` until
  `finish_close_stdin/1` (called on `:ready_output`) has written it. A terminal that is
  raw now, or whose VEOF is disabled, has no end of input: `{:error, error}`, nothing is
  written and stdin stays open, for the caller to tell the program in-band. Stdin
  already closed: `{:ok, p}`.
  """
  @spec end_input(Program.t()) :: {:ok, Program.t()} | {:error, Error.t()}
  def end_input(%{open: %{stdin: :open}, terminal: nil} = p),
    do: {:ok, close_role(p, :stdin, :closed)}

  def end_input(%{open: %{stdin: :open}} = p) do
    case Terminal.begin_eof(p.terminal, p.fds.stdin) do
      {:ok, terminal} ->
        {:ok, finish_close_stdin(%{p | terminal: terminal, open: %{p.open | stdin: :closing}})}

      {:error, reason} ->
        {:error, Errors.no_eof(reason)}
    end
  end

  def end_input(p), do: {:ok, p}

  @doc """
  Closes stdin for good, as `end_input/1` does, for callers whose input has ended
  whatever the terminal says (the input of `run` and streams, a stop): on a terminal
  without an end of input nothing is written, and stdin only stops taking writes.
  Idempotent.
  """
  @spec close_stdin(Program.t()) :: Program.t()
  def close_stdin(p) do
    case end_input(p) do
      {:ok, p} -> p
      {:error, _no_eof} -> close_role(p, :stdin, :closed)
    end
  end

  @doc """
  Closes output `source` before its end, for a holder that reads no more of it: the
  program's next write to it fails with EPIPE (SIGPIPE, unless the program ignores it),
  and reads of it answer `:eof`. Idempotent. A terminal's stdout is its master, stdin
  too, and closing it would hang the terminal up: `{:error, :terminal}`. An output that
  is not piped: `:not_piped` (stdout) or `:not_captured` (stderr), as reads answer.
  """
  @spec close_output(Program.t(), Program.source()) ::
          {:ok, Program.t()} | {:error, :terminal | :not_piped | :not_captured}
  def close_output(%{terminal: %Terminal{}}, :stdout), do: {:error, :terminal}

  def close_output(p, source) do
    case p.open do
      %{^source => :open} -> {:ok, close_role(p, source, :closed)}
      %{^source => _ended} -> {:ok, p}
      _ when source == :stdout -> {:error, :not_piped}
      _ -> {:error, :not_captured}
    end
  end

  @doc "Writes the rest of a terminal's pending EOF character, if any."
  @spec finish_close_stdin(Program.t()) :: Program.t()
  def finish_close_stdin(%{open: %{stdin: :closing}} = p) do
    case Terminal.flush_eof(p.terminal, p.fds.stdin) do
      {:done, terminal} -> close_role(%{p | terminal: terminal}, :stdin, :closed)
      {:pending, terminal} -> %{p | terminal: terminal}
    end
  end

  def finish_close_stdin(p), do: p

  # A role is done, and its fd closes. Not a terminal's master: close/1 closes it, as
  # closing it hangs the terminal up, and the SIGHUP must not reach a program that is
  # still finishing (programs close their fds before they exit, and the master reads EIO
  # as soon as they have: `wc` was killed by SIGHUP after printing its count).
  defp close_role(%{terminal: %Terminal{}} = p, role, state) when role in [:stdin, :stdout],
    do: %{p | open: Map.put(p.open, role, state)}

  defp close_role(p, role, state) do
    Native.close(p.fds[role])
    %{p | open: Map.put(p.open, role, state)}
  end

  defp in_use?(state), do: state in [:open, :closing]

  @doc """
  Whether stdin still takes something: input (`:open`), or a terminal's pending end of
  input (`:closing`).
  """
  @spec stdin_in_use?(Program.t()) :: boolean
  def stdin_in_use?(p), do: in_use?(p.open[:stdin])

  # The terminal reached its end: nothing written to it can be read any more.
  defp terminal_gone(p), do: %{p | open: %{p.open | stdin: :closed, stdout: :eof}}

  @doc """
  Sets a terminal's window size (`TIOCSWINSZ`): the kernel sends SIGWINCH to its
  foreground process group. `{:error, :closed}` once the terminal reached its end.
  """
  @spec set_window_size(Program.t(), pos_integer, pos_integer) :: :ok | {:error, atom}
  def set_window_size(%{terminal: nil}, _rows, _cols), do: {:error, :not_a_terminal}
  def set_window_size(%{open: %{stdout: :eof}}, _rows, _cols), do: {:error, :closed}
  def set_window_size(p, rows, cols), do: Native.set_window_size(p.fds.stdout, rows, cols)

  @doc """
  Sets a terminal's modes (RFC 4254 `{opcode, value}` pairs, in order, over its current
  ones, at once) and reads them back: `:ok`, `{:error, {:unsupported | :rejected, opcode,
  value}}` for a mode Linux or the terminal does not take, `{:error, :not_a_terminal}` on
  pipes, `{:error, :closed}` once the terminal reached its end.
  """
  @spec set_terminal_modes(Program.t(), [{0..255, non_neg_integer}]) ::
          :ok | {:error, atom | {:unsupported | :rejected, 0..255, non_neg_integer}}
  def set_terminal_modes(%{terminal: nil}, _modes), do: {:error, :not_a_terminal}
  def set_terminal_modes(%{open: %{stdout: :eof}}, _modes), do: {:error, :closed}
  def set_terminal_modes(p, modes), do: Native.set_terminal_modes(p.fds.stdout, modes)

  @doc """
  Closes every fd and the channel, and drops the readiness messages already queued for
  them (see `Sluice.Program.close/1`).
  """
  @spec close(Program.t()) :: :ok
  def close(p) do
    # Roles already at EOF or closed were closed then: a close is an enif_select(STOP).
    Enum.each(p.fds, fn {role, fd} -> if in_use?(p.open[role]), do: Native.close(fd) end)
    # A terminal's master is closed only here (close_role/3).
    if p.terminal, do: Native.close(p.fds.stdout)
    Native.close(p.channel)
    flush(p)
  end

  defp flush(p), do: Enum.each([p.channel | Map.values(p.fds)], &flush_fd/1)

  @doc false
  # Drops the readiness messages already queued for `fd` (closed or about to be).
  @spec flush_fd(Native.fd()) :: :ok
  def flush_fd(fd) do
    receive do
      {:select, ^fd, _, _} -> flush_fd(fd)
    after
      0 -> :ok
    end
  end
end
