defmodule Sluice.Holder.Call do
  @moduledoc false
  # A call of a process that holds a program (Sluice.Process's server, Sluice.Worker,
  # Sluice.Daemon), written once: the server argument checked (ArgumentError naming it,
  # not a FunctionClauseError from deep in GenServer), the wait bounded, and one answer
  # shape when the holder cannot answer: `{:error, :closed}` once it has ended, whichever
  # holder it is.

  alias Sluice.Options
  alias Sluice.Program.Deadline

  # The server answers within the request's own time (its own timer), `within` ms: the
  # caller waits that plus a margin longer than the server ever blocks (a `stats` or a
  # managed process's signal waits up to 5 s for the helper program). A server that
  # cannot answer (its node stopped but still connected, or a pid that is no holder) is
  # then `{:error, :timeout}`, rather than a wait until distribution gives the node up.
  # A server that is gone means the program is closed.
  @answer_margin 10_000

  @doc """
  Calls `server` (the argument `name` of a public function) with `request`, which it
  answers within `within` ms.
  """
  @spec call(term, atom, term, timeout) :: term
  def call(server, name, request, within \\ 0) do
    GenServer.call(
      server!(server, name),
      request,
      Deadline.plus_margin(within, @answer_margin)
    )
  catch
    :exit, {:timeout, {GenServer, :call, _}} -> {:error, :timeout}
    :exit, {{:shutdown, :helper_down}, _} -> {:error, :helper_down}
    # The program's node went away (or disconnected): so did the program (its server
    # there watches its owner).
    :exit, {{:nodedown, _node}, {GenServer, :call, _}} -> {:error, :nodedown}
    :exit, {_gone, {GenServer, :call, _}} -> {:error, :closed}
  end

  @doc """
  Checks a server argument: a pid, a registered name, `{name, node}`, `:global` or `:via`.
  A name nobody holds (`nil` too, as `Process.whereis/1` gives it) is a holder that has
  ended: `{:error, :closed}` from the call.
  """
  @spec server!(term, atom) :: GenServer.server()
  def server!(server, _name) when is_pid(server) or is_atom(server), do: server

  def server!({name, node} = server, _name) when is_atom(name) and is_atom(node), do: server
  def server!({:global, _} = server, _name), do: server
  def server!({:via, module, _} = server, _name) when is_atom(module), do: server

  def server!(server, name) do
    Options.argument!(name, "a pid or a registered name (the process holding a program)", server)
  end
end
