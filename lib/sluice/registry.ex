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

  @typedoc "What the holder knows of its program (the rest of `t:Sluice.Process.info/0`)."
  @type program :: %{
          os_pid: pos_integer,
          owner: pid,
          argv: [String.t()],
          pipeline: [[String.t()], ...] | nil,
          managed: boolean,
          cgroup: String.t() | nil
        }

  @doc false
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(_opts \\ []), do: GenServer.start_link(__MODULE__, [], name: __MODULE__)

  @doc "Adds the calling process's program `id` (the caller holds its channel)."
  @spec add(pos_integer, program) :: true
  def add(id, program) do
    :ets.insert(@table, {id, self(), System.os_time(:millisecond), program})
  end

  @doc "Removes program `id` (idempotent)."
  @spec remove(pos_integer) :: true
  def remove(id), do: :ets.delete(@table, id)

  @doc "Every program whose holder lives, oldest first."
  @spec list() :: [Sluice.Process.info()]
  def list do
    @table
    |> :ets.tab2list()
    |> Enum.filter(fn row -> Process.alive?(elem(row, 1)) end)
    |> Enum.sort_by(&elem(&1, 2))
    |> Enum.map(&entry/1)
  end

  @doc "Program `id`, or nil when it is not (or no longer) listed."
  @spec info(pos_integer) :: Sluice.Process.info() | nil
  def info(id) do
    case :ets.lookup(@table, id) do
      [row] -> entry(row)
      [] -> nil
    end
  end

  defp entry({_id, holder, started, program}) do
    Map.merge(program, %{pid: holder, started_at: DateTime.from_unix!(started, :millisecond)})
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
    |> :ets.select([{{:"$1", :"$2", :_, :_}, [], [{{:"$1", :"$2"}}]}])
    |> Enum.each(fn {id, holder} -> unless Process.alive?(holder), do: remove(id) end)
  end

  defp schedule, do: Process.send_after(self(), :sweep, @sweep_ms)
end
