defmodule Sluice.Caller.Pump do
  @moduledoc false
  # The local Sluice.Caller.Source: drives one program on this node from the calling process, for
  # Sluice.run and streams: writes the `:input` into stdin when stdin can take it, and reads
  # whichever output has data, all in one process with enif_select (docs/architecture.md).
  # Nothing is read that nobody asked for: `next/3` reads one chunk.
  #
  # A pipeable Sluice stream given as `:input` is no input to enumerate: its program is
  # opened here as a pump of its own and driven with this one (`{:upstream, stream}`, then
  # `{:piped, up, stream}`; see "An upstream Sluice stream" below).
  #
  # Output that is ready is returned before more input is pulled, but pulling the next
  # input element runs the input's own code: an element that takes long to come (a slow
  # upstream program) delays reading output until it comes. By default the input runs in
  # the caller (its process dictionary, a transaction). With `input_in: :process` the
  # input's code runs in a process of its own (Sluice.Caller.Input.Feeder) and the pump pulls only
  # the chunks it already sent: until one comes, the pump waits for it together with the
  # fds (its messages are one more thing `await_ready` watches).
  #
  # Feeding is bounded per step (`feeding`): an input whose elements stdin takes without
  # ever filling up (empty chunks, for ever) would otherwise keep the pump pulling, never
  # reading output nor the program's exit again. After @pulls_per_step elements the step
  # ends with `feeding: :more`: the pump takes the news already there (output, the exit,
  # without waiting), checks the deadline, and feeds on.

  @behaviour Sluice.Caller.Source

  alias Sluice.{Error, ExitError, Program}
  alias Sluice.Caller.Input
  alias Sluice.Options.Command
  alias Sluice.Program.{Deadline, Errors, Fds, Output, Start}

  defstruct [
    :program,
    :input,
    pending: "",
    buffered: :queue.new(),
    feeding: :idle,
    compacted: false,
    input_error: nil
  ]

  @typedoc """
  Whether the last feed stopped because stdin or the input has to be waited for
  (`:idle`: stdin full, the input at its end, or nothing pulled), or only because the
  step's share of elements was pulled (`:more`: more can be pulled at once).
  """
  @type feeding :: :idle | :more

  @typedoc """
  The input: one enumerated (`Sluice.Caller.Input`), or an upstream Sluice stream, not yet
  started or driven with this pump.
  """
  @type input :: Input.t() | {:upstream, Sluice.Stream.t()} | {:piped, t, Sluice.Stream.t()}

  # Input elements pulled in one step at most.
  @pulls_per_step 64

  @type t :: %__MODULE__{
          program: Program.t(),
          input: input,
          pending: binary,
          buffered: :queue.queue({Program.source(), binary | pos_integer}),
          feeding: feeding,
          compacted: boolean,
          input_error: atom | nil
        }

  @impl Sluice.Caller.Source
  def open(argv, opts, deadline) do
    with {:ok, program} <- Start.open(spawn_spec(argv, opts), deadline) do
      {:ok, new(Output.frame(program, opts), input(opts))}
    end
  end

  # Without input, stdin's pipe is closed from the start (`stdin: :closed`, closed by the
  # helper program): the program reads EOF as when the pump closed it at once, with no fd
  # sent to the BEAM only to be closed (a receive, a close, an fd resource and its owner
  # monitor per program). A terminal is stdin and stdout at once and stays as it is.
  defp spawn_spec(argv, opts) do
    spec = Command.spawn_spec(argv, opts)

    if opts.input == nil and spec.stdin == :pipe and spec.pty == nil,
      do: %{spec | stdin: :closed},
      else: spec
  end

  # The input source of checked options: a pipeable Sluice stream (`Sluice.Stream.pipeable?/1`)
  # is driven with its consumer and never makes it wait, so it stays in the caller whatever
  # `input_in` says; any other input is enumerated where `input_in` says.
  @spec input(Sluice.Options.t()) :: input
  defp input(%{input: %Sluice.Stream{} = stream} = opts) do
    if Sluice.Stream.pipeable?(stream),
      do: {:upstream, stream},
      else: Input.new(stream, opts.input_in)
  end

  defp input(opts), do: Input.new(opts.input, opts.input_in)

  # A pump over a freshly opened program and its input source.
  @spec new(Program.t(), input) :: t
  defp new(program, input) do
    # The program channel is armed (Sluice.Program.Start leaves it so): its news, the
    # helper program's death included, wakes us.
    program = if input == :none, do: Fds.close_stdin(program), else: program
    %__MODULE__{program: program, input: input}
  end

  @doc """
  The next chunk of output, of at most `max` bytes, feeding input meanwhile:
  `{:data, source, binary, pump}`, `{:eof, pump}` once every output is at EOF, or
  `{:error, :timeout | :helper_down | :line_too_long | errno, pump}` (`:line_too_long`:
  a terminal refused a line of the input, see `Sluice.Program.Terminal`).
  """
  @impl Sluice.Caller.Source
  def next(pump, max, deadline) do
    case step(pump, max, deadline) do
      {:blocked, pump} -> wait(pump, max, deadline)
      other -> other
    end
  end

  # One step without waiting: a chunk, EOF, an error, or `{:blocked, pump}` with every fd
  # that could change that armed. An upstream program is driven with it too.
  @spec step(t, pos_integer, Deadline.t()) ::
          {:data, Program.source(), binary | pos_integer, t}
          | {:eof, t}
          | {:blocked, t}
          | {:error, atom, t}
  defp step(pump, max, deadline) do
    case :queue.out(pump.buffered) do
      {{:value, {source, data}}, rest} ->
        {:data, source, data, %{pump | buffered: rest}}

      {:empty, _} ->
        case read_any(pump, max) do
          {:blocked, pump} -> after_reads(pump, max, deadline)
          other -> other
        end
    end
  end

  # Every output would block: feed input, then read again what the feeding may have let
  # the program write. Once stdin is closed (no input left, no terminal's end of input
  # pending) feeding changes nothing, and the reads just tried are not tried again.
  defp after_reads(pump, max, deadline) do
    cond do
      Fds.stdin_in_use?(pump.program) -> pump |> feed(deadline) |> read_after_feed(max)
      outputs?(pump) -> {:blocked, pump}
      true -> {:eof, pump}
    end
  end

  # Output kept while a collectable function's input ran (feeding ran it) is older than
  # what the fds hold now: it comes first, in order. Then input the terminal refused,
  # not dropped quietly: the caller fails with it.
  defp read_after_feed(pump, max) do
    case :queue.out(pump.buffered) do
      {{:value, {source, data}}, rest} ->
        {:data, source, data, %{pump | buffered: rest}}

      {:empty, _} when pump.input_error != nil ->
        {:error, pump.input_error, %{pump | input_error: nil}}

      {:empty, _} ->
        read_fds_after_feed(pump, max)
    end
  end

  defp read_fds_after_feed(pump, max) do
    case read_any(pump, max) do
      {:blocked, pump} -> if outputs?(pump), do: {:blocked, pump}, else: {:eof, pump}
      other -> other
    end
  end

  defp outputs?(pump), do: Output.open_outputs(pump.program) != []

  # One read attempt per open output, in Output's fair turn order.
  defp read_any(pump, max) do
    case Output.next(pump.program, [:stdout, :stderr], max) do
      {:data, source, data, program} -> {:data, source, data, %{pump | program: program}}
      {:error, _source, reason, program} -> {:error, reason, %{pump | program: program}}
      {_blocked_or_eof, program} -> {:blocked, %{pump | program: program}}
    end
  end

  defp wait(pump, max, deadline) do
    pump = compact(pump)

    case await_ready(pump, deadline) do
      {:ok, pump} -> next(pump, max, deadline)
      {:error, reason, pump} -> {:error, reason, pump}
    end
  end

  # At the first wait, a small heap is compacted (Start.compact/0): the garbage of taking
  # the program on would otherwise stay in every waiting caller. Once per program.
  defp compact(%{compacted: true} = pump), do: pump

  defp compact(pump) do
    :ok = Start.compact()
    %{pump | compacted: true}
  end

  # Waits for readiness of one of this program's fds or of an upstream program's (a
  # Sluice stream given as input), or for news on one of their channels. With more input
  # to pull at once, only news already here is taken; the deadline is checked first, as
  # the wait then never runs out.
  defp await_ready(pump, deadline) do
    fds = watched(pump, %{})
    more? = more_input?(pump)

    case Deadline.remaining(deadline) do
      0 ->
        {:error, :timeout, pump}

      left ->
        receive do
          {:select, fd, _, _} when is_map_key(fds, fd) ->
            case Map.fetch!(fds, fd) do
              :data -> {:ok, pump}
              :channel -> control_chain(pump)
            end

          # An input enumerated in its own process sent a chunk, its end, or died.
          {:sluice_input, tag, event} when is_map_key(fds, tag) ->
            {:ok, deliver_input(pump, tag, event)}

          {:DOWN, tag, :process, _, reason} when is_map_key(fds, tag) ->
            {:ok, deliver_input(pump, tag, {:down, reason})}
        after
          if(more?, do: 0, else: left) ->
            if more?, do: {:ok, pump}, else: {:error, :timeout, pump}
        end
    end
  end

  defp more_input?(%{feeding: :more}), do: true
  defp more_input?(%{input: {:piped, up, _stream}}), do: more_input?(up)
  defp more_input?(_pump), do: false

  defp watched(%{program: program} = pump, acc) do
    acc = Map.merge(acc, Program.watched_fds(program))

    case pump.input do
      {:piped, up, _stream} -> watched(up, acc)
      {:process, _feeder} = input -> Map.put(acc, Input.tag(input), :input)
      _ -> acc
    end
  end

  # Gives a message of an input enumerated in its own process to its pump in the chain
  # (the tag is this pump's input's, or one upstream's).
  defp deliver_input(%{input: {:piped, up, stream}} = pump, tag, event),
    do: %{pump | input: {:piped, deliver_input(up, tag, event), stream}}

  defp deliver_input(pump, _tag, event), do: %{pump | input: Input.deliver(pump.input, event)}

  # Reads what every channel of the chain holds: exit statuses, or the helper's death.
  defp control_chain(pump) do
    pump = %{pump | program: Program.control(pump.program)}

    chain =
      case pump.input do
        {:piped, up, stream} ->
          case control_chain(up) do
            {:ok, up} -> {:ok, %{pump | input: {:piped, up, stream}}}
            {:error, reason, up} -> {:error, reason, %{pump | input: {:piped, up, stream}}}
          end

        _ ->
          {:ok, pump}
      end

    case chain do
      {:ok, pump} ->
        if Program.status(pump.program) == :lost,
          do: {:error, :helper_down, pump},
          else: {:ok, pump}

      other ->
        other
    end
  end

  ## Input

  # Writes pending input and pulls more while stdin takes it without blocking, up to
  # @pulls_per_step elements (then `feeding: :more`).
  defp feed(pump, deadline), do: feed(%{pump | feeding: :idle}, deadline, @pulls_per_step)

  defp feed(%{program: program} = pump, deadline, pulls) do
    cond do
      # On a terminal, a pending end-of-input character is written first.
      not Output.open?(program, :stdin) -> %{pump | program: Fds.finish_close_stdin(program)}
      pump.pending != "" -> write_pending(pump, deadline, pulls)
      pulls == 0 -> %{pump | feeding: :more}
      true -> pull(pump, deadline, pulls - 1)
    end
  end

  defp write_pending(pump, deadline, pulls) do
    case Fds.write(pump.program, pump.pending) do
      {:ok, "", program} -> feed(%{pump | pending: "", program: program}, deadline, pulls)
      {:ok, rest, program} -> %{pump | pending: rest, program: program}
      {:error, :line_too_long} -> %{input_done(pump) | input_error: :line_too_long}
      # The program closed its stdin (or exited): feeding ends quietly, as for `head`.
      {:error, _} -> input_done(pump)
    end
  end

  defp pull(%{input: {:upstream, stream}} = pump, deadline, pulls),
    do: pull(%{pump | input: {:piped, open_upstream(stream), stream}}, deadline, pulls)

  defp pull(%{input: {:piped, up, stream}} = pump, deadline, pulls) do
    case step_upstream(up, stream, deadline) do
      {:data, data, up} ->
        feed(%{pump | pending: data, input: {:piped, up, stream}}, deadline, pulls)

      {:blocked, up} ->
        %{pump | input: {:piped, up, stream}}

      :done ->
        %{pump | input: :done, program: Fds.close_stdin(pump.program)}
    end
  end

  defp pull(pump, deadline, pulls) do
    case Input.next(pump.input) do
      {:data, data, input} -> feed(%{pump | pending: data, input: input}, deadline, pulls)
      # Nothing sent yet by an input in its own process: await_ready waits for it.
      {:wait, input} -> %{pump | input: input}
      :done -> %{pump | input: :done, program: Fds.close_stdin(pump.program)}
      {:function, fun} -> pump |> run_function(fun, deadline) |> feed(deadline, pulls)
    end
  end

  defp input_done(pump) do
    halt_input(pump.input)
    %{pump | input: :done, pending: "", program: Fds.close_stdin(pump.program)}
  end

  # A `fn collectable -> ... end` input runs to completion here; push/2 writes each
  # element, reading output meanwhile into `buffered`.
  defp run_function(pump, fun, deadline) do
    pump = Sluice.Stdin.run(__MODULE__, %{pump | input: :done}, deadline, fun)
    %{pump | program: Fds.close_stdin(pump.program)}
  end

  # Writes `data` completely, reading output while stdin is full.
  @impl Sluice.Caller.Source
  def push(key, data) do
    {pump, deadline} = Process.get(key) || throw({__MODULE__, :input_done})

    case push_all(pump, data, deadline) do
      {:ok, pump} ->
        Process.put(key, {pump, deadline})
        :ok

      {:stop, pump} ->
        Process.put(key, {pump, deadline})
        throw({__MODULE__, :input_done})
    end
  end

  # While stdin is full, output is read into `buffered` (the function cannot be suspended),
  # until the deadline: then the function's Enum.into ends and the caller times out.
  defp push_all(pump, data, deadline) do
    case Fds.write(pump.program, data) do
      {:ok, "", program} ->
        {:ok, %{pump | program: program}}

      {:ok, rest, program} ->
        case await_ready(%{pump | program: program}, deadline) do
          {:ok, pump} -> pump |> drain_outputs() |> push_all(rest, deadline)
          {:error, _, pump} -> {:stop, pump}
        end

      {:error, :line_too_long} ->
        {:stop, %{pump | input_error: :line_too_long}}

      {:error, _} ->
        {:stop, pump}
    end
  end

  # Reads everything the outputs hold now into the buffer (the function cannot be
  # suspended, so this output must be kept until the consumer asks for it). Outputs read
  # into collectors are there already: the buffer keeps their counts, in order.
  defp drain_outputs(pump) do
    case read_any(pump, 65_536) do
      {:data, source, data, pump} ->
        drain_outputs(%{pump | buffered: :queue.in({source, data}, pump.buffered)})

      {:blocked, pump} ->
        pump

      {:error, _reason, pump} ->
        pump
    end
  end

  ## Collecting

  # The program's outputs go into collectors it holds: each byte is copied once, from the
  # pipe into the binary `collected/2` returns.
  @impl Sluice.Caller.Source
  def collect(pump), do: %{pump | program: Fds.collect(pump.program)}

  @impl Sluice.Caller.Source
  def collected(pump, source), do: Fds.collected(pump.program, source)

  ## The program's end

  @impl Sluice.Caller.Source
  def await_exit(pump, deadline) do
    case Program.await_exit(pump.program, deadline) do
      {:ok, status, program} -> {:ok, status, %{pump | program: program}}
      {:error, reason, program} -> {:error, reason, %{pump | program: program}}
    end
  end

  @impl Sluice.Caller.Source
  def stop(pump, grace), do: %{pump | program: Program.stop(pump.program, grace)}

  @impl Sluice.Caller.Source
  def stop_and_await(pump, grace) do
    {status, program} = Program.stop_and_await(pump.program, grace)
    {status, %{pump | program: program}}
  end

  @impl Sluice.Caller.Source
  def os_pid(pump), do: Program.os_pid(pump.program)

  @impl Sluice.Caller.Source
  def exit_info(pump), do: Program.exit_info(pump.program)

  @impl Sluice.Caller.Source
  @spec lost_error(t, Sluice.Caller.Source.lost()) :: Error.t()
  def lost_error(_pump, :helper_down), do: Errors.helper_down()
  def lost_error(_pump, :nodedown), do: Errors.nodedown(node())

  # Stops the input (halting a suspended Enumerable, stopping an upstream program) and
  # closes the program's fds.
  @impl Sluice.Caller.Source
  def close(pump) do
    halt_input(pump.input)
    Program.close(pump.program)
  end

  defp halt_input({:piped, up, stream}) do
    _status = stop_upstream(up, stream)
    :ok
  end

  defp halt_input(input), do: Input.halt(input)

  ## An upstream Sluice stream

  # A `Sluice.stream!/2` given as another program's `:input`, driven as part of the
  # consumer's pump rather than enumerated: its output goes into the downstream program's
  # stdin as it comes, while the pump waits on both programs' fds at once, so the
  # downstream's output is never held back by a quiet upstream, and the caller's deadline
  # covers the whole chain. What stream!/2 guarantees still holds: the upstream's exit
  # status is checked against its `:success_exit_codes` (Sluice.ExitError), and it is
  # stopped when the chain ends early.

  # Starts the upstream program (in the calling process, which owns it).
  @spec open_upstream(Sluice.Stream.t()) :: t
  defp open_upstream(stream) do
    spec = spawn_spec(stream.argv, stream.opts)

    case Start.open(spec, Deadline.at(stream.opts.start_timeout)) do
      {:ok, program} -> new(program, input(stream.opts))
      {:error, error} -> raise error
    end
  end

  # One step of the upstream without waiting: `{:data, binary, up}`, `{:blocked, up}`, or
  # `:done` once it ended well (raises Sluice.ExitError or Sluice.Error otherwise, after
  # stopping it).
  @spec step_upstream(t, Sluice.Stream.t(), Deadline.t()) ::
          {:data, binary, t} | {:blocked, t} | :done
  defp step_upstream(up, stream, deadline) do
    case step(up, stream.opts.chunk_size, deadline) do
      {:data, _stdout, data, up} ->
        {:data, data, up}

      {:blocked, up} ->
        {:blocked, up}

      {:eof, up} ->
        finish_upstream(up, stream)

      {:error, :helper_down, up} ->
        fail_upstream(up, stream, Errors.helper_down())

      {:error, reason, up} ->
        fail_upstream(up, stream, Errors.input(reason))
    end
  catch
    kind, reason ->
      _status = stop_upstream(up, stream)
      :erlang.raise(kind, reason, __STACKTRACE__)
  end

  defp finish_upstream(up, stream) do
    # A pipeline's statuses come with its exit, for pipefail.
    {status, statuses} =
      case Program.await_exit(up.program, Deadline.at(stream.opts.exit_timeout)) do
        {:ok, status, program} -> {status, (Program.exit_info(program) || %{})[:statuses]}
        {:error, :timeout, _program} -> {stop_upstream(up, stream), nil}
        {:error, :helper_down, _program} -> fail_upstream(up, stream, Errors.helper_down())
      end

    close(up)

    case ExitError.check(stream.argv, status, statuses, stream.opts) do
      :ok -> :done
      {:error, error} -> raise error
    end
  end

  @spec fail_upstream(t, Sluice.Stream.t(), Error.t()) :: no_return
  defp fail_upstream(up, stream, error) do
    _status = stop_upstream(up, stream)
    raise error
  end

  # Stops the upstream (kill_signal, SIGKILL after kill_grace) and closes it.
  @spec stop_upstream(t, Sluice.Stream.t()) :: Program.status() | nil
  defp stop_upstream(up, stream) do
    status =
      if Program.running?(up.program),
        do: up.program |> Program.stop_and_await(stream.opts.kill_grace) |> elem(0)

    close(up)
    status
  end
end
