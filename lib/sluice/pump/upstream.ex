defmodule Sluice.Pump.Upstream do
  @moduledoc false
  # A `Sluice.stream!/2` given as another program's `:input`, driven as part of the
  # consumer's pump rather than enumerated: its output goes into the downstream program's
  # stdin as it comes, while the pump waits on both programs' fds at once, so the
  # downstream's output is never held back by a quiet upstream, and the caller's deadline
  # covers the whole chain. What stream!/2 guarantees still holds: the upstream's exit
  # status is checked against its `:success_exit_codes` (Sluice.ExitError), and it is
  # stopped when the chain ends early.

  alias Sluice.Program.{Deadline, Errors}
  alias Sluice.{ExitError, Input, Options, Program, Pump}

  @doc "Starts the upstream program (in the calling process, which owns it)."
  @spec open(Sluice.Stream.t()) :: Pump.t()
  def open(stream) do
    spec = Options.spawn_spec(stream.argv, stream.opts)

    case Program.open(spec, Deadline.at(stream.opts.start_timeout)) do
      {:ok, program} -> Pump.new(program, Input.new(stream.opts.input, stream.opts.input_in))
      {:error, error} -> raise error
    end
  end

  @doc """
  One step of the upstream without waiting: `{:data, binary, up}`, `{:blocked, up}`, or
  `:done` once it ended well (raises Sluice.ExitError or Sluice.Error otherwise, after
  stopping it).
  """
  @spec step(Pump.t(), Sluice.Stream.t(), Deadline.t()) ::
          {:data, binary, Pump.t()} | {:blocked, Pump.t()} | :done
  def step(up, stream, deadline) do
    case Pump.step(up, stream.opts.chunk_size, deadline) do
      {:data, _stdout, data, up} ->
        {:data, data, up}

      {:blocked, up} ->
        {:blocked, up}

      {:eof, up} ->
        finish(up, stream)

      {:error, :helper_down, up} ->
        fail(up, stream, Errors.helper_down())

      {:error, reason, up} ->
        fail(up, stream, Errors.input(reason))
    end
  catch
    kind, reason ->
      _status = stop(up, stream)
      :erlang.raise(kind, reason, __STACKTRACE__)
  end

  defp finish(up, stream) do
    # A pipeline's statuses come with its exit, for pipefail.
    {status, statuses} =
      case Program.await_exit(up.program, Deadline.at(stream.opts.exit_timeout)) do
        {:ok, status, program} -> {status, (Program.exit_info(program) || %{})[:statuses]}
        {:error, :timeout, _pipes} -> {stop(up, stream), nil}
        {:error, :helper_down, _pipes} -> fail(up, stream, Errors.helper_down())
      end

    Pump.close(up)

    case ExitError.check(stream.argv, status, statuses, stream.opts) do
      :ok -> :done
      {:error, error} -> raise error
    end
  end

  defp fail(up, stream, error) do
    _status = stop(up, stream)
    raise error
  end

  @doc "Stops the upstream (kill_signal, SIGKILL after kill_grace) and closes it."
  @spec stop(Pump.t(), Sluice.Stream.t()) :: Program.status() | nil
  def stop(up, stream) do
    status =
      if Program.running?(up.program),
        do: up.program |> Program.stop_and_await(stream.opts.kill_grace) |> elem(0)

    Pump.close(up)
    status
  end
end
