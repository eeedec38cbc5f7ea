defmodule Sluice.Program.Usage do
  @moduledoc false
  # What a running program has cost so far (Sluice.Process.stats/2): the helper program
  # answers `{:stats, id}` on the program channel with its CPU times and process count;
  # the bytes through its pipes and its age are counted here, on the data side. Once the
  # program has exited, the usage of its exit reply is the answer.

  alias Sluice.Program.Deadline
  alias Sluice.{Native, Program}
  alias Sluice.Helper.Protocol

  @doc "See `Sluice.Program.stats/2`."
  @spec stats(Program.t(), Deadline.t()) :: {{:ok, map} | {:error, atom}, Program.t()}
  def stats(p, deadline) do
    case p.exit do
      {:exited, status} -> {{:ok, with_pipes(p, exited(status, p.exit_info))}, p}
      :lost -> {{:error, :helper_down}, p}
      :running -> request(p, deadline)
    end
  end

  defp request(p, deadline) do
    case Native.send(p.channel, Protocol.stats(p.id)) do
      :ok -> await(p, deadline)
      {:error, _} -> {{:error, :helper_down}, Program.control(p)}
    end
  end

  # Other messages of the channel (the exit, above all) are applied as they come.
  defp await(%{id: id} = p, deadline) do
    case Native.recv(p.channel) do
      {:ok, payload, fds} ->
        Enum.each(fds, &Native.close/1)

        case Protocol.decode(payload) do
          {:stats, ^id, stats} -> {{:ok, with_pipes(p, stats)}, Program.control(p)}
          other -> p |> Program.apply_control(other) |> await_or_exited(deadline)
        end

      {:error, :eagain} ->
        receive do
          {:select, ch, _, :ready_input} when ch == p.channel -> await(p, deadline)
        after
          Deadline.remaining(deadline) -> {{:error, :timeout}, p}
        end

      _eof_or_error ->
        {{:error, :helper_down}, Program.control(p)}
    end
  end

  # An exit that came first answers too (the helper program answers stats only while it
  # knows the program, and a stats request after the exit may still be answered: both do).
  defp await_or_exited(%{exit: {:exited, _}} = p, _deadline), do: stats(p, 0)
  defp await_or_exited(p, deadline), do: await(p, deadline)

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
