defmodule Sluice.Worker do
  @moduledoc """
  A long-lived request/response program (a Python interpreter, a Ruby script, a Rust
  tool) behind a GenServer: `call/3` writes one frame to the program and returns the next
  frame it writes back.

      {:ok, w} = Sluice.Worker.start_link(["python3", "worker.py"], use_stdio: false)
      {:ok, response} = Sluice.Worker.call(w, "request")

  Requests are queued and served one at a time, in order: the next request is written
  once the previous response has arrived, so a program that handles one request at a time
  needs no request ids.

  The program must flush each response: most programs buffer a pipe (Python's `print()`
  without `python3 -u`), and a response kept in the buffer is a `{:error, :timeout}`. See
  the README's [Output buffering](README.md#output-buffering) for the fixes.

  ## Options

  Every option of `Sluice.Process` (see `Sluice.Options`), with `:framing` defaulting to
  `{:packet, 4}` (`:raw` is refused: responses must be delimited), `:stderr` other than
  `:consume`, and `:name` to register the worker. With `use_stdio: false` the program
  reads requests on fd 3 and writes responses on fd 4, so that its prints on stdout go to
  `:stdout` (the console by default) and never corrupt the protocol.

  ## Failures

    * A call that gets no response within its `timeout` returns `{:error, :timeout}`; the
      worker stays usable: the late response is read and discarded, never delivered to the
      next caller.
    * When the program exits, every caller waiting or queued gets
      `{:error, {:exit, status}}` and the worker stops with `{:program_exited, status}`,
      so its supervisor restarts it (see `child_spec/1`).
    * A response too large for the framing (a packet over `:max_frame` bytes, or with
      `{:line, max}` a line longer than `max`): the caller gets
      `{:error, :frame_too_large}`, the program is stopped, and the worker stops as above;
      calls made meanwhile wait for the exit and get `{:error, {:exit, status}}`, never
      a piece of the broken response.
    * If the helper program dies, or the `:sluice` application stops: `{:error,
      :helper_down}` and `{:shutdown, :helper_down}`.

  ## Framing: one request, one response

  Every request must get exactly one response frame: the worker matches them by order.
  With `{:packet, n}` (the default) a response is one packet of any size up to
  `:max_frame`. With `{:line, max}` a response is one line of at most `max` bytes
  (newline excluded), returned as `{:ok, {:eol, line}}`; the request is written as given,
  so it carries its own newline. A line longer than `max` is `:frame_too_large` (see
  above), and a last line without newline before the program's exit is not a response:
  the exit answers that call. Responses of several lines need `{:packet, n}`.

  ## No `cast/2`

  `{:packet, n}` and `{:line, max}` frames carry no request id, so a response is matched to
  its request only by order. A request that gets no response would hand its successor's
  response to the wrong caller, so the worker has no `cast/2`: a program that accepts
  one-way messages should answer them with an empty frame, and `call/3` waits for it.
  """
  use GenServer
  @behaviour Sluice.Holder.Policy

  alias Sluice.{Holder, Options, Program}
  alias Sluice.Holder.{Policy, Remote}
  alias Sluice.Options.Command
  alias Sluice.Program.{Deadline, Errors, Fds, Framing, Output}

  require Logger

  @type t :: GenServer.server()

  @typedoc "One queued or running call: `from` is `:abandoned` once its caller timed out."
  @type call :: %{from: GenServer.from() | :abandoned, frame: binary, tag: reference}

  @typedoc """
  What the worker is doing with the program, one request at a time: nothing (`:idle`),
  writing a call's request (with the bytes still to write), awaiting its response, or
  `:stopping` once a response broke the framing: the program is being stopped, nothing
  more is written to it or read from it, and its exit answers every queued call.
  """
  @type phase :: :idle | {:writing, call, binary} | {:awaiting, call} | :stopping

  # `responded`: whether the program ever answered; its first timeout before that logs
  # the hint about output buffering (then `:hinted`).
  defstruct [
    :program,
    :owner,
    log: %{},
    phase: :idle,
    queue: :queue.new(),
    timers: %{},
    responded: false
  ]

  @doc """
  A child spec: `{Sluice.Worker, argv: [...], name: MyApp.Python}` and any other option
  of `start_link/2`. The default id is the `:name`, else `{Sluice.Worker, argv}`; the
  shutdown leaves the program its `:kill_grace`. The options are checked here, as
  `start_link/2` checks them: a mistake raises `ArgumentError` naming the option when the
  spec is built, not when a supervisor starts the child.

      iex> Sluice.Worker.child_spec(argv: ["cat"], name: :w).id
      :w
  """
  @spec child_spec(keyword) :: Supervisor.child_spec()
  def child_spec(opts) do
    unless Keyword.keyword?(opts) and Keyword.has_key?(opts, :argv) do
      Sluice.OptionError.raise!(
        kind: :missing,
        option: :argv,
        value: opts,
        who: "Sluice.Worker.child_spec/1"
      )
    end

    {argv, opts} = Keyword.pop(opts, :argv)
    {_argv, name, checked} = config!(argv, opts, "Sluice.Worker.child_spec/1")

    %{
      id: name || {__MODULE__, argv},
      start: {__MODULE__, :start_link, [argv, opts]},
      shutdown: Deadline.plus_margin(checked.kill_grace, 1_000)
    }
  end

  @doc """
  Starts the program and the worker, linked to the caller. Returns once the program runs,
  or `{:error, %Sluice.Error{}}` as `Sluice.Process.start_link/2` does. Option mistakes
  raise `ArgumentError` here, in the caller.

      iex> {:ok, w} = Sluice.Worker.start_link(["cat"], framing: {:packet, 2})
      iex> Sluice.Worker.call(w, "echo")
      {:ok, "echo"}
  """
  @spec start_link(Sluice.command(), keyword) :: GenServer.on_start()
  def start_link(argv, opts \\ []) do
    {argv, name, opts} = config!(argv, opts, "Sluice.Worker.start_link/2")
    server_opts = if name, do: [name: name], else: []

    result =
      case Remote.node_of(opts) do
        nil ->
          start_here(argv, opts, server_opts, self())

        node ->
          Remote.call(
            node,
            __MODULE__,
            :start_remote,
            [argv, opts, server_opts, self()],
            opts.start_timeout
          )
      end

    # The worker linked the caller itself, as soon as its program ran (see init/1).
    result
  end

  # The worker's options checked (ArgumentError naming the mistake, for `who`): argv, the
  # name, and the checked options of its Sluice.Process.
  defp config!(argv, opts, who) do
    argv = Command.argv!(argv)
    {name, opts} = if Keyword.keyword?(opts), do: Keyword.pop(opts, :name), else: {nil, opts}
    opts = Options.validate!(opts, :worker, who)
    Command.command!(argv, opts)

    cond do
      opts.framing == :raw ->
        Options.bad!(:framing, "{:packet, n} or {:line, max} (responses must be delimited)", :raw)

      opts.stderr == :consume ->
        Options.bad!(:stderr, ":console, :null, :stdout or :log for a worker", :consume)

      # A name registered on the worker's node would not be found here: only global ones.
      Remote.node_of(opts) != nil and is_atom(name) and name != nil ->
        Options.bad!(:name, "{:global, term} or {:via, module, term} with :node", name)

      true ->
        {argv, name, opts}
    end
  end

  @doc false
  # Run on the worker's node for a caller on another node (Sluice.Holder.Remote.call/5).
  @spec start_remote(Sluice.command(), map, keyword, pid) :: {:ok, pid} | {:error, term}
  def start_remote(argv, opts, server_opts, owner) do
    with :ok <- Remote.running(), do: start_here(argv, opts, server_opts, owner)
  end

  @doc false
  # Starts the worker here, for `owner` (the caller, or a caller on another node, which
  # the worker links to: its death, or a disconnection, stops the worker and its program).
  # Started unlinked, and linked by the worker once the program runs: a program that
  # cannot start is an error return, not an exit signal to the caller, and a program that
  # exits at once stops a worker that is already linked (linked from the caller after the
  # start, the worker could be gone first: a `:noproc` in place of its reason).
  @spec start_here(Sluice.command(), map, keyword, pid) :: {:ok, pid} | {:error, term}
  def start_here(argv, opts, server_opts, owner) do
    spec = Command.spawn_spec(argv, opts)

    case Holder.start_server(__MODULE__, {spec, opts, owner}, server_opts) do
      {:failed, reason} -> {:error, reason}
      started_or_error -> started_or_error
    end
  end

  @doc """
  Sends `request` as one frame and returns the program's next frame: `{:ok, response}`
  (with `{:line, max}`, `{:ok, {:eol, line}}`), `{:error, :timeout}` after `timeout` ms
  (the worker stays usable), `{:error, {:exit, status}}` if the program exited first,
  `{:error, :frame_too_large}` (the program is then stopped), `{:error, :helper_down}`,
  `{:error, :closed}` when the worker is not running, or `{:error, :nodedown}` when its
  node (see `:node`) went away. A request too long for the framing raises
  `ArgumentError`.

      iex> {:ok, w} = Sluice.Worker.start_link(["cat"], framing: {:line, 100})
      iex> Sluice.Worker.call(w, "hello\\n")
      {:ok, {:eol, "hello"}}
  """
  @spec call(t, iodata, timeout) :: {:ok, Framing.frame()} | {:error, term}
  def call(worker, request, timeout \\ 5_000) do
    timeout = Options.timeout!(timeout)

    data =
      try do
        IO.iodata_to_binary(request)
      rescue
        ArgumentError -> Options.argument!(:request, "iodata", request)
      end

    # The worker answers every call within its timeout (its own timer, from the call's
    # arrival), so the caller waits that and a margin (Sluice.Holder.Call): a worker that cannot
    # answer (its node stopped but still connected) is :timeout, one that is gone
    # :closed, one whose node went away :nodedown.
    case Sluice.Holder.Call.call(worker, :worker, {:call, data, timeout}, timeout) do
      {:bad_frame, expected, size} -> Options.argument!(:request, expected, size)
      answer -> answer
    end
  end

  @doc """
  The program's OS pid; `{:error, :closed}` once the worker has ended, as
  `Sluice.Process.os_pid/1` answers.

      iex> {:ok, w} = Sluice.Worker.start_link(["cat"])
      iex> is_integer(Sluice.Worker.os_pid(w))
      true
  """
  @spec os_pid(t) :: pos_integer | {:error, :closed | :nodedown | :timeout}
  def os_pid(worker), do: Sluice.Holder.Call.call(worker, :worker, :os_pid)

  ## Server

  @impl true
  # Linked to the owner before anything of the program is read (Sluice.Holder), so its
  # exit, however early, reaches the owner as the worker's exit.
  def init({spec, opts, owner}) do
    with {:ok, program, log} <- Holder.start(spec, owner, opts, :link, opts.start_timeout) do
      {:ok, %__MODULE__{program: program, owner: owner, log: log}}
    end
  end

  @impl true
  def handle_call(request, from, s), do: Holder.guard(s, fn -> on_call(request, from, s) end)

  defp on_call(:os_pid, _from, s), do: {:reply, Program.os_pid(s.program), s}

  defp on_call({:call, data, timeout}, from, s) do
    case Framing.encode(Output.framing(s.program), data) do
      {:ok, frame} ->
        call = %{from: from, frame: IO.iodata_to_binary(frame), tag: make_ref()}
        s = %{s | queue: :queue.in(call, s.queue), timers: start_timer(s.timers, call, timeout)}
        {:noreply, advance(s)}

      {:error, expected} ->
        {:reply, {:bad_frame, expected, byte_size(data)}, s}
    end
  end

  defp start_timer(timers, _call, :infinity), do: timers

  defp start_timer(timers, call, ms) do
    ref = Process.send_after(self(), {:call_timeout, call.tag}, ms)
    Map.put(timers, call.tag, ref)
  end

  @impl true
  def handle_info(msg, s), do: Holder.guard(s, fn -> on_info(msg, s) end)

  defp on_info({:call_timeout, tag}, s), do: {:noreply, expire(s, tag)}
  # The program's readiness and news, the owner's exit signal: Sluice.Holder.
  defp on_info(msg, s), do: Holder.handle_info(__MODULE__, msg, s)

  @impl true
  # A supervisor's restart never finds the previous program still running.
  def terminate(_reason, s), do: Holder.terminate(s, :stop_and_await)

  # OTP calls format_status/1 from 25.0; Elixir's GenServer declares it as a callback
  # only from 1.17 on (before, `@impl` on it would warn; after, its absence would).
  if {:format_status, 1} in GenServer.behaviour_info(:callbacks), do: @impl(true)
  @doc false
  # Crash reports and :sys.get_status/1 show no fds and no request or response data.
  @spec format_status(map) :: map
  def format_status(status), do: Holder.format_status(status, &status_summary/1)

  defp status_summary(%__MODULE__{} = s) do
    phase = if is_tuple(s.phase), do: elem(s.phase, 0), else: s.phase
    Map.merge(Holder.summary(s), %{phase: phase, queued: :queue.len(s.queue)})
  end

  ## The holder's policy (Sluice.Holder)

  @impl Policy
  def input_ready(s), do: advance(s)

  @impl Policy
  def output_ready(s), do: advance(s)

  @impl Policy
  # The worker ends with its owner's reason.
  def owner_down(s, _reason), do: s

  @impl Policy
  def helper_down(s) do
    fail_all(s, {:error, :helper_down})
    {:stop, {:shutdown, :helper_down}, s}
  end

  @impl Policy
  def exited(s, status) do
    # A response written just before the exit still answers its call.
    s = advance(s)
    fail_all(s, {:error, {:exit, status}})
    {:stop, {:program_exited, status}, s}
  end

  ## One request at a time

  # Moves the current call on as far as the program allows now, then the next ones.
  defp advance(%{phase: :idle} = s) do
    case :queue.out(s.queue) do
      {{:value, call}, queue} -> advance(%{s | queue: queue, phase: {:writing, call, call.frame}})
      {:empty, _} -> s
    end
  end

  defp advance(%{phase: {:writing, call, data}} = s) do
    case Fds.write(s.program, data) do
      {:ok, "", program} -> advance(%{s | program: program, phase: {:awaiting, call}})
      {:ok, rest, program} -> %{s | program: program, phase: {:writing, call, rest}}
      # The program stopped reading: it is exiting, and its exit status will answer.
      {:error, _reason} -> %{s | phase: {:awaiting, call}}
    end
  end

  defp advance(%{phase: {:awaiting, call}} = s) do
    case Output.next(s.program, [:stdout], 65_536) do
      {:data, :stdout, frame, program} ->
        respond(%{s | program: program}, call, frame)

      {:error, :stdout, :frame_too_large, program} ->
        broken(%{s | program: program}, call)

      # EOF or a read error: the exit status will answer.
      {:error, :stdout, _reason, program} ->
        %{s | program: program}

      {_blocked_or_eof, program} ->
        %{s | program: program}
    end
  end

  # Nothing more is written to a program that broke the framing, nor read from it.
  defp advance(%{phase: :stopping} = s), do: s

  # With {:line, max} a response is one line. A `:noeol` piece while the output is open is
  # a line longer than `max`: its rest would answer the next call, so the framing is broken.
  # At EOF it is an unfinished last line: no response, like an incomplete packet, and the
  # exit status answers the call.
  defp respond(s, call, {:noeol, _part}) do
    if Output.open?(s.program, :stdout), do: broken(s, call), else: s
  end

  defp respond(s, call, frame) do
    s = answer(%{s | responded: true}, call, {:ok, frame})
    advance(%{s | phase: :idle})
  end

  # A response over the framing's limit: its caller is told, the program is stopped, and
  # its exit answers every queued call and stops the worker.
  defp broken(s, call) do
    s = answer(s, call, {:error, :frame_too_large})
    %{s | phase: :stopping, program: Program.stop_if_running(s.program)}
  end

  # A program that never answered, whose first call timed out: most often its response
  # waits in its own output buffer. Said once per worker, in the log (the caller gets
  # `{:error, :timeout}`).
  defp hint(%{responded: false} = s) do
    Logger.warning(
      "Sluice.Worker #{inspect(self())}: a call timed out before the program answered " <>
        "any; " <> Errors.buffering()
    )

    %{s | responded: :hinted}
  end

  defp hint(s), do: s

  defp answer(s, %{from: from, tag: tag}, reply) do
    {ref, timers} = Map.pop(s.timers, tag)
    _ = if ref, do: Process.cancel_timer(ref)
    if from != :abandoned, do: GenServer.reply(from, reply)
    %{s | timers: timers}
  end

  # A queued call is dropped (never sent); the running one is abandoned: its response,
  # when it comes, is read and discarded.
  defp expire(s, tag) do
    s = %{s | timers: Map.delete(s.timers, tag)}
    {expired, queue} = s.queue |> :queue.to_list() |> Enum.split_with(&(&1.tag == tag))
    Enum.each(expired, &GenServer.reply(&1.from, {:error, :timeout}))
    s = %{s | queue: :queue.from_list(queue)}

    case s.phase do
      {:writing, %{tag: ^tag} = call, rest} ->
        GenServer.reply(call.from, {:error, :timeout})
        %{hint(s) | phase: {:writing, %{call | from: :abandoned}, rest}}

      {:awaiting, %{tag: ^tag} = call} ->
        GenServer.reply(call.from, {:error, :timeout})
        %{hint(s) | phase: {:awaiting, %{call | from: :abandoned}}}

      _other ->
        s
    end
  end

  ## The program's end

  defp fail_all(s, reply) do
    current =
      case s.phase do
        {:writing, call, _} -> [call]
        {:awaiting, call} -> [call]
        _idle_or_stopping -> []
      end

    Enum.reduce(current ++ :queue.to_list(s.queue), s, &answer(&2, &1, reply))
  end
end
