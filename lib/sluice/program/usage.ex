defmodule Sluice.Program.Usage do
  @moduledoc false
  # What a running program has cost so far (Sluice.Process.stats/2): the helper program
  # answers `{:stats, id}` on the program channel with its CPU times and process count;
  # the bytes through its pipes and its age are counted here, on the data side. Once the
  # program has exited, the usage of its exit reply is the answer.

  alias Sluice.Program
  alias Sluice.Control.Protocol
  alias Sluice.Program.{Channel, Deadline}

  @doc "See `Sluice.Program.stats/2`."
  @spec stats(Program.t(), Deadline.t()) :: {{:ok, map} | {:error, atom}, Program.t()}
  def stats(p, deadline) do
    case p.exit do
      {:exited, status} -> {{:ok, with_pipes(p, exited(status, p.exit_info))}, p}
      :lost -> {{:error, :helper_down}, p}
      :running -> request(p, deadline)
    end
  end

  # An exit that comes first answers too (the helper program answers stats only while it
  # knows the program, and a stats request after the exit may still be answered: both do).
  defp request(%{id: id} = p, deadline) do
    answer = fn
      {:stats, ^id, stats}, p ->
        {:done, {:ok, with_pipes(p, stats)}}

      _news, %{exit: {:exited, status}} = p ->
        {:done, {:ok, with_pipes(p, exited(status, p.exit_info))}}

      _news, _p ->
        :wait
    end

    case Channel.request(p, Protocol.stats(id), answer, deadline) do
      {{:error, reason}, p} when reason != :timeout -> {{:error, :helper_down}, p}
      answered -> answered
    end
  end

  # After the exit: its usage, whether a core was dumped, and every status of a pipeline.
  defp exited(status, info) do
    info = info || %{usage: nil, core_dumped: false, statuses: nil}
    statuses = info.statuses || [status]
    %{usage: info.usage, pids_current: 0, core_dumped: info.core_dumped, statuses: statuses}
  end

  defp with_pipes(p, stats) do
    Map.merge(stats, %{
      bytes_read: p.bytes_read,
      bytes_written: p.bytes_written,
      age_ms: Deadline.now() - p.started_at
    })
  end
end
