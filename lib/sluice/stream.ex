defmodule Sluice.Stream do
  @moduledoc """
  What `Sluice.stream!/2` and `Sluice.stream/2` return: a lazy Enumerable of a program's
  output. Nothing runs until it is enumerated; each enumeration runs the program anew.

  Given as the `:input` of another program (`Sluice.run/2`, `Sluice.stream!/2`), a
  `stream!/2` is not enumerated element by element: both programs are driven together
  from the calling process, which waits on every pipe of the chain at once. Output that is
  ready at the end of the chain is delivered even while the start of the chain is quiet,
  and `timeout:` bounds the whole chain. (This holds for raw chunks: with `lines: true`,
  `stderr: :consume`, `stderr: :capture` or a `:framing` on the upstream, it is enumerated
  like any other input.)
  """

  defstruct [:argv, :opts, :mode]

  @type t :: %__MODULE__{argv: Sluice.command(), opts: map, mode: :raise | :exit_element}

  @doc false
  # Whether another program may drive this one directly as its input (see above; the local
  # Sluice.Caller.Source, Sluice.Caller.Pump, does).
  @spec pipeable?(t) :: boolean
  def pipeable?(%__MODULE__{mode: :raise, opts: opts}),
    do: not opts.lines and opts.framing == :raw and opts.stderr in [:console, :null, :stdout]

  def pipeable?(_stream), do: false

  # Its Enumerable implementation is in Sluice.Caller.OutputStream, which runs the program.
end
