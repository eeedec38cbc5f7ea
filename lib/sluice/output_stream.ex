defmodule Sluice.OutputStream do
  @moduledoc false
  # The Enumerable behind Sluice.stream!/2 and Sluice.stream/2, built on Stream.resource:
  # the program starts when enumeration starts, in the enumerating process (its owner),
  # and the after-callback stops it however enumeration ends (done, halted, raised).

  alias Sluice.{ExitError, Input, Lines, Reader}
  alias Sluice.Process, as: P

  @stderr_tail 8_192

  def new(argv, spec, kill, input, mode, opts) do
    Stream.resource(
      fn -> open(argv, spec, kill, input, mode, opts) end,
      &next/1,
      &close/1
    )
  end

  defp open(argv, spec, kill, input, mode, opts) do
    case P.start_prepared(spec, kill) do
      {:ok, p} ->
        {:ok, fds} = P.lease_output(p)

        %{
          argv: argv,
          p: p,
          reader: Reader.new(fds),
          mode: mode,
          opts: opts,
          writer: Input.start(p, input, self()),
          lines: %{stdout: Lines.new(), stderr: Lines.new()},
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

  defp next(st) do
    case Reader.next(st.reader, st.opts.chunk_size, :infinity) do
      {:ok, source, data, reader} ->
        emit(%{st | reader: reader}, source, data)

      {:eof, reader} ->
        finish(%{st | reader: reader})

      {:error, reason, _reader} ->
        raise Sluice.Error.new(reason, "reading output failed: #{reason}")
    end
  end

  # stderr: :capture keeps only a tail of stderr, for the ExitError message.
  defp emit(%{opts: %{stderr: :capture}} = st, :stderr, data) do
    {[], %{st | stderr_tail: tail(st.stderr_tail <> data)}}
  end

  defp emit(st, source, data) do
    {items, st} =
      if st.opts.lines do
        {lines, buffer} = Lines.split(st.lines[source], data)
        {lines, put_in(st.lines[source], buffer)}
      else
        {[data], st}
      end

    {tag(items, source, st), st}
  end

  defp finish(st) do
    flushed =
      if st.opts.lines,
        do: Enum.flat_map([:stdout, :stderr], &tag(Lines.flush(st.lines[&1]), &1, st)),
        else: []

    status =
      case P.await_exit(st.p, st.opts.exit_timeout) do
        {:ok, status} -> status
        {:error, :timeout} -> elem(P.stop(st.p, st.opts.kill_grace), 1)
      end

    Input.reraise_failure(st.p)
    st = %{st | done: true}

    case st.mode do
      :exit_element ->
        {flushed ++ [{:exit, status}], st}

      :raise ->
        if status in st.opts.success_exit_codes do
          {flushed, st}
        else
          stderr = if st.opts.stderr == :capture, do: st.stderr_tail
          # Emit what was flushed first; raise on the following call.
          {flushed, %{st | done: {:raise, ExitError.new(st.argv, status, stderr)}}}
        end
    end
  end

  defp tag(items, :stdout, %{opts: %{stderr: :consume}}), do: Enum.map(items, &{:stdout, &1})
  defp tag(items, :stderr, _st), do: Enum.map(items, &{:stderr, &1})
  defp tag(items, :stdout, _st), do: items

  defp close(st) do
    Input.stop(st.writer)

    # The program may be gone already (finished, or its process stopped): nothing to do.
    try do
      P.stop(st.p, st.opts.kill_grace)
    catch
      :exit, _ -> :ok
    end

    # The fds are closed now: drop readiness messages they left in the consumer's mailbox.
    Reader.flush(st.reader)
  end

  defp tail(bin) when byte_size(bin) <= @stderr_tail, do: bin
  defp tail(bin), do: binary_part(bin, byte_size(bin) - @stderr_tail, @stderr_tail)
end
