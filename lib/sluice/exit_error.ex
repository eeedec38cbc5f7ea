defmodule Sluice.ExitError do
  @moduledoc """
  Raised by `Sluice.run!/2` and `Sluice.stream!/2` when a program ends with a status outside
  `success_exit_codes`. Carries the `argv`, the `status` and the last few KiB of stderr
  (when it was captured).
  """
  defexception [:argv, :status, :stderr_tail, :result]

  @type t :: %__MODULE__{
          argv: Sluice.command(),
          status: Sluice.Process.status(),
          stderr_tail: binary | nil,
          result: Sluice.Result.t() | nil
        }

  @tail_bytes 4_096

  @impl true
  def message(%{argv: argv, status: status, stderr_tail: tail}) do
    base = "#{command(argv)} #{describe(status)}"
    if tail in [nil, ""], do: base, else: base <> "; stderr ends with:\n" <> tail
  end

  @doc """
  Builds the error, keeping only the tail of `stderr`.

      iex> Sluice.ExitError.new(["false"], 1, "bad\\n").stderr_tail
      "bad\\n"
  """
  @spec new(
          Sluice.command(),
          Sluice.Process.status(),
          binary | nil,
          Sluice.Result.t() | nil
        ) :: t
  def new(argv, status, stderr, result \\ nil) do
    %__MODULE__{argv: argv, status: status, stderr_tail: tail(stderr), result: result}
  end

  defp tail(nil), do: nil
  defp tail(bin) when byte_size(bin) <= @tail_bytes, do: bin
  defp tail(bin), do: binary_part(bin, byte_size(bin) - @tail_bytes, @tail_bytes)

  defp command(%Sluice.Pipeline{} = pipeline), do: Sluice.Pipeline.describe(pipeline)
  defp command(argv), do: Enum.join(argv, " ")

  defp describe({:signal, sig}), do: "was killed by #{sig}"
  defp describe(code), do: "exited with status #{code}"
end
