defmodule Sluice.Input do
  @moduledoc false
  # Feeds a program's stdin in a process of its own, so that writing input and reading
  # output go on together (a program whose output fills the pipe must not deadlock us).
  # Every write waits until the program took the bytes: input has back-pressure too.
  #
  # Input is iodata, any Enumerable of iodata (another Sluice stream included), or a
  # `fn collectable -> ... end` that pushes into a Collectable bound to stdin.

  alias Sluice.Process, as: P

  @doc """
  Starts feeding `input` to `p` and returns the writer's pid (or nil when there is no
  input: stdin is then closed at once). If the input raises, the writer sends
  `{:sluice_input_failed, p, kind, reason, stacktrace}` to `reader` and kills the program,
  so the reader sees EOF only after the message is in its mailbox.
  """
  def start(p, nil, _reader) do
    P.close_stdin(p)
    nil
  end

  def start(p, input, reader) do
    spawn(fn -> feed(p, input, reader) end)
  end

  @doc "Stops a writer started by `start/3` (nil is fine)."
  def stop(nil), do: :ok
  def stop(writer), do: Process.exit(writer, :kill)

  @doc "Raises the writer's failure, if it reported one for `p`."
  def reraise_failure(p) do
    receive do
      {:sluice_input_failed, ^p, kind, reason, stack} -> :erlang.raise(kind, reason, stack)
    after
      0 -> :ok
    end
  end

  @doc "Checks the shape of an `input` option."
  def check!(nil), do: nil
  def check!(input) when is_binary(input) or is_function(input, 1), do: input

  def check!(input) do
    if Enumerable.impl_for(input) || is_list(input) do
      input
    else
      raise ArgumentError,
            "invalid value for option :input: expected iodata, an Enumerable or " <>
              "fn collectable -> ... end, got: #{inspect(input)}"
    end
  end

  defp feed(p, input, reader) do
    write_all(p, input)
    P.close_stdin(p)
  catch
    :throw, :sluice_input_done ->
      :ok

    kind, reason ->
      # An exit because the program's process is gone only means nothing is left to feed.
      if Process.alive?(p), do: failed(p, reader, {kind, reason, __STACKTRACE__})
  end

  defp failed(p, reader, {kind, reason, stack}) do
    send(reader, {:sluice_input_failed, p, kind, reason, stack})
    P.signal(p, :sigkill)
  catch
    :exit, _ -> :ok
  end

  defp write_all(p, input) when is_binary(input), do: put(p, input)

  defp write_all(p, input) when is_function(input, 1),
    do: input.(%Sluice.Stdin{process: p})

  defp write_all(p, input) when is_list(input) do
    if iodata?(input), do: put(p, input), else: Enum.each(input, &put(p, &1))
  end

  defp write_all(p, input), do: Enum.each(input, &put(p, &1))

  defp iodata?(list) do
    IO.iodata_length(list)
    true
  rescue
    ArgumentError -> false
  end

  # The program closed its stdin (or it was closed): stop feeding quietly, no EPIPE crash.
  defp put(p, data) do
    case P.write(p, data) do
      :ok -> :ok
      {:error, _} -> throw(:sluice_input_done)
    end
  end
end
