defmodule Sluice.Holder.Process.Relay do
  @moduledoc false
  # How an active-mode controller on another node than its Sluice.Process server hears
  # that the connection between them was lost: `{:sluice_error, p, :nodedown}`. The
  # server cannot say it (the message would cross the connection that is gone), so a
  # relay on the controller's node says it: a small process that monitors the server and
  # the controller, sends the message when the server's monitor fires with
  # `:noconnection`, and ends silently when the server ends for any other reason (its
  # exit or helper_down was sent by the server itself), when the controller ends, or
  # when the server lets it go (`release/1`: the controller changed). Pure Elixir, so the
  # controller's node needs Sluice's code but not its application.

  # How long the server waits for the relay to be in place on the controller's node.
  @start_timeout 5_000

  @typedoc "A relay and the controller it serves, or `:none`."
  @type t :: {controller :: pid, relay :: pid} | :none

  @doc """
  Starts the relay of `server` on `controller`'s node and returns once it watches the
  server: a loss of the connection after this returned is always told. `:none` when the
  controller's node cannot be reached (the message could not be delivered either).
  """
  @spec start(pid, pid) :: t
  def start(server, controller) do
    case :erpc.call(node(controller), __MODULE__, :watch, [server, controller], @start_timeout) do
      relay when is_pid(relay) -> {controller, relay}
      nil -> :none
    end
  catch
    _kind, _reason -> :none
  end

  @doc "Lets the relay go (silently)."
  @spec release(t) :: :ok
  def release({_controller, relay}) do
    send(relay, :release)
    :ok
  end

  def release(:none), do: :ok

  @doc false
  # Run on the controller's node by start/2: spawns the relay and waits until it monitors
  # the server.
  @spec watch(pid, pid) :: pid | nil
  def watch(server, controller) do
    caller = self()

    relay =
      spawn(fn ->
        watching = Process.monitor(server)
        controlled = Process.monitor(controller)
        send(caller, {:watching, self()})
        relay(server, controller, watching, controlled)
      end)

    receive do
      {:watching, ^relay} -> relay
    after
      @start_timeout ->
        Process.exit(relay, :kill)
        nil
    end
  end

  defp relay(server, controller, watching, controlled) do
    receive do
      {:DOWN, ^watching, :process, _server, :noconnection} ->
        send(controller, {:sluice_error, server, :nodedown})

      {:DOWN, ^watching, :process, _server, _ended} ->
        :ok

      {:DOWN, ^controlled, :process, _controller, _reason} ->
        :ok

      :release ->
        :ok
    end
  end
end
