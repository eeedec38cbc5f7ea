defmodule Sluice.Caller.Input do
  @moduledoc false
  # The `:input` of run and streams, enumerated in the calling process: no hidden process,
  # so an input may read the process dictionary, receive the caller's messages, or be a
  # stream that must run in its owner (Repo.stream in a transaction). An Enumerable is
  # suspended between elements (Enumerable.reduce with :suspend) and resumed only when
  # stdin can take more: input has back-pressure too.
  #
  # With `input_in: :process` an Enumerable or a collectable function is enumerated in a
  # process of its own instead (Sluice.Caller.Input.Feeder), which sends its chunks here: the
  # caller still writes them, through the same pump, but never waits inside the input's
  # code (`next/1` answers `{:wait, input}` until a chunk came).

  alias Sluice.Caller.Input.{Element, Feeder}

  @type t ::
          :none
          | {:data, binary}
          | {:unstarted, Enumerable.t()}
          | {:enum, Enumerable.continuation()}
          | {:function, fun}
          | {:process, Feeder.t()}
          | :done

  @typedoc "Where an Enumerable or function input is enumerated (the `:input_in` option)."
  @type input_in :: :caller | :process

  @doc "Checks the shape of an `:input` option."
  @spec check!(term) :: term
  def check!(nil), do: nil
  def check!(input) when is_binary(input) or is_function(input, 1), do: input

  def check!(input) do
    # Streams are arity-2 functions; any other function is a mistake (fn -> ... end).
    enumerable? =
      is_list(input) or (Enumerable.impl_for(input) != nil and not is_function(input)) or
        is_function(input, 2)

    if enumerable? do
      input
    else
      bad!("iodata, an Enumerable or fn collectable -> ... end", input)
    end
  end

  @doc """
  The input source for a checked `:input` option, enumerated where `input_in` says: iodata
  needs no enumeration, so it stays in the caller. (A Sluice stream is enumerated like any
  input here: the local source, Sluice.Caller.Pump, drives a pipeable one itself.)
  """
  @spec new(term, input_in) :: t
  def new(input, :caller), do: new(input)
  def new(input, :process), do: input |> new() |> in_process()

  defp in_process({:unstarted, enumerable}), do: {:process, Feeder.start(enumerable)}
  defp in_process({:function, fun}), do: {:process, Feeder.start(fun)}
  defp in_process(input), do: input

  @doc "The input source for a checked `:input` option, enumerated in the caller."
  @spec new(term) :: t
  def new(nil), do: :none
  def new(input) when is_binary(input), do: {:data, input}
  def new(input) when is_function(input, 1), do: {:function, input}

  def new(input) when is_list(input) do
    if iodata?(input), do: {:data, IO.iodata_to_binary(input)}, else: enum(input)
  end

  def new(input), do: enum(input)

  # Not reduced until the first chunk is wanted: halting a stream that never started must
  # not start it (Stream.resource runs its start function even to halt).
  defp enum(enumerable), do: {:unstarted, enumerable}

  @doc """
  The next chunk: `{:data, binary, rest}`, `{:function, fun}` for a collectable function
  (the caller runs it), `{:wait, input}` when an input enumerated in its own process has
  no chunk here yet (its messages come tagged `tag/1`: give them to `deliver/2`), or
  `:done`.
  """
  @spec next(t) :: {:data, binary, t} | {:function, fun} | {:wait, t} | :done
  def next({:data, data}), do: {:data, data, :done}

  def next({:process, feeder}) do
    case Feeder.next(feeder) do
      {:data, data, feeder} -> {:data, data, {:process, feeder}}
      {:wait, feeder} -> {:wait, {:process, feeder}}
      :done -> :done
    end
  end

  def next({:function, fun}), do: {:function, fun}

  def next({:unstarted, enumerable}) do
    enumerable
    |> Enumerable.reduce({:cont, []}, fn element, acc -> {:suspend, [element | acc]} end)
    |> suspended()
  end

  def next({:enum, cont}), do: cont.({:cont, []}) |> suspended()

  def next(_none_or_done), do: :done

  # The element travels in the accumulator, as in Stream.zip: the last one may come back
  # with {:halted, acc} or {:done, acc} rather than {:suspended, ...} (Stream.take does).
  defp suspended({:suspended, [element], cont}) do
    {:data, Element.chunk!(element), {:enum, cont}}
  rescue
    # The enumerable is still suspended: let it clean up (a Sluice stream stops its program).
    e in ArgumentError ->
      halt({:enum, cont})
      reraise e, __STACKTRACE__
  end

  defp suspended({_done_or_halted, [element]}), do: {:data, Element.chunk!(element), :done}
  defp suspended({_done_or_halted, []}), do: :done

  @doc "Stops a suspended Enumerable early, so its own clean-up runs (a Sluice stream's too)."
  @spec halt(t) :: :ok
  def halt({:enum, cont}) do
    cont.({:halt, []})
    :ok
  end

  def halt({:process, feeder}), do: Feeder.halt(feeder)

  def halt(_input), do: :ok

  @doc """
  The tag of the messages of an input enumerated in its own process (`{:sluice_input,
  tag, _}`, and its `{:DOWN, tag, ...}`), or `nil`.
  """
  @spec tag(t) :: reference | nil
  def tag({:process, feeder}), do: Feeder.tag(feeder)
  def tag(_input), do: nil

  @doc """
  Keeps a message of an input enumerated in its own process that a wait received:
  `{:sluice_input, tag, event}`, or its `:DOWN` as `{:down, reason}`.
  """
  @spec deliver(t, Feeder.event()) :: t
  def deliver({:process, feeder}, event), do: {:process, Feeder.deliver(feeder, event)}

  defp iodata?(list) do
    IO.iodata_length(list)
    true
  rescue
    ArgumentError -> false
  end

  # A bad :input, as Sluice.Options.Check raises mistakes (without calling it: it calls in
  # here).
  @spec bad!(String.t(), term) :: no_return
  defp bad!(expected, got),
    do: Sluice.OptionError.raise!(kind: :invalid, option: :input, expected: expected, value: got)
end
