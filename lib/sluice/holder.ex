defmodule Sluice.Holder do
  @moduledoc false
  # The one mechanism of a process that holds a program (a Sluice.Process server, a
  # Sluice.Worker, a Sluice.Holder.RemoteReader): its start-up, the dispatch of readiness
  # messages, the owner's death, the program's end (its exit or the helper program's) and
  # the holder's own end are written here once. Each holder is a policy on top
  # (Sluice.Holder.Policy): what it does when stdin can take more, when output is ready,
  # when the program exited, when the helper program is gone, and how its owner's death is
  # told.
  #
  # A holder's state is a struct with at least `program` (Sluice.Program.t), `log`
  # (Sluice.Program.Log.t) and `owner` (the pid whose death ends the holder). Its GenServer
  # callbacks hand the messages they do not handle to handle_info/3 and end with
  # terminate/2, which closes the program: every way a holder stops (a callback's
  # `{:stop, ...}`, a raise) closes it there, so no stop path can forget it.
  #
  # How the owner is watched (`watch`):
  #   * `:monitor` - the holder monitors the owner and ends with `:normal` at its death;
  #     the registry names the owner as the program's owner (a Sluice.Process, a reader).
  #   * `:link` - the holder traps exits and links the owner once the program runs, and
  #     ends with the exit signal's reason (a Worker: its supervisor sees the reason);
  #     the registry names the holder itself.

  alias Sluice.Holder.Policy
  alias Sluice.Program
  alias Sluice.Program.{Deadline, Fds, Log, Start}

  @typedoc "How the holder watches its owner (see above)."
  @type watch :: :monitor | :link

  @typedoc "How the holder's end treats a program still running (see `terminate/2`)."
  @type ending :: :close | :stop_and_await

  # A holder's state and what its callbacks return: Sluice.Holder.Policy's types.
  @type state :: Policy.state()
  @type result :: Policy.result()

  @doc """
  Starts a holder (`policy` with `arg`, unlinked: the holder links or monitors its owner
  itself). A program that could not start is `{:error, %Sluice.Error{}}` (start/5's
  `{:shutdown, error}`); any other failure of the start is `{:failed, reason}`, for the
  caller to name.
  """
  @spec start_server(module, term, GenServer.options()) ::
          {:ok, pid} | {:error, Sluice.Error.t()} | {:failed, term}
  def start_server(policy, arg, gen_opts) do
    case GenServer.start(policy, arg, gen_opts) do
      {:ok, pid} -> {:ok, pid}
      {:error, {:shutdown, %Sluice.Error{} = error}} -> {:error, error}
      {:error, reason} -> {:failed, reason}
      :ignore -> {:failed, :ignore}
    end
  end

  @doc """
  Starts the program of a holder being initialised, for `owner`, within `start_ms`:
  opens it (or adopts it, for `{:manage, spec}`), watches the owner, takes the program on
  (`Sluice.Program.hold/2`: its news comes as messages, the channel being armed since the
  start, so an exit during start-up is read by handle_info/3 like any later one) and logs what its
  `:log` outputs already hold. The owner is watched before anything of the program is
  read: its exit, however early, finds the owner watched. Returns the program and its log
  buffers, or the init result of a start that failed.
  """
  @spec start(map | {:manage, map}, pid, map, watch, timeout) ::
          {:ok, Program.t(), Log.t()} | {:stop, {:shutdown, Sluice.Error.t()}}
  def start(spec, owner, opts, watch, start_ms) do
    if watch == :link, do: Process.flag(:trap_exit, true)
    listed = if watch == :link, do: self(), else: owner
    deadline = Deadline.at(start_ms)

    opened =
      case spec do
        {:manage, spec} -> Start.manage(spec, deadline, listed)
        spec -> Start.open(spec, deadline, listed)
      end

    case opened do
      {:ok, program} ->
        # An owner that died meanwhile (or whose node is gone) is a :DOWN or an exit
        # signal at once (`:noproc`, `:noconnection`): the holder ends, and the program.
        _ = if watch == :link, do: Process.link(owner), else: Process.monitor(owner)
        program = Program.hold(program, opts)
        {log, program} = Log.drain_all(Log.new(program), program)
        {:ok, program, log}

      {:error, error} ->
        {:stop, {:shutdown, error}}
    end
  end

  @doc """
  Handles a message a holder's own clauses did not: the program's readiness (dispatched
  to the policy), its channel's news (`exited/2` or `helper_down/1`), the `:log` outputs
  (logged here), the owner's death (`owner_down/2`, then the holder stops). Anything else
  is dropped.
  """
  @spec handle_info(module, term, state) :: result
  def handle_info(policy, {:select, _, _, _} = msg, s) do
    case Program.handle_ready(s.program, msg) do
      {:ready, :stdin} ->
        {:noreply, policy.input_ready(%{s | program: Fds.finish_close_stdin(s.program)})}

      {:ready, role} when role in [:log_stdout, :log_stderr] ->
        {log, program} = Log.drain(s.log, s.program, role)
        {:noreply, %{s | log: log, program: program}}

      {:ready, _output} ->
        {:noreply, policy.output_ready(s)}

      {:control, program} ->
        control(policy, %{s | program: program})

      :unknown ->
        {:noreply, s}
    end
  end

  def handle_info(policy, {:DOWN, _ref, :process, owner, reason}, %{owner: owner} = s),
    do: {:stop, :normal, policy.owner_down(s, reason)}

  # Only a linked holder traps exits: the owner's exit signal, its reason the holder's.
  def handle_info(policy, {:EXIT, _pid, reason}, s),
    do: {:stop, reason, policy.owner_down(s, reason)}

  def handle_info(_policy, _other, s), do: {:noreply, s}

  @doc """
  What the program channel's news means for the holder: nothing yet (still running), its
  exit, or the helper program's end, which wins over a status read with it.
  """
  @spec control(module, state) :: result
  def control(policy, s) do
    cond do
      Program.helper_down?(s.program) -> policy.helper_down(s)
      Program.running?(s.program) -> {:noreply, s}
      true -> policy.exited(s, elem(Program.status(s.program), 1))
    end
  end

  @doc """
  The holder's end, from its `terminate/2`: closes every fd and the channel, so the
  helper program stops what is left of the program (with `kill_signal` and `kill_grace`).
  With `:stop_and_await`, a program still running is stopped first and its exit awaited
  (up to its grace and the report's margin), so a supervisor that restarts the holder
  never has two programs running.
  """
  @spec terminate(state, ending) :: :ok
  def terminate(s, :stop_and_await) do
    if Program.running?(s.program) do
      {_status, program} = Program.stop_and_await(s.program, Program.kill_grace(s.program))
      Program.close(program)
    else
      Program.close(s.program)
    end
  end

  def terminate(s, :close), do: Program.close(s.program)

  @doc """
  The status of a process that holds a program, or of a `Sluice.Daemon`, as its
  `format_status/1` gives it to crash reports and `:sys.get_status/1`: its state
  replaced by `summary` (made by the holder from its state: no fds, no buffered data, no
  request's bytes), every binary of the last message and of the `sys` log shown as its
  size (`{:binary, bytes}`: output, a write's or a call's data), and every stack frame of
  the reason with its arity in place of its arguments (a `FunctionClauseError` in a
  callback would show the state there).
  """
  @spec format_status(map, (term -> map)) :: map
  def format_status(status, summary) do
    Map.new(status, fn
      {:state, state} -> {:state, summary.(state)}
      {:message, message} -> {:message, redact(message)}
      {:log, events} when is_list(events) -> {:log, Enum.map(events, &redact/1)}
      {:reason, reason} -> {:reason, reason |> without_arguments() |> redact()}
      other -> other
    end)
  end

  @doc """
  Runs a GenServer callback of a holder (or of a `Sluice.Daemon`) on state `s`: what it
  returns, or, when it raises, `{:stop, {exception, stacktrace}, s}` with the values left
  out (the stacktrace's arguments as their arity, the exception's terms as `:redacted`).
  OTP adds a raising callback's stacktrace to the crash report after `format_status/1`,
  and a `FunctionClauseError` there carries the callback's arguments, the state with its
  fds and buffered data among them; this stop, reported without a stacktrace, carries
  none. The holder ends as after any other stop: its `terminate/2` closes the program.
  A `throw` (a callback's return value for `gen_server`) and an exit pass through.
  """
  @spec guard(state, (() -> tuple)) :: tuple
  def guard(s, callback) do
    callback.()
  rescue
    exception -> {:stop, {without_values(exception), Enum.map(__STACKTRACE__, &arity/1)}, s}
  end

  # An exception's message stays, and so do its plain terms (atoms and numbers, in tuples
  # and lists: a module, an arity, a key, `{:error, :closed}`); any other term it names
  # (what a match or case did not match, a map without a key, the original of an Erlang
  # error) may be the state or data.
  defp without_values(exception) do
    Map.new(Map.from_struct(exception), fn
      {:message, message} -> {:message, message}
      {key, value} -> {key, if(plain?(value), do: value, else: :redacted)}
    end)
    |> Map.put(:__struct__, exception.__struct__)
  end

  defp plain?(term) when is_atom(term) or is_number(term), do: true
  defp plain?(term) when is_tuple(term), do: term |> Tuple.to_list() |> plain?()
  defp plain?([head | tail]), do: plain?(head) and plain?(tail)
  defp plain?([]), do: true
  defp plain?(_term), do: false

  @doc """
  What every holder's status shows of its program (see `format_status/2`): its OS pid,
  whether it runs (`:running`, `{:exited, status}`, `:lost`), and the owner.
  """
  @spec summary(state) :: %{os_pid: pos_integer, program: Program.exit_state(), owner: pid}
  def summary(s),
    do: %{os_pid: Program.os_pid(s.program), program: Program.status(s.program), owner: s.owner}

  defp redact(data) when is_binary(data), do: {:binary, byte_size(data)}

  defp redact(data) when is_tuple(data),
    do: data |> Tuple.to_list() |> redact() |> List.to_tuple()

  defp redact(data) when is_map(data) and not is_struct(data), do: Map.new(data, &redact/1)
  defp redact(data) when is_list(data), do: redact_list(data)
  defp redact(data), do: data

  # Improper lists too (iodata).
  defp redact_list([head | tail]), do: [redact(head) | redact_list(tail)]
  defp redact_list([]), do: []
  defp redact_list(tail), do: redact(tail)

  defp without_arguments({error, [{_m, _f, _a, _loc} | _] = stack}) when is_list(stack),
    do: {without_arguments(error), Enum.map(stack, &arity/1)}

  defp without_arguments({error, reason}), do: {error, without_arguments(reason)}
  defp without_arguments(reason), do: reason

  defp arity({m, f, args, loc}) when is_list(args), do: {m, f, length(args), loc}
  defp arity(frame), do: frame
end
