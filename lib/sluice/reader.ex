defmodule Sluice.Reader do
  @moduledoc false
  # Reads a program's output directly in the calling process. Streams and Sluice.run lease
  # the output fds from the program's Sluice.Process (Sluice.Process.lease_output/1), so a
  # chunk costs one NIF call instead of a call and a reply through the GenServer, and
  # enif_select wakes this process itself when a pipe is empty.

  alias Sluice.Native

  defstruct [:stdout, :stderr, open: []]

  @type t :: %__MODULE__{}

  @doc "A reader over leased fds (`stderr` may be nil)."
  def new(%{stdout: stdout, stderr: stderr}) do
    open = for {source, fd} <- [stdout: stdout, stderr: stderr], fd != nil, do: {source, fd}
    %__MODULE__{stdout: stdout, stderr: stderr, open: open}
  end

  @doc """
  The next chunk of at most `max` bytes from whichever source has data:
  `{:ok, source, data, reader}`, `{:eof, reader}` once every source is at EOF,
  `{:error, :timeout, reader}` at `deadline` (monotonic ms, or `:infinity`), or
  `{:error, reason, reader}`.
  """
  def next(r, max, deadline) do
    case try_sources(r.open, max, []) do
      {:data, source, data, open} -> {:ok, source, data, %{r | open: open}}
      {:blocked, []} -> {:eof, %{r | open: []}}
      {:blocked, open} -> wait(%{r | open: open}, max, deadline)
      {:error, reason, open} -> {:error, reason, %{r | open: open}}
    end
  end

  # Tries each open source once. The source that gave data goes to the back of the list,
  # so a chatty stdout cannot starve stderr.
  defp try_sources([], _max, tried), do: {:blocked, Enum.reverse(tried)}

  defp try_sources([{source, fd} = entry | rest], max, tried) do
    case Native.read(fd, max) do
      {:ok, data} -> {:data, source, data, Enum.reverse(tried, rest) ++ [entry]}
      :eof -> try_sources(rest, max, tried)
      {:error, :eagain} -> try_sources(rest, max, [entry | tried])
      {:error, reason} -> {:error, reason, Enum.reverse(tried, [entry | rest])}
    end
  end

  defp wait(%{stdout: out, stderr: err} = r, max, deadline) do
    receive do
      {:select, fd, _ref, :ready_input} when fd == out or fd == err -> next(r, max, deadline)
    after
      remaining(deadline) -> {:error, :timeout, r}
    end
  end

  defp remaining(:infinity), do: :infinity
  defp remaining(deadline), do: max(deadline - System.monotonic_time(:millisecond), 0)

  @doc """
  Drops readiness messages left in the mailbox. Call it once the fds are closed (the
  program's Sluice.Process stopped): no new ones can arrive then.
  """
  def flush(%{stdout: out, stderr: err}) do
    receive do
      {:select, fd, _ref, _} when fd == out or fd == err -> flush(%{stdout: out, stderr: err})
    after
      0 -> :ok
    end
  end
end
