defmodule Sluice.Caller.RemoteConsumer do
  @moduledoc false
  # The remote Sluice.Caller.Source: the calling side of a `run` or a stream whose program runs on
  # another node (`node:`), the same callbacks as Sluice.Caller.Pump over messages to the
  # Sluice.Holder.RemoteReader that holds the program there.
  #
  # Back-pressure across distribution: at most `@window` batches of output are granted and
  # not yet taken by `next/3`, and at most `@input_window` chunks of input are sent and not
  # yet taken by the program. The input is enumerated here, in the calling process, as for
  # a local program, or with `input_in: :process` in a process of its own here
  # (Sluice.Caller.Input.Feeder), whose messages `receive_event` takes too. The reader is
  # monitored: its death, or its node's, is `:nodedown`.
  #
  # To the reader: `{:sluice_consumer, request}` with request `{:demand, n, max, window}`,
  # `{:input, binary}`, `:input_eof`, `{:stop, grace}`, `:close`.
  # From it: `{:sluice_remote, reader, event}` with event `{:data, source, [chunk]}` (a
  # batch of reads, one per grant), `:eof`, `{:exit, status, exit_info}`, `:taken`, `:input_closed`,
  # `:helper_down`, `{:error, atom}`.

  @behaviour Sluice.Caller.Source

  alias Sluice.Program
  alias Sluice.Caller.Input
  alias Sluice.Holder.Remote
  alias Sluice.Program.{Deadline, Errors}

  # Output batches granted ahead of the consumer; input chunks in flight.
  @window 3
  @input_window 2
  # How long close/1 waits for the reader to go (it answers at once unless its node is
  # gone or stuck).
  @close_wait 5_000
  # Chunk size of the output kept while a collectable-function input waits.
  @function_chunk 65_536

  @doc false
  # The most output batches in flight (the tests check the bound).
  @spec window() :: pos_integer
  def window, do: @window

  defstruct [
    :node,
    :reader,
    :monitor,
    :os_pid,
    framing: :raw,
    input: :ended,
    in_flight: 0,
    granted: 0,
    buffered: :queue.new(),
    outputs: :open,
    exit: :running,
    collected: nil
  ]

  @typedoc "What is known of the program's end: `:nodedown` once the reader is gone."
  @type exit_state ::
          :running | {:exited, Program.status(), map | nil} | :helper_down | :nodedown
  @type t :: %__MODULE__{
          node: node,
          reader: pid,
          monitor: reference,
          os_pid: pos_integer,
          framing: Sluice.Program.Framing.framing(),
          input: Input.t() | :ended,
          in_flight: non_neg_integer,
          granted: non_neg_integer,
          buffered: :queue.queue({Program.source(), binary} | {:error, atom}),
          outputs: :open | :eof,
          exit: exit_state,
          collected: %{optional(Program.source()) => iodata} | nil
        }

  # Starts `argv` on the `node:` of `opts` before `deadline`, held there by a reader, owned
  # by the caller.
  @impl Sluice.Caller.Source
  def open(argv, opts, deadline) do
    node = Remote.node_of(opts)
    start_ms = Deadline.remaining(deadline)
    args = [argv, %{opts | input: nil}, self(), start_ms]

    with {:ok, {reader, os_pid}} <- Remote.call(node, :open_reader, args, start_ms) do
      c = %__MODULE__{
        node: node,
        reader: reader,
        monitor: Process.monitor(reader),
        os_pid: os_pid,
        framing: opts.framing,
        input: Input.new(opts.input, opts.input_in)
      }

      {:ok, c}
    end
  end

  @impl Sluice.Caller.Source
  def next(%{collected: nil} = c, max, deadline), do: next_chunk(c, max, deadline)

  def next(c, max, deadline) do
    case next_chunk(c, max, deadline) do
      {:data, source, data, c} ->
        collected = Map.update(c.collected, source, data, &[&1 | data])
        {:data, source, byte_size(data), %{c | collected: collected}}

      other ->
        other
    end
  end

  # The chunks crossed distribution as binaries of their own: kept as they came, they are
  # copied once, into the binary `collected/2` makes.
  @impl Sluice.Caller.Source
  def collect(c), do: %{c | collected: %{}}

  @impl Sluice.Caller.Source
  def collected(c, source), do: IO.iodata_to_binary(Map.get(c.collected || %{}, source, ""))

  defp next_chunk(c, max, deadline) do
    case :queue.out(c.buffered) do
      {{:value, {:error, reason}}, rest} -> {:error, reason, %{c | buffered: rest}}
      {{:value, {source, data}}, rest} -> take(%{c | buffered: rest}, source, data, max)
      {:empty, _} when c.outputs == :eof -> {:eof, c}
      {:empty, _} -> c |> grant(max) |> feed(deadline) |> await_after_feed(max, deadline)
    end
  end

  # Output kept while a collectable function's input ran (feeding ran it) is older than
  # what comes next: it is taken first, in order.
  defp await_after_feed(c, max, deadline) do
    if :queue.is_empty(c.buffered),
      do: await_chunk(c, max, deadline),
      else: next_chunk(c, max, deadline)
  end

  defp await_chunk(%{exit: gone} = c, _max, _deadline) when gone in [:nodedown, :helper_down],
    do: {:error, gone, c}

  defp await_chunk(c, max, deadline) do
    case receive_event(c, deadline) do
      {{:data, source, [data | rest]}, c} ->
        c |> keep({:data, source, rest}) |> take(source, data, max)

      {:eof, c} ->
        {:eof, %{c | outputs: :eof}}

      {{:error, reason}, c} ->
        {:error, reason, c}

      {:timeout, c} ->
        {:error, :timeout, c}

      {_other, c} ->
        c |> feed(deadline) |> await_after_feed(max, deadline)
    end
  end

  # Bytes come in batches of up to 128 KiB (see Sluice.Holder.RemoteReader): they are handed
  # out `max` at a time, the rest kept first in line (sub-binaries, no copy). Frames are
  # handed out whole.
  defp take(c, source, data, max)
       when byte_size(data) > max and (source != :stdout or c.framing == :raw) do
    <<head::binary-size(max), rest::binary>> = data
    {:data, source, head, %{c | buffered: :queue.in_r({source, rest}, c.buffered)}}
  end

  defp take(c, source, data, _max), do: {:data, source, data, c}

  # Keeps `@window` batches granted: one for this call, the rest read ahead.
  defp grant(%{granted: granted} = c, max) when granted < @window do
    request(c, {:demand, @window - granted, max, @window})
    %{c | granted: @window}
  end

  defp grant(c, _max), do: c

  # Sends input while fewer than `@input_window` chunks are in flight.
  defp feed(%{input: :ended} = c, _deadline), do: c
  defp feed(%{in_flight: n} = c, _deadline) when n >= @input_window, do: c
  defp feed(%{exit: gone} = c, _deadline) when gone in [:nodedown, :helper_down], do: c

  defp feed(c, deadline) do
    case Input.next(c.input) do
      {:data, data, input} ->
        request(c, {:input, data})
        feed(%{c | input: input, in_flight: c.in_flight + 1}, deadline)

      # An input in its own process has sent nothing yet: receive_event waits for it.
      {:wait, input} ->
        %{c | input: input}

      :done ->
        request(c, :input_eof)
        %{c | input: :ended}

      {:function, fun} ->
        run_function(%{c | input: :ended}, fun, deadline)
    end
  end

  # Waits for the reader's next event and applies what it says of the program's state;
  # data is counted against the grant, and `:taken`/`:input_closed` against the input.
  # The deadline is checked first: events that never stop (input acknowledged as fast
  # as it is sent) would keep a receive from ever reaching its `after`.
  # A message of an input in its own process is kept for `feed/2` (event `:input`).
  defp receive_event(%{reader: reader, monitor: mon} = c, deadline) do
    input = input_tag(c)

    case Deadline.remaining(deadline) do
      0 ->
        {:timeout, c}

      left ->
        receive do
          {:sluice_remote, ^reader, event} -> {event, apply_event(c, event)}
          {:DOWN, ^mon, :process, _, _reason} -> {:nodedown, %{c | exit: :nodedown}}
          {:sluice_input, ^input, event} -> {:input, deliver_input(c, event)}
          {:DOWN, ^input, :process, _, reason} -> {:input, deliver_input(c, {:down, reason})}
        after
          left -> {:timeout, c}
        end
    end
  end

  defp input_tag(%{input: :ended}), do: nil
  defp input_tag(c), do: Input.tag(c.input)

  defp deliver_input(c, event), do: %{c | input: Input.deliver(c.input, event)}

  defp apply_event(c, {:data, _source, _data}), do: %{c | granted: c.granted - 1}
  defp apply_event(c, {:exit, status, info}), do: %{c | exit: {:exited, status, info}}
  defp apply_event(c, :taken), do: %{c | in_flight: c.in_flight - 1}
  defp apply_event(c, :helper_down), do: %{c | exit: :helper_down}

  defp apply_event(c, :input_closed) do
    %{halt_input(c) | in_flight: 0}
  end

  defp apply_event(c, _eof_or_error), do: c

  ## The program's end

  # As the reader forwarded it.
  @impl Sluice.Caller.Source
  def exit_info(%{exit: {:exited, _status, info}}), do: info
  def exit_info(_c), do: nil

  # Output still coming is dropped.
  @impl Sluice.Caller.Source
  def await_exit(%{exit: {:exited, status, _info}} = c, _deadline), do: {:ok, status, c}
  def await_exit(%{exit: :running} = c, deadline), do: c |> watch() |> await_exit_event(deadline)
  def await_exit(%{exit: gone} = c, _deadline), do: {:error, gone, c}

  defp await_exit_event(c, deadline) do
    case receive_event(c, deadline) do
      {:timeout, c} -> {:error, :timeout, c}
      {_event, c} -> await_exit(c, deadline)
    end
  end

  # Asks the reader to stop the program (kill_signal, SIGKILL after `grace`).
  @impl Sluice.Caller.Source
  def stop(c, grace) do
    request(c, {:stop, grace})
    halt_input(c)
  end

  @impl Sluice.Caller.Source
  def stop_and_await(%{exit: :running} = c, grace) do
    case c
         |> watch()
         |> stop(grace)
         |> await_exit(Deadline.after_stop(grace)) do
      {:ok, status, c} -> {status, c}
      {:error, _reason, c} -> {nil, c}
    end
  end

  def stop_and_await(c, _grace), do: {exit_status(c), c}

  defp exit_status(%{exit: {:exited, status, _info}}), do: status
  defp exit_status(_c), do: nil

  @impl Sluice.Caller.Source
  def os_pid(c), do: c.os_pid

  @impl Sluice.Caller.Source
  def lost_error(_c, :helper_down), do: Errors.helper_down()
  def lost_error(c, :nodedown), do: Errors.nodedown(c.node)

  # Halts the input and lets the reader go: it closes the pipes (the helper program there
  # stops what is left of the program). Waits for the reader to end, then drops its
  # messages still queued here.
  @impl Sluice.Caller.Source
  def close(c) do
    %{reader: reader, monitor: mon} = c = c |> halt_input() |> watch()
    request(c, :close)

    receive do
      {:DOWN, ^mon, :process, _, _} -> :ok
    after
      @close_wait -> Process.demonitor(mon, [:flush])
    end

    flush(reader)
  end

  defp flush(reader) do
    receive do
      {:sluice_remote, ^reader, _} -> flush(reader)
    after
      0 -> :ok
    end
  end

  # Stops a suspended input Enumerable (its clean-up runs: a Sluice stream stops its
  # program).
  defp halt_input(%{input: :ended} = c), do: c

  defp halt_input(c) do
    Input.halt(c.input)
    %{c | input: :ended}
  end

  defp request(c, request), do: send(c.reader, {:sluice_consumer, request})

  # A fresh monitor of the reader: the `:DOWN` of the previous one may have been taken by
  # a call whose result was dropped (a stream raising keeps its state from before), and a
  # new monitor of a dead reader, or of one on a disconnected node, answers at once.
  defp watch(c) do
    Process.demonitor(c.monitor, [:flush])
    %{c | monitor: Process.monitor(c.reader)}
  end

  ## A `fn collectable -> ... end` input (Sluice.Stdin)

  # It runs to completion here; push/2 sends each element and waits while the input
  # window is full, keeping the output that comes meanwhile (the function cannot be
  # suspended, so that output must be kept until the consumer asks for it).
  defp run_function(c, fun, deadline) do
    c = Sluice.Stdin.run(__MODULE__, c, deadline, fun)
    if c.exit == :running, do: request(c, :input_eof)
    c
  end

  # Sends `data` and returns once the input window has room.
  @impl Sluice.Caller.Source
  def push(key, data) do
    {c, deadline} = Process.get(key) || throw({__MODULE__, :input_done})
    request(c, {:input, data})

    case await_room(%{c | in_flight: c.in_flight + 1}, deadline) do
      {:ok, c} ->
        Process.put(key, {c, deadline})
        :ok

      {:stop, c} ->
        Process.put(key, {c, deadline})
        throw({__MODULE__, :input_done})
    end
  end

  defp await_room(%{in_flight: n} = c, _deadline) when n < @input_window, do: {:ok, c}

  defp await_room(c, deadline) do
    # Output is granted and kept meanwhile, so the program never waits on its stdout.
    c = grant(c, @function_chunk)

    case receive_event(c, deadline) do
      {{:data, _, _} = data, c} -> await_room(keep(c, data), deadline)
      {{:error, _} = error, c} -> {:stop, keep(c, error)}
      {:eof, c} -> await_room(%{c | outputs: :eof}, deadline)
      {:taken, c} -> await_room(c, deadline)
      {{:exit, _, _}, c} -> await_room(c, deadline)
      # The program took no more input, the reader is gone, or the deadline passed.
      {_input_closed_gone_or_timeout, c} -> {:stop, %{c | in_flight: 0}}
    end
  end

  defp keep(c, {:data, source, batch}),
    do: %{c | buffered: Enum.reduce(batch, c.buffered, &:queue.in({source, &1}, &2))}

  defp keep(c, error), do: %{c | buffered: :queue.in(error, c.buffered)}
end
