defmodule Sluice.Pipes.Terminal do
  @moduledoc false
  # The BEAM's side of a program's pseudo-terminal, held by Sluice.Pipes: one master fd
  # is both the program's stdin and its stdout. What a pipe does by closing, a terminal
  # does with a character: end of input is the terminal's VEOF (^D) at the start of a
  # line, which makes the program's read() return 0. A VEOF after unfinished input only
  # hands that input over, so a second one is sent then. The line position is what was
  # last written: a newline, a carriage return (ICRNL makes it one), ^C or ^D (each of
  # which leaves the line empty) start a new line.
  #
  # Stdin closes in two steps, as the VEOF write may find the terminal full: `:closing`
  # with the bytes still to write (enif_select armed for output), then `:closed`.

  alias Sluice.Native

  defstruct line_start: true, eof: ""

  @type t :: %__MODULE__{line_start: boolean, eof: binary}

  @line_ends [?\n, ?\r, 3, 4]

  @doc "A terminal's state before anything was written."
  @spec new() :: t
  def new, do: %__MODULE__{}

  @doc "Notes what was written (a non-empty part of the caller's data)."
  @spec wrote(t, binary) :: t
  def wrote(t, ""), do: t
  def wrote(t, data), do: %{t | line_start: :binary.last(data) in @line_ends}

  @doc """
  Starts the end of input: the VEOF bytes to write, read from the terminal's current
  modes. Canonical input needs one VEOF at the start of a line (two after a partial
  line); raw input gets one, for the program to interpret (line editors take ^D as end of
  input themselves); a disabled VEOF gives nothing to write.
  """
  @spec begin_eof(t, Native.fd()) :: t
  def begin_eof(t, fd) do
    eof =
      case Native.terminal_eof(fd) do
        {:ok, 0, _canonical} -> ""
        {:ok, veof, true} when not t.line_start -> <<veof, veof>>
        {:ok, veof, _canonical} -> <<veof>>
        # The terminal is gone: there is no one left to tell.
        {:error, _} -> ""
      end

    %{t | eof: eof}
  end

  @doc """
  Writes what is left of the VEOF: `{:done, t}` once written (or when the terminal is
  gone), `{:pending, t}` when the rest waits for a `:ready_output` message.
  """
  @spec flush_eof(t, Native.fd()) :: {:done | :pending, t}
  def flush_eof(%{eof: ""} = t, _fd), do: {:done, %{t | line_start: true}}

  def flush_eof(t, fd) do
    case Native.write(fd, t.eof) do
      {:ok, n} -> flush_eof(%{t | eof: binary_part(t.eof, n, byte_size(t.eof) - n)}, fd)
      {:error, :eagain} -> {:pending, t}
      {:error, _gone} -> {:done, %{t | eof: ""}}
    end
  end
end
