defmodule Sluice.Program.Start do
  @moduledoc false
  # How a Sluice.Program value comes to be: the spawn (or manage) request on the fd socket
  # with a fresh program channel, and the reply on that channel, which brings the
  # program's fds, each with its role (docs/protocol.md). Roles become the value's: a
  # terminal's master is both `:stdin` and `:stdout`; with a private channel `:fd3` and
  # `:fd4` are the data and the program's own outputs are log sources. Until the reply,
  # the channel is the only fd, and every failure closes it.

  alias Sluice.{Error, Helper, Native, Program}
  alias Sluice.Control.{Env, Protocol, Registry}
  alias Sluice.Program.{Channel, Deadline, Errors, Fds, Terminal}

  # How often a full fd socket is retried, until the caller's deadline.
  @retry_ms 1

  @doc """
  Starts a program from a spawn spec (see `Sluice.Options.Command.spawn_spec/2`) and waits for it
  to run, until `deadline` (monotonic ms). The caller holds it; `owner` (default the
  caller) is whom `Sluice.list/0` names as its owner.
  """
  @spec open(map, Deadline.t(), pid) :: {:ok, Program.t()} | {:error, Error.t()}
  def open(spec, deadline, owner \\ self()) do
    id = System.unique_integer([:positive])

    with {:ok, conn} <- connection(),
         {:ok, cd} <- Env.cwd(spec.cd),
         spec = %{spec | cd: cd, env: Env.resolve(spec.env, conn.inherited_env)},
         {:ok, spec} <- resolve_stages(spec, conn.inherited_env),
         {:ok, request} <- Protocol.spawn_request(id, spec),
         {:ok, channel} <- send_request(conn.sock, request, deadline),
         p = %Program{id: id, channel: channel, kill: kill(spec)},
         :ok <- compact(),
         {:ok, p, cgroup} <- await_spawned(p, deadline) do
      p = if cgroup, do: %{p | helper_os_pid: conn.os_pid}, else: p

      Registry.add(
        id,
        %{
          os_pid: p.os_pid,
          owner: owner,
          argv: spec.argv,
          pipeline: stages(spec),
          managed: false,
          cgroup: cgroup
        },
        {channel, p.kill}
      )

      {:ok, p}
    end
  end

  # A heap this small is collected in a few microseconds; a larger one keeps its owner's
  # rhythm.
  @compact_below 4_096

  @doc """
  Collects the calling process's heap when it grew past its minimum but is still small:
  the garbage of starting a program (the spec, the request, the reply) would otherwise
  stay in a caller that then waits, and 500 concurrent callers each held ~1-3 KB of it.
  Called before the wait for the helper program's reply (its clone and exec take
  hundreds of microseconds, so the collection costs no time to the start) and by a
  caller at its first wait for the program.
  """
  @spec compact() :: :ok
  def compact do
    [total_heap_size: words, min_heap_size: min] =
      Process.info(self(), [:total_heap_size, :min_heap_size])

    if words > min and words < @compact_below, do: :erlang.garbage_collect()
    :ok
  end

  # Every stage's argv, in order, for Sluice.list/0 (the spec's program is the first).
  defp stages(%{pipeline: rest} = spec), do: [spec.argv | Enum.map(rest, & &1.argv)]
  defp stages(_spec), do: nil

  # A pipeline's later stages get their directory and environment resolved as the first.
  defp resolve_stages(%{pipeline: stages} = spec, inherited) do
    Enum.reduce_while(Enum.reverse(stages), {:ok, %{spec | pipeline: []}}, fn stage, {:ok, acc} ->
      case Env.cwd(stage.cd) do
        {:ok, cd} ->
          stage = %{stage | cd: cd, env: Env.resolve(stage.env, inherited)}
          {:cont, {:ok, %{acc | pipeline: [stage | acc.pipeline]}}}

        error ->
          {:halt, error}
      end
    end)
  end

  defp resolve_stages(spec, _inherited), do: {:ok, spec}

  @doc """
  Adopts a running process Sluice did not start, from a manage spec (see
  `Sluice.Options.manage_spec/2`): the helper program holds a pidfd for it. Like `open/3`
  otherwise; the result has no pipes.
  """
  @spec manage(map, Deadline.t(), pid) :: {:ok, Program.t()} | {:error, Error.t()}
  def manage(spec, deadline, owner \\ self()) do
    id = System.unique_integer([:positive])
    request = Protocol.manage_request(id, spec)

    with {:ok, conn} <- connection(),
         {:ok, channel} <- send_request(conn.sock, request, deadline),
         p = %Program{id: id, channel: channel, kill: kill(spec), origin: :managed},
         {:ok, p, nil} <- await_spawned(p, deadline) do
      Registry.add(
        id,
        %{
          os_pid: p.os_pid,
          owner: owner,
          argv: cmdline(p.os_pid),
          pipeline: nil,
          managed: true,
          cgroup: nil
        },
        {channel, p.kill}
      )

      {:ok, p}
    end
  end

  # What the adopted process runs; a kernel thread or a zombie has no command line.
  defp cmdline(os_pid) do
    case File.read("/proc/#{os_pid}/cmdline") do
      {:ok, text} when text != "" -> String.split(text, <<0>>, trim: true)
      _ -> []
    end
  end

  defp kill(spec), do: {spec.kill_signal, spec.kill_grace}

  defp connection do
    case Helper.conn() do
      {:ok, conn} -> {:ok, conn}
      :down -> {:error, Errors.no_helper()}
    end
  end

  defp send_request(sock, request, deadline) do
    result =
      if Protocol.large?(request),
        do: Native.spawn_large(sock, request),
        else: Native.spawn(sock, request)

    case result do
      {:ok, channel} ->
        {:ok, channel}

      # The socket's buffer is full: the helper program is busy (or stopped). Retry until
      # the deadline; nothing was sent.
      {:error, :eagain} ->
        if Deadline.passed?(deadline) do
          {:error, Errors.request_not_taken()}
        else
          receive after: (@retry_ms -> send_request(sock, request, deadline))
        end

      {:error, reason} when reason in [:econnreset, :epipe, :enotconn, :closed] ->
        {:error, Errors.helper_down()}

      {:error, :emfile} ->
        {:error, Errors.emfile()}

      {:error, reason} ->
        {:error, Errors.request_failed(reason)}
    end
  end

  # The channel stays armed after the reply (Channel.await_reply/4): its holder hears of
  # whatever follows, a quick program's exit included, as a readiness message.
  defp await_spawned(p, deadline) do
    result =
      Channel.await_reply(p.channel, deadline, p, fn
        {:reply, reply, fds}, p -> {:done, spawned(p, reply, fds)}
        :empty, p -> {:wait, p}
        {:closed, reason}, p -> {:done, lost(p, reason)}
      end)

    case result do
      {:timeout, p} ->
        close_channel(p)
        {:error, Errors.not_started(:request)}

      result ->
        result
    end
  end

  defp lost(p, reason) do
    close_channel(p)

    case reason do
      :eof -> {:error, Errors.helper_down()}
      :emfile -> {:error, Errors.emfile()}
      reason -> {:error, Errors.handoff_lost(reason)}
    end
  end

  defp spawned(%{id: id} = p, {:spawned, id, os_pid, roles, cgroup}, fds)
       when length(roles) == length(fds) do
    # A terminal's master is the program's stdin and stdout at once.
    fds =
      roles
      |> data_roles()
      |> Enum.zip(fds)
      |> Enum.flat_map(fn
        {:pty, fd} -> [stdin: fd, stdout: fd]
        role_fd -> [role_fd]
      end)
      |> Map.new()

    open = Map.new(fds, fn {role, _} -> {role, :open} end)
    terminal = if :pty in roles, do: Terminal.new()
    now = Deadline.now()
    p = %{p | os_pid: os_pid, fds: fds, open: open, terminal: terminal, started_at: now}
    {:ok, p, cgroup}
  end

  defp spawned(%{id: id, origin: :managed} = p, {:managed, id, os_pid}, []),
    do: {:ok, %{p | os_pid: os_pid}, nil}

  defp spawned(%{id: id} = p, {:spawn_error, id, error}, fds) do
    Enum.each(fds, &Native.close/1)
    close_channel(p)
    {:error, error}
  end

  # The helper program could not read the request at all (docs/protocol.md).
  defp spawned(p, {:error, _id, message}, fds) do
    Enum.each(fds, &Native.close/1)
    close_channel(p)

    {:error, Errors.refused(message)}
  end

  defp spawned(p, other, fds) do
    Enum.each(fds, &Native.close/1)
    close_channel(p)
    {:error, Errors.unexpected_reply(other)}
  end

  # The program's private channel (fds 3 and 4) carries the data; its stdout and stderr,
  # piped only to be logged, are then log sources.
  defp data_roles(roles) do
    if :fd4 in roles do
      Enum.map(roles, fn
        :fd3 -> :stdin
        :fd4 -> :stdout
        :stdout -> :log_stdout
        :stderr -> :log_stderr
      end)
    else
      roles
    end
  end

  # Before the program runs there is only the channel.
  defp close_channel(p) do
    Native.close(p.channel)
    Fds.flush_fd(p.channel)
  end
end
