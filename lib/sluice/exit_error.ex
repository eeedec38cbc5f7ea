defmodule Sluice.ExitError do
  @moduledoc """
  Raised by `Sluice.run!/2` and `Sluice.stream!/2` when a program ends with a status outside
  `success_exit_codes`. Carries the `argv`, the `status` (the last stage's, for a pipeline),
  every stage's `statuses` (`[status]` for one program), the 1-based `stage` whose status
  failed (the first such one with `pipefail`, else the last; `1` for one program; `nil`
  when a pipeline's statuses are not known), and the last few KiB of stderr (when it was
  captured).

  The message of a pipeline's names the stage that failed:

      iex> pipeline = Sluice.pipeline([["sh", "-c", "exit 1"], ["cat"]])
      iex> Exception.message(Sluice.ExitError.new(pipeline, 0, nil, statuses: [1, 0], stage: 1))
      ~s{sh -c "exit 1" | cat failed: stage 1 (sh -c "exit 1") exited with status 1; statuses [1, 0]}
  """
  defexception [:argv, :status, :stderr_tail, :result, :statuses, :stage]

  @type t :: %__MODULE__{
          argv: Sluice.command(),
          status: Sluice.Process.status(),
          statuses: [Sluice.Process.status()] | nil,
          stage: pos_integer | nil,
          stderr_tail: binary | nil,
          result: Sluice.Result.t() | nil
        }

  @tail_bytes 4_096

  @impl true
  def message(%{argv: argv, status: status, stderr_tail: tail} = error) do
    base = failure(argv, status, error)
    if tail in [nil, ""], do: base, else: base <> "; stderr ends with:\n" <> tail
  end

  @doc """
  Builds the error, keeping only the tail of `stderr`. Options: `:result` (of
  `Sluice.run!/2`; a `Sluice.Result` in their place is taken as `:result`), `:statuses`
  (every stage's) and `:stage` (the one that failed).

      iex> Sluice.ExitError.new(["false"], 1, "bad\\n").stderr_tail
      "bad\\n"
  """
  @spec new(Sluice.command(), Sluice.Process.status(), binary | nil, keyword | Sluice.Result.t()) ::
          t
  def new(argv, status, stderr, opts \\ [])

  def new(argv, status, stderr, %Sluice.Result{} = result),
    do: new(argv, status, stderr, result: result)

  def new(argv, status, stderr, opts) do
    %__MODULE__{
      argv: argv,
      status: status,
      stderr_tail: tail(stderr),
      result: opts[:result],
      statuses: opts[:statuses] || [status],
      stage: opts[:stage] || if(match?(%Sluice.Pipeline{}, argv), do: nil, else: 1)
    }
  end

  @doc false
  # The exit of `argv` checked against `opts.success_exit_codes` (and `opts.pipefail` for
  # a pipeline: `statuses` is every stage's, nil for one program): `:ok`, or the error.
  # `extra`: `:stderr` (its tail is kept) and `:result`.
  @spec check(
          Sluice.command(),
          Sluice.Process.status(),
          [Sluice.Process.status()] | nil,
          Sluice.Options.t(),
          keyword
        ) :: :ok | {:error, t}
  def check(argv, status, statuses, opts, extra \\ []) do
    known = statuses != nil
    statuses = statuses || [status]
    {stderr, extra} = Keyword.pop(extra, :stderr)

    case Sluice.Pipeline.failed_stage(statuses, opts.success_exit_codes, opts.pipefail) do
      nil ->
        :ok

      # A pipeline whose statuses are not known: which stage failed is not known either.
      _stage when not known and is_struct(argv, Sluice.Pipeline) ->
        {:error, new(argv, status, stderr, [statuses: statuses] ++ extra)}

      stage ->
        {:error, new(argv, status, stderr, [statuses: statuses, stage: stage] ++ extra)}
    end
  end

  defp tail(nil), do: nil
  defp tail(bin) when byte_size(bin) <= @tail_bytes, do: bin
  defp tail(bin), do: binary_part(bin, byte_size(bin) - @tail_bytes, @tail_bytes)

  # A pipeline's message names the stage whose status failed: `status` is the last
  # stage's, which may well be 0.
  defp failure(%Sluice.Pipeline{stages: stages} = pipeline, _status, %{
         statuses: statuses,
         stage: i
       })
       when is_list(statuses) and length(statuses) == length(stages) and is_integer(i) and
              i >= 1 and i <= length(stages) do
    {argv, _} = Enum.at(stages, i - 1)

    "#{Sluice.Pipeline.describe(pipeline)} failed: stage #{i} (#{Sluice.Pipeline.command_line(argv)}) " <>
      "#{describe(Enum.at(statuses, i - 1))}; statuses #{inspect(statuses)}"
  end

  defp failure(%Sluice.Pipeline{} = pipeline, status, _error),
    do: "#{Sluice.Pipeline.describe(pipeline)} #{describe(status)}"

  defp failure(argv, status, _error),
    do: "#{Sluice.Pipeline.command_line(argv)} #{describe(status)}"

  defp describe({:signal, sig}), do: "was killed by #{sig}"
  defp describe(code), do: "exited with status #{code}"
end
