defmodule Sluice.Holder.Process.Active do
  @moduledoc false
  # Active mode of a Sluice.Process: output pushed to the controlling process as
  # messages, only as many as were granted (so back-pressure holds), like :gen_tcp.

  alias Sluice.Program
  alias Sluice.Program.Output

  @chunk 65_536

  @typedoc "Messages granted by `set_active/2`: one, or a count."
  @type grant :: :once | pos_integer

  @typedoc "What `Sluice.Process.set_active/2` takes: a grant, or `false` to stop."
  @type mode :: false | grant

  @typedoc """
  How output reaches the controlling process:

    * `:passive` - by `read/3` calls; active mode was never used;
    * `{:active, grant}` - pushed as messages, as many as `grant` still allows (reads are
      refused);
    * `:paused` - by `read/3` calls again, after active mode (its grant used up, or
      `set_active(p, false)`). A controller that used active mode hears of the program's
      failures by message (`{:sluice_error, p, reason}`): one that never did, does not.
  """
  @type t :: :passive | {:active, grant} | :paused

  @doc "The state after `set_active(p, mode)`."
  @spec set(t, mode) :: t
  def set(:passive, false), do: :passive
  def set(_state, false), do: :paused
  def set(_state, grant), do: {:active, grant}

  @doc "Whether the controller hears of failures by message: once it used active mode."
  @spec notifies?(t) :: boolean
  def notifies?(state), do: state != :passive

  @doc """
  Reads and sends as many output messages as the state grants. Returns the new state and
  program; sends `{:sluice_passive, p}` when a count runs out.
  """
  @spec deliver(t, Program.t(), pid) :: {t, Program.t()}
  def deliver({:active, grant} = state, program, to) do
    case ready_chunk(program, [:stdout, :stderr]) do
      {:data, source, data, program} ->
        tag = if source == :stdout, do: :sluice_stdout, else: :sluice_stderr
        send(to, {tag, self(), data})
        grant |> spend(to) |> deliver(program, to)

      {:blocked, program} ->
        {state, program}
    end
  end

  def deliver(state, program, _to), do: {state, program}

  # Fair between the outputs (Sluice.Program.Output): a flooding stdout does not starve
  # stderr. An output whose read fails (a frame over `max_frame`: the server stops the
  # program) is left out, and the other still delivered.
  defp ready_chunk(program, []), do: {:blocked, program}

  defp ready_chunk(program, sources) do
    case Output.next(program, sources, @chunk) do
      {:data, source, data, program} -> {:data, source, data, program}
      {:error, source, _reason, program} -> ready_chunk(program, List.delete(sources, source))
      {_blocked_or_eof, program} -> {:blocked, program}
    end
  end

  defp spend(:once, _to), do: :paused

  defp spend(1, to) do
    send(to, {:sluice_passive, self()})
    :paused
  end

  defp spend(n, _to), do: {:active, n - 1}
end
