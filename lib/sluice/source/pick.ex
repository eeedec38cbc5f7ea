defmodule Sluice.Source.Pick do
  @moduledoc false
  # The one place that picks the Sluice.Source of a `run` or a stream: a Sluice.Pump when
  # the program runs on this node, a Sluice.Remote.Consumer with `node:` (another node).

  alias Sluice.Program.Deadline
  alias Sluice.{Error, Pump, Remote, Source}

  @doc "Opens the source `opts` asks for, its program started before `deadline`."
  @spec open(Sluice.command(), Sluice.Options.t(), Deadline.t()) ::
          {:ok, Source.t()} | {:error, Error.t()}
  def open(argv, opts, deadline), do: module(opts).open(argv, opts, deadline)

  defp module(opts), do: if(Remote.node_of(opts), do: Remote.Consumer, else: Pump)
end
