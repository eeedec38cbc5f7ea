defmodule Sluice.Control.Registry do
  @moduledoc false
  # Every program of this node, for Sluice.list/0 and Sluice.Process.info/1.
  #
  # A public ETS table written by the process that holds each program (Sluice.Program adds a
  # row once the program runs or was adopted, and removes it when its exit is seen or it is
  # closed): a spawn pays one insert and sends no message. A holder can die before it
  # removes its row: `run` and streams run in the caller, which may be killed with :kill
  # while its program still runs (the helper program stops the program then). So rows of a
  # dead holder are never listed, and this server, the table's owner, deletes them every
  # few seconds: none accumulates.
  #
  # A row also keeps the program's channel and its kill signal and grace, so that any
  # process may stop the program (Sluice.stop/2) with the very `kill` request its holder
  # would send: a socket message any process may send on a channel it did not open. The
  # holder owns the channel: once it closed it (the program ended, or the holder died),
  # such a send fails, and the program is not found.
  #
  # The table lives as long as this server, that is as long as the :sluice application;
  # holders do not: a Sluice.Process (or a caller of `run`) outlives an application that
  # stops under it, and learns of it when its program channel reaches EOF. So every
  # function here is total: without the table nothing is listed, and adding or removing a
  # row is a no-op (the rows went with the table).

  use GenServer

  alias Sluice.Native
  alias Sluice.Control.Protocol

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

  @typedoc """
  How any process of the node may stop the program (`stop/2`): its channel (any process
  may send on it; the holder owns it, and its close makes sends fail), and its
  `{kill_signal, kill_grace}`.
  """
  @type control :: {Native.fd(), {pos_integer, non_neg_integer}}

  @doc """
  Adds the calling process's program `id` (the caller holds its channel, given with the
  program's kill signal and grace as `control`).
  """
  @spec add(pos_integer, program, control) :: true
  def add(id, program, control) do
    # A flat row, not the map: ETS would copy the map's keys into every row.
    %{os_pid: pid, owner: owner, argv: argv, pipeline: stages, managed: managed, cgroup: cg} =
      program

    row =
      {id, self(), System.os_time(:millisecond), pid, owner, argv, stages, managed, cg, control}

    without_table(true, fn -> :ets.insert(@table, row) end)
  end

  @doc """
  Stops a program of this node for any process (`Sluice.stop/2`): the one `target` names
  (an entry of `list/0`, or an OS pid: the newest program with that pid), with its own
  kill signal and grace unless `signal` or `grace` say otherwise. The `kill` request goes
  on the program's channel, as its holder's own stop would send it: the helper program
  stops the program, and the holder hears of the exit as usual. `{:error, :not_found}`
  when no listed program matches, or its holder has closed it meanwhile.
  """
  @spec stop(Sluice.Process.info() | pos_integer, pos_integer | nil, non_neg_integer | nil) ::
          :ok | {:error, :not_found}
  def stop(target, signal, grace) do
    case find(target) do
      {id, {channel, {kill_signal, kill_grace}}} ->
        request = Protocol.stop(id, signal || kill_signal, grace || kill_grace)

        case Native.send(channel, request) do
          :ok -> :ok
          {:error, _closed} -> {:error, :not_found}
        end

      nil ->
        {:error, :not_found}
    end
  end

  # The row `target` names among those whose holder lives, newest first.
  defp find(target) do
    without_table([], fn -> :ets.tab2list(@table) end)
    |> Enum.filter(fn row -> names?(target, row) and Process.alive?(elem(row, 1)) end)
    |> Enum.max_by(&elem(&1, 2), fn -> nil end)
    |> case do
      nil -> nil
      row -> {elem(row, 0), elem(row, 9)}
    end
  end

  defp names?(os_pid, row) when is_integer(os_pid), do: elem(row, 3) == os_pid

  defp names?(%{os_pid: os_pid, pid: pid}, row),
    do: elem(row, 3) == os_pid and elem(row, 1) == pid

  @doc "Removes program `id` (idempotent; a no-op once the application stopped)."
  @spec remove(pos_integer) :: true
  def remove(id), do: without_table(true, fn -> :ets.delete(@table, id) end)

  @doc "Every program whose holder lives, oldest first (none once the application stopped)."
  @spec list() :: [Sluice.Process.info()]
  def list do
    without_table([], fn -> :ets.tab2list(@table) end)
    |> Enum.filter(fn row -> Process.alive?(elem(row, 1)) end)
    |> Enum.sort_by(&elem(&1, 2))
    |> Enum.map(&entry/1)
  end

  @doc "Program `id`, or nil when it is not (or no longer) listed."
  @spec info(pos_integer) :: Sluice.Process.info() | nil
  def info(id) do
    case without_table([], fn -> :ets.lookup(@table, id) end) do
      [row] -> entry(row)
      [] -> nil
    end
  end

  # Runs an operation on the table, or answers `default` when there is no table (the
  # application stopped, or its server is restarting). ETS raises badarg for a table that
  # does not exist; any other badarg is raised again.
  defp without_table(default, operation) do
    operation.()
  rescue
    e in ArgumentError ->
      if :ets.whereis(@table) == :undefined, do: default, else: reraise(e, __STACKTRACE__)
  end

  defp entry({_id, holder, started, os_pid, owner, argv, pipeline, managed, cgroup, _control}) do
    %{
      os_pid: os_pid,
      owner: owner,
      argv: argv,
      pipeline: pipeline,
      managed: managed,
      cgroup: cgroup,
      pid: holder,
      started_at: DateTime.from_unix!(started, :millisecond)
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
    |> :ets.select([{{:"$1", :"$2", :_, :_, :_, :_, :_, :_, :_, :_}, [], [{{:"$1", :"$2"}}]}])
    |> Enum.each(fn {id, holder} -> unless Process.alive?(holder), do: remove(id) end)
  end

  defp schedule, do: Process.send_after(self(), :sweep, @sweep_ms)
end
