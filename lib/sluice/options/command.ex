defmodule Sluice.Options.Command do
  @moduledoc false
  # The command an entry point takes, an argv or a Sluice.Pipeline: its check, the rule
  # between a pipeline and the options, and its spawn spec. The only module of the options
  # layer that knows the pipeline struct: Sluice.Pipeline checks its stages with
  # Sluice.Options, so nothing that Sluice.Options reaches may name Sluice.Pipeline (the
  # dependencies point one way: Command -> Pipeline -> Options).

  alias Sluice.OptionError
  alias Sluice.Options.{Check, Rules, Spec}
  alias Sluice.Pipeline

  @doc """
  Checks a command: a `Sluice.Pipeline` (checked when it was built), or an argv (a
  non-empty proper list of strings without NUL bytes).
  """
  @spec argv!(term) :: Sluice.command()
  def argv!(%Pipeline{} = pipeline), do: pipeline

  def argv!(argv) when is_binary(argv) or (is_list(argv) and is_integer(hd(argv))),
    do: one_string!(argv, nil, nil)

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

  # Characters that mean a shell command line, not a program and its arguments.
  @shell ["|", "&", ";", "<", ">", "(", ")", "$", "`", "\\", "\"", "'", "*", "?", "[", "#", "\n"]

  @doc """
  The mistake of a command written as one string (`"echo hi"`, `'echo hi'`), or as a
  program and its arguments apart (`run("echo", ["hi"])`: `rest` is what came second):
  raises `ArgumentError` showing the argv to write, as a call of `call` when given
  (`"Sluice.run"`). A string that is not a command (blank, not text) is checked as any
  argv.
  """
  @spec one_string!(String.t() | charlist, term, String.t() | nil) :: no_return
  def one_string!(argv, rest, call) do
    line = text(argv)
    # Not a command at all (blank, not text): the usual message.
    _ = if String.trim(line) == "", do: Check.argv!(argv)

    args = if is_list(rest) and rest != [] and Enum.all?(rest, &is_binary/1), do: rest
    show = fn argv -> if call, do: "#{call}(#{inspect(argv)})", else: inspect(argv) end

    expected =
      cond do
        args != nil ->
          "a list of strings, the program first and then its arguments: " <>
            show.([line | args])

        String.contains?(line, @shell) ->
          "a list of strings, one per argument (no shell splits a string); for a shell " <>
            "command line, run a shell: " <> show.(["sh", "-c", line])

        true ->
          "a list of strings, one per argument (no shell splits a string): " <>
            show.(String.split(line))
      end

    OptionError.raise!(kind: :argument, option: :argv, expected: expected, value: argv)
  end

  defp text(argv) do
    case :unicode.characters_to_binary(argv) do
      line when is_binary(line) -> line
      _ -> ""
    end
  rescue
    ArgumentError -> ""
  end
end
