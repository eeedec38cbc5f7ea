defmodule Sluice.OutputStream do
  @moduledoc false
  # The Enumerable behind Sluice.stream!/2 and Sluice.stream/2, built on Stream.resource:
  # the program starts when enumeration starts, in the enumerating process (its owner),
  # and the after-callback stops it however enumeration ends (done, halted, raised, or the
  # consumer killed: then the NIF closes its channel and the helper program stops it).

  alias Sluice.Program.{Deadline, Errors}
  alias Sluice.{Driver, ExitError, Lines}

  @stderr_tail 8_192
  @lost [:helper_down, :nodedown]

  @spec new(Sluice.command(), map, :raise | :exit_element) :: Enumerable.t()
  def new(argv, opts, mode) do
    Stream.resource(fn -> open(argv, opts, mode) end, &next/1, &close/1)
  end

  defp open(argv, opts, mode) do
    deadline = Deadline.at(opts.start_timeout)

    case Driver.open(argv, opts, deadline) do
      {:ok, driver} ->
        lines = if opts.lines, do: Lines.new(opts.max_line_length)

        %{
          argv: argv,
          pump: driver,
          mode: mode,
          opts: opts,
          lines: %{stdout: lines, stderr: lines},
          stderr_tail: "",
          done: false
        }

      {:error, error} ->
        raise error
    end
  end

  defp next(%{done: true} = st), do: {:halt, st}
  # Raised after the last element was emitted; Stream.resource still runs close/1.
  defp next(%{done: {:raise, error}}), do: raise(error)

  # The consumer's time between elements does not count: `idle_timeout` runs while this
  # waits for output.
  defp next(st) do
    case Driver.next(st.pump, st.opts.chunk_size, Deadline.at(st.opts.idle_timeout)) do
      {:data, source, data, pump} ->
        emit(%{st | pump: pump}, source, data)

      {:eof, pump} ->
        finish(%{st | pump: pump})

      {:error, :timeout, pump} ->
        raise_after_close(st, pump, idle_error(st))

      {:error, lost, pump} when lost in @lost ->
        raise_after_close(st, pump, Driver.lost_error(pump, lost))

      {:error, reason, pump} ->
        raise_after_close(st, pump, Errors.data(reason))
    end
  end

  defp exit_timeout, do: Errors.exit_not_reported_after_stop()

  defp idle_error(st), do: Errors.idle(st.opts.idle_timeout)

  # Stream.resource runs close/1 after the raise.
  defp raise_after_close(_st, _pump, error), do: raise(error)

  # stderr: :capture keeps only a tail of stderr, for the ExitError message.
  defp emit(%{opts: %{stderr: :capture}} = st, :stderr, data) do
    {[], %{st | stderr_tail: tail(st.stderr_tail <> data)}}
  end

  defp emit(%{opts: %{lines: true}} = st, source, data) do
    {lines, buffer} = Lines.split(st.lines[source], data)
    {tag(lines, source, st), put_in(st.lines[source], buffer)}
  end

  defp emit(st, source, data), do: {tag([data], source, st), st}

  defp finish(st) do
    flushed =
      if st.opts.lines,
        do: Enum.flat_map([:stdout, :stderr], &tag(Lines.flush(st.lines[&1]), &1, st)),
        else: []

    {status, pump} = exit_status(st)
    st = %{st | done: true, pump: pump}

    case st.mode do
      :exit_element ->
        {flushed ++ [{:exit, status}], st}

      :raise ->
        statuses = (Driver.exit_info(st.pump) || %{})[:statuses]
        stderr = if st.opts.stderr == :capture, do: st.stderr_tail

        case ExitError.check(st.argv, status, statuses, st.opts, stderr: stderr) do
          :ok -> {flushed, st}
          # Emit what was flushed first; raise on the following call.
          {:error, error} -> {flushed, %{st | done: {:raise, error}}}
        end
    end
  end

  defp exit_status(st) do
    case Driver.await_exit(st.pump, Deadline.at(st.opts.exit_timeout)) do
      {:ok, status, pump} ->
        {status, pump}

      {:error, :timeout, pump} ->
        pump = Driver.stop(pump, st.opts.kill_grace)

        case Driver.await_exit(pump, Deadline.after_stop(st.opts.kill_grace)) do
          {:ok, status, pump} -> {status, pump}
          {:error, :timeout, _} -> raise_after_close(st, st.pump, exit_timeout())
          {:error, lost, pump} -> raise_after_close(st, pump, Driver.lost_error(pump, lost))
        end

      {:error, lost, pump} ->
        raise_after_close(st, pump, Driver.lost_error(pump, lost))
    end
  end

  defp tag(items, :stdout, %{opts: %{stderr: :consume}}), do: Enum.map(items, &{:stdout, &1})
  defp tag(items, :stderr, _st), do: Enum.map(items, &{:stderr, &1})
  defp tag(items, :stdout, _st), do: items

  # Halted early (or the consumer raised): stop the program before returning, as the
  # guarantees say. Afterwards closing the channel makes the helper program clean up what
  # is left; a halted input stream stops its own program the same way.
  defp close(%{done: false} = st) do
    {_status, pump} = Driver.stop_and_await(st.pump, st.opts.kill_grace)
    Driver.close(pump)
  end

  defp close(st), do: Driver.close(st.pump)

  defp tail(bin) when byte_size(bin) <= @stderr_tail, do: bin
  defp tail(bin), do: binary_part(bin, byte_size(bin) - @stderr_tail, @stderr_tail)
end
