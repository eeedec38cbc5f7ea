defmodule Sluice.Caller.Run do
  @moduledoc false
  # Sluice.run/2: the program, its input and its output, all driven from the calling
  # process through a Sluice.Caller.Source (a Sluice.Caller.Pump here, or with `node:` a
  # Sluice.Caller.RemoteConsumer of a reader on another node). `timeout` bounds the whole
  # call, spawn included.

  alias Sluice.{Error, Options, Result}
  alias Sluice.Caller.{Into, Source}
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
    # `into:` a collectable (Sluice.Caller.Into), opened first as System.cmd/3 does.
    into = Into.open(opts.into)

    with {:ok, src} <- Source.Pick.open(argv, opts, deadline) do
      src = if into, do: src, else: Source.collect(src)
      st = %{opts: opts, deadline: deadline, size: 0, taken: %{stdout: 0, stderr: 0}, into: into}

      try do
        collect(src, st)
      catch
        kind, reason ->
          # The input (or the collectable) raised: the program is stopped by the helper
          # once its channel closes.
          Source.close(src)
          if into, do: Into.halt(into)
          :erlang.raise(kind, reason, __STACKTRACE__)
      end
    else
      error ->
        if into, do: Into.halt(into)
        error
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

  # `data`: what was read (with `into:`) or its byte count (collected by the source).
  defp add_output(src, st, source, data) do
    max = st.opts.max_output
    bytes = if is_binary(data), do: byte_size(data), else: data
    bytes = if max == :infinity, do: bytes, else: min(bytes, max + 1 - st.size)
    st = %{st | size: st.size + bytes, taken: Map.update!(st.taken, source, &(&1 + bytes))}

    st =
      if st.into,
        do: %{st | into: Into.put(st.into, source, binary_part(data, 0, bytes))},
        else: st

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
    {:error, %{error | result: result(src, st, status, :halt)}}
  end

  defp lost(src, st, reason) do
    Source.close(src)
    error = Source.lost_error(src, reason)
    {:error, %{error | result: result(src, st, nil, :halt)}}
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

  # `ending`: `:done` gives a collectable's value as stdout, `:halt` (a failure) halts it
  # and gives `nil`.
  defp result(src, st, status, ending \\ :done) do
    Result.with_exit(
      %Result{
        os_pid: Source.os_pid(src),
        status: status,
        stdout:
          if(Spec.stdout_piped?(st.opts) or st.opts.into != nil,
            do: output(src, st, :stdout, ending)
          ),
        stderr: if(st.opts.stderr == :capture, do: output(src, st, :stderr, ending))
      },
      Source.exit_info(src)
    )
  end

  defp output(src, %{into: nil} = st, source, _ending), do: taken(src, st, source)
  defp output(_src, %{into: into}, :stderr, _ending), do: Into.stderr(into)
  defp output(_src, %{into: into}, :stdout, :done), do: Into.done(into)
  defp output(_src, %{into: into}, :stdout, :halt), do: Into.halt(into)
end
