defmodule Sluice.Holder.RemoteReader do
  @moduledoc false
  # The holder of a `run`'s or a stream's program on the program's node, for a consumer on
  # another node (Sluice.Caller.RemoteConsumer). It holds the Sluice.Program value, so the
  # fds stay on the node of the program, and it reads output only against credit the consumer
  # grants (one batch of chunks per credit, like active mode with a count): the program's output
  # crosses distribution no faster than the consumer takes it, each chunk read into one
  # binary and sent once. Input comes from the consumer in chunks; each is acknowledged
  # (`:taken`) once the program took all of it, so the consumer keeps only a bounded
  # window in flight.
  #
  # A Sluice.Holder policy: the holder monitors the consumer, and when the consumer dies
  # or its node disconnects (`:DOWN` with `:noconnection`) it closes the pipes, and the helper program stops the program
  # with `kill_signal` and SIGKILL after `kill_grace`, as for a local owner.
  #
  # Messages: from the consumer `{:sluice_consumer, request}`; to it
  # `{:sluice_remote, reader, event}` (see Sluice.Caller.RemoteConsumer for both vocabularies).

  use GenServer
  @behaviour Sluice.Holder.Policy

  # The most bytes of one output sent as one message (see `deliver/1`).
  @batch_bytes 131_072
  # What a frame costs beyond its bytes (a tuple, a list cell, a binary header).
  @frame_overhead 64

  alias Sluice.{Holder, Program}
  alias Sluice.Holder.Policy
  alias Sluice.Program.{Fds, Log, Output}

  # `owner`: the consumer. `log` stays empty (`run` and streams refuse `:log` outputs); it
  # is there because every holder's state has one (Sluice.Holder).
  defstruct [
    :owner,
    :program,
    log: %{},
    credit: 0,
    window: 1,
    max: 65_536,
    held: :none,
    pending: :queue.new(),
    stdin: :open,
    output: :open,
    exit: :unsent
  ]

  @typedoc "stdin: written from `pending`; `:closing` once the input's end was asked for."
  @type stdin :: :open | :closing | :closed
  @typedoc "The output towards the consumer: still read, or its end (EOF, an error) sent."
  @type output :: :open | :ended
  @typedoc "A batch being filled: its output, its chunks (newest first) and their bytes."
  @type held :: :none | {Program.source(), [Sluice.Program.Framing.frame()], non_neg_integer}
  @type t :: %__MODULE__{
          owner: pid,
          program: Program.t(),
          log: Log.t(),
          credit: non_neg_integer,
          window: pos_integer,
          max: pos_integer,
          held: held,
          pending: :queue.queue(binary),
          stdin: stdin,
          output: output,
          exit: :unsent | :sent
        }

  @impl true
  def init({spec, opts, consumer, start_ms}) do
    # A quick program's exit comes as a readiness message of the channel, armed since the
    # start (Program.hold/2).
    with {:ok, program, log} <- Holder.start(spec, consumer, opts, :monitor, start_ms) do
      {:ok, %__MODULE__{owner: consumer, program: program, log: log}}
    end
  end

  @impl true
  def handle_call(request, from, s), do: Holder.guard(s, fn -> on_call(request, from, s) end)

  defp on_call(:os_pid, _from, s), do: {:reply, Program.os_pid(s.program), s}

  @impl true
  def handle_info(msg, s), do: Holder.guard(s, fn -> on_info(msg, s) end)

  defp on_info({:sluice_consumer, request}, s), do: request(request, s)
  # The program's readiness and news, the consumer's death: Sluice.Holder.
  defp on_info(msg, s), do: Holder.handle_info(__MODULE__, msg, s)

  @impl true
  def terminate(_reason, s), do: Holder.terminate(s, :close)

  # OTP calls format_status/1 from 25.0; Elixir's GenServer declares it as a callback
  # only from 1.17 on (before, `@impl` on it would warn; after, its absence would).
  if {:format_status, 1} in GenServer.behaviour_info(:callbacks), do: @impl(true)
  @doc false
  # Crash reports and :sys.get_status/1 show no fds and no output or input data.
  @spec format_status(map) :: map
  def format_status(status), do: Holder.format_status(status, &status_summary/1)

  defp status_summary(%__MODULE__{} = s) do
    Map.merge(Holder.summary(s), %{
      credit: s.credit,
      stdin: s.stdin,
      output: s.output,
      exit: s.exit,
      pending: :queue.len(s.pending)
    })
  end

  ## The holder's policy (Sluice.Holder)

  @impl Policy
  def input_ready(s), do: write_input(s)

  @impl Policy
  def output_ready(s), do: deliver(s)

  @impl Policy
  # The consumer is gone: nobody to tell.
  def owner_down(s, _reason), do: s

  @impl Policy
  # Once the exit was sent, what is left of the output is still delivered.
  def helper_down(%{exit: :sent} = s), do: {:noreply, s}

  def helper_down(s) do
    event(s, :helper_down)
    {:stop, :normal, s}
  end

  @impl Policy
  def exited(%{exit: :unsent} = s, status) do
    event(s, {:exit, status, Program.exit_info(s.program)})
    {:noreply, deliver(%{s | exit: :sent})}
  end

  def exited(s, _status), do: {:noreply, s}

  # `window`: the most batches the consumer has granted at once (all of it credit here
  # means the consumer has taken everything sent).
  defp request({:demand, n, max, window}, s),
    do: {:noreply, deliver(%{s | credit: s.credit + n, max: max, window: window})}

  defp request({:input, data}, s),
    do: {:noreply, write_input(%{s | pending: :queue.in(data, s.pending)})}

  defp request(:input_eof, s), do: {:noreply, write_input(%{s | stdin: :closing})}

  defp request({:stop, grace}, s) do
    program = Program.stop_if_running(s.program, grace)
    {:noreply, %{s | program: program, stdin: :closed, pending: :queue.new()}}
  end

  defp request(:close, s), do: {:stop, :normal, s}

  ## Output

  # One batch per credit, from whichever output has data (the one that gave last goes
  # last, so a chatty stdout cannot starve stderr); once every output is at EOF, `:eof`.
  #
  # A batch is what one output has ready, up to `@batch_bytes` (or `max`, if larger):
  # distribution carries a few large messages far faster than many small ones. Bytes
  # are read in reads of that size (the consumer cuts them to `max`), frames one by one.
  # A part-filled batch goes at once when the consumer has nothing else in hand (all its
  # window is credit here); while it still has batches to take, the batch is held and
  # filled as more comes, so a fast program is not sent in slivers as it writes them.
  defp deliver(%{output: :ended} = s), do: s
  defp deliver(%{credit: 0} = s), do: s

  defp deliver(s) do
    case fill(s) do
      {:full, s} ->
        s |> send_held() |> deliver()

      {:wait, s} ->
        if s.credit >= s.window, do: s |> send_held() |> deliver(), else: s

      {:source_ended, s} ->
        s |> send_held() |> deliver()

      {:blocked, s} ->
        if Output.open_outputs(s.program) == [] do
          event(s, :eof)
          %{s | output: :ended}
        else
          s
        end

      {{:error, reason}, s} ->
        s = send_held(s)
        event(s, {:error, reason})
        %{s | output: :ended}
    end
  end

  # Reads into the held batch: more of the held output, or a new batch from whichever
  # output has data.
  defp fill(%{held: :none} = s) do
    # Framed reads return one frame whatever they are asked: one size serves both outputs.
    case Output.next(s.program, [:stdout, :stderr], max(s.max, @batch_bytes)) do
      {:data, source, data, program} ->
        fill(%{s | program: program, held: {source, [data], cost(program, source, data)}})

      {:error, _source, reason, program} ->
        {{:error, reason}, %{s | program: program}}

      # Blocked, or at EOF: deliver/1 tells them apart.
      {_blocked_or_eof, program} ->
        {:blocked, %{s | program: program}}
    end
  end

  defp fill(%{held: {source, chunks, bytes}} = s) do
    case room(s, source, bytes) do
      0 -> {:full, s}
      room -> fill_more(s, source, chunks, bytes, room)
    end
  end

  defp fill_more(s, source, chunks, bytes, room) do
    case Output.read(s.program, source, room) do
      {:ok, data, program} ->
        held = {source, [data | chunks], bytes + cost(program, source, data)}
        fill(%{s | program: program, held: held})

      {:wait, program} ->
        {:wait, %{s | program: program}}

      {:eof, program} ->
        {:source_ended, %{s | program: program}}

      {:error, reason, program} ->
        {{:error, reason}, %{s | program: program}}
    end
  end

  defp send_held(%{held: :none} = s), do: s

  defp send_held(%{held: {source, chunks, _bytes}} = s) do
    event(s, {:data, source, Enum.reverse(chunks)})
    %{s | held: :none, credit: s.credit - 1}
  end

  # A batch is `@batch_bytes` (or `max`, if larger); a read asks for the room left in it
  # (a framed read returns one frame whatever it is asked).
  defp batch_bytes(program, source, max),
    do: if(Output.framed?(program, source), do: @batch_bytes, else: max(max, @batch_bytes))

  defp room(s, source, bytes), do: max(batch_bytes(s.program, source, s.max) - bytes, 0)

  # What a chunk costs in a batch: its bytes, and for a frame a term's worth more, so
  # that a batch of empty frames (empty lines, empty packets) is bounded too.
  defp cost(program, source, data) do
    if Output.framed?(program, source),
      do: frame_bytes(data) + @frame_overhead,
      else: byte_size(data)
  end

  defp frame_bytes({_eol, line}), do: byte_size(line)
  defp frame_bytes(packet), do: byte_size(packet)

  ## Input

  # Writes the pending chunks in order, acknowledging each once written in full; at the
  # input's end (or when the program no longer takes input) stdin is closed.
  defp write_input(%{stdin: :closed} = s), do: s

  defp write_input(s) do
    case :queue.out(s.pending) do
      {:empty, _} when s.stdin == :closing ->
        %{s | stdin: :closed, program: Fds.close_stdin(s.program)}

      {:empty, _} ->
        s

      {{:value, data}, rest} ->
        case Fds.write(s.program, data) do
          {:ok, "", program} ->
            event(s, :taken)
            write_input(%{s | program: program, pending: rest})

          {:ok, left, program} ->
            %{s | program: program, pending: :queue.in_r(left, rest)}

          # The program closed its stdin (or exited): input ends quietly, as for `head`.
          {:error, _reason} ->
            event(s, :input_closed)
            %{s | stdin: :closed, pending: :queue.new(), program: Fds.close_stdin(s.program)}
        end
    end
  end

  defp event(s, event), do: send(s.owner, {:sluice_remote, self(), event})
end
