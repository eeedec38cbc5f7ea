defmodule Sluice.Pipeline do
  @moduledoc """
  A kernel pipeline: programs whose stdout feeds the next one's stdin through pipes the
  helper program makes. No byte passes through the BEAM between stages and no shell is
  involved, so every argument stays an argument (unlike `sh -c "a | b"`).

  Build one with `Sluice.pipeline/1` and give it to `Sluice.run/2`, `Sluice.run!/2`,
  `Sluice.stream!/2`, `Sluice.stream/2` or `Sluice.Process.start_link/2` in place of argv:
  input goes to the first stage, output comes from the last.

  Each stage is an argv, or `{argv, opts}` with its own `:cd`, `:env` (added to the
  pipeline's) and `:stderr` (`:console`, `:null`, `:stdout` — into the next stage, with
  its stdout; the last stage's into the output — or `{:file, path, opts}`). Everything
  else (stdin of the first stage, stdout of the last, `user:`, limits, `kill_signal`,
  timeouts) is the pipeline's.

  ## Where stderr goes

  A stage's own `:stderr` wins for that stage, whichever stage it is. The pipeline's
  `:stderr` (the option of `run/2`, `stream!/2`, ...: `:capture` by default for `run`,
  `:console` for streams) applies to every stage without its own. When it reads stderr
  back (`:capture`, `:consume`), those stages share one pipe to the BEAM: `result.stderr`
  is what they wrote (`""` when every stage sends its own elsewhere).

      iex> first = {["sh", "-c", "echo err >&2"], stderr: :stdout}
      iex> pipeline = Sluice.pipeline([first, ["tr", "a-z", "A-Z"]])
      iex> Sluice.run!(pipeline) |> Map.take([:stdout, :stderr])
      %{stdout: "ERR\\n", stderr: ""}

  All stages share one process group and one cgroup: a stop, a timeout or the owner's death
  ends every stage. `result.status` is the last stage's (as in a shell) and
  `result.statuses` every stage's in order (like `PIPESTATUS`); `success_exit_codes`
  applies to every status with `pipefail: true` (the default), to the last one only with
  `pipefail: false`.
  """

  alias Sluice.Options

  @enforce_keys [:stages]
  defstruct [:stages]

  @type stage_opts :: %{optional(:cd | :env | :stderr) => term}
  @type t :: %__MODULE__{stages: [{[String.t()], stage_opts}, ...]}

  @doc """
  Builds a pipeline from a non-empty list of stages, each an argv or `{argv, opts}`.

      iex> %Sluice.Pipeline{stages: [{["ls"], %{}}, {["wc", "-l"], %{cd: "/"}}]} =
      ...>   Sluice.Pipeline.new([["ls"], {["wc", "-l"], cd: "/"}])
  """
  @spec new([[String.t()] | {[String.t()], keyword}]) :: t
  def new([_ | _] = stages) do
    unless Options.proper_list?(stages), do: bad!(stages)
    %__MODULE__{stages: Enum.map(stages, &stage!/1)}
  end

  def new(other), do: bad!(other)

  defp stage!({argv, opts}) when is_list(opts) do
    unless Keyword.keyword?(opts), do: bad!({argv, opts})

    stage_options = Options.accepted(:stage)

    Enum.each(opts, fn {key, _} ->
      unless key in stage_options do
        Sluice.OptionError.raise!(
          kind: :unknown,
          option: key,
          value: Keyword.get(opts, key),
          who: "a pipeline stage",
          expected: stage_options
        )
      end
    end)

    checked = Options.validate!(opts, :stage, "Sluice.pipeline/1")
    {Options.argv!(argv), Map.take(checked, Keyword.keys(opts))}
  end

  defp stage!(argv) when is_list(argv), do: {Options.argv!(argv), %{}}
  defp stage!(other), do: bad!(other)

  @spec bad!(term) :: no_return
  defp bad!(got),
    do:
      Options.argument!(:stages, "a non-empty list of stages, each an argv or {argv, opts}", got)

  @doc "The pipeline as a shell would show it, for messages: `a | b | c`."
  @spec describe(t) :: String.t()
  def describe(%__MODULE__{stages: stages}),
    do: Enum.map_join(stages, " | ", fn {argv, _} -> command_line(argv) end)

  @doc """
  An argv as a shell command line that runs it, for messages: each argument that needs
  it quoted (in double quotes when that is enough, else in single quotes).

      iex> Sluice.Pipeline.command_line(["sh", "-c", "echo a; exit 3"])
      ~s(sh -c "echo a; exit 3")
      iex> Sluice.Pipeline.command_line(["printf", "%s$x", "it's", ""])
      ~s(printf '%s$x' "it's" "")
  """
  @spec command_line([String.t()]) :: String.t()
  def command_line(argv), do: Enum.map_join(argv, " ", &shell_word/1)

  defp shell_word(""), do: ~s("")

  defp shell_word(arg) do
    cond do
      arg =~ ~r{\A[A-Za-z0-9_@%+=:,./^-]+\z} -> arg
      not String.contains?(arg, ["\"", "$", "`", "\\", "!"]) -> ~s("#{arg}")
      true -> "'" <> String.replace(arg, "'", ~S('\'')) <> "'"
    end
  end

  @doc false
  # The stage (1-based) whose status makes an exit a failure, or nil for a success: with
  # `pipefail` every status must be in `codes` and the first that is not is named, else
  # only the last's counts. `statuses` of one program is `[status]`.
  @spec failed_stage([Sluice.Process.status(), ...], [integer], boolean) :: pos_integer | nil
  def failed_stage(statuses, codes, true) do
    case Enum.find_index(statuses, &(&1 not in codes)) do
      nil -> nil
      index -> index + 1
    end
  end

  def failed_stage(statuses, codes, false),
    do: if(List.last(statuses) in codes, do: nil, else: length(statuses))
end
