defmodule Sluice.Caller.Source.Pick do
  @moduledoc false
  # The one place that picks the Sluice.Caller.Source of a `run` or a stream: a
  # Sluice.Caller.Pump when the program runs on this node, a Sluice.Caller.RemoteConsumer
  # with `node:` (another node).

  alias Sluice.Error
  alias Sluice.Caller.{Pump, RemoteConsumer, Source}
  alias Sluice.Holder.Remote
  alias Sluice.Program.Deadline

  @doc "Opens the source `opts` asks for, its program started before `deadline`."
  @spec open(Sluice.command(), Sluice.Options.t(), Deadline.t()) ::
          {:ok, Source.t()} | {:error, Error.t()}
  def open(argv, opts, deadline), do: module(opts).open(argv, opts, deadline)

  defp module(opts), do: if(Remote.node_of(opts), do: RemoteConsumer, else: Pump)
end
