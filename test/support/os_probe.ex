defmodule Sluice.OsProbe do
  @moduledoc """
  Looks at the OS from tests: the helper's children, zombies, open fds and liveness of pids,
  all read from `/proc`.
  """

  @doc "The helper's OS pid."
  @spec helper_pid() :: pos_integer
  def helper_pid, do: Sluice.Helper.info().os_pid

  @doc "Direct children of `pid` (programs and adopted orphans for the helper)."
  @spec children(pos_integer) :: [pos_integer]
  def children(pid) do
    Path.wildcard("/proc/#{pid}/task/*/children")
    |> Enum.flat_map(fn path ->
      case File.read(path) do
        {:ok, text} -> text |> String.split() |> Enum.map(&String.to_integer/1)
        _ -> []
      end
    end)
  end

  @doc "Every descendant of `pid`."
  @spec descendants(pos_integer) :: [pos_integer]
  def descendants(pid) do
    kids = children(pid)
    kids ++ Enum.flat_map(kids, &descendants/1)
  end

  @doc "The state letter and parent pid of `pid`, or nil when it is gone."
  @spec stat(pos_integer) :: {String.t(), pos_integer} | nil
  def stat(pid) do
    with {:ok, text} <- File.read("/proc/#{pid}/stat"),
         [_, rest] <- String.split(text, ") ", parts: 2),
         [state, ppid | _] <- String.split(rest, " ") do
      {state, String.to_integer(ppid)}
    else
      _ -> nil
    end
  end

  @doc "Whether `pid` exists and is not a zombie."
  @spec alive?(pos_integer) :: boolean
  def alive?(pid) do
    case stat(pid) do
      nil -> false
      {"Z", _} -> false
      _ -> true
    end
  end

  @doc "Zombies whose parent is the BEAM or the helper."
  @spec zombies() :: [pos_integer]
  def zombies do
    parents = [String.to_integer(System.pid()), helper_pid()]

    for dir <- Path.wildcard("/proc/[0-9]*"),
        pid = dir |> Path.basename() |> String.to_integer(),
        {"Z", ppid} <- [stat(pid)],
        ppid in parents,
        do: pid
  end

  @doc "Number of fds the BEAM has open."
  @spec beam_fd_count() :: non_neg_integer
  def beam_fd_count, do: length(File.ls!("/proc/self/fd"))

  @doc "Calls `fun` until it returns a truthy value or `ms` pass; returns the last value."
  @spec eventually((() -> any), non_neg_integer) :: any
  def eventually(fun, ms \\ 3_000) do
    deadline = System.monotonic_time(:millisecond) + ms
    poll(fun, deadline)
  end

  defp poll(fun, deadline) do
    case fun.() do
      result when result not in [nil, false] ->
        result

      result ->
        if System.monotonic_time(:millisecond) >= deadline do
          result
        else
          Process.sleep(20)
          poll(fun, deadline)
        end
    end
  end
end
