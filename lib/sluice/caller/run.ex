defmodule Sluice.Caller.Run do
  @moduledoc false
  # Sluice.run/2: the program, its input and its output, all driven from the calling
  # process through a Sluice.Caller.Source (a Sluice.Caller.Pump here, or with `node:` a
  # Sluice.Caller.RemoteConsumer of a reader on another node). `timeout` bounds the whole
  # call, spawn included.

  alias Sluice.{Error, Options, Result}
  alias Sluice.Caller.Source
  alias Sluice.Options.{Command, Spec}
  alias Sluice.Program.{Deadline, Errors}

  # Bytes per read at most: as much as a roomy output pipe holds, so collecting takes a
  # quarter of the reads that 64 KiB would. The source keeps the output (Source.collect/1:
  # on this node the bytes are read straight into the binaries the result gets); this
  # module counts them.
  @read_max 262_144

  @spec run(Sluice.command(), keyword) :: {:ok, Result.t()} | {:error, Error.t()}
  def run(argv, opts) do
    argv = Command.argv!(argv)
    opts = Options.validate!(opts, :run, "Sluice.run/2")
    deadline = Deadline.at(opts.timeout)

    with {:ok, src} <- Source.Pick.open(argv, opts, deadline) do
      src = Source.collect(src)
      st = %{opts: opts, deadline: deadline, size: 0, taken: %{stdout: 0, stderr: 0}}

      try do
        collect(src, st)
      catch
        kind, reason ->
          # The input raised: the program is stopped by the helper once its channel closes.
          Source.close(src)
          :erlang.raise(kind, reason, __STACKTRACE__)
      end
    end
  end

  # `idle_timeout` is a deadline renewed at every chunk of output; the wait ends at the
  # nearer of the two.
  defp collect(src, st) do
    idle = Deadline.at(st.opts.idle_timeout)

    # min/2: any integer deadline is nearer than :infinity.
    case Source.next(src, read_max(st), min(st.deadline, idle)) do
      {:data, source, bytes, src} -> src |> add_output(st, source, bytes)
      {:eof, src} -> finish(src, st)
      {:error, :timeout, src} when idle != :infinity and idle < st.deadline -> idle(src, st)
      {:error, :timeout, src} -> fail(src, st, Errors.timed_out(st.opts.timeout))
      {:error, reason, src} when reason in [:helper_down, :nodedown] -> lost(src, st, reason)
      {:error, reason, src} -> fail(src, st, Errors.data(reason))
    end
  end

  # With `max_output`, no read goes further than one byte past it, and no more is taken
  # (output read while a function `:input` ran comes in chunks of its own): the partial
  # result of an output that exceeded it holds its first `max_output + 1` bytes (stdout
  # and stderr together, in the order they were read).
  defp read_max(%{opts: %{max_output: :infinity}}), do: @read_max
  defp read_max(%{opts: %{max_output: max}, size: size}), do: min(@read_max, max - size + 1)

  defp add_output(src, st, source, bytes) do
    max = st.opts.max_output
    bytes = if max == :infinity, do: bytes, else: min(bytes, max + 1 - st.size)
    st = %{st | size: st.size + bytes, taken: Map.update!(st.taken, source, &(&1 + bytes))}

    cond do
      max != :infinity and st.size > max ->
        fail(src, st, Errors.max_output(max))

      # A producer that never pauses never makes a wait time out.
      st.deadline != :infinity and Deadline.passed?(st.deadline) ->
        fail(src, st, Errors.timed_out(st.opts.timeout))

      true ->
        collect(src, st)
    end
  end

  defp finish(src, st) do
    case Source.await_exit(src, st.deadline) do
      {:ok, status, src} ->
        Source.close(src)
        {:ok, result(src, st, status)}

      {:error, :timeout, src} ->
        fail(src, st, Errors.timed_out(st.opts.timeout))

      {:error, reason, src} ->
        lost(src, st, reason)
    end
  end

  # Stops the program's group (kill_signal, SIGKILL after kill_grace) before returning.
  defp fail(src, st, error) do
    {status, src} = Source.stop_and_await(src, st.opts.kill_grace)
    Source.close(src)
    {:error, %{error | result: result(src, st, status)}}
  end

  defp lost(src, st, reason) do
    Source.close(src)
    error = Source.lost_error(src, reason)
    {:error, %{error | result: result(src, st, nil)}}
  end

  defp idle(src, st), do: fail(src, st, Errors.idle(st.opts.idle_timeout))

  # What the source kept of an output, up to what this module took of it: the same unless
  # the call ended with output still queued in the source (read while a function input
  # ran), which a result never had.
  defp taken(src, st, source) do
    bytes = Source.collected(src, source)
    taken = st.taken[source]
    if byte_size(bytes) == taken, do: bytes, else: binary_part(bytes, 0, taken)
  end

  defp result(src, st, status) do
    Result.with_exit(
      %Result{
        os_pid: Source.os_pid(src),
        status: status,
        stdout: if(Spec.stdout_piped?(st.opts), do: taken(src, st, :stdout)),
        stderr: if(st.opts.stderr == :capture, do: taken(src, st, :stderr))
      },
      Source.exit_info(src)
    )
  end
end
