defmodule Sluice.Control.Protocol do
  @moduledoc false
  # The Elixir twin of native/sluice_protocol (see docs/protocol.md): spawn requests,
  # channel requests and the replies on a program channel. Every atom the helper may send
  # is written in this module, so :safe decoding accepts it; errno and stage names from the
  # helper become atoms only through the tables below, never through String.to_atom/1.

  alias Sluice.Error

  @version 2
  # Requests over this size cannot cross the control channel (docs/protocol.md).
  @max_request 64 * 1024 * 1024
  # Above this the NIF copies the request into a memfd on a dirty scheduler.
  @inline_max 64 * 1024

  @stages ~w(argv env chdir spec pipe pty cgroup fork setup exec request handoff id manage stdin
              stdout stderr credentials priority limits sandbox)a
  @errnos ~w(eperm enoent esrch eintr eio enxio e2big enoexec ebadf echild eagain enomem
             eacces efault ebusy eexist exdev enodev enotdir eisdir einval enfile emfile
             enotty etxtbsy efbig enospc espipe erofs emlink epipe erange enametoolong
             enosys eloop emsgsize econnreset enotconn etimedout eunknown nouser nogroup)a
  @errno_by_name Map.new(@errnos, &{&1 |> Atom.to_string() |> String.upcase(), &1})
  @stage_by_name Map.new(@stages, &{Atom.to_string(&1), &1})

  @type status :: non_neg_integer | {:signal, atom | pos_integer} | :unknown
  @type exit_info :: %{
          core_dumped: boolean,
          statuses: [status] | nil,
          usage: map | nil
        }
  @type reply ::
          {:spawned, pos_integer, pos_integer, [atom], binary | nil}
          | {:managed, pos_integer, pos_integer}
          | {:signaled, pos_integer, :ok | {:error, atom}}
          | {:spawn_error, pos_integer, Error.t()}
          | {:exit, pos_integer, status, exit_info}
          | {:error, pos_integer | nil, binary}
          | {:stats, pos_integer, %{usage: map | nil, pids_current: non_neg_integer}}

  @doc """
  A name or a path as the helper program takes it (a C string): non-empty, without NUL
  bytes, given as a binary or (by Erlang callers and `sys.config`) a charlist. The one
  check of such text, for the options and for the application's configuration.
  """
  @spec text(term) :: {:ok, String.t()} | :error
  def text(value) do
    case chars(value) do
      {:ok, text} when text != "" ->
        if String.contains?(text, <<0>>), do: :error, else: {:ok, text}

      _ ->
        :error
    end
  end

  defp chars(value) when is_binary(value), do: {:ok, value}

  defp chars(value) when is_list(value) do
    case :unicode.characters_to_binary(value) do
      binary when is_binary(binary) -> {:ok, binary}
      _ -> :error
    end
  rescue
    ArgumentError -> :error
  end

  defp chars(_value), do: :error

  @doc "Whether a request of this many bytes needs the memfd path."
  @spec large?(binary) :: boolean
  def large?(request), do: byte_size(request) > @inline_max

  @doc "Encodes a spawn request, or refuses one too large for the control channel."
  @spec spawn_request(pos_integer, map) :: {:ok, binary} | {:error, Error.t()}
  def spawn_request(id, spec) do
    request = :erlang.term_to_binary({:spawn, id, spec})

    if byte_size(request) > @max_request do
      {:error,
       Error.new(
         :e2big,
         "the argument list and environment take #{byte_size(request)} bytes, more than " <>
           "the #{@max_request} a spawn request may carry",
         stage: :argv
       )}
    else
      {:ok, request}
    end
  end

  @doc "Encodes `{:manage, id, spec}`: adopt a process Sluice did not start."
  @spec manage_request(pos_integer, map) :: binary
  def manage_request(id, spec), do: :erlang.term_to_binary({:manage, id, spec})

  @doc "Encodes `{:signal, id, signum}`."
  @spec signal(pos_integer, pos_integer) :: binary
  def signal(id, signum), do: :erlang.term_to_binary({:signal, id, signum})

  @doc "Encodes `{:kill, id, signum, grace_ms}`: a stop with escalation."
  @spec stop(pos_integer, pos_integer, non_neg_integer) :: binary
  def stop(id, signum, grace), do: :erlang.term_to_binary({:kill, id, signum, grace})

  @doc "Encodes `{:stats, id}`: what the program has cost so far."
  @spec stats(pos_integer) :: binary
  def stats(id), do: :erlang.term_to_binary({:stats, id})

  @doc """
  Decodes one message from a program channel. Total: a payload that is no term, or a term
  of no known shape or with impossible contents, is `:bad`.
  """
  @spec decode(binary) :: reply | :bad
  def decode(payload) do
    payload |> :erlang.binary_to_term([:safe]) |> reply()
  rescue
    ArgumentError -> :bad
  end

  @doc """
  Decodes one frame from the helper program's port after `hello` (docs/protocol.md): the
  helper program writes there only to reject a frame that arrived on its stdin. Total:
  anything else is `:bad`, whatever the bytes.
  """
  @spec port_frame(binary) :: {:rejected, binary} | :bad
  def port_frame(frame) do
    case :erlang.binary_to_term(frame, [:safe]) do
      {:error, nil, message} when is_binary(message) -> {:rejected, message}
      _other -> :bad
    end
  rescue
    ArgumentError -> :bad
  end

  defp reply({:spawned, id, os_pid, roles, cgroup}) when is_list(roles),
    do: {:spawned, id, os_pid, roles, cgroup}

  defp reply({:managed, id, os_pid}), do: {:managed, id, os_pid}
  defp reply({:signaled, id, :ok}), do: {:signaled, id, :ok}

  defp reply({:signaled, id, errno}) when is_binary(errno),
    do: {:signaled, id, {:error, Map.get(@errno_by_name, errno, :eunknown)}}

  defp reply({:spawn_error, id, errno, stage, detail}) when is_binary(detail) do
    reason = Map.get(@errno_by_name, errno, :eunknown)
    stage = Map.get(@stage_by_name, stage, :setup)
    {:spawn_error, id, Error.new(reason, detail, stage: stage)}
  end

  defp reply({:exit, id, status}), do: exit_reply(id, status, %{})

  defp reply({:exit, id, status, details}) when is_map(details),
    do: exit_reply(id, status, details)

  defp reply({:error, id, message}) when is_binary(message), do: {:error, id, message}

  defp reply({:stats, id, %{usage: usage, pids_current: pids}}) when is_integer(pids),
    do: {:stats, id, %{usage: usage(usage), pids_current: pids}}

  defp reply(_other), do: :bad

  # The status keeps its shape; whether a core was dumped, every status of a pipeline and
  # the usage go beside it.
  defp exit_reply(id, status, details) do
    if status?(status) and statuses?(Map.get(details, :statuses, [])),
      do: valid_exit_reply(id, status, details),
      else: :bad
  end

  defp valid_exit_reply(id, status, details) do
    statuses = Enum.map(Map.get(details, :statuses, []), &status/1)

    info = %{
      core_dumped: match?({:signaled, _, true}, status),
      statuses: if(statuses == [], do: nil, else: statuses),
      usage: usage(Map.get(details, :usage))
    }

    {:exit, id, status(status), info}
  end

  # Written out, so that :safe decoding knows every atom of a usage map.
  defp usage(%{source: source, cpu_user_us: _, cpu_system_us: _, max_rss_kb: _} = usage)
       when source in [:cgroup, :rusage],
       do: usage

  defp usage(_other), do: nil

  defp status?({:exited, code}), do: is_integer(code)
  defp status?(:unknown), do: true
  defp status?({:signaled, signum, core}), do: is_integer(signum) and is_boolean(core)
  defp status?(_other), do: false

  # A proper list of statuses.
  defp statuses?([]), do: true
  defp statuses?([status | rest]), do: status?(status) and statuses?(rest)
  defp statuses?(_other), do: false

  defp status({:exited, code}), do: code
  defp status(:unknown), do: :unknown
  defp status({:signaled, signum, _core}), do: {:signal, Sluice.Signal.name(signum)}

  @doc "Decodes the `hello` frame the helper writes on the port."
  @spec hello(binary) ::
          {:ok, %{socket: binary, os_pid: pos_integer, cgroup_root: binary | nil}} | :error
  def hello(frame) do
    case :erlang.binary_to_term(frame, [:safe]) do
      {:hello, @version, socket, os_pid, cgroup_root} ->
        {:ok, %{socket: socket, os_pid: os_pid, cgroup_root: cgroup_root}}

      _ ->
        :error
    end
  rescue
    ArgumentError -> :error
  end
end
