defmodule Sluice.Caller.Into do
  @moduledoc false
  # `into:` of Sluice.run/2 (and so of Sluice.cmd/3): the program's stdout put into a
  # Collectable chunk by chunk as Sluice.Caller.Run reads it (its function runs in the
  # caller, between reads: a slow collectable slows the program, never the VM's memory),
  # and the captured stderr kept beside it. Without `into:`, or with `into: ""`, the
  # source collects the output itself (the one-copy collectors): this module is not used.
  #
  # `lines/1` wraps a collectable so that it gets whole lines without their "\n", as
  # System.cmd/3's `lines:` gives them (Elixir 1.15+): a line comes whole however long it
  # is, and the last one at EOF even without a newline.

  defstruct [:acc, :fun, stderr: []]

  @type t :: %__MODULE__{acc: term, fun: (term, Collectable.command() -> term), stderr: iodata}

  @doc "Opens the collectable (`Collectable.into/1`), or `nil` when the source collects."
  @spec open(Collectable.t() | nil) :: t | nil
  def open(into) when into in [nil, ""], do: nil

  def open(into) do
    {acc, fun} = Collectable.into(into)
    %__MODULE__{acc: acc, fun: fun}
  end

  @doc "Puts a chunk of `source`: stdout into the collectable, stderr kept."
  @spec put(t, :stdout | :stderr, binary) :: t
  def put(%{acc: acc, fun: fun} = into, :stdout, data),
    do: %{into | acc: fun.(acc, {:cont, data})}

  def put(%{stderr: stderr} = into, :stderr, data), do: %{into | stderr: [stderr | data]}

  @doc "The collectable's final value (its `:done`)."
  @spec done(t) :: term
  def done(%{acc: acc, fun: fun}), do: fun.(acc, :done)

  @doc "Tells the collectable the output ends unfinished (its `:halt`); returns `nil`."
  @spec halt(t) :: nil
  def halt(%{acc: acc, fun: fun}) do
    fun.(acc, :halt)
    nil
  end

  @doc "The captured stderr."
  @spec stderr(t) :: binary
  def stderr(%{stderr: stderr}), do: IO.iodata_to_binary(stderr)

  defmodule Lines do
    @moduledoc false
    # A collectable that gets the lines of the output put into it (see Sluice.Caller.Into).
    defstruct [:into]

    @type t :: %__MODULE__{into: Collectable.t()}

    defimpl Collectable do
      # The lines are whole, as System.cmd/3's are: the buffer is bounded by no maximum.
      @whole 4_611_686_018_427_387_904

      # `nil`: run's own stdout, a binary.
      def into(%{into: into}) do
        {acc, fun} = Collectable.into(into || "")

        {{acc, Sluice.Program.Lines.new(@whole)},
         fn
           {acc, buf}, {:cont, data} ->
             {lines, buf} = Sluice.Program.Lines.split(buf, data)
             {Enum.reduce(lines, acc, &fun.(&2, {:cont, &1})), buf}

           {acc, buf}, :done ->
             acc = Enum.reduce(Sluice.Program.Lines.flush(buf), acc, &fun.(&2, {:cont, &1}))
             fun.(acc, :done)

           {acc, _buf}, :halt ->
             fun.(acc, :halt)
         end}
      end
    end
  end

  @doc "`into` getting whole lines of the output, without their newline."
  @spec lines(Collectable.t()) :: Lines.t()
  def lines(into), do: %Lines{into: into}
end
