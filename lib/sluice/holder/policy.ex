defmodule Sluice.Holder.Policy do
  @moduledoc false
  # The behaviour of a holder's policy (a Sluice.Process server, a Sluice.Worker, a
  # Sluice.Holder.RemoteReader): the five decisions Sluice.Holder's mechanism leaves to
  # it. Apart from Sluice.Holder so that a holder's `@behaviour`, a compile-time
  # dependency, names a module that calls nothing: a change in the mechanism or in the
  # program core recompiles no holder.

  alias Sluice.Program
  alias Sluice.Program.Log

  @typedoc "A holder's state: a struct with these fields and its policy's own."
  @type state :: %{
          required(:program) => Program.t(),
          required(:log) => Log.t(),
          required(:owner) => pid,
          optional(atom) => term
        }

  @typedoc "What a GenServer callback returns."
  @type result ::
          {:noreply, state}
          | {:noreply, state, {:continue, term}}
          | {:stop, term, state}

  @doc "stdin can take more (a terminal's pending end of input was written first)."
  @callback input_ready(state) :: state

  @doc "stdout or stderr has data (or reached its end)."
  @callback output_ready(state) :: state

  @doc "The program exited with `status` (the helper program still runs)."
  @callback exited(state, Program.status()) :: result

  @doc """
  The helper program is gone (it died, or the application stopped: then a status that
  came first changes nothing, it is `:helper_down` all the same).
  """
  @callback helper_down(state) :: result

  @doc "The owner died with `reason`: what the holder tells before it ends."
  @callback owner_down(state, reason :: term) :: state
end
