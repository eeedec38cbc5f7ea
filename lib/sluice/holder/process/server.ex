defmodule Sluice.Holder.Process.Server do
  @moduledoc false
  # The GenServer behind Sluice.Process: a Sluice.Holder policy (start-up, readiness,
  # the owner's death, the program's end and the server's own are the holder's), which
  # serialises callers (Requests) and pushes output in active mode (Active).
  #
  # Lifecycle: once the program has exited, every output is at EOF and the status was
  # delivered (`exit_report`: await_exit answered, or {:sluice_exit, p, status} sent), the
  # server ends with reason :normal, and its end (Sluice.Holder.terminate/2) closes every
  # fd. If the owner dies, it ends too, closing the program channel: the helper program
  # then stops the program (an adopted process only with stop_on_owner_exit). Each concern's state is its own type:
  # `output` (Active.t: passive, active with a grant, or paused), `decoding`,
  # `exit_report` and `relay` (who tells a controller on another node of a lost
  # connection: Sluice.Holder.Process.Relay).

  use GenServer
  @behaviour Sluice.Holder.Policy

  alias Sluice.{Holder, Program}
  alias Sluice.Holder.Policy
  alias Sluice.Control.Registry
  alias Sluice.Holder.Process.{Active, Relay, Requests}
  alias Sluice.Program.{Deadline, Errors, Fds, Framing, Log, Output}

  # How much longer than the grace a stop may take before it is reported as a timeout.
  @stop_slack 5_000
  # How long the helper program may take to answer a signal to an adopted process.
  @signal_timeout 5_000

  defstruct [
    :program,
    :owner,
    :controller,
    :info,
    # Requests.new/0 in init/1 (a struct default here would make this module depend on
    # Requests at compile time).
    :requests,
    origin: :spawned,
    framing: :raw,
    log: %{},
    decoding: :sound,
    output: :passive,
    exit_report: :pending,
    relay: :none
  ]

  @typedoc """
  Whether the output's framing holds: `:sound`, or `{:broken, reason}` once the decoder
  refused a frame (a packet over `max_frame`). The server acts on a break once: it stops
  the program, closes its stdin and tells a controller that used active mode.
  """
  @type decoding :: :sound | {:broken, atom}

  @typedoc """
  Whether the program's exit status was delivered: `:pending` until it is; `:delivered`
  once it exited and `await_exit/2` answered or `{:sluice_exit, p, status}` was sent.
  From then on the server ends as soon as every output is at EOF and no read waits.
  """
  @type exit_report :: :pending | :delivered

  @type t :: %__MODULE__{
          program: Program.t(),
          owner: pid,
          controller: pid,
          info: Sluice.Process.info() | nil,
          origin: Program.origin(),
          framing: Framing.framing(),
          log: Log.t(),
          decoding: decoding,
          output: Active.t(),
          exit_report: exit_report,
          relay: Relay.t(),
          requests: Requests.t()
        }

  @impl true
  # `opts`: the checked options (those of Sluice.Process.manage/2 have no framing).
  def init({spec, owner, opts}) do
    with {:ok, program, log} <- Holder.start(spec, owner, opts, :monitor, opts.start_timeout) do
      s = %__MODULE__{
        program: program,
        owner: owner,
        controller: owner,
        info: Registry.info(Program.id(program)),
        origin: Program.origin(program),
        framing: opts.framing,
        log: log,
        requests: Requests.new()
      }

      {:ok, s}
    end
  end

  @impl true
  def handle_call(request, from, s), do: Holder.guard(s, fn -> on_call(request, from, s) end)

  defp on_call(:os_pid, _from, s), do: reply(Program.os_pid(s.program), s)
  defp on_call(:info, _from, s), do: reply(s.info, s)
  defp on_call(:kill_grace, _from, s), do: reply(Program.kill_grace(s.program), s)

  # An adopted process has no pipes.
  defp on_call(request, _from, %{origin: :managed} = s)
       when (is_tuple(request) and elem(request, 0) in [:read, :write, :close_output]) or
              request == :close_stdin,
       do: reply({:error, :not_piped}, s)

  defp on_call({:read, _source, _max, _timeout}, _from, %{output: {:active, _}} = s),
    do: reply({:error, :active}, s)

  defp on_call({:read, source, max, timeout}, from, s) do
    cond do
      source != :any and not Program.piped?(s.program, source) ->
        # stdout went to a file, /dev/null or the console; stderr was not consumed.
        reply({:error, if(source == :stdout, do: :not_piped, else: :not_captured)}, s)

      # No read waits before this one: it is answered at once if its output has data (or
      # is at its end), with no request record, timer or pass over the queue; otherwise
      # it waits, armed, as every queued read does.
      s.requests.reads == [] ->
        case Requests.read_now(s.program, source, max) do
          {:done, answer, program} ->
            reply(answer, stop_on_frame_error(%{s | program: program}))

          {:wait, program} ->
            req = Requests.request(%{from: from, source: source, max: max}, timeout, :read)

            noreply(
              stop_on_frame_error(%{s | program: program, requests: %{s.requests | reads: [req]}})
            )
        end

      true ->
        req = Requests.request(%{from: from, source: source, max: max}, timeout, :read)
        s = put_in(s.requests.reads, s.requests.reads ++ [req])
        # A read that found EOF after the status was delivered ends the server.
        noreply(serve(s))
    end
  end

  defp on_call({:write, data, timeout}, from, s) do
    case Framing.encode(s.framing, data) do
      {:ok, frame} -> write(IO.iodata_to_binary(frame), timeout, from, s)
      # The caller raises it as an ArgumentError (Sluice.Process.write/3).
      {:error, expected} -> reply({:bad_frame, expected, byte_size(data)}, s)
    end
  end

  # A terminal without an end of input says so, and stays open for in-band input.
  defp on_call(:close_stdin, _from, s) do
    case Fds.end_input(s.program) do
      {:ok, program} ->
        requests = Requests.fail_writes(s.requests, {:error, :closed})
        reply(:ok, %{s | program: program, requests: requests})

      {:error, error} ->
        reply({:error, error}, s)
    end
  end

  # Reads waiting for that output now find its end; active mode sends no more of it.
  defp on_call({:close_output, source}, _from, s) do
    case Output.close_output(s.program, source) do
      {:ok, program} -> reply(:ok, serve(%{s | program: program}))
      {:error, reason} -> reply({:error, reason}, s)
    end
  end

  # Only a program Sluice started has usage to tell (an adopted process's is its parent's).
  defp on_call({:stats, _timeout}, _from, %{origin: :managed} = s),
    do: reply({:error, :managed}, s)

  # The server waits for the helper program's answer and serves nobody meanwhile: never
  # longer than @signal_timeout, whatever the caller's timeout.
  defp on_call({:stats, timeout}, from, s) do
    {answer, program} = Program.stats(s.program, Deadline.at(min(timeout, @signal_timeout)))
    GenServer.reply(from, answer)
    control(%{s | program: program})
  end

  # The helper program answers a signal to an adopted process: :esrch once it exited.
  defp on_call({:signal, signum}, from, %{origin: :managed} = s) do
    case Program.status(s.program) do
      :running ->
        {answer, program} = Program.signal(s.program, signum, Deadline.at(@signal_timeout))
        GenServer.reply(from, answer)
        control(%{s | program: program})

      {:exited, _} ->
        reply({:error, :esrch}, s)

      :lost ->
        reply({:error, :helper_down}, s)
    end
  end

  defp on_call({:set_window_size, rows, cols}, _from, s),
    do: reply(Fds.set_window_size(s.program, rows, cols), s)

  defp on_call({:set_terminal_modes, modes}, _from, s),
    do: reply(Fds.set_terminal_modes(s.program, modes), s)

  defp on_call({:signal, signum}, _from, s) do
    answer =
      if Program.running?(s.program), do: elem(Program.signal(s.program, signum, 0), 0), else: :ok

    reply(answer, s)
  end

  defp on_call({:stop, grace}, from, s) do
    case Program.status(s.program) do
      {:exited, status} ->
        {:stop, :normal, {:ok, status}, s}

      :running ->
        s = %{close_stdin(s) | program: Program.stop(s.program, grace)}

        waiter =
          Requests.request(
            %{from: from},
            Deadline.plus_margin(grace, @stop_slack),
            :stop
          )

        noreply(put_in(s.requests.stop_waiters, [waiter | s.requests.stop_waiters]))
    end
  end

  defp on_call({:await_exit, timeout}, from, s) do
    case Program.status(s.program) do
      {:exited, status} ->
        reply({:ok, status}, %{s | exit_report: :delivered})

      :running ->
        waiter = Requests.request(%{from: from}, timeout, :await_exit)
        noreply(put_in(s.requests.exit_waiters, [waiter | s.requests.exit_waiters]))
    end
  end

  defp on_call({:set_active, mode}, _from, s) do
    reply(:ok, serve(relay(%{s | output: Active.set(s.output, mode)})))
  end

  defp on_call({:controlling_process, pid}, {caller, _}, s) do
    if caller == s.controller,
      do: reply(:ok, relay(%{s | controller: pid})),
      else: reply({:error, :not_owner}, s)
  end

  @impl true
  def handle_continue(continue, s), do: Holder.guard(s, fn -> on_continue(continue, s) end)

  defp on_continue(:maybe_end, s), do: maybe_end(s)

  @impl true
  def handle_info(msg, s), do: Holder.guard(s, fn -> on_info(msg, s) end)

  defp on_info({:sluice_timeout, _tag, :stop}, s) do
    error = Errors.exit_not_reported()
    Enum.each(s.requests.stop_waiters, &Requests.reply(&1, {:error, error}))
    {:stop, :normal, s}
  end

  defp on_info({:sluice_timeout, tag, kind}, s),
    do: noreply(%{s | requests: Requests.expire(s.requests, tag, kind)})

  # The program's readiness and news, the owner's death: Sluice.Holder, with this policy.
  defp on_info(msg, s), do: __MODULE__ |> Holder.handle_info(msg, s) |> continue()

  @impl true
  def terminate(_reason, s), do: Holder.terminate(s, :close)

  # OTP calls format_status/1 from 25.0; Elixir's GenServer declares it as a callback
  # only from 1.17 on (before, `@impl` on it would warn; after, its absence would).
  if {:format_status, 1} in GenServer.behaviour_info(:callbacks), do: @impl(true)
  @doc false
  # Crash reports and :sys.get_status/1 show no fds, no buffered output, no write's data.
  @spec format_status(map) :: map
  def format_status(status), do: Holder.format_status(status, &status_summary/1)

  defp status_summary(%__MODULE__{} = s) do
    Map.merge(Holder.summary(s), %{
      origin: s.origin,
      controller: s.controller,
      output: s.output,
      decoding: s.decoding,
      exit_report: s.exit_report,
      reads: length(s.requests.reads),
      writes: :queue.len(s.requests.writes)
    })
  end

  ## The holder's policy (Sluice.Holder)

  @impl Policy
  # On a terminal, a pending end-of-input character went first (Sluice.Holder).
  def input_ready(s), do: serve_writes(s)

  @impl Policy
  def output_ready(s), do: serve(s)

  @impl Policy
  # The owner's node disconnected: the program stops. A controller on this node hears
  # it here; one on another node from its relay (told to nobody across the lost link).
  def owner_down(s, reason) do
    if reason == :noconnection and node(s.controller) == node(), do: notify(s, :nodedown)
    s
  end

  @impl Policy
  def helper_down(s) do
    _ = Requests.fail_all(s.requests, {:error, :helper_down})
    notify(s, :helper_down)
    {:stop, {:shutdown, :helper_down}, s}
  end

  @impl Policy
  def exited(s, status) do
    Enum.each(s.requests.exit_waiters, &Requests.reply(&1, {:ok, status}))

    case s.requests.stop_waiters do
      [] ->
        report = if s.requests.exit_waiters == [], do: s.exit_report, else: :delivered
        s = %{s | exit_report: report, requests: %{s.requests | exit_waiters: []}}
        noreply(serve(s))

      waiters ->
        Enum.each(waiters, &Requests.reply(&1, {:ok, status}))
        {:stop, :normal, s}
    end
  end

  # Serves reads, or active deliveries (and the exit message once everything was read).
  # A frame over max_frame stops the program, once.
  defp serve(s), do: s |> serve_output() |> stop_on_frame_error()

  defp serve_output(%{output: {:active, _}} = s) do
    {output, program} = Active.deliver(s.output, s.program, s.controller)
    report_exit(%{s | output: output, program: program})
  end

  defp serve_output(s) do
    {requests, program} = Requests.serve_reads(s.requests, s.program)
    %{s | requests: requests, program: program}
  end

  # In active mode the status follows the output, once all of it was delivered.
  defp report_exit(%{exit_report: :pending} = s) do
    case Program.status(s.program) do
      {:exited, status} ->
        if Output.open_outputs(s.program) == [] do
          send(s.controller, {:sluice_exit, self(), status})
          %{s | exit_report: :delivered}
        else
          s
        end

      _running_or_lost ->
        s
    end
  end

  defp report_exit(s), do: s

  defp stop_on_frame_error(%{decoding: :sound} = s) do
    case Output.frame_error(s.program) do
      nil ->
        s

      reason ->
        notify(s, reason)
        s = close_stdin(s)
        %{s | program: Program.stop_if_running(s.program), decoding: {:broken, reason}}
    end
  end

  defp stop_on_frame_error(%{decoding: {:broken, _}} = s), do: s

  # A controller on another node that hears of failures by message has a relay there,
  # which tells it when the connection to this server is lost; a relay whose controller
  # changed is let go.
  defp relay(s) do
    wanted = Active.notifies?(s.output) and node(s.controller) != node()

    case s.relay do
      {controller, _relay} when wanted and controller == s.controller ->
        s

      current ->
        Relay.release(current)
        %{s | relay: if(wanted, do: Relay.start(self(), s.controller), else: :none)}
    end
  end

  # Only a controller that used active mode hears of failures by message.
  defp notify(s, reason) do
    if Active.notifies?(s.output), do: send(s.controller, {:sluice_error, self(), reason})
  end

  # Every event may be the one after which nothing is left to do (the status delivered,
  # every output at EOF, no read waiting: an exit sent while set_active/2 was handled, a
  # read that timed out, the last output read). So every reply and every state change
  # goes through maybe_end/1, whichever callback made it, rather than the paths someone
  # remembered.
  # Until the status was delivered maybe_end/1 has nothing to do, and is skipped.
  defp reply(answer, %{exit_report: :pending} = s), do: {:reply, answer, s}
  defp reply(answer, s), do: {:reply, answer, s, {:continue, :maybe_end}}
  defp noreply(%{exit_report: :pending} = s), do: {:noreply, s}
  defp noreply(s), do: {:noreply, s, {:continue, :maybe_end}}

  defp continue({:noreply, s}), do: noreply(s)
  defp continue(result), do: result

  # News the server read itself (a stats or signal answer came with it).
  defp control(s), do: __MODULE__ |> Holder.control(s) |> continue()

  # The status was delivered only once the program exited (`exit_report`).
  defp maybe_end(%{exit_report: :delivered, program: program} = s) do
    if Output.open_outputs(program) == [] and s.requests.reads == [] do
      {:stop, :normal, s}
    else
      {:noreply, s}
    end
  end

  defp maybe_end(s), do: {:noreply, s}

  defp write(data, timeout, from, s) do
    if Output.open?(s.program, :stdin) do
      req = Requests.request(%{from: from, data: data, written: 0}, timeout, :write)
      s = put_in(s.requests.writes, :queue.in(req, s.requests.writes))
      noreply(serve_writes(s))
    else
      reply({:error, :closed}, s)
    end
  end

  defp serve_writes(s) do
    {requests, program} = Requests.serve_writes(s.requests, s.program)
    %{s | requests: requests, program: program}
  end

  defp close_stdin(s) do
    requests = Requests.fail_writes(s.requests, {:error, :closed})
    %{s | program: Fds.close_stdin(s.program), requests: requests}
  end
end
