defmodule Sluice.Program do
  @moduledoc false
  # The process-less core (docs/architecture.md): one running program as a value held by
  # the process that started it, and the only code that reads, writes or closes its fds.
  # Like Mint's connection, it has no process of its own: the holder receives the
  # `{:select, fd, _, _}` readiness messages that the NIF sends and hands them to
  # `handle_ready/2`. The holder owns every fd (the NIF monitors it): if it dies, the fds
  # and the program channel close, and the helper program stops the program.
  #
  # States, explicitly:
  #   * each piped output (`:stdout`, `:stderr`) is `:open` or `:eof`;
  #   * stdin is `:open` or `:closed`, or `:closing` on a terminal while its end-of-input
  #     character waits to be written (Sluice.Program.Terminal, the only code that writes
  #     to a terminal);
  #   * the program is `:running`, `{:exited, status}`, or `:lost` (the helper program
  #     died first: no status will ever come);
  #   * the helper program is `:up` while it holds the program's channel, `:down` once the
  #     channel reached EOF (it died, or stopped with the application): a status may have
  #     come before that (a shutdown's SIGTERM), and the holders that promise
  #     `{:shutdown, :helper_down}` end with it all the same;
  #   * its origin is `:spawned`, or `:managed`: a process Sluice did not start, adopted
  #     by the helper program (no pipes; its status may be `:unknown`).
  #
  # Each running program has a row in Sluice.Registry (for Sluice.list/0) while its holder
  # has not seen its exit nor closed it.
  #
  # On a pseudo-terminal (the `:pty` role) one master fd is both `:stdin` and `:stdout`:
  # readiness is told apart by direction, the fd closes when neither role needs it, and
  # the master's EIO (every slave fd closed, its buffer drained) is the output's EOF.
  #
  # With a framing other than `:raw`, stdout is read through a Sluice.Framing decoder:
  # `read/3` then returns one whole frame, and reads only what completes it.
  #
  # With `use_stdio: false` the program's fds 3 and 4 arrive as the roles `:fd3` and
  # `:fd4`: they are this value's `:stdin` and `:stdout`, and the program's own stdout and
  # stderr, when piped (to be logged), are `:log_stdout` and `:log_stderr`.

  require Logger

  alias Sluice.{Error, Framing, Native, Registry}
  alias Sluice.Helper.Protocol
  alias Sluice.Program.{Deadline, Start, Terminal}

  defstruct [
    :id,
    :os_pid,
    :channel,
    :kill,
    :decoder,
    :terminal,
    fds: %{},
    open: %{},
    exit: :running,
    exit_info: nil,
    helper_program: :up,
    origin: :spawned,
    bytes_read: 0,
    bytes_written: 0,
    started_at: nil
  ]

  @type source :: :stdout | :stderr
  @type log_source :: :log_stdout | :log_stderr
  @type role :: :stdin | source | log_source
  @type status :: Protocol.status()
  @type exit_state :: :running | {:exited, status} | :lost
  @type t :: %__MODULE__{
          id: pos_integer,
          os_pid: pos_integer,
          channel: Native.fd(),
          kill: {pos_integer, non_neg_integer},
          fds: %{optional(role) => Native.fd()},
          open: %{optional(role) => :open | :eof | :closing | :closed},
          exit: exit_state,
          exit_info: Protocol.exit_info() | nil,
          helper_program: :up | :down,
          bytes_read: non_neg_integer,
          bytes_written: non_neg_integer,
          started_at: integer | nil,
          decoder: Framing.t() | nil,
          origin: :spawned | :managed,
          terminal: Terminal.t() | nil
        }

  # How much longer than the grace a stopped program's exit may take to be reported.
  @stop_slack 2_000

  ## Opening (Sluice.Program.Start)

  @doc """
  Starts a program from a spawn spec (see `Sluice.Options.spawn_spec/2`) and waits for it
  to run, until `deadline` (monotonic ms). The caller holds it; `owner` (default the
  caller) is whom `Sluice.list/0` names as its owner.
  """
  @spec open(map, Deadline.t(), pid) :: {:ok, t} | {:error, Error.t()}
  defdelegate open(spec, deadline, owner \\ self()), to: Start

  @doc """
  Adopts a running process Sluice did not start, from a manage spec (see
  `Sluice.Options.manage_spec/2`): the helper program holds a pidfd for it. Like `open/3`
  otherwise; the result has no pipes.
  """
  @spec manage(map, Deadline.t(), pid) :: {:ok, t} | {:error, Error.t()}
  defdelegate manage(spec, deadline, owner \\ self()), to: Start

  ## Data

  @doc "What the program has cost so far: see `Sluice.Process.stats/2`."
  @spec stats(t, Deadline.t()) :: {{:ok, map} | {:error, atom}, t}
  defdelegate stats(p, deadline), to: Sluice.Program.Usage

  @doc """
  Reads stdout in frames of the options' `:framing` (`:raw`, the default: as the bytes
  come), none larger than `:max_frame`.
  """
  @spec frame(t, map) :: t
  def frame(p, opts) do
    framing = Map.get(opts, :framing, :raw)
    %{p | decoder: Framing.decoder(framing, Map.get(opts, :max_frame, 1))}
  end

  @doc """
  Takes the program on for a process that holds it (a `Sluice.Process`, a worker, a remote
  reader): its channel's news comes to the caller as messages, and stdout is read as
  `frame/2` says.

  Nothing is read from the channel here. The program may have exited already (`false`,
  or `cat` of a missing file, exits before its holder's start-up is over), and news read
  now would reach no code of the holder's: no message would follow it. So the holder gets
  one readiness message for the channel instead, and whatever the channel holds (an exit,
  the helper program's death, or nothing yet) is read where every later piece of news is,
  by the holder's dispatch of `handle_ready/2`, which arms the channel again.
  """
  @spec hold(t, map) :: t
  def hold(p, opts) do
    send(self(), {:select, p.channel, :undefined, :ready_input})
    frame(p, opts)
  end

  @doc "Whether decoding stdout failed (a frame over `max_frame`): the program must stop."
  @spec frame_error(t) :: atom | nil
  def frame_error(%{decoder: %Framing{phase: {:failed, reason}}}), do: reason
  def frame_error(_p), do: nil

  @doc "Whether reads of `source` return frames (stdout under a framing) rather than bytes."
  @spec framed?(t, source) :: boolean
  def framed?(%{decoder: %Framing{}}, :stdout), do: true
  def framed?(_p, _source), do: false

  @doc """
  One non-blocking read of at most `max` bytes from `source`. `{:wait, p}` means the pipe
  is empty and a `:ready_input` message will come to the caller.
  """
  @spec read(t, source | log_source, pos_integer) ::
          {:ok, Framing.frame(), t} | {:eof, t} | {:wait, t} | {:error, atom, t}
  def read(%{decoder: %Framing{} = d} = p, :stdout, _max) do
    case Framing.pop(d) do
      {:ok, frame, d} ->
        {:ok, frame, %{p | decoder: d}}

      {:error, reason} ->
        {:error, reason, p}

      :more ->
        case read_bytes(p, :stdout, Framing.read_size(d)) do
          {:ok, data, p} -> read(%{p | decoder: Framing.feed(d, data)}, :stdout, 1)
          {:eof, p} -> end_of_frames(p)
          other -> other
        end
    end
  end

  def read(p, source, max), do: read_bytes(p, source, max)

  # At EOF the decoder gives up what it holds (a last line without newline): stdout counts
  # as open (`open?/2`) until that frame was read.
  defp end_of_frames(%{decoder: d} = p) do
    case Framing.pop(Framing.finish(d)) do
      {:ok, frame, d} -> {:ok, frame, %{p | decoder: d}}
      _nothing -> {:eof, %{p | decoder: Framing.finish(d)}}
    end
  end

  defp read_bytes(p, source, max) do
    case p.open do
      %{^source => :open} ->
        case Native.read(p.fds[source], max) do
          {:ok, data} -> {:ok, data, %{p | bytes_read: p.bytes_read + byte_size(data)}}
          :eof -> {:eof, close_role(p, source, :eof)}
          {:error, :eagain} -> {:wait, p}
          # A terminal's end: no slave fd open anywhere and nothing left to read.
          {:error, :eio} when p.terminal != nil and source == :stdout -> {:eof, terminal_gone(p)}
          {:error, reason} -> {:error, reason, p}
        end

      %{^source => :eof} ->
        {:eof, p}

      # stdout went to a file, /dev/null or the console.
      _ when source == :stdout ->
        {:error, :not_piped, p}

      _ ->
        {:error, :not_captured, p}
    end
  end

  @doc """
  Writes as much of `data` as stdin takes now. Returns the unwritten rest; when it is
  not empty, a `:ready_output` message will come to the caller. A terminal whose program
  side is gone answers `:epipe`, like a pipe; a canonical terminal hands a line longer
  than it holds over in pieces, or refuses it with `:line_too_long` when it has no VEOF
  to do that with (Sluice.Program.Terminal).
  """
  @spec write(t, binary) :: {:ok, binary, t} | {:error, atom}
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
    case write_fd(p.fds.stdin, data) do
      {:ok, rest} ->
        {:ok, rest, %{p | bytes_written: p.bytes_written + byte_size(data) - byte_size(rest)}}

      {:error, reason} ->
        {:error, reason}
    end
  end

  def write(_p, _data), do: {:error, :closed}

  defp write_fd(_fd, ""), do: {:ok, ""}

  defp write_fd(fd, data) do
    case Native.write(fd, data) do
      {:ok, n} when n == byte_size(data) -> {:ok, ""}
      {:ok, n} -> write_fd(fd, binary_part(data, n, byte_size(data) - n))
      {:error, :eagain} -> {:ok, data}
      {:error, reason} -> {:error, reason}
    end
  end

  @doc """
  Ends the program's input, or says why it cannot. On pipes stdin closes, so the
  program sees EOF. On a terminal nothing is closed: the terminal's EOF character is
  written at the start of a line; if the terminal is full, stdin stays `:closing` until
  `finish_close_stdin/1` (called on `:ready_output`) has written it. A terminal that is
  raw now, or whose VEOF is disabled, has no end of input: `{:error, error}`, nothing is
  written and stdin stays open, for the caller to tell the program in-band. Stdin
  already closed: `{:ok, p}`.
  """
  @spec end_input(t) :: {:ok, t} | {:error, Error.t()}
  def end_input(%{open: %{stdin: :open}, terminal: nil} = p),
    do: {:ok, close_role(p, :stdin, :closed)}

  def end_input(%{open: %{stdin: :open}} = p) do
    case Terminal.begin_eof(p.terminal, p.fds.stdin) do
      {:ok, terminal} ->
        {:ok, finish_close_stdin(%{p | terminal: terminal, open: %{p.open | stdin: :closing}})}

      {:error, reason} ->
        {:error, no_eof(reason)}
    end
  end

  def end_input(p), do: {:ok, p}

  @doc """
  Closes stdin for good, as `end_input/1` does, for callers whose input has ended
  whatever the terminal says (the input of `run` and streams, a stop): on a terminal
  without an end of input nothing is written, and stdin only stops taking writes.
  Idempotent.
  """
  @spec close_stdin(t) :: t
  def close_stdin(p) do
    case end_input(p) do
      {:ok, p} -> p
      {:error, _no_eof} -> close_role(p, :stdin, :closed)
    end
  end

  defp no_eof(:raw_terminal) do
    Error.new(
      :raw_terminal,
      "the terminal is in raw mode (icanon off): it has no end of input, so nothing was " <>
        "written and stdin stays open; tell the program in-band (a line editor such as " <>
        "a REPL's takes \"\\x04\", ^D, on an empty line as end of input)"
    )
  end

  defp no_eof(:no_eof) do
    Error.new(
      :no_eof,
      "the terminal's end-of-file character (VEOF) is disabled: it has no end of input, " <>
        "so nothing was written and stdin stays open; tell the program in-band"
    )
  end

  @doc "Writes the rest of a terminal's pending EOF character, if any."
  @spec finish_close_stdin(t) :: t
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

  # The terminal reached its end: nothing written to it can be read any more.
  defp terminal_gone(p), do: %{p | open: %{p.open | stdin: :closed, stdout: :eof}}

  @doc """
  Sets a terminal's window size (`TIOCSWINSZ`): the kernel sends SIGWINCH to its
  foreground process group. `{:error, :closed}` once the terminal reached its end.
  """
  @spec set_window_size(t, pos_integer, pos_integer) :: :ok | {:error, atom}
  def set_window_size(%{terminal: nil}, _rows, _cols), do: {:error, :not_a_terminal}
  def set_window_size(%{open: %{stdout: :eof}}, _rows, _cols), do: {:error, :closed}
  def set_window_size(p, rows, cols), do: Native.set_window_size(p.fds.stdout, rows, cols)

  @doc "Whether `source` is piped and not at EOF."
  @spec open?(t, role) :: boolean
  def open?(%{decoder: %Framing{} = d} = p, :stdout),
    do: Map.get(p.open, :stdout) == :open or Framing.ready?(d)

  def open?(p, role), do: Map.get(p.open, role) == :open

  @doc "The outputs still open, stdout first."
  @spec open_outputs(t) :: [source]
  def open_outputs(p), do: for(s <- [:stdout, :stderr], open?(p, s), do: s)

  @doc "Whether `source` is piped at all."
  @spec piped?(t, role) :: boolean
  def piped?(p, role), do: Map.has_key?(p.fds, role)

  ## Readiness

  @doc """
  Classifies a message: `{:ready, role}` for readiness of one of this program's pipes,
  `{:control, p}` after reading what the program channel had (the exit status, or the
  helper program's death), or `:unknown` for a message that is not this program's.
  """
  @spec handle_ready(t, term) :: {:ready, role} | {:control, t} | :unknown
  def handle_ready(%{channel: ch} = p, {:select, ch, _, :ready_input}), do: {:control, control(p)}

  # Told apart by direction: a terminal's master is stdin and stdout at once.
  def handle_ready(%{fds: %{stdin: fd}}, {:select, fd, _, :ready_output}), do: {:ready, :stdin}

  def handle_ready(p, {:select, fd, _, :ready_input}) do
    case Enum.find(p.fds, fn {role, f} -> role != :stdin and f == fd end) do
      {role, _} -> {:ready, role}
      nil -> :unknown
    end
  end

  def handle_ready(_p, _msg), do: :unknown

  @doc """
  Reads every message waiting on the program channel and arms it again, so the caller
  hears of the exit status and of the helper program's death.
  """
  @spec control(t) :: t
  def control(p) do
    case Native.recv(p.channel) do
      {:ok, payload, fds} ->
        Enum.each(fds, &Native.close/1)
        p |> apply_control(Protocol.decode(payload)) |> control()

      {:error, :eagain} ->
        p

      # EOF: the helper program is gone (it never closes the channel of a program the
      # BEAM still holds).
      _eof_or_error ->
        Registry.remove(p.id)
        p = %{p | helper_program: :down}
        if p.exit == :running, do: %{p | exit: :lost}, else: p
    end
  end

  @doc false
  # One decoded message of the program channel applied to the value (Sluice.Program.Usage).
  @spec apply_control(t, Protocol.reply() | :bad) :: t
  def apply_control(%{id: id} = p, {:exit, id, status, info}) do
    Registry.remove(id)
    %{p | exit: {:exited, status}, exit_info: info}
  end

  # A signal or stop request the helper program could not use: never expected, since
  # they are built here from checked values; worth a log line rather than silence.
  def apply_control(p, {:error, _id, message}) do
    Logger.warning("sluice_helper refused a request for program #{p.os_pid}: #{message}")
    p
  end

  def apply_control(p, _other), do: p

  @doc "Waits until the exit status is known or `deadline`; other messages stay queued."
  @spec await_exit(t, Deadline.t()) :: {:ok, status, t} | {:error, :timeout | :helper_down, t}
  def await_exit(p, deadline) do
    case control(p) do
      %{exit: {:exited, status}} = p ->
        {:ok, status, p}

      %{exit: :lost} = p ->
        {:error, :helper_down, p}

      %{channel: ch} = p ->
        receive do
          {:select, ^ch, _, :ready_input} -> await_exit(p, deadline)
        after
          Deadline.remaining(deadline) -> {:error, :timeout, p}
        end
    end
  end

  ## Control

  @doc """
  Sends a signal number to the program's process group; for an adopted process (to it, or
  its group with `group: true`), waits until `deadline` for the helper program's answer:
  `{:error, :esrch}` once it has exited. Returns the pipes with whatever arrived meanwhile.
  """
  @spec signal(t, pos_integer, Deadline.t()) :: {:ok | {:error, atom}, t}
  def signal(%{origin: :managed} = p, signum, deadline) do
    case send_signal(p, signum) do
      :ok -> await_signaled(p, deadline)
      error -> {error, p}
    end
  end

  def signal(p, signum, _deadline), do: {send_signal(p, signum), p}

  defp await_signaled(%{id: id} = p, deadline) do
    case Native.recv(p.channel) do
      {:ok, payload, fds} ->
        Enum.each(fds, &Native.close/1)

        case Protocol.decode(payload) do
          # Drain and arm the channel again, so the exit still wakes the holder.
          {:signaled, ^id, answer} -> {answer, control(p)}
          other -> p |> apply_control(other) |> await_signaled(deadline)
        end

      {:error, :eagain} ->
        receive do
          {:select, ch, _, :ready_input} when ch == p.channel -> await_signaled(p, deadline)
        after
          Deadline.remaining(deadline) -> {{:error, :timeout}, p}
        end

      _eof_or_error ->
        {{:error, :helper_down}, control(p)}
    end
  end

  defp send_signal(p, signum) do
    case Native.send(p.channel, Protocol.signal(p.id, signum)) do
      :ok -> :ok
      # The channel is gone with the helper program: the program is being killed anyway.
      {:error, reason} when reason in [:epipe, :econnreset, :closed] -> {:error, :helper_down}
      {:error, reason} -> {:error, reason}
    end
  end

  @doc """
  Starts a stop: closes stdin, sends `kill_signal` to the group (and cgroup), SIGKILL to
  whatever is left after `grace` ms. The exit status arrives as usual.
  """
  @spec stop(t, non_neg_integer) :: t
  def stop(p, grace) do
    {signum, _} = p.kill
    _ = Native.send(p.channel, Protocol.stop(p.id, signum, grace))
    close_stdin(p)
  end

  @doc """
  Stops the program (`stop/2`) and waits for its exit status up to `grace` + 2 s (SIGKILL
  comes at `grace`): the status, or `nil` when none was reported (the helper program is
  gone or stuck).
  """
  @spec stop_and_await(t, non_neg_integer) :: {status | nil, t}
  def stop_and_await(p, grace) do
    p = stop(p, grace)

    case await_exit(p, Deadline.with_margin(grace, @stop_slack)) do
      {:ok, status, p} -> {status, p}
      {:error, _reason, p} -> {nil, p}
    end
  end

  @doc """
  Closes every fd and the channel: the helper program then stops what is left of the
  program (with `kill_signal` and `kill_grace`), and forgets it. Drops the readiness
  messages already queued for these fds.
  """
  @spec close(t) :: :ok
  def close(p) do
    Registry.remove(p.id)
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

  ## Helpers

  @doc false
  @spec helper_down() :: Error.t()
  def helper_down, do: Error.new(:helper_down, "the Sluice helper program is not running")
end
