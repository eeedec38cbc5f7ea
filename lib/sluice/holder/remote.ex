defmodule Sluice.Holder.Remote do
  @moduledoc false
  # Programs on other nodes (`node:`), the entry points on both sides (docs/architecture.md,
  # "Other nodes"). The caller's node asks the program's node through `:erpc` to start the
  # process that will hold the program there: a Sluice.Holder.RemoteReader for `run` and
  # streams, a Sluice.Process server for `Sluice.Process.start/2` (a Sluice.Worker starts
  # itself there, through `call/5`). Whatever holds the program on the remote node
  # monitors its owner here, so the owner's death and a disconnection stop it like a local
  # owner's death; the caller monitors the holder, so the remote node's death is
  # `:nodedown` here.
  #
  # The functions the remote node runs take only checked options without `:input` (input
  # is enumerated in the caller) and build the spawn spec there, so the environment and
  # the working directory are the remote node's.

  alias Sluice.Error
  alias Sluice.Options.Command
  alias Sluice.Program.{Deadline, Errors}

  # Margin of the `:erpc` call over the remote start's own `start_timeout`.
  @call_margin 5_000

  @doc "The node `opts` asks for, or nil when the program runs on this node."
  @spec node_of(map) :: node | nil
  def node_of(%{node: node}) when node != nil, do: if(node == node(), do: nil, else: node)
  def node_of(_opts), do: nil

  @doc """
  Calls `fun` of `module` (default this module) on `node`, within `start_ms` (the remote
  start's own bound) and a margin; maps the failures of distribution to `Sluice.Error`s:
  `:nodedown` (unreachable, or it went away), `:nosluice` (Sluice's code or application is
  not there), `:timeout`. A module above this one (Sluice.Worker) names itself, so this
  module never calls up into it.
  """
  @spec call(node, module, atom, [term], timeout) :: {:ok, term} | {:error, Error.t()}
  def call(node, module \\ __MODULE__, fun, args, start_ms) do
    :erpc.call(node, module, fun, args, margin(start_ms))
  catch
    :error, {:erpc, :noconnection} ->
      {:error, Errors.nodedown(node)}

    :error, {:erpc, :timeout} ->
      {:error, Errors.remote_not_started(node)}

    :error, {:exception, :undef, [{^module, ^fun, _, _} | _]} ->
      {:error, Errors.nosluice(node)}

    :error, {:erpc, reason} ->
      {:error, Errors.unreachable(node, reason)}

    :error, {:exception, reason, _stack} ->
      {:error, Errors.remote_start_failed(node, reason)}

    # The remote function exited (erpc re-raises that as an exit of the caller).
    :exit, {:exception, reason} ->
      {:error, Errors.remote_start_failed(node, reason)}
  end

  defp margin(ms), do: Deadline.plus_margin(ms, @call_margin)

  ## Run on the program's node

  @doc false
  # Starts a Sluice.Holder.RemoteReader for `consumer`, the program started within `start_ms`:
  # `{:ok, {reader, os_pid}}`.
  @spec open_reader(Sluice.command(), map, pid, timeout) ::
          {:ok, {pid, pos_integer}} | {:error, Error.t()}
  def open_reader(argv, opts, consumer, start_ms) do
    with :ok <- running() do
      spec = Command.spawn_spec(argv, opts)
      init = {spec, opts, consumer, start_ms}

      case Sluice.Holder.start_server(Sluice.Holder.RemoteReader, init, timeout: margin(start_ms)) do
        {:ok, reader} -> reader_started(reader)
        {:error, error} -> {:error, error}
        {:failed, reason} -> {:error, Errors.remote_start_failed(nil, reason)}
      end
    end
  end

  # The reader answers at once; it may already have ended if the helper program died
  # right after the spawn.
  defp reader_started(reader) do
    {:ok, {reader, GenServer.call(reader, :os_pid, 5_000)}}
  catch
    :exit, _ -> {:error, Errors.lost_at_start()}
  end

  @doc false
  # Starts a Sluice.Process server owned by `owner` (on another node).
  @spec start_process(Sluice.command(), map, pid) :: {:ok, pid} | {:error, Error.t()}
  def start_process(argv, opts, owner) do
    with :ok <- running() do
      Sluice.Holder.Process.Starter.start_server(Command.spawn_spec(argv, opts), opts, owner)
    end
  end

  @doc false
  # `:ok` when the Sluice application runs on this node (a remote start can begin), else
  # the `:nosluice` error.
  @spec running() :: :ok | {:error, Error.t()}
  def running do
    if List.keymember?(Application.started_applications(), :sluice, 0),
      do: :ok,
      else: {:error, Errors.nosluice(node())}
  end
end
