defmodule Sluice.Caller.OutputStream do
  @moduledoc false
  # The Enumerable behind Sluice.stream!/2 and Sluice.stream/2, built on Stream.resource:
  # the program starts when enumeration starts, in the enumerating process (its owner),
  # and the after-callback stops it however enumeration ends (done, halted, raised, or the
  # consumer killed: then the NIF closes its channel and the helper program stops it).
  # The program is driven through a Sluice.Caller.Source. The Enumerable implementation of
  # Sluice.Stream is here too, so that the public struct's module depends on nothing.

  alias Sluice.ExitError
  alias Sluice.Caller.Source
  alias Sluice.Program.{Deadline, Errors, Lines}

  @stderr_tail 8_192
  @lost [:helper_down, :nodedown]

  @spec new(Sluice.command(), map, :raise | :exit_element) :: Enumerable.t()
  def new(argv, opts, mode) do
    Stream.resource(fn -> open(argv, opts, mode) end, &next/1, &close/1)
  end

  defp open(argv, opts, mode) do
    deadline = Deadline.at(opts.start_timeout)

    case Source.Pick.open(argv, opts, deadline) do
      {:ok, src} ->
        lines = if opts.lines, do: Lines.new(opts.max_line_length)

        %{
          argv: argv,
          src: src,
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
    case Source.next(st.src, st.opts.chunk_size, Deadline.at(st.opts.idle_timeout)) do
      {:data, source, data, src} ->
        emit(%{st | src: src}, source, data)

      {:eof, src} ->
        finish(%{st | src: src})

      {:error, :timeout, src} ->
        raise_after_close(st, src, idle_error(st))

      {:error, lost, src} when lost in @lost ->
        raise_after_close(st, src, Source.lost_error(src, lost))

      {:error, reason, src} ->
        raise_after_close(st, src, Errors.data(reason))
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

    {status, src} = exit_status(st)
    st = %{st | done: true, src: src}

    case st.mode do
      :exit_element ->
        {flushed ++ [{:exit, status}], st}

      :raise ->
        statuses = (Source.exit_info(st.src) || %{})[:statuses]
        stderr = if st.opts.stderr == :capture, do: st.stderr_tail

        case ExitError.check(st.argv, status, statuses, st.opts, stderr: stderr) do
          :ok -> {flushed, st}
          # Emit what was flushed first; raise on the following call.
          {:error, error} -> {flushed, %{st | done: {:raise, error}}}
        end
    end
  end

  defp exit_status(st) do
    case Source.await_exit(st.src, Deadline.at(st.opts.exit_timeout)) do
      {:ok, status, src} ->
        {status, src}

      {:error, :timeout, src} ->
        src = Source.stop(src, st.opts.kill_grace)

        case Source.await_exit(src, Deadline.after_stop(st.opts.kill_grace)) do
          {:ok, status, src} -> {status, src}
          {:error, :timeout, _} -> raise_after_close(st, st.src, exit_timeout())
          {:error, lost, src} -> raise_after_close(st, src, Source.lost_error(src, lost))
        end

      {:error, lost, src} ->
        raise_after_close(st, src, Source.lost_error(src, lost))
    end
  end

  defp tag(items, :stdout, %{opts: %{stderr: :consume}}), do: Enum.map(items, &{:stdout, &1})
  defp tag(items, :stderr, _st), do: Enum.map(items, &{:stderr, &1})
  defp tag(items, :stdout, _st), do: items

  # Halted early (or the consumer raised): stop the program before returning, as the
  # guarantees say. Afterwards closing the channel makes the helper program clean up what
  # is left; a halted input stream stops its own program the same way.
  defp close(%{done: false} = st) do
    {_status, src} = Source.stop_and_await(st.src, st.opts.kill_grace)
    Source.close(src)
  end

  defp close(st), do: Source.close(st.src)

  defp tail(bin) when byte_size(bin) <= @stderr_tail, do: bin
  defp tail(bin), do: binary_part(bin, byte_size(bin) - @stderr_tail, @stderr_tail)
end

defimpl Enumerable, for: Sluice.Stream do
  def reduce(s, acc, fun), do: Sluice.Caller.OutputStream.new(s.argv, s.opts, s.mode).(acc, fun)
  def count(_s), do: {:error, __MODULE__}
  def member?(_s, _element), do: {:error, __MODULE__}
  def slice(_s), do: {:error, __MODULE__}
end
