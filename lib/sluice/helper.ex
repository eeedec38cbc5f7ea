defmodule Sluice.Helper do
  @moduledoc """
  The helper server: owns the node's `sluice_helper` program (a port) and the fd socket
  that spawn requests travel on (see `docs/architecture.md` and `docs/protocol.md`).

  It is not on the path of a spawn: callers send their requests straight to the socket,
  which this server publishes in `:persistent_term`. When the helper program dies, every
  program channel reaches EOF, so every waiting caller learns it at once; this server
  starts a new helper program (which sweeps what the dead one left behind) after a
  backoff that grows while the helper keeps dying, for as long as it keeps dying.

  Configuration (application environment of `:sluice`), checked when the application
  starts:

    * `:cgroup` - `:auto` (default: a writable cgroup v2 hierarchy if there is one, else a
      warning and no cgroups), `false`, or a cgroup v2 directory to use as the root (an
      error if it cannot be used);
    * `:shutdown_grace` - ms the helper waits between SIGTERM and SIGKILL when the VM
      dies (default 1_000).
  """
  use GenServer

  require Logger

  alias Sluice.Native
  alias Sluice.Control.{Config, PortFrames, Protocol}

  @conn {__MODULE__, :conn}
  # Restart backoff: none for the first death, then doubling up to the cap (a helper
  # program that cannot start at all must not spin); reset once one has lived this long.
  @backoff_first 20
  @backoff_cap 500
  @stable_ms 5_000
  @hello_timeout 10_000
  # How long a holder waits for the dead helper program's sweep before it tells its owner.
  @swept_timeout 2_000

  @typedoc "How callers reach the helper program."
  @type conn :: %{sock: Native.fd(), os_pid: pos_integer, inherited_env: [{charlist, charlist}]}

  @doc "Starts the helper server, registered as `Sluice.Helper`."
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc false
  # The connection to the helper program, read without a message round trip.
  @spec conn() :: {:ok, conn} | :down
  def conn do
    case :persistent_term.get(@conn, :down) do
      :down -> :down
      conn -> {:ok, conn}
    end
  end

  @doc """
  The helper program's OS pid and its cgroup root (`nil` without cgroups).

      iex> %{os_pid: pid} = Sluice.Helper.info()
      iex> File.read!("/proc/\#{pid}/comm")
      "sluice_helper\\n"
  """
  @spec info() :: %{os_pid: pos_integer | nil, cgroup_root: String.t() | nil}
  def info, do: GenServer.call(__MODULE__, :info, 5_000)

  @doc false
  # Called by the holder of a program that saw its channel hang up (the helper program
  # `os_pid` died): returns once the dead helper program's cgroup was killed, so that the
  # holder tells its owner only then (an owner may be all that keeps the VM alive: when it
  # ends, the VM may halt before a new helper program could sweep). Bounded; without
  # cgroups there is nothing to kill.
  @spec await_swept(pos_integer) :: :ok
  def await_swept(os_pid) do
    GenServer.call(__MODULE__, {:swept, os_pid}, @swept_timeout)
  catch
    :exit, _ -> :ok
  end

  @impl true
  def init(_opts) do
    Process.flag(:trap_exit, true)
    config = Config.load!()

    case start_helper(config) do
      {:ok, helper} ->
        {:ok, %{config: config, helper: helper, backoff: 0, started: now(), waiting: []}}

      {:error, reason} ->
        {:stop, reason}
    end
  end

  @impl true
  def handle_call(:info, _from, %{helper: nil} = s),
    do: {:reply, %{os_pid: nil, cgroup_root: nil}, s}

  def handle_call(:info, _from, %{helper: h} = s),
    do: {:reply, %{os_pid: h.os_pid, cgroup_root: h.cgroup_root}, s}

  # The running helper program's death may not have reached this server yet (the port's
  # exit comes after the channels' hang-ups): if /proc says it is dead, it is handled now
  # (swept, restarted; the port's exit is ignored when it comes), else the answer waits
  # for the port's exit. Any other pid is a helper program whose death was handled.
  def handle_call({:swept, os_pid}, from, %{helper: %{os_pid: os_pid}} = s) do
    if dead?(os_pid) do
      {:reply, :ok, helper_died(s, :gone)}
    else
      {:noreply, %{s | waiting: [from | s.waiting]}}
    end
  end

  def handle_call({:swept, _os_pid}, _from, s), do: {:reply, :ok, s}

  @impl true
  def handle_info({port, {:exit_status, status}}, %{helper: %{port: port}} = s),
    do: {:noreply, helper_died(s, {:exit_status, status})}

  def handle_info({:EXIT, port, reason}, %{helper: %{port: port}} = s),
    do: {:noreply, helper_died(s, reason)}

  def handle_info(:restart, s) do
    case start_helper(s.config) do
      {:ok, helper} ->
        {:noreply, %{s | helper: helper, started: now()}}

      {:error, reason} ->
        Logger.error("Sluice: cannot restart the helper program: #{inspect(reason)}")
        {:noreply, schedule_restart(s)}
    end
  end

  # After hello the helper program writes on the port only to reject what arrived there.
  # Anything else is bytes it did not write (a program that reached its stdout): decoded
  # totally, logged and survived, never a crash (this server's death would stop every
  # program of the node).
  def handle_info({port, {:data, data}}, %{helper: %{port: port} = h} = s) do
    {events, frames} = PortFrames.feed(h.frames, data)
    Enum.each(events, &port_event/1)
    {:noreply, %{s | helper: %{h | frames: frames}}}
  end

  def handle_info(_other, s), do: {:noreply, s}

  @impl true
  def terminate(_reason, s) do
    :persistent_term.erase(@conn)

    cond do
      s.helper == nil ->
        # Between a death and the restart: the dead helper program was swept already.
        :ok

      dead?(s.helper.os_pid) or Port.info(s.helper.port) == nil ->
        # Dead, and the port's exit not handled yet: no new helper program will sweep.
        sweep(s.helper)

      true ->
        # Closing the port closes the helper's stdin: it stops every program and exits.
        Port.close(s.helper.port)
    end

    Enum.each(s.waiting, &GenServer.reply(&1, :ok))
    :ok
  end

  defp port_event({:frame, frame}) do
    case Protocol.port_frame(frame) do
      {:rejected, message} ->
        Logger.error("sluice_helper rejected a request: #{clip(message)}")

      :bad ->
        Logger.error(
          "Sluice: ignored a frame on the helper program's port that it did not write " <>
            "(#{byte_size(frame)} bytes: #{clip(frame)})"
        )
    end
  end

  defp port_event({:oversize, length}) do
    Logger.error(
      "Sluice: ignored a frame of #{length} bytes on the helper program's port " <>
        "(at most #{PortFrames.max_frame()}): the helper program did not write it"
    )
  end

  defp clip(bytes), do: inspect(binary_part(bytes, 0, min(byte_size(bytes), 200)))

  defp helper_died(s, reason) do
    Logger.warning("Sluice: the helper program died (#{inspect(reason)}); restarting it")
    :persistent_term.erase(@conn)
    Native.close(s.helper.sock)
    # First, before anything else can happen (a halt of the VM included): what the dead
    # helper program started dies now, not when a new one sweeps at its start.
    sweep(s.helper)
    Enum.each(s.waiting, &GenServer.reply(&1, :ok))
    backoff = if now() - s.started > @stable_ms, do: 0, else: s.backoff
    schedule_restart(%{s | helper: nil, backoff: backoff, waiting: []})
  end

  # cgroup.kill on the dead helper program's cgroup: SIGKILL to everything in it (the
  # setsid escapees, daemons and children its PDEATHSIG does not reach), synchronously.
  # The cgroup itself is removed by the next helper program's sweep at its start.
  defp sweep(%{cgroup_root: nil}), do: :ok

  defp sweep(%{cgroup_root: root, os_pid: os_pid}) do
    case File.write(Path.join([root, "h#{os_pid}", "cgroup.kill"]), "1") do
      :ok -> :ok
      {:error, :enoent} -> :ok
      {:error, reason} -> Logger.error("Sluice: cannot kill h#{os_pid}'s cgroup: #{reason}")
    end
  end

  # Whether the helper program `os_pid` has died: gone, a zombie, or its pid reused.
  defp dead?(os_pid) do
    case File.read("/proc/#{os_pid}/stat") do
      {:ok, stat} ->
        [_, rest] = String.split(stat, ") ", parts: 2)
        String.starts_with?(rest, ["Z", "X"]) or not String.contains?(stat, "(sluice_helper)")

      {:error, _} ->
        true
    end
  end

  defp schedule_restart(s) do
    Process.send_after(self(), :restart, s.backoff)
    %{s | backoff: min(max(s.backoff * 2, @backoff_first), @backoff_cap)}
  end

  defp start_helper(config) do
    exe = Path.join(:code.priv_dir(:sluice), "native/sluice_helper")
    # The helper program inherits the VM's environment as it is now.
    inherited_env = :os.env()

    # Stream mode: the frames are cut by PortFrames, never by the driver (which would
    # allocate whatever a length prefix announces).
    port =
      Port.open({:spawn_executable, exe}, [
        :binary,
        :exit_status,
        :stream,
        args: Config.helper_args(config)
      ])

    with {:ok, hello, frames} <- await_hello(port, PortFrames.new()),
         :ok <- Config.check_cgroup(config, hello.cgroup_root),
         {:ok, sock} <- Native.connect(hello.socket) do
      # The socket closes when this server dies: the helper then shuts down.
      :ok = Native.monitor(sock)
      conn = %{sock: sock, os_pid: hello.os_pid, inherited_env: inherited_env}
      :persistent_term.put(@conn, conn)

      {:ok,
       %{
         port: port,
         sock: sock,
         os_pid: hello.os_pid,
         cgroup_root: hello.cgroup_root,
         frames: frames
       }}
    else
      {:error, reason} ->
        if Port.info(port), do: Port.close(port)
        {:error, reason}
    end
  end

  defp await_hello(port, frames) do
    receive do
      {^port, {:data, data}} ->
        case PortFrames.feed(frames, data) do
          {[], frames} ->
            await_hello(port, frames)

          {[{:frame, frame} | rest], frames} ->
            case Protocol.hello(frame) do
              {:ok, hello} ->
                Enum.each(rest, &port_event/1)
                {:ok, hello, frames}

              :error ->
                {:error, {:bad_hello, frame}}
            end

          {[{:oversize, length} | _], _frames} ->
            {:error, {:bad_hello, {:length, length}}}
        end

      {^port, {:exit_status, status}} ->
        {:error, {:helper_failed_to_start, status}}
    after
      @hello_timeout -> {:error, :helper_start_timeout}
    end
  end

  defp now, do: System.monotonic_time(:millisecond)
end
