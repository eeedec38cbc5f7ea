defmodule Sluice.Process.Active do
  @moduledoc false
  # Active mode of a Sluice.Process: output pushed to the controlling process as
  # messages, only as many as were granted (so back-pressure holds), like :gen_tcp.

  alias Sluice.Pipes

  @chunk 65_536

  @typedoc "What is granted: nothing, one message, or a count."
  @type mode :: false | :once | pos_integer

  @doc """
  Reads and sends as many output messages as `mode` grants. Returns the new mode and
  pipes; sends `{:sluice_passive, p}` when a count runs out.
  """
  @spec deliver(mode, Pipes.t(), pid) :: {mode, Pipes.t()}
  def deliver(false, pipes, _to), do: {false, pipes}

  def deliver(mode, pipes, to) do
    case ready_chunk(pipes, Pipes.open_outputs(pipes)) do
      {:data, source, data, pipes} ->
        tag = if source == :stdout, do: :sluice_stdout, else: :sluice_stderr
        send(to, {tag, self(), data})
        mode |> spend(to) |> deliver(pipes, to)

      {:blocked, pipes} ->
        {mode, pipes}
    end
  end

  defp ready_chunk(pipes, []), do: {:blocked, pipes}

  defp ready_chunk(pipes, [source | rest]) do
    case Pipes.read(pipes, source, @chunk) do
      {:ok, data, pipes} -> {:data, source, data, pipes}
      {:eof, pipes} -> ready_chunk(pipes, rest)
      {:wait, pipes} -> ready_chunk(pipes, rest)
      {:error, _reason, pipes} -> ready_chunk(pipes, rest)
    end
  end

  defp spend(:once, _to), do: false

  defp spend(1, to) do
    send(to, {:sluice_passive, self()})
    false
  end

  defp spend(n, _to), do: n - 1
end
