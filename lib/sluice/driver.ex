defmodule Sluice.Driver do
  @moduledoc false
  # The program of a `run` or a stream, wherever it runs: on this node a Sluice.Pump over
  # the Sluice.Program the caller holds (the node-local fast path: the caller reads the fds
  # itself), on another node (`node:`) a Sluice.Remote.Consumer of the reader that holds
  # the pipes there. Sluice.Run and Sluice.OutputStream see one set of calls.

  alias Sluice.Program.{Deadline, Errors, Output}
  alias Sluice.{Error, Input, Options, Program, Pump, Remote}
  alias Sluice.Remote.Consumer

  @type t :: Pump.t() | Consumer.t()
  @type lost :: :helper_down | :nodedown

  @doc "Starts `argv` (checked `opts`) and its input, until `deadline`."
  @spec open(Sluice.command(), map, Deadline.t()) :: {:ok, t} | {:error, Error.t()}
  def open(argv, opts, deadline) do
    case Remote.node_of(opts) do
      nil ->
        with {:ok, program} <- Program.open(Options.spawn_spec(argv, opts), deadline) do
          program = Output.frame(program, opts)
          {:ok, Pump.new(program, Input.new(opts.input, opts.input_in))}
        end

      node ->
        Consumer.open(node, argv, opts, deadline)
    end
  end

  @doc "The next chunk of output (`Sluice.Pump.next/3`)."
  @spec next(t, pos_integer, Deadline.t()) ::
          {:data, Program.source(), binary, t} | {:eof, t} | {:error, atom, t}
  def next(%Pump{} = pump, max, deadline), do: Pump.next(pump, max, deadline)
  def next(%Consumer{} = c, max, deadline), do: Consumer.next(c, max, deadline)

  @doc "Waits for the exit status until `deadline`."
  @spec await_exit(t, Deadline.t()) ::
          {:ok, Program.status(), t} | {:error, :timeout | lost, t}
  def await_exit(%Pump{} = pump, deadline) do
    case Program.await_exit(pump.program, deadline) do
      {:ok, status, program} -> {:ok, status, %{pump | program: program}}
      {:error, reason, program} -> {:error, reason, %{pump | program: program}}
    end
  end

  def await_exit(%Consumer{} = c, deadline), do: Consumer.await_exit(c, deadline)

  @doc "Starts a stop: `kill_signal`, SIGKILL after `grace` ms."
  @spec stop(t, non_neg_integer) :: t
  def stop(%Pump{} = pump, grace), do: %{pump | program: Program.stop(pump.program, grace)}
  def stop(%Consumer{} = c, grace), do: Consumer.stop(c, grace)

  @doc "Stops the program (if it runs) and waits for its status up to `grace` + 2 s."
  @spec stop_and_await(t, non_neg_integer) :: {Program.status() | nil, t}
  def stop_and_await(%Pump{} = pump, grace) do
    {status, program} = Program.stop_and_await(pump.program, grace)
    {status, %{pump | program: program}}
  end

  def stop_and_await(%Consumer{} = c, grace), do: Consumer.stop_and_await(c, grace)

  @doc "Stops the input and lets go of the program (what is left of it is stopped)."
  @spec close(t) :: :ok
  def close(%Pump{} = pump), do: Pump.close(pump)
  def close(%Consumer{} = c), do: Consumer.close(c)

  @doc "The program's OS pid (on its own node)."
  @spec os_pid(t) :: pos_integer
  def os_pid(%Pump{program: program}), do: Program.os_pid(program)
  def os_pid(%Consumer{os_pid: os_pid}), do: os_pid

  @doc """
  What the exit reply said beside the status (`Sluice.Helper.Protocol.exit_info/0`: core
  dumped, every status of a pipeline, the usage; for a program on another node, as its
  reader forwarded it); `nil` before the exit.
  """
  @spec exit_info(t) :: map | nil
  def exit_info(%Pump{program: program}), do: Program.exit_info(program)
  def exit_info(%Consumer{} = c), do: Consumer.exit_info(c)

  @doc "The error of a program lost with its helper program or its node."
  @spec lost_error(t, lost) :: Error.t()
  def lost_error(_driver, :helper_down), do: Errors.helper_down()
  def lost_error(%Consumer{node: node}, :nodedown), do: Errors.nodedown(node)
  def lost_error(%Pump{}, :nodedown), do: Errors.nodedown(node())
end
