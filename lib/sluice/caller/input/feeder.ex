defmodule Sluice.Caller.Input.Feeder do
  @moduledoc false
  # The `:input` of run and streams with `input_in: :process`: enumerated in a process of
  # its own (the feeder), linked to the caller, which sends the chunks to the caller. The
  # caller still holds the program and writes its stdin (the NIF ties every fd to its
  # owner; nothing moves): to the pump (or the remote consumer) the feeder is one more
  # source of input, which either has a chunk now or not yet. So the caller never waits
  # inside the input's own code, and the program's exit, EOF and the deadline end the call
  # whatever the input is waiting for (its next message, a socket, a slow upstream).
  #
  # Back-pressure: at most @in_flight chunks are sent and not yet pulled by the caller
  # (which pulls one only once the one before is written); the caller returns a credit
  # for each chunk it pulls. Empty chunks are not sent.
  #
  # Its end: the caller kills it (halt/1) when the input is done, raised, or no longer
  # wanted (stdin closed, the program gone, a stream halted, the call failed), and waits
  # for it to be gone; its own code's clean-up does not run then (what it owns, ports
  # and linked processes, goes with it). The link ends it with a caller that crashes or
  # is killed; a caller that ends normally while it still holds the input (a suspended
  # stream dropped) does not send it an exit signal through the link, so a guard process,
  # which monitors both, kills it then.
  #
  # To the caller: `{:sluice_input, tag, event}`, event `{:data, binary}`, `:done` or
  # `{:raised, kind, reason, stacktrace}`; the tag is the caller's monitor of the feeder,
  # whose `:DOWN` (a feeder killed by someone else) comes with the same tag.
  # To the feeder: `{:sluice_input_tag, tag}` from the guard, once it watches (the
  # feeder starts on the input then), and `{:sluice_input_credit, tag}` from the caller.

  alias Sluice.Caller.Input.Element

  # Chunks sent and not yet pulled by the caller, as the remote consumer's input window.
  @in_flight 2

  defstruct [:pid, :tag, :guard, :guard_monitor, events: :queue.new()]

  @type event ::
          {:data, binary} | :done | {:raised, atom, term, list} | {:down, term}
  @type t :: %__MODULE__{
          pid: pid,
          tag: reference,
          guard: pid,
          guard_monitor: reference,
          events: :queue.queue(event)
        }

  @doc """
  Starts enumerating `source` (an Enumerable, or a `fn collectable -> ... end` given a
  `Sluice.Stdin`) in a feeder linked to the caller.
  """
  @spec start(Enumerable.t() | (Sluice.Stdin.t() -> term)) :: t
  def start(source) do
    caller = self()
    {pid, tag} = :erlang.spawn_opt(fn -> init(caller, source) end, [:link, :monitor])
    {guard, guard_monitor} = spawn_monitor(fn -> guard(caller, pid, tag) end)
    %__MODULE__{pid: pid, tag: tag, guard: guard, guard_monitor: guard_monitor}
  end

  @doc "The tag of this feeder's messages (and of its `:DOWN`)."
  @spec tag(t) :: reference
  def tag(feeder), do: feeder.tag

  @doc "Keeps an event the caller received while it waited for something else."
  @spec deliver(t, event) :: t
  def deliver(feeder, event), do: %{feeder | events: :queue.in(event, feeder.events)}

  @doc """
  The next chunk if it is here: `{:data, binary, feeder}` (a credit goes back), `:done`
  (the feeder is gone), or `{:wait, feeder}`. An input that raised raises here, the
  feeder gone, as it would have in the caller.
  """
  @spec next(t) :: {:data, binary, t} | {:wait, t} | :done
  def next(feeder) do
    case :queue.out(feeder.events) do
      {{:value, event}, rest} -> take(%{feeder | events: rest}, event)
      {:empty, _} -> next_message(feeder)
    end
  end

  defp next_message(%{tag: tag} = feeder) do
    receive do
      {:sluice_input, ^tag, event} -> take(feeder, event)
      {:DOWN, ^tag, :process, _, reason} -> gone(feeder, {:down, reason})
    after
      0 -> {:wait, feeder}
    end
  end

  defp take(feeder, {:data, data}) do
    send(feeder.pid, {:sluice_input_credit, feeder.tag})
    {:data, data, feeder}
  end

  defp take(feeder, :done) do
    halt(feeder)
    :done
  end

  defp take(feeder, event), do: gone(feeder, event)

  # The input raised: here too. Killed by someone else, with the caller trapping exits
  # (else the link took it along): the caller exits with its reason.
  @spec gone(t, event) :: no_return
  defp gone(feeder, {:raised, kind, reason, stacktrace}) do
    halt(feeder)
    :erlang.raise(kind, reason, stacktrace)
  end

  defp gone(feeder, {:down, reason}) do
    halt(feeder)
    exit(reason)
  end

  @doc """
  Ends the feeder and its guard and waits until both are gone; drops their messages
  still queued here. Again on a feeder that is gone, it returns at once.
  """
  @spec halt(t) :: :ok
  def halt(%{pid: pid, tag: tag} = feeder) do
    Process.unlink(pid)
    # The old monitors' :DOWN may have been taken already: fresh ones answer either way.
    Process.demonitor(tag, [:flush])
    Process.demonitor(feeder.guard_monitor, [:flush])
    gone = Process.monitor(pid)
    guard_gone = Process.monitor(feeder.guard)
    Process.exit(pid, :kill)
    Process.exit(feeder.guard, :kill)

    receive do
      {:DOWN, ^gone, :process, _, _} -> :ok
    end

    receive do
      {:DOWN, ^guard_gone, :process, _, _} -> :ok
    end

    # A caller that traps exits got the link's message; the feeder's own messages all
    # came before its :DOWN.
    receive do
      {:EXIT, ^pid, _} -> :ok
    after
      0 -> :ok
    end

    flush(tag)
  end

  defp flush(tag) do
    receive do
      {:sluice_input, ^tag, _} -> flush(tag)
    after
      0 -> :ok
    end
  end

  ## The feeder

  defp init(caller, source) do
    tag =
      receive do
        {:sluice_input_tag, tag} -> tag
      end

    event =
      try do
        enumerate(source, {caller, tag, @in_flight})
        :done
      catch
        kind, reason -> {:raised, kind, reason, __STACKTRACE__}
      end

    send(caller, {:sluice_input, tag, event})
  end

  defp enumerate(fun, state) when is_function(fun, 1),
    do: Sluice.Stdin.run(__MODULE__, state, :infinity, fun)

  defp enumerate(enumerable, state),
    do: Enum.reduce(enumerable, state, &send_chunk(&2, Element.chunk!(&1)))

  @doc false
  # Called by Sluice.Stdin in the feeder: sends `data` once there is credit for it.
  @spec push(term, binary) :: :ok
  def push(key, data) do
    {state, deadline} = Process.get(key)
    Process.put(key, {send_chunk(state, data), deadline})
    :ok
  end

  defp send_chunk(state, ""), do: state

  defp send_chunk({caller, tag, 0}, data) do
    receive do
      {:sluice_input_credit, ^tag} -> send_chunk({caller, tag, 1}, data)
    end
  end

  defp send_chunk({caller, tag, credit}, data) do
    send(caller, {:sluice_input, tag, {:data, data}})
    {caller, tag, credit - 1}
  end

  # Kills the feeder when the caller ends first (normally too); ends with the feeder. The
  # feeder starts on the input once the guard watches both (it gets its tag from here).
  defp guard(caller, feeder, tag) do
    caller_monitor = Process.monitor(caller)
    feeder_monitor = Process.monitor(feeder)
    send(feeder, {:sluice_input_tag, tag})

    receive do
      {:DOWN, ^caller_monitor, :process, _, _} -> Process.exit(feeder, :kill)
      {:DOWN, ^feeder_monitor, :process, _, _} -> :ok
    end
  end
end
