defmodule Sluice.Registry do
  @moduledoc false
  # Every program of this node, for Sluice.list/0 and Sluice.Process.info/1.
  #
  # A public ETS table written by the process that holds each program (Sluice.Pipes adds a
  # row once the program runs or was adopted, and removes it when its exit is seen or it is
  # closed): a spawn pays one insert and sends no message. A holder can die before it
  # removes its row: `run` and streams run in the caller, which may be killed with :kill
  # while its program still runs (the helper program stops the program then). So rows of a
  # dead holder are never listed, and this server, the table's owner, deletes them every
  # few seconds: none accumulates.

  use GenServer

  @table __MODULE__
  @sweep_ms 5_000

  @typedoc "One program, as `Sluice.list/0` shows it."
  @type entry :: %{
          pid: pid,
          os_pid: pos_integer,
          argv: [String.t()],
          owner: pid,
          started_at: DateTime.t(),
          managed: boolean,
          cgroup: String.t() | nil
        }

  @doc false
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(_opts \\ []), do: GenServer.start_link(__MODULE__, [], name: __MODULE__)

  @doc "Adds the calling process's program `id` (the caller holds its channel)."
  @spec add(pos_integer, pos_integer, pid, [String.t()], boolean, String.t() | nil) :: true
  def add(id, os_pid, owner, argv, managed, cgroup) do
    row = {id, self(), owner, os_pid, argv, System.os_time(:millisecond), managed, cgroup}
    :ets.insert(@table, row)
  end

  @doc "Removes program `id` (idempotent)."
  @spec remove(pos_integer) :: true
  def remove(id), do: :ets.delete(@table, id)

  @doc "Every program whose holder lives, oldest first."
  @spec list() :: [entry]
  def list do
    @table
    |> :ets.tab2list()
    |> Enum.filter(fn row -> Process.alive?(elem(row, 1)) end)
    |> Enum.sort_by(&elem(&1, 5))
    |> Enum.map(&entry/1)
  end

  @doc "Program `id`, or nil when it is not (or no longer) listed."
  @spec info(pos_integer) :: entry | nil
  def info(id) do
    case :ets.lookup(@table, id) do
      [row] -> entry(row)
      [] -> nil
    end
  end

  defp entry({_id, holder, owner, os_pid, argv, started, managed, cgroup}) do
    %{
      pid: holder,
      os_pid: os_pid,
      argv: argv,
      owner: owner,
      started_at: DateTime.from_unix!(started, :millisecond),
      managed: managed,
      cgroup: cgroup
    }
  end

  @impl true
  def init([]) do
    @table = :ets.new(@table, [:named_table, :public, :set, write_concurrency: true])
    schedule()
    {:ok, nil}
  end

  @impl true
  def handle_info(:sweep, s) do
    sweep()
    schedule()
    {:noreply, s}
  end

  @doc false
  # Deletes the rows of holders that died without removing them.
  @spec sweep() :: :ok
  def sweep do
    @table
    |> :ets.select([{{:"$1", :"$2", :_, :_, :_, :_, :_, :_}, [], [{{:"$1", :"$2"}}]}])
    |> Enum.each(fn {id, holder} -> unless Process.alive?(holder), do: remove(id) end)
  end

  defp schedule, do: Process.send_after(self(), :sweep, @sweep_ms)
end
