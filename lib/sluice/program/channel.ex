defmodule Sluice.Program.Channel do
  @moduledoc false
  # The program channel, seen from the BEAM (docs/protocol.md): the news it brings (the
  # exit status, the helper program's end) applied to the program value, and the one
  # loop that waits on it: "receive what the channel holds, wait for its readiness
  # message, give up at the deadline". Every wait on a channel goes through `await/4`:
  # the start's reply (Sluice.Program.Start), a signal's answer, a stats answer, the exit
  # (`request/4`, `await_exit/2`). News that comes meanwhile (above all the exit) is
  # applied as it comes, never lost, and the channel is armed again when the wait ends,
  # so the holder still hears of what follows.

  require Logger

  alias Sluice.{Helper, Native}
  alias Sluice.Control.{Protocol, Registry}
  alias Sluice.Program.Deadline

  @typedoc "What one look at the channel found."
  @type event ::
          {:reply, Protocol.reply() | :bad, [Native.fd()]}
          | :empty
          | {:closed, :eof | atom}

  @typedoc "A handler's verdict: the wait's result, or wait on with a new accumulator."
  @type step(acc, result) :: {:done, result} | {:wait, acc}

  @typedoc "An answer checked against the program after each piece of news."
  @type answer_fun :: (Protocol.reply() | :empty | :closed, program -> {:done, term} | :wait)

  @typep program :: Sluice.Program.t()

  @doc """
  Waits on `channel` until `handle` says it is done, or `deadline`: `handle` sees each
  message (with the fds it carried, now its own), `:empty` when the channel has nothing
  more for now (it is armed then), and `{:closed, reason}` when the channel ended (it must
  then be done). Returns its result, or `{:timeout, acc}`.
  """
  @spec await(Native.fd(), Deadline.t(), acc, (event, acc -> step(acc, result))) ::
          result | {:timeout, acc}
        when acc: term, result: term
  def await(channel, deadline, acc, handle), do: read(channel, deadline, acc, handle, false)

  @doc """
  `await/4` for the reply to the request a channel was sent with: `Sluice.Native.spawn/2`
  armed it, so the wait starts with its readiness message rather than with a read that
  could only find it empty, and every message read arms it again, so that the channel is
  armed when the wait ends: news already queued behind the reply (a quick program's exit)
  comes to its holder as a readiness message.
  """
  @spec await_reply(Native.fd(), Deadline.t(), acc, (event, acc -> step(acc, result))) ::
          result | {:timeout, acc}
        when acc: term, result: term
  def await_reply(channel, deadline, acc, handle), do: wait(channel, deadline, acc, handle, true)

  defp read(channel, deadline, acc, handle, rearm) do
    case Native.recv(channel, rearm) do
      {:ok, payload, fds} ->
        case handle.({:reply, Protocol.decode(payload), fds}, acc) do
          {:done, result} -> result
          {:wait, acc} -> read(channel, deadline, acc, handle, rearm)
        end

      {:error, :eagain} ->
        case handle.(:empty, acc) do
          {:done, result} -> result
          {:wait, acc} -> wait(channel, deadline, acc, handle, rearm)
        end

      :eof ->
        {:done, result} = handle.({:closed, :eof}, acc)
        result

      {:error, reason} ->
        {:done, result} = handle.({:closed, reason}, acc)
        result
    end
  end

  defp wait(channel, deadline, acc, handle, rearm) do
    receive do
      {:select, ^channel, _, :ready_input} -> read(channel, deadline, acc, handle, rearm)
    after
      Deadline.remaining(deadline) -> {:timeout, acc}
    end
  end

  @doc """
  Sends `message` (none: `nil`) on the program's channel and waits until `answer` gives
  the result, or `deadline` (`{:error, :timeout}`). `answer` is asked after each piece of
  news was applied to the program (the reply itself, `:empty` when the channel has
  nothing more for now, `:closed` once the helper program is gone: it then answers
  `{:error, :helper_down}` unless it says otherwise). Returns the result and the program
  with all the news, its channel armed again.
  """
  @spec request(program, binary | nil, answer_fun, Deadline.t()) :: {term, program}
  def request(p, message, answer, deadline) do
    case send_message(p, message) do
      :ok -> await_answer(p, answer, deadline, true)
      {:error, reason} -> {{:error, reason}, control(p)}
    end
  end

  # `rearm`: drain and arm the channel again once answered, so what follows still wakes
  # the holder.
  defp await_answer(p, answer, deadline, rearm) do
    result =
      await(p.channel, deadline, p, fn
        {:reply, reply, fds}, p ->
          Enum.each(fds, &Native.close/1)
          p = apply_news(p, reply)

          case answer.(reply, p) do
            {:done, result} when rearm -> {:done, {result, control(p)}}
            {:done, result} -> {:done, {result, p}}
            :wait -> {:wait, p}
          end

        :empty, p ->
          case answer.(:empty, p) do
            {:done, result} -> {:done, {result, p}}
            :wait -> {:wait, p}
          end

        {:closed, _reason}, p ->
          p = helper_gone(p)

          case answer.(:closed, p) do
            {:done, result} -> {:done, {result, p}}
            :wait -> {:done, {{:error, :helper_down}, p}}
          end
      end)

    case result do
      {:timeout, p} -> {{:error, :timeout}, p}
      {_result, _p} = done -> done
    end
  end

  @doc """
  Waits until the exit status is known or `deadline`; other messages stay queued. An exit
  already known is answered without a look at the channel. The channel is not armed
  again once the status is in: the exit is the last message a program channel brings
  (only its EOF, the helper program's end, could follow, which a known status makes
  moot), and whoever awaits the exit closes the program next.
  """
  @spec await_exit(program, Deadline.t()) ::
          {:ok, Protocol.status(), program} | {:error, :timeout | :helper_down, program}
  def await_exit(%{exit: {:exited, status}} = p, _deadline), do: {:ok, status, p}
  def await_exit(%{exit: :lost} = p, _deadline), do: {:error, :helper_down, p}

  def await_exit(p, deadline) do
    {result, p} = await_answer(p, fn _news, p -> exit_answer(p) end, deadline, false)

    case result do
      {:ok, status} -> {:ok, status, p}
      {:error, reason} -> {:error, reason, p}
    end
  end

  defp exit_answer(%{exit: {:exited, status}}), do: {:done, {:ok, status}}
  defp exit_answer(%{exit: :lost}), do: {:done, {:error, :helper_down}}
  defp exit_answer(_p), do: :wait

  @doc """
  Sends a message that wants no answer (a signal, a stop): `{:error, :helper_down}` when
  the channel is gone with the helper program.
  """
  @spec send_message(program, binary | nil) :: :ok | {:error, atom}
  def send_message(_p, nil), do: :ok

  def send_message(p, message) do
    case Native.send(p.channel, message) do
      :ok -> :ok
      # The channel is gone with the helper program: the program is being killed anyway.
      {:error, reason} when reason in [:epipe, :econnreset, :closed] -> {:error, :helper_down}
      {:error, reason} -> {:error, reason}
    end
  end

  @doc """
  Reads every message waiting on the program channel and arms it again, so the holder
  hears of the exit status and of the helper program's death.
  """
  @spec control(program) :: program
  def control(p) do
    case Native.recv(p.channel, false) do
      {:ok, payload, fds} ->
        Enum.each(fds, &Native.close/1)
        p |> apply_news(Protocol.decode(payload)) |> control()

      {:error, :eagain} ->
        p

      # EOF: the helper program is gone (it never closes the channel of a program the
      # BEAM still holds). With a cgroup, the dead helper program's cgroup is killed
      # before anyone is told (Sluice.Helper.await_swept/1).
      _eof_or_error ->
        helper_gone(p)
    end
  end

  defp helper_gone(p) do
    Registry.remove(p.id)
    if p.helper_program == :up and p.helper_os_pid, do: Helper.await_swept(p.helper_os_pid)
    p = %{p | helper_program: :down}
    if p.exit == :running, do: %{p | exit: :lost}, else: p
  end

  # One decoded message of the program channel applied to the value.
  defp apply_news(%{id: id} = p, {:exit, id, status, info}) do
    Registry.remove(id)
    %{p | exit: {:exited, status}, exit_info: info}
  end

  # A signal or stop request the helper program could not use: never expected, since
  # they are built here from checked values; worth a log line rather than silence.
  defp apply_news(p, {:error, _id, message}) do
    Logger.warning("sluice_helper refused a request for program #{p.os_pid}: #{message}")
    p
  end

  defp apply_news(p, _other), do: p
end
