defmodule Sluice.Process do
  @moduledoc """
  One running OS program, driven from Elixir.

  A `Sluice.Process` is a GenServer that holds the program's pipes. Data moves directly
  between the BEAM and the program: reads happen only when asked for, so a program whose
  output nobody reads blocks in `write()` once the pipe is full (back-pressure), and a write
  returns only once the program has taken every byte. All pipe I/O is non-blocking
  (`enif_select`), so no scheduler ever waits on a program.

      {:ok, p} = Sluice.Process.start_link(["cat"])
      :ok = Sluice.Process.write(p, "hello")
      {:ok, "hello"} = Sluice.Process.read(p)
      :ok = Sluice.Process.close_stdin(p)
      :eof = Sluice.Process.read(p)
      {:ok, 0} = Sluice.Process.await_exit(p)

  ## Ownership

  The process that calls `start_link/2` or `start/2` is the owner. When the owner exits, or
  the `Sluice.Process` itself ends for any reason, the program's process group (and its
  cgroup, where Sluice uses cgroups) is sent `kill_signal` and, after `kill_grace` ms,
  SIGKILL. Any process may read, write and wait; the GenServer serialises them.

  ## Lifecycle

  Once the program has exited, its output has reached EOF (every piped output was read to
  the end) and its status was delivered (`await_exit/2` returned it, or
  `{:sluice_exit, p, status}` was sent in active mode), the `Sluice.Process` closes its fds
  and ends with reason `:normal`: a long-lived process that runs many programs this way
  leaks nothing. Calls on an ended `Sluice.Process` return `{:error, :closed}` (so do those
  of an ended `Sluice.Worker` or `Sluice.Daemon`), and calls on one whose node went away
  (see `:node`) `{:error, :nodedown}`; a first argument that is no pid or registered name
  is an `ArgumentError` naming it. A server that does not
  answer within the call's own timeout and 10 s more (its node is stopped but still
  connected) gives `{:error, :timeout}`; the request may still be carried out if the
  server resumes (what a read takes then is lost to the caller). A call with an
  `:infinity` timeout waits until the node is declared down. With
  `stderr: :consume`, stderr must be read to EOF too; until then (or until the owner ends)
  the `Sluice.Process` stays.

  ## Options

    * `:cd` - working directory of the program.
    * `:env` - a map or list of `{name, value}` pairs added to the environment; a `nil`
      value unsets the variable.
    * `:clear_env` - start from an empty environment instead of the VM's (default `false`).
    * `:inherit_env` - with `:user`, start from the VM's environment (less
      `RELEASE_COOKIE`) instead of that user's login environment (default `false`; see
      "Users, priority and limits" in the README).
    * `:stderr` - `:console` (default: the VM's stderr), `:null`, `:stdout` (merged into
      stdout in order), `:consume` (read with `read_stderr/3` and `read_any/3`) or
      `{:file, path, opts}` (as for `:stdout`; the same path as `:stdout` shares its open
      file).
    * `:kill_signal` - the signal that starts a stop (default `:sigterm`).
    * `:kill_grace` - ms between `kill_signal` and SIGKILL (default `5_000`).
    * `:pipe_size` - pipe capacity in bytes (`F_SETPIPE_SZ`) for every pipe. By default stdout
      gets 256 KiB (about 4x the throughput of the system's 64 KiB) while fewer than 64
      running programs have one, and every other pipe the system's size.
    * `:start_timeout` - ms to wait for the program to start (default `10_000`); then
      `{:error, %Sluice.Error{reason: :timeout}}`.
    * `:pty` - `true` or `[rows:, cols:, echo:, modes:]` runs the program on a
      pseudo-terminal (see `Sluice.Pty`): stdin, stdout and (unless `:stderr` says
      otherwise) stderr are the terminal, read and written as usual with the same
      back-pressure; see `set_window_size/3` and `close_stdin/1`.
    * `:framing` - `:raw` (default: bytes as they come), `{:packet, n}` or `{:line, max}`;
      see "Framing" below.
    * `:max_frame` - the largest packet accepted, in bytes (default `67_108_864`, 64 MiB).
    * `:use_stdio` - `false` gives the data a private channel, like Port's `:nouse_stdio`:
      the program reads its input from fd 3 and writes its output to fd 4, its stdin is
      `/dev/null`, and its own prints cannot corrupt the data. It sees no fd but 0 to 4.
    * `:stdin` - `:pipe` (default: written with `write/3`), `:null` or `{:file, path}`
      (opened by the helper program); not piped, `write/3` returns `{:error, :closed}`.
    * `:stdout` - `:pipe` (default: read with `read/3` or active mode), or where else the
      program's stdout goes, without passing through the BEAM: `:null`, `:console` (the
      VM's stderr) or `{:file, path, append: boolean, mode: 0o644}` (opened by the helper
      program; a relative path resolves against `:cd`). Not piped, `read/3` returns
      `{:error, :not_piped}`, and active mode delivers only stderr (with `stderr:
      :consume`) and the exit. With `use_stdio: false` the data goes through fd 4, and
      the program's stdout goes to `:console` (default, the VM's stderr), `:null`, a file,
      or `:log` (each line to `Logger` at `:info` with `os_pid` and `stream` metadata,
      read as it comes and cut at 16 KiB, so memory stays bounded); `:stderr` then takes
      the same values.
    * `:node` - start the program on another node, by that node's helper program
      (`:sluice` must run there, else `{:error, %Sluice.Error{reason: :nosluice}}`;
      `:nodedown` when it cannot be reached). The returned pid is the `Sluice.Process` on
      that node; every function here works on it from any node, reads and writes keep
      their back-pressure across distribution, and the program is stopped when its owner
      here exits or the nodes disconnect. Calls return `{:error, :nodedown}` once that
      node is gone.

  See `Sluice.Options` for the table of every option.

  ## Framing

  With `framing: {:packet, n}` (n = 1, 2 or 4) every `write/3` sends one frame, its length
  first as an n-byte big-endian integer (a frame too long for n bytes raises
  `ArgumentError`), and `read/3` returns one whole frame however the program wrote it
  (byte by byte, or several frames at once); `max` is then ignored. A program that
  announces a frame over `:max_frame` bytes gets `{:error, :frame_too_large}` (and
  `{:sluice_error, p, :frame_too_large}` in active mode) and is stopped: no buffer grows
  without bound. With `framing: {:line, max}`, reads return `{:eol, line}` (newline
  removed) or `{:noeol, part}` for a piece of a line longer than `max` bytes or a last
  line without newline, as Port does; writes are sent as they are.

  Back-pressure holds: with `{:packet, n}` a read takes from the pipe exactly the bytes
  that complete the frame it returns (its header, then its body); with `{:line, max}` a
  newline's place is not known in advance, so a read takes up to `max + 1` bytes (at most
  64 KiB) at a time, and the lines after the one returned wait, decoded, until asked for
  (nothing more is read meanwhile). Active mode delivers one message per frame, only as
  many as granted.
  An incomplete packet at EOF is dropped, as Port does. `stderr: :consume` is never
  framed. For request/response programs, `Sluice.Worker` does the queueing.

  ## Active mode

  Like `:gen_tcp`, a `Sluice.Process` can push output as messages instead of waiting for
  `read/3` calls. `set_active(p, :once | n | false)` grants messages; the controlling process
  (the owner, until `controlling_process/2`) receives:

    * `{:sluice_stdout, p, data}` and `{:sluice_stderr, p, data}` (the latter with
      `stderr: :consume`); with a `:framing`, `data` is one frame;
    * `{:sluice_passive, p}` when a count `n` is used up;
    * `{:sluice_exit, p, status}` once the output reached EOF and the program exited;
    * `{:sluice_error, p, :helper_down}` if the helper program died before the program's
      exit was known (like `{:tcp_error, socket, reason}`), and
      `{:sluice_error, p, :frame_too_large}`; sent to a controller that ever used active
      mode;
    * `{:sluice_error, p, :nodedown}` (with `:node`) when the connection between the
      program's node and the controller's, or its owner's, is lost: the program is
      stopped (see "Across nodes" in `docs/guarantees.md`), and no other message
      follows. A controller on another node than `p` hears it from a small process
      Sluice starts on the controller's node while it uses active mode.

  No more is read from the pipes than was granted, so back-pressure holds. When stdout
  and stderr both have data they take turns, so a program flooding one of them does not
  hold back the other's messages. While active, `read/3` and friends return
  `{:error, :active}`.

  ## Exit status

  A status is the exit code (`0..255`) or `{:signal, name}`, such as `{:signal, :sigkill}`.
  EOF and the exit status are independent: either may come first, and neither loses data.

  ## Adopted processes

  `manage/2` gives a `Sluice.Process` for a process Sluice did not start: the helper
  program holds a pidfd for it, so a signal can never reach another process that reused
  its pid. `stop/2`, `signal/2`, `await_exit/2`, `os_pid/1`, `info/1` and ownership work
  as above; it has no pipes (reads and writes return `{:error, :not_piped}`), and since
  only a parent learns how its child ended, its status is `:unknown` unless it happens to
  be a child of the helper program (an orphan of a program Sluice started).

  ## When the helper dies

  If the node's helper program dies, or the `:sluice` application is stopped, its programs
  are killed, and every `Sluice.Process` answers pending callers with
  `{:error, :helper_down}` and exits with reason `{:shutdown, :helper_down}` (see
  `docs/guarantees.md`), also when the program's status came first. Adopted processes are not
  killed: they are not the helper program's children.
  """
  alias Sluice.{Error, Options}
  alias Sluice.Holder.Process.Starter
  alias Sluice.Options.Command
  alias Sluice.Program.{Deadline, Errors}

  @type t :: GenServer.server()
  @type status :: non_neg_integer | {:signal, atom | pos_integer} | :unknown
  @type read_result :: {:ok, Sluice.Program.Framing.frame()} | :eof | {:error, atom}

  @typedoc """
  One program of this node, as `Sluice.list/0` and `info/1` show it:

    * `:pid` - the process that holds the program: the `Sluice.Process`, or for
      `Sluice.run/2` and streams the calling (enumerating) process itself;
    * `:owner` - the process whose exit stops the program: the caller of `start/2` or
      `manage/2`, the daemon, or for `Sluice.run/2` and streams the caller again;
    * `:os_pid` - its OS pid (also its process group id; for a pipeline, the first
      stage's);
    * `:argv` - what it runs: for a pipeline the first stage's argv, for an adopted
      process its command line (`/proc/PID/cmdline`, `[]` when it has none);
    * `:pipeline` - `nil`, or for a `Sluice.pipeline/1` every stage's argv in order;
    * `:started_at` - a `DateTime`; for an adopted process, when it was adopted;
    * `:managed` - `true` for an adopted process;
    * `:cgroup` - the program's own cgroup directory, or `nil` without cgroups and for
      adopted processes (they stay in their own cgroup).
  """
  @type info :: %{
          pid: pid,
          owner: pid,
          os_pid: pos_integer,
          argv: [String.t()],
          pipeline: [[String.t()], ...] | nil,
          started_at: DateTime.t(),
          managed: boolean,
          cgroup: String.t() | nil
        }

  ## Starting

  @doc """
  Starts `argv` linked to the caller, which becomes the owner. Like any linked process, a
  `Sluice.Process` that ends with `{:shutdown, :helper_down}` (the helper program died)
  takes a caller that does not trap exits with it; use `start/2` to get
  `{:error, :helper_down}` answers instead. Returns `{:ok, pid}` once the
  program runs (after a successful `exec`), or `{:error, %Sluice.Error{}}`, whose `:reason`
  is the errno of what failed (`:enoent`, `:eacces`, `:enotdir`, `:e2big`, `:emfile`, ...),
  `:timeout` after `:start_timeout`, or `:helper_down`.

      iex> {:ok, p} = Sluice.Process.start_link(["echo", "hi"])
      iex> Sluice.Process.read(p)
      {:ok, "hi\\n"}
      iex> Sluice.Process.await_exit(p)
      {:ok, 0}

      iex> {:error, %Sluice.Error{reason: :enoent}} = Sluice.Process.start_link(["no-such-program"])
  """
  @spec start_link(Sluice.command(), keyword) :: {:ok, pid} | {:error, Error.t()}
  def start_link(argv, opts \\ []) do
    with {:ok, pid} <- start(argv, opts, "Sluice.Process.start_link/2") do
      Process.link(pid)
      {:ok, pid}
    end
  end

  @doc """
  Like `start_link/2`, without the link. The caller is still the owner: the program is
  stopped when the caller exits.

      iex> {:ok, p} = Sluice.Process.start(["sleep", "10"])
      iex> Process.link(p) == true and Process.alive?(p)
      true
      iex> Sluice.Process.stop(p, 1_000)
      {:ok, {:signal, :sigterm}}
  """
  @spec start(Sluice.command(), keyword) :: {:ok, pid} | {:error, Error.t()}
  def start(argv, opts \\ []), do: start(argv, opts, "Sluice.Process.start/2")

  defp start(argv, opts, who) do
    argv = Command.argv!(argv)
    opts = Options.validate!(opts, :process, who)

    case Sluice.Holder.Remote.node_of(opts) do
      nil ->
        Starter.start_server(Command.spawn_spec(argv, opts), opts, self())

      node ->
        Sluice.Holder.Remote.call(node, :start_process, [argv, opts, self()], opts.start_timeout)
    end
  end

  @doc """
  Adopts `os_pid`, a running process that Sluice did not start, and returns a
  `Sluice.Process` for it; the caller becomes its owner (as with `start/2`, there is no
  link). The helper program holds a pidfd for it: `signal/2` and `stop/2` reach that very
  process (never a later one with the same pid), and its exit is noticed at once.

  Its process group and cgroup are left as they are (it is not Sluice's): its children
  are not contained, and `stop/2` and `signal/2` signal the process alone unless
  `group: true`. It has no pipes: `read/3`, `write/3` and `close_stdin/1` return
  `{:error, :not_piped}`. Its exit status is `:unknown` (only its parent can learn it),
  unless it is a child of the helper program (an orphan of a program Sluice started).

  ## Options

    * `:stop_on_owner_exit` - when the owner exits (or this `Sluice.Process` ends), stop
      the process with `kill_signal` and `kill_grace` (default `true`); `false` only
      watches it, and lets go of it then. Either way it is also stopped when the VM dies
      (rows e and f of `docs/guarantees.md`) if `true`, and left alone if `false`.
    * `:group` - signal its process group too (default `false`); refused when that group
      is the VM's or the helper program's.
    * `:kill_signal`, `:kill_grace` - as for `start/2` (default `:sigterm`, `5_000`).
    * `:start_timeout` - ms to wait for the helper program's answer (default `10_000`).

  ## Errors

  `ArgumentError` for a pid that is not a positive integer, for pid 1, the VM itself and
  the helper program. `{:error, %Sluice.Error{stage: :manage}}` with reason `:esrch` when
  no such process runs, `:eperm` when this node may not signal it, `:ebusy` when Sluice
  started or manages it already, `:einval` (the message says why) for what the VM depends
  on (its `erl_child_setup`, its `heart` program, `epmd`), a kernel thread (no signal ends
  it) and a thread id that is not its process's; `:timeout` or `:helper_down` as for
  `start/2`.

      iex> {out, 0} = System.cmd("sh", ["-c", "sleep 60 > /dev/null & echo $!"])
      iex> {:ok, p} = Sluice.Process.manage(String.to_integer(String.trim(out)))
      iex> Sluice.Process.stop(p, 1_000)
      {:ok, :unknown}
  """
  @spec manage(pos_integer, keyword) :: {:ok, pid} | {:error, Error.t()}
  def manage(os_pid, opts \\ []) do
    os_pid = Starter.adoptable!(os_pid)
    opts = Options.validate!(opts, :manage, "Sluice.Process.manage/2")
    Starter.start_server({:manage, Options.manage_spec(os_pid, opts)}, opts, self())
  end

  ## Calls

  @doc """
  The program's OS pid (also its process group id).

      iex> {:ok, p} = Sluice.Process.start_link(["sleep", "10"])
      iex> is_integer(Sluice.Process.os_pid(p))
      true
  """
  @spec os_pid(t) :: pos_integer | {:error, :closed | :nodedown | :timeout}
  def os_pid(p), do: call(p, :os_pid)

  @doc """
  What `Sluice.list/0` shows for this program (`t:info/0`): `%{pid: p, os_pid: ...,
  argv: [...], pipeline: nil | [argv, ...], owner: pid, started_at: DateTime, managed:
  boolean, cgroup: path | nil}`, as it was when the program started.

      iex> {:ok, p} = Sluice.Process.start_link(["sleep", "10"])
      iex> %{pid: ^p, argv: ["sleep", "10"], managed: false} = Sluice.Process.info(p)
  """
  @spec info(t) :: info | {:error, :closed | :nodedown | :timeout}
  def info(p), do: call(p, :info)

  @doc """
  What the program has cost so far: `{:ok, %{usage: %{source:, cpu_user_us:,
  cpu_system_us:, max_rss_kb:}, pids_current:, bytes_read:, bytes_written:, age_ms:}}`.
  `usage` is as in `Sluice.Result` (the cgroup's `cpu.stat` with cgroups, else the rusage
  of what was reaped plus `/proc` of what runs); `pids_current` counts the members of its
  cgroup (else of its process group); the bytes are those read from its outputs and
  written to its stdin through this process; `age_ms` is the time since it started. After
  the exit (while the server still runs: until the status was delivered and the outputs
  read to EOF): the exit's usage, `pids_current: 0`, `core_dumped` and `statuses` (every
  stage's of a pipeline). `{:error, :managed}` for an adopted process. The helper
  program's answer is awaited for `timeout` ms, and never more than 5 s (the
  `Sluice.Process` serves nobody else meanwhile); then `{:error, :timeout}`.

      iex> {:ok, p} = Sluice.Process.start_link(["sleep", "10"])
      iex> {:ok, %{pids_current: 1, bytes_read: 0}} = Sluice.Process.stats(p)
  """
  @spec stats(t, timeout) :: {:ok, map} | {:error, atom}
  def stats(p, timeout \\ 5_000) do
    timeout = Options.timeout!(timeout)
    # The server waits for the helper at most 5 s, whatever `timeout` says.
    call(p, {:stats, timeout}, min(timeout, 5_000))
  end

  @doc """
  Reads up to `max` bytes of stdout. Returns as soon as any data is available, `:eof` once
  the program closed its stdout and everything was read, or `{:error, :timeout}`. With a
  `:framing`, returns one frame (`{:error, :frame_too_large}` once one was too large);
  with `use_stdio: false`, reads fd 4.

      iex> {:ok, p} = Sluice.Process.start_link(["printf", "abc"])
      iex> Sluice.Process.read(p, 2)
      {:ok, "ab"}
  """
  @spec read(t, pos_integer, timeout) :: read_result
  def read(p, max \\ 65_536, timeout \\ :infinity), do: do_read(p, :stdout, max, timeout)

  @doc """
  Reads up to `max` bytes of stderr; needs `stderr: :consume`, else `{:error, :not_captured}`.

      iex> {:ok, p} = Sluice.Process.start_link(["sh", "-c", "echo oops >&2"], stderr: :consume)
      iex> Sluice.Process.read_stderr(p)
      {:ok, "oops\\n"}
  """
  @spec read_stderr(t, pos_integer, timeout) :: read_result
  def read_stderr(p, max \\ 65_536, timeout \\ :infinity), do: do_read(p, :stderr, max, timeout)

  @doc """
  Reads from whichever of stdout and stderr has data first: `{:ok, {:stdout | :stderr,
  binary}}`, or `:eof` once both are at EOF. When both have data they take turns.

      iex> {:ok, p} = Sluice.Process.start_link(["sh", "-c", "echo out"], stderr: :consume)
      iex> Sluice.Process.read_any(p)
      {:ok, {:stdout, "out\\n"}}
  """
  @spec read_any(t, pos_integer, timeout) ::
          {:ok, {:stdout | :stderr, binary}} | :eof | {:error, atom}
  def read_any(p, max \\ 65_536, timeout \\ :infinity), do: do_read(p, :any, max, timeout)

  defp do_read(p, source, max, timeout) do
    max = Options.max_bytes!(max, :max)
    timeout = Options.timeout!(timeout)
    call(p, {:read, source, max, timeout}, timeout)
  end

  @doc """
  Writes `iodata` to the program's stdin (fd 3 with `use_stdio: false`; one frame with
  `framing: {:packet, n}`, too long for n bytes: `ArgumentError`). Returns `:ok` once the program has taken every
  byte, `{:error, :epipe}` if it closed its stdin, `{:error, :closed}` after
  `close_stdin/1`, or `{:error, {:timeout, bytes_written}}`: the first `bytes_written`
  bytes reached the program, the rest was dropped. On a canonical terminal (`pty:`) a
  line over 4,095 bytes reaches the program in pieces, or, with the terminal's `VEOF`
  disabled, is refused: `{:error, :line_too_long}` (see `Sluice.Pty`).

      iex> {:ok, p} = Sluice.Process.start_link(["cat"])
      iex> Sluice.Process.write(p, ["a", ?b, "c"])
      :ok
  """
  @spec write(t, iodata, timeout) :: :ok | {:error, atom | {:timeout, non_neg_integer}}
  def write(p, iodata, timeout \\ :infinity) do
    data =
      try do
        IO.iodata_to_binary(iodata)
      rescue
        ArgumentError -> Options.argument!(:data, "iodata", iodata)
      end

    timeout = Options.timeout!(timeout)

    case call(p, {:write, data, timeout}, timeout) do
      {:bad_frame, expected, size} -> Options.argument!(:data, expected, size)
      answer -> answer
    end
  end

  @doc """
  Closes the program's stdin, so it sees EOF; its output can still be read.

      iex> {:ok, p} = Sluice.Process.start_link(["sort"])
      iex> Sluice.Process.write(p, "b\\na\\n")
      iex> Sluice.Process.close_stdin(p)
      :ok
      iex> Sluice.Process.read(p)
      {:ok, "a\\nb\\n"}

  On a terminal (`pty:`) there is nothing to close: the terminal's EOF character (its
  `VEOF`, normally `^D`, read from its current modes) is written at the start of a line
  (twice after an unfinished line: the first hands the line over), so a program reading
  a canonical terminal sees end of input, as when a user types `^D`. Unlike a pipe, the
  terminal stays open: the program may read again after it (a shell reads its next
  command). Later writes return `{:error, :closed}`.

  A terminal in raw mode at the time of the call (`icanon` off: set by `pty: [modes:
  [icanon: 0]]`, or by the program, as a REPL's line editor does while it reads) has no
  end of input: nothing is written, stdin stays open, and the answer is
  `{:error, %Sluice.Error{reason: :raw_terminal}}` (`:no_eof` for a canonical terminal
  whose `VEOF` is disabled). Tell the program in-band then, for example with
  `write(p, "\\x04")`, the `^D` key a line editor reads as end of input.
  """
  @spec close_stdin(t) :: :ok | {:error, :closed | :nodedown | :timeout | Sluice.Error.t()}
  def close_stdin(p), do: call(p, :close_stdin)

  @doc """
  Stops reading `output` (`:stdout` or `:stderr`) and closes it, as Exile's
  `close_stdout`/`close_stderr` do: the program's next write to it fails with `EPIPE`,
  which kills it with SIGPIPE unless it ignores that signal (then its write returns the
  error, and it may carry on). What was read from that output and not yet taken (frames
  waiting under a `:framing`) is dropped; reads of it, and waiting ones, return `:eof`,
  and active mode sends no more of it. The other output and stdin are untouched, and
  `await_exit/2` still gives the status.

  Returns `:ok` (also for an output already at its end), `{:error, :not_piped}` for a
  stdout that is not piped (redirected, or an adopted process) and
  `{:error, :not_captured}` for a stderr that is not `:consume`d, as reads answer, and
  `{:error, :terminal}` for the stdout of a program on a terminal (`pty:`): the terminal
  is its stdin too, and closing it would hang it up. With `use_stdio: false`, `:stdout`
  is fd 4.

      iex> {:ok, p} = Sluice.Process.start_link(["yes"])
      iex> Sluice.Process.close_output(p, :stdout)
      :ok
      iex> Sluice.Process.await_exit(p)
      {:ok, {:signal, :sigpipe}}
  """
  @spec close_output(t, :stdout | :stderr) :: :ok | {:error, atom}
  def close_output(p, output) when output in [:stdout, :stderr],
    do: call(p, {:close_output, output})

  def close_output(_p, output), do: Options.argument!(:output, ":stdout or :stderr", output)

  @doc """
  Sets the window size of a program's terminal (`pty:`), in character cells; the kernel
  sends SIGWINCH to the terminal's foreground process group. Returns
  `{:error, :not_a_terminal}` for a program on pipes, and `{:error, :closed}` once the
  terminal has reached its end.

      iex> {:ok, p} = Sluice.Process.start_link(["sh", "-c", "read x; stty size"], pty: true)
      iex> Sluice.Process.set_window_size(p, 50, 132)
      :ok
      iex> Sluice.Process.write(p, "\\n")
      iex> Sluice.Process.read(p)
      {:ok, "50 132\\r\\n"}
  """
  @spec set_window_size(t, pos_integer, pos_integer) :: :ok | {:error, atom}
  def set_window_size(p, rows, cols) do
    rows = Sluice.Pty.dimension!(:rows, rows)
    cols = Sluice.Pty.dimension!(:cols, cols)
    call(p, {:set_window_size, rows, cols})
  end

  @doc """
  Changes the modes of a program's terminal (`pty:`) while it runs, as erlexec's
  `pty_opts/2` does: `modes` is a keyword of RFC 4254 mode names and values, as in
  `pty: [modes: ...]` (see `Sluice.Pty`: flags `0`/`1` or a boolean, control characters
  a byte, `255` disabling one), applied in order over the terminal's current modes, at
  once (input the program has not read yet is then treated under the new modes). The
  program may change them again itself; what the terminal does with later writes and
  `close_stdin/1` follows the modes at the time of each (they are read from the terminal
  every time).

  Returns `:ok`, `{:error, :not_a_terminal}` for a program on pipes, `{:error, :closed}`
  once the terminal has reached its end, or `{:error, %Sluice.Error{reason: :einval}}`
  naming a mode Linux has no place for (a speed it does not have, a control character
  over 255: nothing is set) or one the terminal did not take (parity on a
  pseudo-terminal: the other modes are set). An unknown mode name or a bad value raises
  `ArgumentError` naming `modes`.

      iex> argv = ["sh", "-c", "read x; stty -a | grep -o -e -isig"]
      iex> {:ok, p} = Sluice.Process.start_link(argv, pty: true)
      iex> Sluice.Process.set_terminal_modes(p, isig: false)
      :ok
      iex> Sluice.Process.write(p, "\\n")
      :ok
      iex> Sluice.Process.read(p, 65_536, 5_000)
      {:ok, "-isig\\r\\n"}
  """
  @spec set_terminal_modes(t, keyword) :: :ok | {:error, atom | Error.t()}
  def set_terminal_modes(p, modes) do
    modes = Sluice.Pty.modes_argument!(modes)

    case call(p, {:set_terminal_modes, modes}) do
      {:error, {kind, opcode, value}} ->
        {:error, Errors.terminal_mode(kind, Sluice.Pty.mode_name(opcode), value)}

      answer ->
        answer
    end
  end

  @doc """
  Sends a signal (an atom like `:sigterm` or a number) to the program's process group.
  For an adopted process (`manage/2`), to the process (and its group with `group: true`),
  and the answer is the helper program's: `{:error, :esrch}` once it has exited (nothing
  is sent then).

      iex> {:ok, p} = Sluice.Process.start_link(["sleep", "10"])
      iex> Sluice.Process.signal(p, :sigkill)
      :ok
      iex> Sluice.Process.await_exit(p)
      {:ok, {:signal, :sigkill}}
  """
  @spec signal(t, Sluice.Signal.t()) :: :ok | {:error, atom}
  def signal(p, sig) do
    case Sluice.Signal.to_number(sig) do
      {:ok, signum} -> call(p, {:signal, signum})
      :error -> Options.argument!(:signal, "a signal name like :sigterm or a number 1..64", sig)
    end
  end

  @doc """
  Stops the program and this server as `stop/2` does, with the program's own
  `kill_grace` (the option given to `start/2`, `start_link/2` or `manage/2`; default
  `5_000`) as `grace_ms`, as erlexec's `exec:stop/1` uses the start's `kill_timeout`.

      iex> {:ok, p} = Sluice.Process.start_link(["sleep", "10"], kill_grace: 100)
      iex> Sluice.Process.stop(p)
      {:ok, {:signal, :sigterm}}
  """
  @spec stop(t) :: {:ok, status} | {:error, :closed | :nodedown | :timeout | Error.t()}
  def stop(p) do
    # The grace is the server's (it may be on another node): asked first, then used as
    # stop/2's, so the wait stays bounded by it.
    case call(p, :kill_grace) do
      grace when is_integer(grace) -> stop(p, grace)
      {:error, _} = error -> error
    end
  end

  @doc """
  Stops the program and this server: closes stdin, sends `kill_signal` (default SIGTERM) to
  the process group, SIGKILL after `grace_ms`, and returns the exit status once the server
  has ended. If the exit is
  not reported within `grace_ms` + 5 s (the helper program is stuck), returns
  `{:error, %Sluice.Error{reason: :timeout}}`.

      iex> {:ok, p} = Sluice.Process.start_link(["sleep", "10"])
      iex> Sluice.Process.stop(p, 1_000)
      {:ok, {:signal, :sigterm}}
  """
  @spec stop(t, non_neg_integer) :: {:ok, status} | {:error, :closed | :nodedown | Error.t()}
  def stop(p, grace_ms) do
    grace_ms = Options.timeout!(grace_ms, :grace_ms, infinity: false)

    case call(p, {:stop, grace_ms}, Deadline.plus_margin(grace_ms, 5_000)) do
      {:error, :timeout} -> {:error, Errors.no_answer()}
      {:ok, _status} = stopped -> await_end(p, stopped)
      answer -> answer
    end
  end

  # The server answers a stop just before it ends: once stop/2 returns, it has ended (a
  # caller's `Process.alive?/1` or a monitor sees it gone), within the answer margin.
  defp await_end(p, answer) when is_pid(p) do
    ref = Process.monitor(p)

    receive do
      {:DOWN, ^ref, :process, _, _} -> answer
    after
      5_000 ->
        Process.demonitor(ref, [:flush])
        answer
    end
  end

  defp await_end(_name, answer), do: answer

  @doc """
  Waits for the program to exit and returns its status, or `{:error, :timeout}`.

      iex> {:ok, p} = Sluice.Process.start_link(["sh", "-c", "exit 3"])
      iex> Sluice.Process.await_exit(p, 5_000)
      {:ok, 3}
  """
  @spec await_exit(t, timeout) ::
          {:ok, status} | {:error, :timeout | :closed | :helper_down | :nodedown}
  def await_exit(p, timeout \\ :infinity) do
    timeout = Options.timeout!(timeout)
    call(p, {:await_exit, timeout}, timeout)
  end

  @doc """
  Switches active mode: `:once` delivers one output message, a positive integer `n`
  delivers `n` and then sends `{:sluice_passive, p}`, `false` stops deliveries.

      iex> {:ok, p} = Sluice.Process.start_link(["echo", "hi"])
      iex> Sluice.Process.set_active(p, :once)
      :ok
      iex> receive do {:sluice_stdout, ^p, data} -> data end
      "hi\\n"
  """
  @spec set_active(t, :once | pos_integer | false) ::
          :ok | {:error, :closed | :nodedown | :timeout}
  def set_active(p, mode) when mode in [:once, false] or (is_integer(mode) and mode > 0) do
    call(p, {:set_active, mode})
  end

  def set_active(_p, mode),
    do: Options.argument!(:active, ":once, a positive integer or false", mode)

  @doc """
  Makes `pid` the receiver of active-mode messages. Only the current controlling process
  may hand them over; others get `{:error, :not_owner}`. `pid` that is not a pid raises
  `ArgumentError`.

      iex> {:ok, p} = Sluice.Process.start_link(["sleep", "1"])
      iex> Sluice.Process.controlling_process(p, self())
      :ok
  """
  @spec controlling_process(t, pid) :: :ok | {:error, :not_owner | :closed | :nodedown | :timeout}
  def controlling_process(p, pid) when is_pid(pid), do: call(p, {:controlling_process, pid})

  def controlling_process(_p, pid),
    do: Options.argument!(:pid, "a pid (the new controlling process)", pid)

  defp call(p, request, within \\ 0), do: Sluice.Holder.Call.call(p, :process, request, within)
end
