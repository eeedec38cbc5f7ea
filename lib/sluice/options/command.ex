defmodule Sluice.Options.Command do
  @moduledoc false
  # The command an entry point takes, an argv or a Sluice.Pipeline: its check, the rule
  # between a pipeline and the options, and its spawn spec. The only module of the options
  # layer that knows the pipeline struct: Sluice.Pipeline checks its stages with
  # Sluice.Options, so nothing that Sluice.Options reaches may name Sluice.Pipeline (the
  # dependencies point one way: Command -> Pipeline -> Options).

  alias Sluice.Options.{Check, Rules, Spec}
  alias Sluice.Pipeline

  @doc """
  Checks a command: a `Sluice.Pipeline` (checked when it was built), or an argv (a
  non-empty proper list of strings without NUL bytes).
  """
  @spec argv!(term) :: Sluice.command()
  def argv!(%Pipeline{} = pipeline), do: pipeline
  def argv!(argv), do: Check.argv!(argv)

  @doc """
  Checks that checked options fit the command: a pipeline's ends are pipes (no `:pty`,
  no `use_stdio: false`). Raises `ArgumentError` naming the option.
  """
  @spec command!(Sluice.command(), Sluice.Options.t()) :: :ok
  def command!(%Pipeline{}, opts), do: Rules.pipeline!(opts)
  def command!(_argv, _opts), do: :ok

  @doc """
  The spawn spec for the helper program (docs/protocol.md). A pipeline's first stage is
  the spec's program, the others its `pipeline` key.
  """
  @spec spawn_spec(Sluice.command(), Sluice.Options.t()) :: map
  def spawn_spec(%Pipeline{stages: stages}, opts) do
    :ok = Rules.pipeline!(opts)
    Spec.stages(stages, opts)
  end

  def spawn_spec(argv, opts), do: Spec.spawn(argv, opts)
end
