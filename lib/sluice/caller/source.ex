defmodule Sluice.Caller.Source do
  @moduledoc false
  # The program of a `run` or a stream, driven from the calling process wherever it runs:
  # the behaviour Sluice.Caller.Run and Sluice.Caller.OutputStream call, and its two
  # implementations, Sluice.Caller.Pump (this node: the caller holds the Sluice.Program and
  # reads its fds itself, the fast path) and Sluice.Caller.RemoteConsumer (`node:`:
  # messages to the Sluice.Holder.RemoteReader that holds the program there).
  #
  # A source is a struct whose module is its implementation: the functions below call that
  # module, with no case over the kind. Sluice.Caller.Source.Pick.open/3 is the one place that
  # picks it (apart, so that this module names no implementation: they depend on it).
  # Sluice.Stdin calls `push/2` of the module it was given (a collectable function's input,
  # written element by element).

  alias Sluice.{Error, Program}
  alias Sluice.Program.Deadline

  @typedoc "An open source: a `Sluice.Caller.Pump` or a `Sluice.Caller.RemoteConsumer`."
  @type t :: struct

  @typedoc "How a program can be lost: with its helper program, or with its node."
  @type lost :: :helper_down | :nodedown

  @typedoc "What `next/3` returns: a chunk, or once `collect/1` was called its byte count."
  @type next ::
          {:data, Program.source(), binary | pos_integer, t}
          | {:eof, t}
          | {:error, :timeout | atom, t}

  @doc "Starts `argv` (checked options) and its input, until the deadline."
  @callback open(Sluice.command(), Sluice.Options.t(), Deadline.t()) ::
              {:ok, t} | {:error, Error.t()}

  @doc """
  The next chunk of output, of at most `max` bytes, feeding input meanwhile: `{:data,
  source, binary, t}`, `{:eof, t}` once every output is at EOF, or `{:error, reason, t}`
  (`:timeout`, `:helper_down`, `:nodedown`, `:line_too_long`, an errno).
  """
  @callback next(t, pos_integer, Deadline.t()) :: next

  @doc """
  From now on the source keeps the output itself: `next/3` returns the byte count of each
  chunk, and `collected/2` all the bytes of an output as one binary (`Sluice.run`).
  """
  @callback collect(t) :: t

  @doc "Every byte of `source` kept since `collect/1` (`\"\"` when none)."
  @callback collected(t, Program.source()) :: binary

  @doc "Waits for the exit status until the deadline."
  @callback await_exit(t, Deadline.t()) ::
              {:ok, Program.status(), t} | {:error, :timeout | lost, t}

  @doc "Starts a stop: `kill_signal`, SIGKILL after `grace` ms."
  @callback stop(t, non_neg_integer) :: t

  @doc "Stops the program (if it runs) and waits for its status up to `grace` + 2 s."
  @callback stop_and_await(t, non_neg_integer) :: {Program.status() | nil, t}

  @doc "Stops the input and lets go of the program (what is left of it is stopped)."
  @callback close(t) :: :ok

  @doc "The program's OS pid (on its own node)."
  @callback os_pid(t) :: pos_integer

  @doc """
  What the exit reply said beside the status (`Sluice.Control.Protocol.exit_info/0`: core
  dumped, every status of a pipeline, the usage); `nil` before the exit.
  """
  @callback exit_info(t) :: map | nil

  @doc "The error of a program lost with its helper program or its node."
  @callback lost_error(t, lost) :: Error.t()

  @doc """
  Writes one element of a collectable function's input (`Sluice.Stdin`, whose key holds
  the source while the function runs) and returns once it is taken; throws `{module,
  :input_done}` once the program takes no more input.
  """
  @callback push(key :: term, binary) :: :ok

  @doc "See the callback."
  @spec next(t, pos_integer, Deadline.t()) :: next
  def next(%module{} = source, max, deadline), do: module.next(source, max, deadline)

  @doc "See the callback."
  @spec collect(t) :: t
  def collect(%module{} = source), do: module.collect(source)

  @doc "See the callback."
  @spec collected(t, Program.source()) :: binary
  def collected(%module{} = source, output), do: module.collected(source, output)

  @doc "See the callback."
  @spec await_exit(t, Deadline.t()) :: {:ok, Program.status(), t} | {:error, :timeout | lost, t}
  def await_exit(%module{} = source, deadline), do: module.await_exit(source, deadline)

  @doc "See the callback."
  @spec stop(t, non_neg_integer) :: t
  def stop(%module{} = source, grace), do: module.stop(source, grace)

  @doc "See the callback."
  @spec stop_and_await(t, non_neg_integer) :: {Program.status() | nil, t}
  def stop_and_await(%module{} = source, grace), do: module.stop_and_await(source, grace)

  @doc "See the callback."
  @spec close(t) :: :ok
  def close(%module{} = source), do: module.close(source)

  @doc "See the callback."
  @spec os_pid(t) :: pos_integer
  def os_pid(%module{} = source), do: module.os_pid(source)

  @doc "See the callback."
  @spec exit_info(t) :: map | nil
  def exit_info(%module{} = source), do: module.exit_info(source)

  @doc "See the callback."
  @spec lost_error(t, lost) :: Error.t()
  def lost_error(%module{} = source, reason), do: module.lost_error(source, reason)
end
