defmodule Sluice.Program do
  @moduledoc false
  # The process-less core (docs/architecture.md): one running program as a value held by
  # the process that started it. Like Mint's connection, it has no process of its own:
  # the holder receives the `{:select, fd, _, _}` readiness messages that the NIF sends
  # and hands them to `handle_ready/2`. The holder owns every fd (the NIF monitors it): if
  # it dies, the fds and the program channel close, and the helper program stops the
  # program. Callers ask this module about the program (`running?/1`, `status/1`, ...)
  # and never read its fields. Its parts (lib/sluice/program/):
  #
  #   * Start: the spawn or manage request and its reply, roles mapped to fds;
  #   * Channel: the program channel's news and the one request/await loop on it;
  #   * Output: the one fair output reader, framing through Sluice.Program.Framing;
  #   * Fds: the only code that reads, writes and closes the fds; the input writer;
  #   * Terminal: the only writer to a pseudo-terminal; Log: outputs sent to Logger;
  #   * Usage: `stats/2`; Deadline: the clock; Errors: every error the core returns.
  #
  # States, explicitly:
  #   * each piped output (`:stdout`, `:stderr`) is `:open`, `:eof`, or `:closed` when its
  #     holder closed it before its end (Sluice.Process.close_output/2: the program's
  #     writes to it fail with EPIPE, and reads answer `:eof`);
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
  #     by the helper program (no pipes; its status may be `:unknown`);
  #   * `turn`: the order in which Output tries the outputs next (the last to give data
  #     goes last);
  #   * `collectors`: the outputs whose bytes are kept in the program's own buffers
  #     (`run`, through Sluice.Program.Fds.collect/1): reads of them return byte counts.
  #
  # Each running program has a row in Sluice.Control.Registry (for Sluice.list/0) while its holder
  # has not seen its exit nor closed it.
  #
  # On a pseudo-terminal (the `:pty` role) one master fd is both `:stdin` and `:stdout`:
  # readiness is told apart by direction, the fd closes when neither role needs it, and
  # the master's EIO (every slave fd closed, its buffer drained) is the output's EOF.
  #
  # With `use_stdio: false` the program's fds 3 and 4 arrive as the roles `:fd3` and
  # `:fd4`: they are this value's `:stdin` and `:stdout`, and the program's own stdout and
  # stderr, when piped (to be logged), are `:log_stdout` and `:log_stderr`.

  alias Sluice.Native
  alias Sluice.Control.{Protocol, Registry}
  alias Sluice.Program.{Channel, Deadline, Fds, Framing, Output, Terminal}

  defstruct [
    :id,
    :os_pid,
    :channel,
    :kill,
    :decoder,
    :terminal,
    # The OS pid of the helper program that started it, when it has a cgroup: its death
    # is swept (Sluice.Helper.await_swept/1) before the holder hears of it.
    :helper_os_pid,
    fds: %{},
    open: %{},
    exit: :running,
    exit_info: nil,
    helper_program: :up,
    origin: :spawned,
    bytes_read: 0,
    bytes_written: 0,
    started_at: nil,
    turn: [:stdout, :stderr],
    # Outputs read into collectors (Sluice.Program.Fds.collect/1), by role.
    collectors: %{}
  ]

  @type source :: :stdout | :stderr
  @type log_source :: :log_stdout | :log_stderr
  @type role :: :stdin | source | log_source
  @type status :: Protocol.status()
  @type exit_state :: :running | {:exited, status} | :lost
  @type origin :: :spawned | :managed
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
          origin: origin,
          terminal: Terminal.t() | nil,
          helper_os_pid: pos_integer | nil,
          turn: [source],
          collectors: %{optional(source) => Native.collector() | nil}
        }

  # Opening: Sluice.Program.Start.open/3 and manage/3 build this value (Start sits above
  # this module: it makes the struct, and this module never calls it).

  ## Data

  @doc "What the program has cost so far: see `Sluice.Process.stats/2`."
  @spec stats(t, Deadline.t()) :: {{:ok, map} | {:error, atom}, t}
  defdelegate stats(p, deadline), to: Sluice.Program.Usage

  @doc """
  Takes the program on for a process that holds it (a `Sluice.Process`, a worker, a remote
  reader): its channel's news comes to the caller as messages, and stdout is read as
  `Sluice.Program.Output.frame/2` says.

  Nothing is read from the channel here. The program may have exited already (`false`,
  or `cat` of a missing file, exits before its holder's start-up is over), and news read
  now would reach no code of the holder's: no message would follow it. It needs no read:
  `Sluice.Program.Start` leaves the channel armed for the holder, so whatever it holds (an
  exit, the helper program's death) comes as a readiness message, read where every later
  piece of news is, by the holder's dispatch of `handle_ready/2`, which arms the channel
  again.
  """
  @spec hold(t, map) :: t
  def hold(p, opts), do: Output.frame(p, opts)

  @doc "Whether `role` is piped at all."
  @spec piped?(t, role) :: boolean
  def piped?(p, role), do: Map.has_key?(p.fds, role)

  ## Queries

  @doc "Whether the program is still running, as far as the holder has heard."
  @spec running?(t) :: boolean
  def running?(p), do: p.exit == :running

  @doc """
  The program's state: `:running`, `{:exited, status}`, or `:lost` (the helper program
  died first: no status will ever come).
  """
  @spec status(t) :: exit_state
  def status(p), do: p.exit

  @doc "What the exit reply told besides the status (usage, statuses of a pipeline), or `nil`."
  @spec exit_info(t) :: Protocol.exit_info() | nil
  def exit_info(p), do: p.exit_info

  @doc "Whether the helper program has gone (the channel reached its end)."
  @spec helper_down?(t) :: boolean
  def helper_down?(p), do: p.helper_program == :down

  @doc "The program's id (its row in Sluice.Control.Registry, its name on the channel)."
  @spec id(t) :: pos_integer
  def id(p), do: p.id

  @doc "Whether Sluice started the program (`:spawned`) or adopted it (`:managed`)."
  @spec origin(t) :: origin
  def origin(p), do: p.origin

  @doc "The program's OS pid."
  @spec os_pid(t) :: pos_integer
  def os_pid(p), do: p.os_pid

  @doc "How long a stop waits after `kill_signal` before SIGKILL (the `kill_grace` option)."
  @spec kill_grace(t) :: non_neg_integer
  def kill_grace(%{kill: {_signal, grace}}), do: grace

  @doc "The fd of `role`, for readiness messages the holder sends itself (or `nil`)."
  @spec fd(t, role) :: Native.fd() | nil
  def fd(p, role), do: Map.get(p.fds, role)

  @doc """
  Every fd whose readiness concerns the holder: the data fds (`:data`) and the channel
  (`:channel`), for a caller that waits on several programs at once (Sluice.Caller.Pump).
  """
  @spec watched_fds(t) :: %{Native.fd() => :data | :channel}
  def watched_fds(p),
    do: Map.new(p.fds, fn {_role, fd} -> {fd, :data} end) |> Map.put(p.channel, :channel)

  @doc """
  Starts a stop (`stop/2`) with `grace` (default the `kill_grace` option) if the program
  is still running; the program as it is otherwise.
  """
  @spec stop_if_running(t, non_neg_integer | nil) :: t
  def stop_if_running(p, grace \\ nil)
  def stop_if_running(%{exit: :running} = p, grace), do: stop(p, grace || kill_grace(p))
  def stop_if_running(p, _grace), do: p

  ## Readiness

  @doc """
  Classifies a message: `{:ready, role}` for readiness of one of this program's pipes,
  `{:control, p}` after reading what the program channel had (the exit status, or the
  helper program's death), or `:unknown` for a message that is not this program's.
  """
  @spec handle_ready(t, term) :: {:ready, role} | {:control, t} | :unknown
  def handle_ready(%{channel: ch} = p, {:select, ch, _, :ready_input}),
    do: {:control, Channel.control(p)}

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
  defdelegate control(p), to: Channel

  @doc "Waits until the exit status is known or `deadline`; other messages stay queued."
  @spec await_exit(t, Deadline.t()) :: {:ok, status, t} | {:error, :timeout | :helper_down, t}
  defdelegate await_exit(p, deadline), to: Channel

  ## Control

  @doc """
  Sends a signal number to the program's process group; for an adopted process (to it, or
  its group with `group: true`), waits until `deadline` for the helper program's answer:
  `{:error, :esrch}` once it has exited. Returns the program with whatever arrived
  meanwhile.
  """
  @spec signal(t, pos_integer, Deadline.t()) :: {:ok | {:error, atom}, t}
  def signal(%{origin: :managed, id: id} = p, signum, deadline) do
    Channel.request(
      p,
      Protocol.signal(id, signum),
      fn
        {:signaled, ^id, answer}, _p -> {:done, answer}
        _news, _p -> :wait
      end,
      deadline
    )
  end

  def signal(p, signum, _deadline),
    do: {Channel.send_message(p, Protocol.signal(p.id, signum)), p}

  @doc """
  Starts a stop: closes stdin, sends `kill_signal` to the group (and cgroup), SIGKILL to
  whatever is left after `grace` ms. The exit status arrives as usual.
  """
  @spec stop(t, non_neg_integer) :: t
  def stop(p, grace) do
    {signum, _} = p.kill
    _ = Channel.send_message(p, Protocol.stop(p.id, signum, grace))
    Fds.close_stdin(p)
  end

  @doc """
  Stops the program (`stop/2`) and waits for its exit status up to `grace` + 2 s (SIGKILL
  comes at `grace`): the status, or `nil` when none was reported (the helper program is
  gone or stuck).
  """
  @spec stop_and_await(t, non_neg_integer) :: {status | nil, t}
  def stop_and_await(p, grace) do
    p = stop(p, grace)

    case await_exit(p, Deadline.after_stop(grace)) do
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
    # The row went when the exit (or the helper program's end) was seen.
    if p.exit == :running, do: Registry.remove(p.id)
    Fds.close(p)
  end
end
