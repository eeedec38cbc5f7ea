defmodule Bench.OsProcs do
  @moduledoc false
  # The OS processes below the BEAM, from /proc/*/stat: the BEAM's forker (erl_child_setup),
  # Port programs, the Sluice helper and its programs.

  @doc "The descendants of OS process `root` (default: this BEAM) as `[{pid, comm}]`."
  def descendants(root \\ beam_pid()) do
    table = table()
    walk([root], table, [])
  end

  @doc "How many descendants, optionally only those whose command is `comm`."
  def count(comm \\ nil) do
    descendants() |> Enum.count(fn {_pid, c} -> comm == nil or c == comm end)
  end

  @doc "Records the current descendant count as the baseline (the helper, the forker)."
  def record_baseline, do: :persistent_term.put({__MODULE__, :baseline}, count())

  @doc "Waits until the programs of a measurement are gone: back to the baseline count."
  def wait_baseline do
    case :persistent_term.get({__MODULE__, :baseline}, nil) do
      nil -> :ok
      n -> wait_at_most(n)
    end
  end

  @doc "Waits until the descendant count is at most `n` (finished programs reaped)."
  def wait_at_most(n, timeout_ms \\ 10_000) do
    deadline = System.monotonic_time(:millisecond) + timeout_ms
    wait_loop(n, deadline)
  end

  defp wait_loop(n, deadline) do
    c = count()

    cond do
      c <= n -> :ok
      System.monotonic_time(:millisecond) > deadline -> {:timeout, c}
      true -> sleep_then(20, fn -> wait_loop(n, deadline) end)
    end
  end

  defp sleep_then(ms, fun) do
    Process.sleep(ms)
    fun.()
  end

  @doc "True while OS process `pid` exists and is not a zombie."
  def alive?(pid) do
    case File.read("/proc/#{pid}/stat") do
      {:ok, stat} -> stat |> parse() |> elem(2) != "Z"
      {:error, _} -> false
    end
  end

  def beam_pid, do: :os.getpid() |> List.to_integer()

  defp walk([], _table, acc), do: acc

  defp walk([pid | rest], table, acc) do
    children = Map.get(table, pid, [])
    walk(Enum.map(children, &elem(&1, 0)) ++ rest, table, children ++ acc)
  end

  # ppid => [{pid, comm}]
  defp table do
    "/proc"
    |> File.ls!()
    |> Enum.filter(&(&1 =~ ~r/^\d+$/))
    |> Enum.flat_map(fn pid ->
      case File.read("/proc/#{pid}/stat") do
        {:ok, stat} -> [parse(stat)]
        {:error, _} -> []
      end
    end)
    |> Enum.group_by(&elem(&1, 3), fn {pid, comm, _state, _ppid} -> {pid, comm} end)
  end

  # "pid (comm) state ppid ..."; comm may contain spaces and parentheses.
  defp parse(stat) do
    [pid, rest] = String.split(stat, " (", parts: 2)
    {comm, after_comm} = split_last(rest, ") ")
    [state, ppid | _] = String.split(after_comm, " ")
    {String.to_integer(pid), comm, state, String.to_integer(ppid)}
  end

  defp split_last(s, sep) do
    parts = String.split(s, sep)
    {parts |> Enum.drop(-1) |> Enum.join(sep), List.last(parts)}
  end
end
