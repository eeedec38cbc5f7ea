defmodule Sluice.Helper do
  @moduledoc """
  Owns the node's one `sluice_helper` port program and the unix socket its pipe fds arrive
  on (see `docs/architecture.md`).

  It allocates spawn ids, routes the helper's replies and exit statuses to the
  `Sluice.Process` that asked, and monitors every `Sluice.Process`: when one ends, for any
  reason, it asks the helper to stop that program with the program's kill signal and grace.
  If the helper OS process dies, this server stops too, so its supervisor starts a new one
  (which sweeps what the dead one left behind).

  Configuration (application environment of `:sluice`):

    * `:cgroup` - `:auto` (default), `false`, or a cgroup v2 directory to use as the root;
    * `:shutdown_grace` - ms the helper waits between SIGTERM and SIGKILL when the VM dies
      (default 1_000).
  """
  use GenServer

  alias Sluice.{Error, Native}

  @protocol_version 1

  @typedoc "What the internal `spawn/2` returns on success."
  @type spawned :: %{id: pos_integer, os_pid: pos_integer, fds: [reference]}

  @doc "Starts the helper server, registered as `Sluice.Helper`."
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  # spawn/2, signal/2 and kill/3 are the plumbing of Sluice.Process: not public API.

  @doc false
  # Starts a program from a spawn spec (see docs/architecture.md). The calling process
  # becomes the program's holder: when it ends, the program is sent `kill_signal` and,
  # after `kill_grace` ms, SIGKILL.
  @spec spawn(map, {pos_integer, non_neg_integer}) :: {:ok, spawned} | {:error, Error.t()}
  def spawn(spec, {kill_signum, kill_grace}) do
    GenServer.call(__MODULE__, {:spawn, spec, kill_signum, kill_grace}, :infinity)
  catch
    :exit, _ -> {:error, Error.new(:helper_down, "the Sluice helper is not running")}
  end

  @doc false
  # Sends signal number `signum` to program `id`'s process group.
  @spec signal(pos_integer, pos_integer) :: :ok
  def signal(id, signum), do: GenServer.cast(__MODULE__, {:request, {:signal, id, signum}})

  @doc false
  # Sends `signum` to program `id` now, and SIGKILL to whatever is left after `grace` ms.
  @spec kill(pos_integer, pos_integer, non_neg_integer) :: :ok
  def kill(id, signum, grace),
    do: GenServer.cast(__MODULE__, {:request, {:kill, id, signum, grace}})

  @doc """
  The helper's OS pid and its cgroup root (`nil` without cgroups).

      iex> %{os_pid: pid} = Sluice.Helper.info()
      iex> File.read!("/proc/\#{pid}/comm")
      "sluice_helper\\n"
  """
  @spec info() :: %{os_pid: pos_integer, cgroup_root: String.t() | nil}
  def info, do: GenServer.call(__MODULE__, :info)

  @impl true
  def init(_opts) do
    Process.flag(:trap_exit, true)
    exe = Path.join(:code.priv_dir(:sluice), "native/sluice_helper")
    # The port program inherits the VM's current environment.
    inherited_env = :os.env()

    port =
      Port.open({:spawn_executable, exe}, [
        :binary,
        :exit_status,
        {:packet, 4},
        # Never suspend this server on a busy port: the helper may be blocked handing fds
        # to this very server (the socket's queue is short, net.unix.max_dgram_qlen), and
        # only this server drains it. Suspended until the helper reads its stdin, both
        # would wait for each other (1_000 concurrent spawns deadlocked).
        {:busy_limits_port, :disabled},
        args: helper_args()
      ])

    receive do
      {^port, {:data, frame}} ->
        {:hello, @protocol_version, sock_path, os_pid, cgroup_root} = decode(frame)
        {:ok, sock} = Native.connect(sock_path)
        # Closed when this server dies, even if it was ever select-armed.
        :ok = Native.monitor(sock)

        {:ok,
         %{
           port: port,
           sock: sock,
           os_pid: os_pid,
           cgroup_root: cgroup_root,
           inherited_env: inherited_env,
           # {raw :os.env(), its NAME=value list} of the last environment sent in full
           env_cache: nil,
           next_id: 1,
           # id => {from, kill params} while the spawn is in flight
           pending: %{},
           # id => {pid, monitor ref, kill params}; monitor ref => id
           programs: %{},
           monitors: %{}
         }}

      {^port, {:exit_status, status}} ->
        {:stop, {:helper_failed_to_start, status}}
    after
      10_000 -> {:stop, :helper_start_timeout}
    end
  end

  defp helper_args do
    cgroup =
      case Application.get_env(:sluice, :cgroup, :auto) do
        :auto -> "auto"
        false -> "off"
        path when is_binary(path) -> path
      end

    grace = Application.get_env(:sluice, :shutdown_grace, 1_000)

    ["--beam-pid", System.pid(), "--cgroup", cgroup, "--shutdown-grace-ms", to_string(grace)]
  end

  @impl true
  def handle_call({:spawn, spec, signum, grace}, from, state) do
    id = state.next_id
    {spec, state} = resolve_env(spec, state)
    send_request(state, {:spawn, id, spec})
    pending = Map.put(state.pending, id, {from, {signum, grace}})
    {:noreply, %{state | next_id: id + 1, pending: pending}}
  end

  def handle_call(:info, _from, state) do
    {:reply, %{os_pid: state.os_pid, cgroup_root: state.cgroup_root}, state}
  end

  @impl true
  def handle_cast({:request, request}, state) do
    send_request(state, request)
    {:noreply, state}
  end

  @impl true
  def handle_info({port, {:data, frame}}, %{port: port} = state) do
    {:noreply, handle_frame(decode(frame), state)}
  end

  def handle_info({port, {:exit_status, status}}, %{port: port} = state) do
    {:stop, {:helper_exited, status}, state}
  end

  def handle_info({:DOWN, ref, :process, pid, _reason}, state) do
    case Map.pop(state.monitors, ref) do
      {nil, _} ->
        {:noreply, state}

      {id, monitors} ->
        Sluice.Process.forget(pid)
        {{_pid, _ref, {signum, grace}}, programs} = Map.pop(state.programs, id)
        send_request(state, {:kill, id, signum, grace})
        {:noreply, %{state | monitors: monitors, programs: programs}}
    end
  end

  def handle_info({:EXIT, port, reason}, %{port: port} = state) do
    {:stop, {:helper_exited, reason}, state}
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    # Programs under this helper are being killed by it (stdin EOF): tell waiting spawners.
    for {_id, {from, _}} <- state.pending do
      GenServer.reply(from, {:error, Error.new(:helper_down, "the Sluice helper stopped")})
    end

    if Port.info(state.port), do: Port.close(state.port)
    :ok
  end

  defp handle_frame({:spawned, id, os_pid}, state) do
    case Map.pop(state.pending, id) do
      {nil, _} -> unknown_spawned(id, state)
      {request, pending} -> spawned(id, os_pid, request, pending, state)
    end
  end

  defp handle_frame({:spawn_error, id, errno, stage, detail}, state) do
    case Map.pop(state.pending, id) do
      {nil, _} ->
        # A reply to a request this server never made: nobody waits for it.
        state

      {{from, _kill}, pending} ->
        reason = errno |> String.downcase() |> String.to_atom()
        stage = String.to_atom(stage)
        GenServer.reply(from, {:error, Error.new(reason, detail, stage: stage)})
        %{state | pending: pending}
    end
  end

  defp handle_frame({:exit, id, status}, state) do
    case Map.fetch(state.programs, id) do
      {:ok, {pid, _ref, _kill}} -> send(pid, {:sluice_exit, id, exit_status(status)})
      :error -> :ok
    end

    state
  end

  defp handle_frame({:error, _id, message}, state) do
    require Logger
    Logger.error("sluice_helper rejected a request: #{message}")
    state
  end

  # A program this server never asked for (a forged request): drop its fds, which the
  # helper queued before the frame, and kill it, so it neither leaks nor shifts the fds of
  # the next spawn.
  defp unknown_spawned(id, state) do
    with {:ok, ^id, fds} <- Native.recv_fds(state.sock), do: Enum.each(fds, &Native.close/1)
    send_request(state, {:kill, id, 9, 0})
    state
  end

  defp spawned(id, os_pid, {from, kill}, pending, state) do
    {pid, _tag} = from

    case Native.recv_fds(state.sock) do
      {:ok, ^id, fds} ->
        ref = Process.monitor(pid)
        GenServer.reply(from, {:ok, %{id: id, os_pid: os_pid, fds: fds}})

        %{
          state
          | pending: pending,
            programs: Map.put(state.programs, id, {pid, ref, kill}),
            monitors: Map.put(state.monitors, ref, id)
        }

      other ->
        # Cannot happen while the helper keeps its ordering promise; never leak the program.
        send_request(state, {:kill, id, 9, 0})
        message = "lost the pipe fds of program #{os_pid}: #{inspect(other)}"
        GenServer.reply(from, {:error, Error.new(:handoff, message, stage: :handoff)})
        %{state | pending: pending}
    end
  end

  defp exit_status({:exited, code}), do: code
  defp exit_status({:signaled, signum, _core}), do: {:signal, Sluice.Signal.name(signum)}

  # `:default` is the VM's current environment: `:inherit` while it is still the one the
  # helper started with (nothing to build or send), else the whole list. Comparing the raw
  # `:os.env()` costs a quarter of `System.get_env/0`; a changed environment is converted
  # once and reused while it stays the same.
  defp resolve_env(%{env: :default} = spec, state) do
    case :os.env() do
      raw when raw == state.inherited_env ->
        {%{spec | env: :inherit}, state}

      raw ->
        list =
          case state.env_cache do
            {^raw, list} -> list
            _ -> Enum.map(raw, fn {name, value} -> IO.chardata_to_string([name, ?=, value]) end)
          end

        {%{spec | env: list}, %{state | env_cache: {raw, list}}}
    end
  end

  defp resolve_env(spec, state), do: {spec, state}

  defp send_request(state, request) do
    Port.command(state.port, :erlang.term_to_binary(request))
  end

  # Every atom the helper may send appears in this module, so :safe decoding accepts it.
  defp decode(frame), do: :erlang.binary_to_term(frame, [:safe])
end
