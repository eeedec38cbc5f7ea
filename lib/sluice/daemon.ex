defmodule Sluice.Daemon do
  @moduledoc """
  A long-lived program under a supervisor.

      children = [
        {Sluice.Daemon, argv: ["redis-server", "--port", "7000"], name: MyApp.Redis}
      ]

  Each line the program writes (stdout and stderr) goes to `Logger` at the `:log` level,
  with metadata `os_pid` and `stream`. When the program exits, the daemon stops: with
  reason `:normal` when it exited 0, else `{:program_exited, status}` (see `:exit_reason`),
  so a supervisor restarts a `:permanent` daemon whatever the status, and a `:transient`
  one only after a failure:

      children = [
        Supervisor.child_spec(
          {Sluice.Daemon, argv: ["./nightly-job.sh"], log_prefix: "job: ", name: MyApp.Job},
          restart: :transient
        )
      ]

  Stopping the daemon (or its supervisor) stops the program's process group:
  `kill_signal`, then SIGKILL after `kill_grace`.

  The daemon ends when its program has exited and its output reached EOF: a background
  child that keeps the program's stdout or stderr open keeps the daemon (and the program's
  cgroup) alive until it exits too.

  ## Options

    * `:argv` (required) - the program and its arguments.
    * `:name` - a name to register the daemon under.
    * `:log` - which lines go to `Logger`, at which level: a level for both streams
      (default `:info`; `:warn` means `:warning`), `false` for neither, or each stream's,
      `[stdout: :info, stderr: :warning]`, where a stream left out (or `false`) is not
      logged. A stream not logged is still read (and its lines dropped), so the program
      never blocks on it, and `:ready` sees its lines.
    * `:log_prefix` - text put before each logged line (default `""`), such as
      `"redis: "`.
    * `:log_metadata` - a keyword list of `Logger` metadata added to each logged line
      (default `[]`), besides `os_pid` and `stream`, which are Sluice's and win over keys
      of the same name.
    * `:log_transform` - a function applied to each line before it is logged (default
      `nil`: lines as they are): `fn line -> ... end`, or `fn line, stream -> ... end`
      with `stream` `:stdout` or `:stderr`. The line comes without its newline (a line
      longer than `:max_line_length` in pieces). It returns the text to log (a string or
      iodata; the prefix goes before it), or `nil` or `false` to drop the line. It runs in
      the daemon, only for logged streams, and never changes what `:ready` sees; a
      function that raises, or returns anything else (an `ArgumentError` then), stops the
      daemon, and its supervisor restarts it.
    * `:exit_reason` - a function of the program's exit status (`0..255` or
      `{:signal, name}`) returning the daemon's exit reason, for a supervisor to judge
      (default `nil`: `0` is `:normal`, any other status `{:program_exited, status}`).
      `:normal`, `:shutdown` and `{:shutdown, term}` stop a `:transient` daemon for good;
      anything else restarts it. For example, `fn 0 -> :normal; 3 -> {:shutdown, :done};
      s -> {:program_exited, s} end`.
    * `:max_line_length` - a longer line is logged in pieces of this many bytes (default
      1 MiB), so a program that never writes a newline cannot grow memory without bound.
    * `:ready` - a `Regex` or a function of one line returning a boolean: `start_link/1`
      returns only once a line of output (stdout or stderr) matches, so the supervisor
      starts the next child once this program is ready to serve. The line must reach the
      pipe: a program that block-buffers its stdout keeps it (`python3 -m http.server`
      needs `python3 -u` for `ready: ~r/Serving HTTP/`); see the README's
      [Output buffering](README.md#output-buffering).
    * `:ready_timeout` - ms to wait for that line (default `30_000`), however much else
      the program prints meanwhile; then the program is stopped and `start_link/1` returns
      `{:error, %Sluice.Error{reason: :not_ready}}` (also when the program exits before a
      line matched). A caller that dies during the wait takes the daemon and its program
      with it, as a linked one does later.
    * `:id` - the child id under a supervisor; default the `:name`, else
      `{Sluice.Daemon, argv}`. Two daemons with the same argv under one supervisor need
      distinct ids.
    * every `Sluice.Process` option except `:stderr` (`:cd`, `:env`, `:kill_grace`,
      `:pty`, ...). With `:pty`, stdout is the terminal; stderr stays a pipe of its own, so
      each line is still logged with its stream.
  """
  use GenServer

  require Logger

  alias Sluice.{Error, Holder, Options}
  alias Sluice.Options.Command
  alias Sluice.Program.{Deadline, Errors, Lines}
  alias Sluice.Process, as: P

  # Options of the daemon itself, not of its Sluice.Process.
  @own [
    :log,
    :log_prefix,
    :log_metadata,
    :log_transform,
    :exit_reason,
    :name,
    :id,
    :max_line_length,
    :ready,
    :ready_timeout
  ]
  @grant 64

  @typedoc "Where each output's lines go: a Logger level, or `false` (read and dropped)."
  @type levels :: %{stdout: Logger.level() | false, stderr: Logger.level() | false}

  # The daemon's state: its Sluice.Process and the program's OS pid, how lines are logged
  # (levels, prefix, the metadata of each stream, the transform), the exit's reason, the
  # grace of a stop, and each output's unfinished line.
  @typep state :: %{
           p: pid,
           os_pid: pos_integer,
           log: levels,
           prefix: String.t(),
           metadata: %{stdout: keyword, stderr: keyword},
           transform: (String.t() -> term) | (String.t(), atom -> term) | nil,
           exit_reason: (P.status() -> term) | nil,
           grace: non_neg_integer,
           max_line: pos_integer,
           lines: %{stdout: Lines.t(), stderr: Lines.t()}
         }

  @doc """
  A child spec; `:restart` and `:shutdown` may be overridden like for any GenServer. The
  options are checked here, as `start_link/1` checks them: a mistake raises
  `ArgumentError` naming the option when the spec is built, not when a supervisor starts
  the child.

      iex> Sluice.Daemon.child_spec(argv: ["sleep", "1"]).shutdown
      6000
  """
  @spec child_spec(keyword) :: Supervisor.child_spec()
  def child_spec(opts) do
    {argv, _opts, checked} = config!(opts, "Sluice.Daemon.child_spec/1")

    %{
      id: checked.id || checked.name || {__MODULE__, argv},
      start: {__MODULE__, :start_link, [opts]},
      # Long enough for the program to end within its kill grace.
      shutdown: Deadline.plus_margin(checked.kill_grace, 1_000)
    }
  end

  @doc """
  Starts the daemon and its program, linked to the caller (the daemon links itself to the
  caller before this returns; while the program starts and gets ready, it watches the
  caller with a monitor, so that a failed start is an error return, not an exit signal).

      iex> {:ok, d} = Sluice.Daemon.start_link(argv: ["sleep", "10"], log: false)
      iex> is_integer(Sluice.Daemon.os_pid(d))
      true
      iex> GenServer.stop(d)
      :ok
  """
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(opts) do
    # Validate in the caller, so mistakes raise here rather than crash the daemon.
    {argv, opts, checked} = config!(opts, "Sluice.Daemon.start_link/1")
    process_opts = [{:stderr, :consume} | Keyword.drop(opts, @own)]
    server_opts = if checked.name, do: [name: checked.name], else: []
    ready = if checked.ready, do: {checked.ready, checked.ready_timeout}

    config = %{
      log: levels(checked.log),
      prefix: checked.log_prefix,
      metadata: checked.log_metadata,
      transform: checked.log_transform,
      exit_reason: checked.exit_reason,
      grace: checked.kill_grace,
      max_line: checked.max_line_length
    }

    args = {self(), argv, config, ready, process_opts}

    # Started unlinked, and linked by the daemon itself once it is ready (see init/1): a
    # program that fails to start (or to get ready) is an error return, not an exit
    # signal to the caller, and a caller killed while it waits stops the daemon.
    case GenServer.start(__MODULE__, args, server_opts) do
      {:ok, pid} ->
        {:ok, pid}

      {:error, {:shutdown, %Error{} = error}} ->
        {:error, error}

      other ->
        other
    end
  end

  # The daemon's options checked (ArgumentError naming the mistake, for `who`): argv, the
  # other options, and the checked ones.
  defp config!(opts, who) do
    unless Keyword.keyword?(opts) and Keyword.has_key?(opts, :argv) do
      Sluice.OptionError.raise!(kind: :missing, option: :argv, value: opts, who: who)
    end

    {argv, opts} = Keyword.pop(opts, :argv)
    argv = Command.argv!(argv)

    if Keyword.has_key?(opts, :stderr) do
      Sluice.OptionError.raise!(
        kind: :refused,
        option: :stderr,
        value: opts[:stderr],
        who: who,
        expected: "it logs both streams"
      )
    end

    checked = Options.validate!(opts, :daemon, who)
    Command.command!(argv, checked)
    {argv, opts, checked}
  end

  @doc """
  The OS pid of the daemon's program; `{:error, :closed}` once the daemon has ended, as
  `Sluice.Process.os_pid/1` answers.

      iex> {:ok, d} = Sluice.Daemon.start_link(argv: ["sleep", "10"], log: false)
      iex> File.exists?("/proc/\#{Sluice.Daemon.os_pid(d)}")
      true
      iex> GenServer.stop(d)
      :ok
  """
  @spec os_pid(GenServer.server()) :: pos_integer | {:error, :closed | :nodedown | :timeout}
  def os_pid(daemon), do: Sluice.Holder.Call.call(daemon, :daemon, :os_pid)

  @impl true
  def init({caller, argv, config, ready, opts}) do
    Process.flag(:trap_exit, true)
    # The caller waits in start_link/1 while the program starts and gets ready: if it dies
    # meanwhile, nobody would ever link to this daemon, so it stops (and its program).
    watch = Process.monitor(caller)

    case P.start_link(argv, opts) do
      {:ok, p} ->
        :ok = P.set_active(p, @grant)

        os_pid = P.os_pid(p)
        # Sluice's keys win: they say which program and which stream a line is from.
        metadata = &Keyword.merge(config.metadata, os_pid: os_pid, stream: &1)

        st =
          Map.merge(config, %{
            p: p,
            os_pid: os_pid,
            metadata: %{stdout: metadata.(:stdout), stderr: metadata.(:stderr)},
            lines: %{stdout: Lines.new(config.max_line), stderr: Lines.new(config.max_line)}
          })

        with {:ok, st} <- await_ready(st, ready, {caller, watch}) do
          # Linked from here, before start_link/1 returns: no moment when the caller's
          # death would leave the daemon behind. A caller that died since is an exit
          # signal now (`:noproc`), and the daemon stops with it.
          Process.demonitor(watch, [:flush])
          Process.link(caller)
          {:ok, st}
        end

      {:error, error} ->
        {:stop, {:shutdown, error}}
    end
  end

  # With `ready:`, init returns once a line matches (logging every line meanwhile), the
  # program exits, `ready_timeout` passes or the caller dies, whichever comes first.
  defp await_ready(st, nil, _caller), do: {:ok, st}

  defp await_ready(st, {test, timeout}, caller),
    do: await_ready(st, test, {Deadline.at(timeout), timeout}, caller)

  # The deadline is checked before each message: a program that prints non-matching lines
  # fast keeps the mailbox full, and a receive takes a waiting message before it ever
  # looks at its `after`.
  defp await_ready(st, test, {deadline, timeout} = limit, {pid, watch} = caller) do
    p = st.p

    case Deadline.remaining(deadline) do
      0 ->
        not_ready(st, {:no_match, timeout})

      left ->
        receive do
          {tag, ^p, data} when tag in [:sluice_stdout, :sluice_stderr] ->
            stream = if tag == :sluice_stdout, do: :stdout, else: :stderr
            {lines, st} = log_lines(st, stream, data)

            if Enum.any?(lines, &ready?(test, &1)),
              do: {:ok, st},
              else: await_ready(st, test, limit, caller)

          {:sluice_passive, ^p} ->
            :ok = P.set_active(p, @grant)
            await_ready(st, test, limit, caller)

          {:sluice_exit, ^p, status} ->
            not_ready(st, {:exited, status})

          {:DOWN, ^watch, :process, ^pid, reason} ->
            _ = P.stop(st.p, st.grace)
            {:stop, {:shutdown, {:caller_down, reason}}}
        after
          left -> await_ready(st, test, limit, caller)
        end
    end
  end

  defp ready?(%Regex{} = re, line), do: Regex.match?(re, line)
  defp ready?(fun, line), do: fun.(line) == true

  defp not_ready(st, why) do
    _ = P.stop(st.p, st.grace)
    {:stop, {:shutdown, Errors.not_ready(why)}}
  end

  @impl true
  def handle_call(request, from, st), do: Holder.guard(st, fn -> on_call(request, from, st) end)

  defp on_call(:os_pid, _from, st), do: {:reply, st.os_pid, st}

  @impl true
  def handle_info(msg, st), do: Holder.guard(st, fn -> on_info(msg, st) end)

  defp on_info({:sluice_stdout, p, data}, %{p: p} = st), do: {:noreply, log(st, :stdout, data)}
  defp on_info({:sluice_stderr, p, data}, %{p: p} = st), do: {:noreply, log(st, :stderr, data)}

  defp on_info({:sluice_passive, p}, %{p: p} = st) do
    :ok = P.set_active(p, @grant)
    {:noreply, st}
  end

  defp on_info({:sluice_exit, p, status}, %{p: p} = st) do
    st = Enum.reduce([:stdout, :stderr], st, &flush/2)
    {:stop, exit_reason(st.exit_reason, status), st}
  end

  defp on_info({:EXIT, p, reason}, %{p: p} = st), do: {:stop, reason, st}
  defp on_info({:EXIT, _other, reason}, st), do: {:stop, reason, st}
  defp on_info(_other, st), do: {:noreply, st}

  @impl true
  def terminate(_reason, st) do
    # A Sluice.Process that is gone answers {:error, :closed} (it may be on another node,
    # where Process.alive?/1 cannot look).
    _ = P.stop(st.p, st.grace)
    :ok
  catch
    :exit, _ -> :ok
  end

  # OTP calls format_status/1 from 25.0; Elixir's GenServer declares it as a callback
  # only from 1.17 on (before, `@impl` on it would warn; after, its absence would).
  if {:format_status, 1} in GenServer.behaviour_info(:callbacks), do: @impl(true)
  @doc false
  # Crash reports and :sys.get_status/1 show no output: no partial line, no message's data.
  @spec format_status(map) :: map
  def format_status(status),
    do: Holder.format_status(status, &%{process: &1.p, os_pid: &1.os_pid})

  defp log(st, stream, data), do: st |> log_lines(stream, data) |> elem(1)

  defp log_lines(st, stream, data) do
    {lines, buffer} = Lines.split(st.lines[stream], data)
    Enum.each(lines, &log_line(st, stream, &1))
    {lines, put_in(st.lines[stream], buffer)}
  end

  defp flush(stream, st) do
    st.lines[stream] |> Lines.flush() |> Enum.each(&log_line(st, stream, &1))
    put_in(st.lines[stream], Lines.new(st.max_line))
  end

  @spec log_line(state, :stdout | :stderr, String.t()) :: :ok
  defp log_line(st, stream, line) do
    case st.log do
      %{^stream => false} ->
        :ok

      %{^stream => level} ->
        case transform(st.transform, line, stream) do
          dropped when dropped in [nil, false] -> :ok
          text -> Logger.log(level, [st.prefix | text], st.metadata[stream])
        end
    end
  end

  defp transform(nil, line, _stream), do: line
  defp transform(fun, line, _stream) when is_function(fun, 1), do: text!(fun.(line))
  defp transform(fun, line, stream), do: text!(fun.(line, stream))

  defp text!(text) when is_binary(text) or is_list(text) or text in [nil, false], do: text

  defp text!(other) do
    raise ArgumentError,
          "the :log_transform of Sluice.Daemon must return a string, iodata, nil or " <>
            "false, got: #{inspect(other)}"
  end

  # A level for both streams (false: neither), or each stream's (Sluice.Options.Check).
  defp levels(level) when is_atom(level), do: %{stdout: level, stderr: level}
  defp levels(streams), do: Map.new(streams)

  # The daemon's exit reason for the program's status: by default, exit 0 is `:normal`
  # (a `:transient` daemon is not restarted), any other status a failure.
  defp exit_reason(nil, 0), do: :normal
  defp exit_reason(nil, status), do: {:program_exited, status}
  defp exit_reason(fun, status), do: fun.(status)
end
