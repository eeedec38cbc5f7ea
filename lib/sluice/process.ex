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

  ## Options

    * `:cd` - working directory of the program.
    * `:env` - a map or list of `{name, value}` pairs added to the environment; a `nil`
      value unsets the variable.
    * `:clear_env` - start from an empty environment instead of the VM's (default `false`).
    * `:stderr` - `:console` (default: the VM's stderr), `:null`, `:stdout` (merged into
      stdout in order) or `:consume` (read with `read_stderr/3` and `read_any/3`).
    * `:kill_signal` - the signal that starts a stop (default `:sigterm`).
    * `:kill_grace` - ms between `kill_signal` and SIGKILL (default `5_000`).
    * `:pipe_size` - pipe capacity in bytes (`F_SETPIPE_SZ`); default the system's (64 KiB).

  ## Active mode

  Like `:gen_tcp`, a `Sluice.Process` can push output as messages instead of waiting for
  `read/3` calls. `set_active(p, :once | n | false)` grants messages; the controlling process
  (the owner, until `controlling_process/2`) receives:

    * `{:sluice_stdout, p, data}` and `{:sluice_stderr, p, data}` (the latter with
      `stderr: :consume`);
    * `{:sluice_passive, p}` when a count `n` is used up;
    * `{:sluice_exit, p, status}` once the output reached EOF and the program exited.

  No more is read from the pipes than was granted, so back-pressure holds. While active,
  `read/3` and friends return `{:error, :active}`.

  ## Exit status

  A status is the exit code (`0..255`) or `{:signal, name}`, such as `{:signal, :sigkill}`.
  EOF and the exit status are independent: either may come first, and neither loses data.

  ## When the helper dies

  If the node's helper process dies, its programs are killed, and every `Sluice.Process`
  answers pending callers with `{:error, :helper_down}` and exits with reason
  `{:shutdown, :helper_down}`.
  """
  use GenServer

  alias Sluice.{Error, Helper, Native, Options}

  @type t :: GenServer.server()
  @type status :: non_neg_integer | {:signal, atom | pos_integer}
  @type read_result :: {:ok, binary} | :eof | {:error, atom}

  @stderr_modes [:console, :null, :stdout, :consume]
  @fds Sluice.Process.Fds

  defstruct [
    :id,
    :os_pid,
    :owner,
    :stdin,
    :stdout,
    :stderr,
    :kill,
    :controller,
    status: nil,
    active: false,
    leased: false,
    exit_sent: false,
    eof: %{stdout: false, stderr: false},
    reads: [],
    writes: :queue.new(),
    exit_waiters: [],
    stop_waiters: []
  ]

  ## API

  @doc """
  Starts `argv` linked to the caller, which becomes the owner. Returns `{:ok, pid}` once the
  program runs (after a successful `exec`), or `{:error, %Sluice.Error{}}`, whose `:reason`
  is the errno of what failed (`:enoent`, `:eacces`, `:enotdir`, `:e2big`, `:emfile`, ...).

      iex> {:ok, p} = Sluice.Process.start_link(["echo", "hi"])
      iex> Sluice.Process.read(p)
      {:ok, "hi\\n"}
      iex> Sluice.Process.await_exit(p)
      {:ok, 0}

      iex> {:error, %Sluice.Error{reason: :enoent}} = Sluice.Process.start_link(["no-such-program"])
  """
  @spec start_link([String.t()], keyword) :: {:ok, pid} | {:error, Error.t()}
  def start_link(argv, opts \\ []) do
    with {:ok, pid} <- start(argv, opts) do
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
  @spec start([String.t()], keyword) :: {:ok, pid} | {:error, Error.t()}
  def start(argv, opts \\ []) do
    {spec, kill, _opts} = prepare!(argv, opts, "Sluice.Process.start/2")
    start_prepared(spec, kill)
  end

  @doc false
  # Validates argv and options (raising ArgumentError naming the option) and returns the
  # helper's spawn spec, the kill parameters and the normalised options. The higher-level
  # API passes its own extra option defaults.
  @spec prepare!([String.t()], keyword, String.t(), keyword, keyword) ::
          {map, {pos_integer, non_neg_integer}, map}
  def prepare!(argv, opts, who, extra_defaults \\ [], overrides \\ []) do
    argv = Options.argv!(argv)
    opts = Options.validate!(opts, Options.with_process_defaults(extra_defaults, overrides), who)

    if extra_defaults == [] and opts.stderr not in @stderr_modes do
      Options.bad!(:stderr, ":console, :null, :stdout or :consume", opts.stderr)
    end

    {:ok, signum} = Sluice.Signal.to_number(opts.kill_signal)
    {Options.spawn_spec(argv, opts), {signum, opts.kill_grace}, opts}
  end

  @doc false
  @spec start_prepared(map, {pos_integer, non_neg_integer}) :: {:ok, pid} | {:error, Error.t()}
  def start_prepared(spec, kill) do
    case GenServer.start(__MODULE__, {spec, kill, self()}) do
      {:ok, pid} ->
        {:ok, pid}

      {:error, {:shutdown, %Error{} = error}} ->
        {:error, error}

      {:error, reason} ->
        {:error, Error.new(:start_failed, "could not start: #{inspect(reason)}")}
    end
  end

  @doc """
  The program's OS pid (also its process group id).

      iex> {:ok, p} = Sluice.Process.start_link(["sleep", "10"])
      iex> is_integer(Sluice.Process.os_pid(p))
      true
  """
  @spec os_pid(t) :: pos_integer
  def os_pid(p), do: GenServer.call(p, :os_pid)

  @doc """
  Reads up to `max` bytes of stdout. Returns as soon as any data is available, `:eof` once
  the program closed its stdout and everything was read, or `{:error, :timeout}`.

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
  binary}}`, or `:eof` once both are at EOF.

      iex> {:ok, p} = Sluice.Process.start_link(["sh", "-c", "echo out"], stderr: :consume)
      iex> Sluice.Process.read_any(p)
      {:ok, {:stdout, "out\\n"}}
  """
  @spec read_any(t, pos_integer, timeout) ::
          {:ok, {:stdout | :stderr, binary}} | :eof | {:error, atom}
  def read_any(p, max \\ 65_536, timeout \\ :infinity), do: do_read(p, :any, max, timeout)

  defp do_read(p, source, max, timeout) do
    unless is_integer(max) and max > 0 do
      raise ArgumentError, "max must be a positive integer (bytes), got: #{inspect(max)}"
    end

    timeout = Options.timeout!(timeout)

    case fast_read(p, source, max) do
      {:ok, _} = data -> data
      :miss -> GenServer.call(p, {:read, source, max, timeout}, :infinity)
    end
  end

  # Data already waiting in the pipe is read in the caller, without a round trip through
  # the server: the NIF serialises reads on an fd, and try_read arms nothing (the server
  # stays the one woken by readiness). Anything else (an empty pipe, EOF, active mode, a
  # lease) is the server's business: it keeps the program's fds in the table only while
  # it is passive and not leased.
  defp fast_read(p, source, max) when is_pid(p) do
    case :ets.lookup(@fds, p) do
      [{^p, stdout, stderr}] -> fast_read(source, stdout, stderr, max)
      [] -> :miss
    end
  end

  defp fast_read(_p, _source, _max), do: :miss

  defp fast_read(:stdout, stdout, _stderr, max), do: try_read(stdout, max, & &1)
  defp fast_read(:stderr, _stdout, nil, _max), do: :miss
  defp fast_read(:stderr, _stdout, stderr, max), do: try_read(stderr, max, & &1)

  defp fast_read(:any, stdout, stderr, max) do
    with :miss <- try_read(stdout, max, &{:stdout, &1}),
         false <- stderr == nil do
      try_read(stderr, max, &{:stderr, &1})
    else
      true -> :miss
      data -> data
    end
  end

  defp try_read(fd, max, tag) do
    case Native.try_read(fd, max) do
      {:ok, data} -> {:ok, tag.(data)}
      _ -> :miss
    end
  end

  @doc false
  # The table of the fds that any caller may read directly (see fast_read/3). Created by
  # the application, so it lives as long as Sluice does.
  @spec create_table() :: :ok
  def create_table do
    :ets.new(@fds, [:named_table, :public, :set, read_concurrency: true])
    :ok
  end

  @doc false
  # Called by Sluice.Helper when a Sluice.Process ends, however it ends.
  @spec forget(pid) :: :ok
  def forget(pid) do
    :ets.delete(@fds, pid)
    :ok
  end

  @doc """
  Writes `iodata` to the program's stdin. Returns `:ok` once the program has taken every
  byte, `{:error, :epipe}` if it closed its stdin, `{:error, :closed}` after
  `close_stdin/1`, or `{:error, :timeout}` (the unwritten rest is dropped).

      iex> {:ok, p} = Sluice.Process.start_link(["cat"])
      iex> Sluice.Process.write(p, ["a", ?b, "c"])
      :ok
  """
  @spec write(t, iodata, timeout) :: :ok | {:error, atom}
  def write(p, iodata, timeout \\ :infinity) do
    data =
      try do
        IO.iodata_to_binary(iodata)
      rescue
        ArgumentError -> raise ArgumentError, "write expects iodata, got: #{inspect(iodata)}"
      end

    GenServer.call(p, {:write, data, Options.timeout!(timeout)}, :infinity)
  end

  @doc """
  Closes the program's stdin, so it sees EOF; its output can still be read.

      iex> {:ok, p} = Sluice.Process.start_link(["sort"])
      iex> Sluice.Process.write(p, "b\\na\\n")
      iex> Sluice.Process.close_stdin(p)
      :ok
      iex> Sluice.Process.read(p)
      {:ok, "a\\nb\\n"}
  """
  @spec close_stdin(t) :: :ok
  def close_stdin(p), do: GenServer.call(p, :close_stdin)

  @doc """
  Sends a signal (an atom like `:sigterm` or a number) to the program's process group.

      iex> {:ok, p} = Sluice.Process.start_link(["sleep", "10"])
      iex> Sluice.Process.signal(p, :sigkill)
      :ok
      iex> Sluice.Process.await_exit(p)
      {:ok, {:signal, :sigkill}}
  """
  @spec signal(t, Sluice.Signal.t()) :: :ok
  def signal(p, sig) do
    case Sluice.Signal.to_number(sig) do
      {:ok, signum} -> GenServer.call(p, {:signal, signum})
      :error -> raise ArgumentError, "not a signal: #{inspect(sig)}"
    end
  end

  @doc """
  Stops the program and this server: closes stdin, sends `kill_signal` (default SIGTERM) to
  the process group, SIGKILL after `grace_ms`, and returns the exit status.

      iex> {:ok, p} = Sluice.Process.start_link(["sleep", "10"])
      iex> Sluice.Process.stop(p, 1_000)
      {:ok, {:signal, :sigterm}}
  """
  @spec stop(t, non_neg_integer) :: {:ok, status}
  def stop(p, grace_ms \\ 5_000) do
    unless is_integer(grace_ms) and grace_ms >= 0 do
      raise ArgumentError, "grace_ms must be a non-negative integer, got: #{inspect(grace_ms)}"
    end

    GenServer.call(p, {:stop, grace_ms}, :infinity)
  end

  @doc false
  # Ends this server without waiting, once the program has exited: Sluice.Helper, which
  # monitors it, then has the helper kill whatever the program left behind, as stop/2 does.
  @spec release(t) :: :ok
  def release(p), do: GenServer.cast(p, :release)

  @doc """
  Waits for the program to exit and returns its status, or `{:error, :timeout}`.

      iex> {:ok, p} = Sluice.Process.start_link(["sh", "-c", "exit 3"])
      iex> Sluice.Process.await_exit(p, 5_000)
      {:ok, 3}
  """
  @spec await_exit(t, timeout) :: {:ok, status} | {:error, :timeout}
  def await_exit(p, timeout \\ :infinity) do
    GenServer.call(p, {:await_exit, Options.timeout!(timeout)}, :infinity)
  end

  @doc false
  # Hands the output fds to the caller, which then reads them itself (Sluice.Reader):
  # streams and Sluice.run use this to skip a GenServer hop per chunk. Afterwards this
  # server's reads and active mode answer {:error, :leased}; it still owns (and closes)
  # the fds, and handles stdin, signals and the exit.
  @spec lease_output(t) ::
          {:ok, %{stdout: reference, stderr: reference | nil, os_pid: pos_integer}}
          | {:error, atom}
  def lease_output(p), do: GenServer.call(p, :lease_output)

  @doc """
  Switches active mode: `:once` delivers one output message, a positive integer `n`
  delivers `n` and then sends `{:sluice_passive, p}`, `false` stops deliveries.

      iex> {:ok, p} = Sluice.Process.start_link(["echo", "hi"])
      iex> Sluice.Process.set_active(p, :once)
      :ok
      iex> receive do {:sluice_stdout, ^p, data} -> data end
      "hi\\n"
  """
  @spec set_active(t, :once | pos_integer | false) :: :ok | {:error, :leased}
  def set_active(p, mode) when mode in [:once, false] or (is_integer(mode) and mode > 0) do
    GenServer.call(p, {:set_active, mode})
  end

  def set_active(_p, mode) do
    raise ArgumentError,
          "active mode must be :once, a positive integer or false, got: #{inspect(mode)}"
  end

  @doc """
  Makes `pid` the receiver of active-mode messages. Only the current controlling process
  may hand them over; others get `{:error, :not_owner}`.

      iex> {:ok, p} = Sluice.Process.start_link(["true"])
      iex> Sluice.Process.controlling_process(p, self())
      :ok
  """
  @spec controlling_process(t, pid) :: :ok | {:error, :not_owner}
  def controlling_process(p, pid) when is_pid(pid),
    do: GenServer.call(p, {:controlling_process, pid})

  ## Server

  @impl true
  def init({spec, kill, owner}) do
    case Helper.spawn(spec, kill) do
      {:ok, %{id: id, os_pid: os_pid, fds: fds}} ->
        Enum.each(fds, &Native.monitor/1)
        Process.monitor(owner)
        Process.monitor(Helper)
        [stdin, stdout | rest] = fds
        :ets.insert(@fds, {self(), stdout, List.first(rest)})

        {:ok,
         %__MODULE__{
           id: id,
           os_pid: os_pid,
           owner: owner,
           controller: owner,
           kill: kill,
           stdin: stdin,
           stdout: stdout,
           stderr: List.first(rest),
           eof: %{stdout: false, stderr: rest == []}
         }}

      {:error, error} ->
        {:stop, {:shutdown, error}}
    end
  end

  @impl true
  def handle_call(:os_pid, _from, s), do: {:reply, s.os_pid, s}

  def handle_call({:read, _source, _max, _timeout}, _from, %{active: active} = s)
      when active != false do
    {:reply, {:error, :active}, s}
  end

  def handle_call({:read, _source, _max, _timeout}, _from, %{leased: true} = s) do
    {:reply, {:error, :leased}, s}
  end

  def handle_call(:lease_output, _from, s) do
    if s.active != false or s.reads != [] or s.leased do
      {:reply, {:error, :busy}, s}
    else
      lease = %{stdout: s.stdout, stderr: s.stderr, os_pid: s.os_pid}
      forget(self())
      {:reply, {:ok, lease}, %{s | leased: true}}
    end
  end

  def handle_call({:set_active, _mode}, _from, %{leased: true} = s) do
    {:reply, {:error, :leased}, s}
  end

  def handle_call({:read, :stderr, _max, _timeout}, _from, %{stderr: nil} = s) do
    {:reply, {:error, :not_captured}, s}
  end

  def handle_call({:read, source, max, timeout}, from, s) do
    request = %{from: from, source: source, max: max, timer: timer(timeout, :read)}
    {:noreply, serve_reads(%{s | reads: s.reads ++ [request]})}
  end

  def handle_call({:write, _data, _timeout}, _from, %{stdin: nil} = s) do
    {:reply, {:error, :closed}, s}
  end

  def handle_call({:write, data, timeout}, from, s) do
    request = %{from: from, data: data, timer: timer(timeout, :write)}
    {:noreply, serve_writes(%{s | writes: :queue.in(request, s.writes)})}
  end

  def handle_call({:set_active, mode}, _from, s) do
    # Active mode owns the output: no reads from callers meanwhile.
    if mode == false,
      do: :ets.insert(@fds, {self(), s.stdout, s.stderr}),
      else: forget(self())

    {:reply, :ok, deliver(%{s | active: mode})}
  end

  def handle_call({:controlling_process, pid}, {caller, _}, s) do
    if caller == s.controller,
      do: {:reply, :ok, %{s | controller: pid}},
      else: {:reply, {:error, :not_owner}, s}
  end

  def handle_call(:close_stdin, _from, s), do: {:reply, :ok, close_stdin_now(s)}

  def handle_call({:signal, signum}, _from, s) do
    if s.status == nil, do: Helper.signal(s.id, signum)
    {:reply, :ok, s}
  end

  def handle_call({:stop, grace}, from, s) do
    s = close_stdin_now(s)
    {signum, _} = s.kill
    Helper.kill(s.id, signum, grace)

    case s.status do
      nil ->
        {:noreply, %{s | stop_waiters: [from | s.stop_waiters]}}

      status ->
        close_all(s)
        {:stop, :normal, {:ok, status}, s}
    end
  end

  def handle_call({:await_exit, timeout}, from, s) do
    case s.status do
      nil ->
        waiter = %{from: from, timer: timer(timeout, :await_exit)}
        {:noreply, %{s | exit_waiters: [waiter | s.exit_waiters]}}

      status ->
        {:reply, {:ok, status}, s}
    end
  end

  @impl true
  def handle_cast(:release, s) do
    close_all(s)
    {:stop, :normal, s}
  end

  @impl true
  def handle_info({:select, _fd, _ref, :ready_input}, s),
    do: {:noreply, s |> serve_reads() |> deliver()}

  def handle_info({:select, _fd, _ref, :ready_output}, s), do: {:noreply, serve_writes(s)}

  def handle_info({:sluice_exit, id, status}, %{id: id} = s) do
    Enum.each(s.exit_waiters, &reply(&1, {:ok, status}))
    s = deliver(%{s | status: status, exit_waiters: []})

    case s.stop_waiters do
      [] ->
        {:noreply, s}

      waiters ->
        close_all(s)
        Enum.each(waiters, &GenServer.reply(&1, {:ok, status}))
        {:stop, :normal, s}
    end
  end

  def handle_info({:timeout, tag, kind}, s), do: {:noreply, expire(kind, tag, s)}

  def handle_info({:DOWN, _ref, :process, pid, _reason}, %{owner: pid} = s) do
    {:stop, :normal, s}
  end

  def handle_info({:DOWN, _ref, :process, _helper, _reason}, s) do
    answer = {:error, :helper_down}
    Enum.each(s.reads, &reply(&1, answer))
    s.writes |> :queue.to_list() |> Enum.each(&reply(&1, answer))
    Enum.each(s.exit_waiters, &reply(&1, answer))
    Enum.each(s.stop_waiters, &GenServer.reply(&1, answer))
    {:stop, {:shutdown, :helper_down}, s}
  end

  def handle_info(_other, s), do: {:noreply, s}

  ## Reads

  # Serves queued reads in order. A source that would block is skipped for the rest of the
  # pass (the NIF armed enif_select on it), so one slow stream never delays the other.
  defp serve_reads(%{reads: []} = s), do: s

  defp serve_reads(s) do
    {kept, s, _blocked} =
      Enum.reduce(s.reads, {[], s, []}, fn request, {kept, s, blocked} ->
        case try_read(request, sources(request.source, s), s, blocked) do
          {:done, answer, s, blocked} ->
            reply(request, answer)
            {kept, s, blocked}

          {:wait, s, blocked} ->
            {[request | kept], s, blocked}
        end
      end)

    %{s | reads: Enum.reverse(kept)}
  end

  defp sources(:any, %{stderr: nil}), do: [:stdout]
  defp sources(:any, _s), do: [:stdout, :stderr]
  defp sources(source, _s), do: [source]

  defp try_read(request, srcs, s, blocked) do
    open = Enum.reject(srcs, &s.eof[&1])

    case open -- blocked do
      [] when open == [] -> {:done, :eof, s, blocked}
      [] -> {:wait, s, blocked}
      [src | _] -> read_source(request, src, srcs, s, blocked)
    end
  end

  defp read_source(request, src, srcs, s, blocked) do
    case Native.read(fd(s, src), request.max) do
      {:ok, data} ->
        answer = if request.source == :any, do: {:ok, {src, data}}, else: {:ok, data}
        {:done, answer, s, blocked}

      :eof ->
        Native.close(fd(s, src))
        try_read(request, srcs, %{s | eof: Map.put(s.eof, src, true)}, blocked)

      {:error, :eagain} ->
        try_read(request, srcs, s, [src | blocked])

      {:error, reason} ->
        {:done, {:error, reason}, s, blocked}
    end
  end

  defp fd(s, :stdout), do: s.stdout
  defp fd(s, :stderr), do: s.stderr

  ## Active mode

  # Reads and sends as many messages as were granted; never more, so a controller that
  # stops granting stops the program (back-pressure).
  defp deliver(%{active: false} = s), do: s

  defp deliver(s) do
    case open_sources(s) do
      [] ->
        maybe_send_exit(s)

      sources ->
        case Enum.find_value(sources, &ready_chunk(s, &1)) do
          nil -> s
          {:eof, src} -> deliver(%{s | eof: Map.put(s.eof, src, true)})
          {:data, src, data} -> s |> send_output(src, data) |> deliver()
          {:error, _src, _reason} -> s
        end
    end
  end

  defp open_sources(s), do: Enum.reject([:stdout, :stderr], &s.eof[&1])

  defp ready_chunk(s, src) do
    case Native.read(fd(s, src), 65_536) do
      {:ok, data} -> {:data, src, data}
      :eof -> close_source(s, src)
      {:error, :eagain} -> nil
      {:error, reason} -> {:error, src, reason}
    end
  end

  defp close_source(s, src) do
    Native.close(fd(s, src))
    {:eof, src}
  end

  defp send_output(s, src, data) do
    tag = if src == :stdout, do: :sluice_stdout, else: :sluice_stderr
    send(s.controller, {tag, self(), data})

    case s.active do
      :once ->
        %{s | active: false}

      1 ->
        send(s.controller, {:sluice_passive, self()})
        %{s | active: false}

      n ->
        %{s | active: n - 1}
    end
  end

  defp maybe_send_exit(%{status: nil} = s), do: s
  defp maybe_send_exit(%{exit_sent: true} = s), do: s

  defp maybe_send_exit(s) do
    send(s.controller, {:sluice_exit, self(), s.status})
    %{s | exit_sent: true}
  end

  ## Writes

  defp serve_writes(s) do
    case :queue.out(s.writes) do
      {:empty, _} ->
        s

      {{:value, request}, rest} ->
        case Native.write(s.stdin, request.data) do
          {:ok, n} when n == byte_size(request.data) ->
            reply(request, :ok)
            serve_writes(%{s | writes: rest})

          {:ok, n} ->
            rest_data = binary_part(request.data, n, byte_size(request.data) - n)
            serve_writes(%{s | writes: :queue.in_r(%{request | data: rest_data}, rest)})

          {:error, :eagain} ->
            s

          {:error, reason} ->
            reply(request, {:error, reason})
            serve_writes(%{s | writes: rest})
        end
    end
  end

  # Closes every fd before stop/2 answers, so a reader that leased them knows no more
  # readiness messages will come once it has the answer.
  defp close_all(s) do
    for fd <- [s.stdin, s.stdout, s.stderr], fd != nil, do: Native.close(fd)
  end

  defp close_stdin_now(%{stdin: nil} = s), do: s

  defp close_stdin_now(s) do
    Native.close(s.stdin)
    s.writes |> :queue.to_list() |> Enum.each(&reply(&1, {:error, :closed}))
    %{s | stdin: nil, writes: :queue.new()}
  end

  ## Timeouts are kept in the server, so a caller that gave up never has data read for it.

  defp timer(:infinity, _kind), do: nil

  defp timer(ms, kind) do
    tag = make_ref()
    {tag, Process.send_after(self(), {:timeout, tag, kind}, ms)}
  end

  defp expire(:read, tag, s), do: %{s | reads: expire_in(s.reads, tag)}
  defp expire(:await_exit, tag, s), do: %{s | exit_waiters: expire_in(s.exit_waiters, tag)}

  defp expire(:write, tag, s) do
    writes = s.writes |> :queue.to_list() |> expire_in(tag) |> :queue.from_list()
    %{s | writes: writes}
  end

  defp expire_in(requests, tag) do
    {expired, kept} = Enum.split_with(requests, &match?({^tag, _}, &1.timer))
    Enum.each(expired, &GenServer.reply(&1.from, {:error, :timeout}))
    kept
  end

  defp reply(%{from: from, timer: timer}, answer) do
    with {_tag, ref} <- timer, do: Process.cancel_timer(ref)
    GenServer.reply(from, answer)
  end
end
