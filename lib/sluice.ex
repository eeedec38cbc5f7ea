defmodule Sluice do
  @moduledoc """
  Run external OS programs from Elixir, safely and fast.

  Sluice gives four styles, all with back-pressure in both directions and with the
  guarantee that no program outlives its owner:

    * `run/2` - one call, the whole output: `Sluice.run(["git", "status"])`;
    * `stream!/2` and `stream/2` - a lazy Enumerable of output chunks or lines, for
      pipelines (`input` may be another stream);
    * `Sluice.Process` - a process per program, with `read`/`write`/`close_stdin`,
      and active mode (`set_active/2`) for interactive programs;
    * `Sluice.Daemon` - a long-lived program under a supervisor, its output sent to Logger.

  `Sluice.Process.manage/2` adopts a process Sluice did not start, and `list/0` shows
  every program of the node.

  argv is executed directly: no shell is involved unless you run one
  (`["sh", "-c", "..."]`). A program name without a slash is looked up in the `PATH` of the
  program's environment.
  """

  alias Sluice.{Error, ExitError, Options, Result}
  alias Sluice.Options.Command

  @typedoc """
  What to run: an argv (the program, then its arguments; executed directly, no shell), or
  a kernel pipeline built by `pipeline/1`. `run/2`, `run!/2`, `stream!/2`, `stream/2` and
  `Sluice.Process.start_link/2` take either.
  """
  @type command :: [String.t()] | Sluice.Pipeline.t()

  # A command written as one string (`"echo hi"`, `'echo hi'`): a mistake whose message
  # shows the argv to write (Sluice.Options.Command.one_string!/3).
  defguardp is_string(argv) when is_binary(argv) or (is_list(argv) and is_integer(hd(argv)))

  @doc """
  Runs `argv` (or a `pipeline/1`) to completion and collects its output.

  Returns `{:ok, %Sluice.Result{}}` for every exit status (a non-zero exit is a result,
  not an error), or `{:error, %Sluice.Error{}}` when the program could not start, on
  `:timeout`, or when the output exceeds `:max_output`; the last two carry the partial
  result in `error.result`, and the program's process group is dead when they return.

  ## Options

    * `:input` - iodata, an Enumerable of iodata, or `fn collectable -> ... end`; written
      with back-pressure while output is read. Without it stdin is closed at once. An
      Enumerable is enumerated in the calling process (unless `input_in: :process`), a
      few elements at a time between reads of output, so whatever it yields (empty
      chunks for ever included) the program's exit, EOF and `:timeout` still end the
      call. An element that the input's own code takes long to produce (it waits in a
      `receive`, on a socket, or for a slow upstream) cannot be interrupted: the call
      goes on when it comes, even after the program exited (`grep -m 1` fed by
      messages waits for the next message).
    * `:input_in` - where an Enumerable or function `:input` is enumerated:
      `:caller` (default) or `:process`.
      * `:caller` - in the calling process: the input may use the caller's process
        dictionary, receive the caller's messages, or be a stream that must run in its
        owner (`Repo.stream/2` inside a transaction). Choose it unless the input can
        wait for long between elements.
      * `:process` - in a process of its own, linked to the caller, which sends the
        chunks to the caller (at most two ahead of what the program took); the caller
        still writes stdin. The program's exit, EOF, `:timeout` and `:max_output` end
        the call at once, whatever the input is waiting for, and that process is gone
        when the call returns, however it ends: it is killed (its own clean-up, such
        as a `Stream.resource/3` after-function, does not run, but the ports and
        linked processes it owns go with it). Choose it for an input fed by messages
        or a socket, or one that may block. The input then runs in another process: it
        receives that process's messages (subscribe from inside the input, e.g. in a
        `Stream.resource/3` start function) and sees its process dictionary. An
        exception of the input is raised in the caller, as with `:caller`; a caller
        that dies or is killed takes the input process with it. Iodata is written from
        the caller either way, and a `stream!/2` given as input is driven together
        with the program (its own `:input_in` counts for its input).
    * `:timeout` - ms or `:infinity` (default). Every timeout, here and elsewhere, is at
      most 4_294_967_295 ms (2^32 - 1, the VM's timers' range): a longer one raises
      `ArgumentError` before the program starts.
    * `:stderr` - `:capture` (default, into `result.stderr`), `:stdout` (merged in order),
      `:null` or `:console`.
    * `:max_output` - bytes of stdout + stderr to accept (default `:infinity`). Nothing
      is read past the first byte over it: the program is stopped, and the partial
      result holds the first `max_output + 1` bytes (stdout and stderr together).
    * `:into` - a `Collectable` that gets stdout chunk by chunk as it is read, in the
      calling process (a slow collectable slows the program: back-pressure); then
      `result.stdout` is its final value (its `:done`): a list of chunks for `[]`, the
      stream for `IO.stream()` or `File.stream!/1`, and so on; `nil` (default) and `""`
      collect a binary. On a failure (`:timeout`, `:max_output`, ...) the collectable is
      halted (its `:halt`) and the partial result's `stdout` is `nil`. `into:
      IO.stream()` (`IO.binstream()` for bytes that are not UTF-8) writes the output to
      the caller's group leader as it comes, which is the VM's stdout in a script, a Mix
      task or IEx (`stdout: :console` is the VM's stderr, written by the program itself).
    * `:pty` - run on a pseudo-terminal (`Sluice.Pty`): the output is the terminal's
      (stderr included unless `:stderr` is given), and the end of `:input` (or its absence)
      is the terminal's EOF character.
    * `:idle_timeout` - ms without any output (default `:infinity`): then the program is
      stopped and `run` returns `{:error, %Sluice.Error{reason: :idle_timeout, result:
      partial}}`, the output so far in `result`. Output counts when it reaches the pipe: a
      program that block-buffers its stdout (Python's `print()` without `-u`) looks idle
      while it works; see the README's
      [Output buffering](README.md#output-buffering).
    * `:node` - run the program on another node, by that node's helper program (`:sluice`
      must run there, else reason `:nosluice`; `:nodedown` if it cannot be reached or goes
      away); the output comes here with back-pressure. See the README's "Running programs
      on other nodes".
    * the spawn options of `Sluice.Process` (`:cd`, `:env`, `:clear_env`, `:kill_grace`,
      ...; not `:framing` or `:use_stdio`). `Sluice.Options` lists them all.

  ## Examples

      iex> {:ok, result} = Sluice.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
      iex> {result.status, result.stdout, result.stderr}
      {3, "out\\n", "err\\n"}

      iex> Sluice.run(["tr", "a-z", "A-Z"], input: "sluice") |> elem(1) |> Map.get(:stdout)
      "SLUICE"

      iex> {:error, %Sluice.Error{reason: :timeout}} = Sluice.run(["sleep", "10"], timeout: 100)
  """
  @spec run(command, keyword) :: {:ok, Result.t()} | {:error, Error.t()}
  def run(argv, opts \\ [])
  def run(argv, opts) when is_string(argv), do: Command.one_string!(argv, opts, "Sluice.run")
  def run(argv, opts), do: Sluice.Caller.Run.run(argv, opts)

  @doc ~S"""
  `System.cmd/3` with Sluice underneath: runs `command` with `args` and returns
  `{collectable, exit_status}` as `System.cmd/3` does for the same arguments, and the
  program cannot outlive the caller (it is stopped when the caller exits or is killed, or
  when the VM ends, as every program of Sluice).

      iex> Sluice.cmd("echo", ["hello"])
      {"hello\n", 0}

      iex> Sluice.cmd("sh", ["-c", "echo a; echo b; exit 3"], into: [], lines: 1024)
      {["a", "b"], 3}

  As `System.cmd/3`:

    * `command` is an absolute path, or looked up with `System.find_executable/1` in the
      VM's `PATH` (a relative path with a slash too); when it is not found,
      `ErlangError` `:enoent` is raised. It is `argv[0]` (the path found) unless `:arg0`.
    * The exit status is an integer: a program killed by a signal is 128 + the signal's
      number. A program that cannot be executed raises `ErlangError` with the errno
      (`:eacces`, `:enoent`, ...).
    * stderr goes to the VM's stderr, unless `stderr_to_stdout: true`.

  ## Options

  `System.cmd/3`'s:

    * `:into` - the `Collectable` the output goes into, chunk by chunk as it is read
      (default `""`). `IO.stream()` (or `IO.binstream()` for bytes that are not UTF-8)
      writes it to the caller's group leader as it comes: in a script, a Mix task or
      IEx, the VM's stdout.
    * `:lines` - a positive integer (System.cmd's buffer size; Elixir 1.15+, given here
      on every version): the collectable gets each line without its `"\n"`, whole
      whatever its length, the last one at EOF even without a newline.
    * `:cd`, `:env` (a value `nil` unsets the variable), `:arg0`, `:stderr_to_stdout`.
    * `:use_stdio` - `false`: the program's stdout and stderr are the VM's console (its
      stderr, as `stdout: :console`), its stdin `/dev/null`, and the collectable gets
      nothing. Unlike a Port's `:nouse_stdio` the program has neither the VM's stdin and
      stdout nor fds 3 and 4; `stderr_to_stdout: true` is refused with it, as
      `System.cmd/3` refuses it.
    * `:parallelism` - a boolean, accepted and without effect: it tunes the scheduling
      of a Port's tasks, and there is no Port here.

  Sluice's, as for `run/2`: `:timeout`, `:idle_timeout`, `:max_output`, `:input` and
  `:input_in`, `:clear_env`, `:inherit_env`, `:kill_signal`, `:kill_grace`,
  `:kill_command`, `:user`, `:group`, `:nice`, `:rlimits`, `:umask`, `:pipe_size`,
  `:pty`. Refused, with a message saying what to use: `:stderr`, `:stdout`, `:stdin`,
  `:success_exit_codes`, `:pipefail` and `:node` (use `run/2`).

  ## Differences

    * stdin: without `:input` the program's stdin is at EOF at once (`System.cmd/3`
      leaves it an open pipe, so a program that reads it waits for ever).
    * A failure of Sluice raises `Sluice.Error`: `:timeout`, `:idle_timeout` and
      `:max_output` (the program stopped, a collectable given as `:into` halted), a
      `:cd` that does not exist (`System.cmd/3` lets the Port print `Could not cd` and
      returns status 2), `:helper_down`.
    * Mistakes raise `ArgumentError` naming the option (an unknown option suggests the
      nearest known one), an invalid `:into` included.
  """
  @spec cmd(String.t(), [String.t()], keyword) :: {Collectable.t(), non_neg_integer}
  def cmd(command, args, opts \\ []), do: Sluice.Caller.Cmd.cmd(command, args, opts)

  @doc """
  Like `run/2`, but returns the result, or raises: `Sluice.ExitError` when the status is
  not in `:success_exit_codes` (default `[0]`), `Sluice.Error` for other failures.

      iex> Sluice.run!(["echo", "hello"]).stdout
      "hello\\n"

      iex> Sluice.run!(["sh", "-c", "exit 1"], success_exit_codes: [0, 1]).status
      1
  """
  @spec run!(command, keyword) :: Result.t()
  def run!(argv, opts \\ [])
  def run!(argv, opts) when is_string(argv), do: Command.one_string!(argv, opts, "Sluice.run!")

  def run!(argv, opts) do
    case run(argv, opts) do
      {:ok, %Result{status: status} = result} ->
        checked = Options.validate!(opts, :run, "Sluice.run!/2")
        extra = [stderr: result.stderr, result: result]

        case ExitError.check(argv, status, result.statuses, checked, extra) do
          :ok -> result
          {:error, error} -> raise error
        end

      {:error, error} ->
        raise error
    end
  end

  @doc """
  A lazy Enumerable of the output of `argv` (or a `pipeline/1`). Nothing runs until it is
  enumerated; each enumeration runs the program anew, owned by the enumerating process
  (any process may enumerate it).

  Elements are stdout chunks (binaries), or `{:stdout | :stderr, binary}` with
  `stderr: :consume`. When the exit status is not in `:success_exit_codes`, it raises
  `Sluice.ExitError` after the last element. A stream needs no `:into`: `Enum.into/2` or
  `Stream.into/2` puts it into any collectable (`IO.stream()` for the VM's stdout).

  Halting early (`Enum.take/2`, `Enum.find/2`, an exception in the consumer) stops the
  program's process group and the input writer and raises nothing of its own.

  ## Options

    * `:input` - an Enumerable (another Sluice stream included) or
      `fn collectable -> ... end`; iodata works too. Enumerated in the consuming process
      as for `run/2` (see its `:input`): an element the input's own code waits for keeps
      the stream waiting, even after the program exited.
    * `:input_in` - `:caller` (default) or `:process`: enumerate `:input` in a linked
      process of its own, so that the program's exit (or `:idle_timeout`, or halting the
      stream) ends the wait at once, whatever the input waits for; that process is gone
      once the stream is done or halted. See `run/2`'s `:input_in` for when to choose
      which.
    * `:chunk_size` - the most bytes per read (default `65_536`).
    * `:lines` - emit whole lines without their newline; the last partial line is
      flushed at EOF (default `false`). A line longer than `:max_line_length` comes in
      pieces of that length, so memory stays bounded.
    * `:max_line_length` - with `:lines`, the longest piece of a line (default
      `1_048_576`).
    * `:stderr` - `:console` (default), `:null`, `:stdout`, `:consume` (emit tagged
      elements), or `:capture` (kept for `Sluice.ExitError`, not emitted).
    * `:exit_timeout` - ms to wait for the exit after EOF before stopping the program
      (default `:infinity`; at most 2^32 - 1, as every timeout).
    * `:success_exit_codes` - default `[0]`.
    * `:framing` - `{:packet, 1 | 2 | 4}` or `{:line, max}`: each element of stdout is one
      frame (see `Sluice.Process`); a packet over `:max_frame` bytes (default 64 MiB)
      raises `Sluice.Error` with reason `:frame_too_large` and stops the program.
    * `:idle_timeout` - ms without any output while the stream waits for it (the
      consumer's own time does not count; default `:infinity`): the program is stopped and
      `Sluice.Error` with reason `:idle_timeout` is raised. Output a program keeps in its
      buffer does not count: see the README's [Output buffering](README.md#output-buffering).
    * `:node` - run the program on another node (`:sluice` must run there): its output
      crosses distribution only as fast as the stream is consumed, and `Sluice.Error` with
      reason `:nosluice` or `:nodedown` is raised if that node lacks Sluice or goes away.
    * the spawn options of `Sluice.Process` except `:use_stdio`.

  ## Examples

      iex> Sluice.stream!(["seq", "3"], lines: true) |> Enum.to_list()
      ["1", "2", "3"]

      iex> Sluice.stream!(["yes"]) |> Enum.take(1) |> hd() |> binary_part(0, 4)
      "y\\ny\\n"

      iex> numbers = Sluice.stream!(["seq", "1000"])
      iex> Sluice.stream!(["wc", "-l"], input: numbers) |> Enum.join()
      "1000\\n"
  """
  @spec stream!(command, keyword) :: Enumerable.t()
  def stream!(argv, opts \\ [])

  def stream!(argv, opts) when is_string(argv),
    do: Command.one_string!(argv, opts, "Sluice.stream!")

  def stream!(argv, opts), do: build_stream(argv, opts, :raise, "Sluice.stream!/2")

  @doc """
  Like `stream!/2`, but ends with an `{:exit, status}` element and never raises on an exit
  status.

      iex> Sluice.stream(["sh", "-c", "echo hi; exit 2"]) |> Enum.to_list()
      ["hi\\n", {:exit, 2}]
  """
  @spec stream(command, keyword) :: Enumerable.t()
  def stream(argv, opts \\ [])

  def stream(argv, opts) when is_string(argv),
    do: Command.one_string!(argv, opts, "Sluice.stream")

  def stream(argv, opts), do: build_stream(argv, opts, :exit_element, "Sluice.stream/2")

  @doc """
  Every program of this node that runs (or whose end its holder has not seen yet), oldest
  first: started with `run/2`, streams, `Sluice.Process`, `Sluice.Daemon`, or adopted
  with `Sluice.Process.manage/2`. Each is a `t:Sluice.Process.info/0` map: the process
  that holds the program (`:pid`) and the one whose exit stops it (`:owner`), `:os_pid`,
  `:argv`, every stage's argv for a pipeline (`:pipeline`, else `nil`), `:started_at`,
  `:managed` (adopted) and its `:cgroup`.

  `mix sluice.ps` prints this list for a running node.

      iex> {:ok, p} = Sluice.Process.start_link(["sleep", "10"])
      iex> Enum.any?(Sluice.list(), &(&1.pid == p and &1.argv == ["sleep", "10"]))
      true
  """
  @spec list() :: [Sluice.Process.info()]
  def list, do: Sluice.Control.Registry.list()

  @doc """
  Stops a program of this node from any process, as Rambo's `kill` does: `program` is an
  entry of `list/0` (its `:os_pid` and `:pid` name it), or an OS pid (the newest listed
  program with that pid). Whatever holds it (a `run/2` or a stream in another process, a
  `Sluice.Process`, a `Sluice.Daemon`, a `Sluice.Worker`, an adopted process), the helper
  program stops it as that holder's own stop would: `kill_signal` to its process group
  (and cgroup), SIGKILL after `kill_grace`, both the program's own (its start options)
  unless given here. The holder then hears of the exit as of any other: `run/2` returns
  its result, `{:ok, %Sluice.Result{status: {:signal, :sigterm}}}` (`run!/2` and
  `stream!/2` raise `Sluice.ExitError`), a `Sluice.Process` answers `await_exit/2`, a
  `Sluice.Daemon` or `Sluice.Worker` stops with `{:program_exited, {:signal, :sigterm}}`
  (and its supervisor restarts it).

  Returns `:ok` once the helper program has the request, without waiting for the exit,
  or `{:error, :not_found}` when no listed program matches (it has ended, or its entry is
  another node's: call `stop/2` on that node, for example with
  `:erpc.call(node(entry.pid), Sluice, :stop, [entry])`). Like `Sluice.Process.stop/2`
  and `signal/2`, any process of the node may stop any of the node's programs: there is
  no owner check.

  ## Options

    * `:kill_signal` - the signal that starts the stop (default: the program's own,
      `:sigterm` unless its start said otherwise).
    * `:kill_grace` - ms until SIGKILL (default: the program's own, `5_000` unless its
      start said otherwise).

  Bad options, or a `program` that is neither an entry nor an OS pid, raise
  `ArgumentError` naming them.

      caller = Task.async(fn -> Sluice.run(["sleep", "60"]) end)
      # ... later, from another process:
      entry = Enum.find(Sluice.list(), &(&1.pid == caller.pid))
      :ok = Sluice.stop(entry, kill_grace: 1_000)
      {:ok, %Sluice.Result{status: {:signal, :sigterm}}} = Task.await(caller)
  """
  @spec stop(Sluice.Process.info() | pos_integer, keyword) :: :ok | {:error, :not_found}
  def stop(program, opts \\ []) do
    checked = Options.validate!(opts, :stop, "Sluice.stop/2")

    signal =
      if Keyword.has_key?(opts, :kill_signal),
        do: elem(Sluice.Signal.to_number(checked.kill_signal), 1)

    grace = if Keyword.has_key?(opts, :kill_grace), do: checked.kill_grace

    case program do
      %{os_pid: os_pid, pid: pid} when is_integer(os_pid) and is_pid(pid) -> :ok
      os_pid when is_integer(os_pid) and os_pid > 0 -> :ok
      other -> Options.argument!(:program, "an entry of Sluice.list/0 or an OS pid", other)
    end

    Sluice.Control.Registry.stop(program, signal, grace)
  end

  @doc """
  A kernel pipeline (`Sluice.Pipeline`): each stage's stdout feeds the next one's stdin
  through a pipe the helper program makes; no byte passes through the BEAM between stages
  and no shell is involved. Give it to `run/2`, `run!/2`, `stream!/2`, `stream/2` or
  `Sluice.Process.start_link/2` in place of argv. A stage is an argv or `{argv, opts}` with
  its own `:cd`, `:env` and `:stderr`.

      iex> pipeline = Sluice.pipeline([["printf", "b\\na\\n"], ["sort"], {["tr", "a-z", "A-Z"], []}])
      iex> Sluice.run!(pipeline) |> Map.take([:stdout, :status, :statuses])
      %{stdout: "A\\nB\\n", status: 0, statuses: [0, 0, 0]}
      iex> {:ok, result} = Sluice.run(Sluice.pipeline([["true"], ["false"], ["true"]]))
      iex> {result.status, result.statuses}
      {0, [0, 1, 0]}
  """
  @spec pipeline([[String.t()] | {[String.t()], keyword}]) :: Sluice.Pipeline.t()
  def pipeline(stages), do: Sluice.Pipeline.new(stages)

  defp build_stream(argv, opts, mode, who) do
    # Validate eagerly, so mistakes raise where the stream is built.
    argv = Command.argv!(argv)
    %Sluice.Stream{argv: argv, opts: Options.validate!(opts, :stream, who), mode: mode}
  end
end
