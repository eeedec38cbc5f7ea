defmodule Sluice.Pty do
  @moduledoc """
  The `:pty` option: run a program on a pseudo-terminal.

  Accepted by `Sluice.Process.start/2` and `start_link/2`, `Sluice.run/2` and `run!/2`,
  `Sluice.stream!/2` and `stream/2`, and `Sluice.Daemon`:

      {:ok, p} = Sluice.Process.start_link(["python3", "-i"], pty: true)
      {:ok, %{stdout: "40 100\\r\\n"}} = Sluice.run(["stty", "size"], pty: [rows: 40, cols: 100])

  `pty: true` is `pty: []`; `false` (the default) means pipes. The keyword takes:

    * `:rows`, `:cols` - the window size in character cells (default 24 × 80), each
      `1..65535`. Change it later with `Sluice.Process.set_window_size/3`.
    * `:echo` - whether the terminal echoes input (default `false`, so what is read is
      only what the program wrote). Shorthand for the `:echo` mode; give one or the other.
    * `:modes` - a keyword of RFC 4254 (section 8) terminal modes and their values,
      applied in order over the kernel's defaults: flags take `0`/`1` (or a boolean),
      control characters a byte (`255` disables one), speeds bits per second. For
      example `[vintr: 3, icanon: 1, isig: 1, opost: 0, tty_op_ospeed: 38_400]`.
      Change them later with `Sluice.Process.set_terminal_modes/2`.

  The program is a session leader whose controlling terminal is the pty: its stdin and
  stdout are the terminal, and so is its stderr unless `:stderr` sends it elsewhere (on a
  terminal both streams are one: read them with `Sluice.Process.read/3`, or as `run`'s
  `stdout`). Writing `"\\x03"` interrupts the foreground process group when `isig` is
  on (the default), and `Sluice.Process.close_stdin/1` sends the terminal's EOF
  character at the start of a line rather than closing anything.

  With `:user`, the terminal belongs to that user as a login leaves it (owner the user,
  group `tty`, mode 0620; the user's group and 0600 where there is no `tty` group), so
  the program can reopen it by name (`$(tty)`; `screen`, `pinentry` and `ssh` do).

  ## Input: lines and end of input

  What the terminal does with input depends on its modes at the time of each write,
  which Sluice reads from the terminal itself: a program may change them (line editors,
  REPLs and full-screen programs switch the terminal to raw mode while they read).

    * A canonical terminal (`icanon` on, the default) hands input to the program a line
      at a time and holds at most **4,095 bytes of one line** (2,047 counted with
      `parmrk`, which stores a 0xff byte twice): the kernel discards the rest of a longer
      line. Sluice never lets that happen: a line about to pass 4,095
      bytes is handed over first with the terminal's `VEOF` (as `^D` typed after some
      input does), so the program reads it in pieces, as it would from a pipe, and every
      byte arrives (this applies to `input:` of `run` and streams and to
      `Sluice.Process.write/3`). With `VEOF` disabled (`veof: 255`) such a line cannot be
      handed over, and `Sluice.Process.write/3` returns `{:error, :line_too_long}`
      without writing any of its data (`run/2` and streams, whose options may not
      disable `VEOF` with `input:`, fail with `reason: :line_too_long` if the program
      disabled it itself). Input edited by the terminal (an erase character,
      `^U`) within a line over 4,095 bytes may be handed over before the edit.
    * End of input on a canonical terminal is its `VEOF` at the start of a line:
      `Sluice.Process.close_stdin/1`, and the end of `input:` for `run` and streams.
    * A raw terminal (`icanon` off) passes bytes to the program as they come, has no line
      limit, and **has no end of input**: no byte means "end" to every program, and
      closing the terminal would hang it up. Sluice writes nothing then:
      `Sluice.Process.close_stdin/1` returns
      `{:error, %Sluice.Error{reason: :raw_terminal}}` (`:no_eof` when `VEOF` is
      disabled) and stdin stays open, for the caller to tell the program in-band: a
      quit command, or the byte 4 (`^D`) for a line editor, which takes it as end of
      input at an empty prompt. `run/2` and streams refuse `input:` with a terminal the
      options make raw or without `VEOF` (`ArgumentError`), and without `input:` write
      nothing to such a terminal. If the program itself has made its terminal raw by the time their
      input ends, nothing is sent: it must end on its own, or at `:timeout`.

  The mode that counts is the one at the time of the write, and a program that switches
  may switch again before it reads: a REPL's terminal is raw while it reads a line and
  canonical while it runs one, and a `VEOF` sent while it runs does not reach its line
  editor, raw again, as end of input (the switch may flush it, or leave a NUL byte).
  Send a REPL its `"\\x04"` once its prompt shows.

  ## Modes

  Every mode name of the RFC is accepted (lowercase atoms), plus `iutf8` (RFC 8160):

  * control characters: `vintr`, `vquit`, `verase`, `vkill`, `veof`, `veol`, `veol2`,
    `vstart`, `vstop`, `vsusp`, `vdsusp`, `vreprint`, `vwerase`, `vlnext`, `vflush`,
    `vswtch`, `vstatus`, `vdiscard`
  * input flags: `ignpar`, `parmrk`, `inpck`, `istrip`, `inlcr`, `igncr`, `icrnl`, `iuclc`,
    `ixon`, `ixany`, `ixoff`, `imaxbel`, `iutf8`
  * local flags: `isig`, `icanon`, `xcase`, `echo`, `echoe`, `echok`, `echonl`, `noflsh`,
    `tostop`, `iexten`, `echoctl`, `echoke`, `pendin`
  * output flags: `opost`, `olcuc`, `onlcr`, `ocrnl`, `onocr`, `onlret`
  * control flags: `cs7`, `cs8`, `parenb`, `parodd`
  * speeds: `tty_op_ispeed`, `tty_op_ospeed`

  `vdsusp`, `vflush` and `vstatus` have no Linux equivalent: accepted, and ignored. A mode
  the terminal refuses (parity on a pseudo-terminal, a speed Linux does not have) fails
  the start with `{:error, %Sluice.Error{stage: :pty, reason: :einval}}`. With no free
  pseudo-terminal (as many open as the system allows: `sysctl kernel.pty.max`, or the
  devpts mount's `max=`) it fails with reason `:enospc`, the kernel's answer, and on a
  machine without pseudo-terminals at all (no `/dev/ptmx`) with `:enoent`, both at stage
  `:pty`. An unknown name raises `ArgumentError`.
  """

  # RFC 4254 section 8 (and RFC 8160 for iutf8): name => opcode. The opcodes are mapped to
  # termios by native/sluice_protocol/src/modes.rs: in the helper program for a new
  # terminal, in the NIF for a running one (Sluice.Process.set_terminal_modes/2).
  @opcodes [
    vintr: 1,
    vquit: 2,
    verase: 3,
    vkill: 4,
    veof: 5,
    veol: 6,
    veol2: 7,
    vstart: 8,
    vstop: 9,
    vsusp: 10,
    vdsusp: 11,
    vreprint: 12,
    vwerase: 13,
    vlnext: 14,
    vflush: 15,
    vswtch: 16,
    vstatus: 17,
    vdiscard: 18,
    ignpar: 30,
    parmrk: 31,
    inpck: 32,
    istrip: 33,
    inlcr: 34,
    igncr: 35,
    icrnl: 36,
    iuclc: 37,
    ixon: 38,
    ixany: 39,
    ixoff: 40,
    imaxbel: 41,
    iutf8: 42,
    isig: 50,
    icanon: 51,
    xcase: 52,
    echo: 53,
    echoe: 54,
    echok: 55,
    echonl: 56,
    noflsh: 57,
    tostop: 58,
    iexten: 59,
    echoctl: 60,
    echoke: 61,
    pendin: 62,
    opost: 70,
    olcuc: 71,
    onlcr: 72,
    ocrnl: 73,
    onocr: 74,
    onlret: 75,
    cs7: 90,
    cs8: 91,
    parenb: 92,
    parodd: 93,
    tty_op_ispeed: 128,
    tty_op_ospeed: 129
  ]
  @opcode Map.new(@opcodes)

  alias Sluice.OptionError

  @default_rows 24
  @default_cols 80
  @max_dimension 65_535
  @max_value 4_294_967_295

  @typedoc "The `pty` part of a spawn spec (docs/protocol.md), or `nil` for pipes."
  @type spec :: %{rows: pos_integer, cols: pos_integer, modes: [{0..255, non_neg_integer}]}

  @doc "The RFC 4254 mode names and their opcodes."
  @spec opcodes() :: keyword(pos_integer)
  def opcodes, do: @opcodes

  @doc false
  # Checks the value of the :pty option; returns the spec sent to the helper program.
  @spec check!(term) :: spec | nil
  def check!(value) when value in [nil, false], do: nil
  def check!(true), do: check!([])

  def check!(opts) when is_list(opts) do
    unless Keyword.keyword?(opts), do: bad!(:pty, "true, false or a keyword list", opts)

    Enum.each(opts, fn {key, _} ->
      unless key in [:rows, :cols, :echo, :modes] do
        bad!(
          :pty,
          "a keyword of :rows, :cols, :echo and :modes (unknown key #{inspect(key)})",
          opts
        )
      end
    end)

    modes = modes!(Keyword.get(opts, :modes, []), :option)

    echo =
      case {Keyword.fetch(opts, :echo), Keyword.has_key?(modes, :echo)} do
        {{:ok, _}, true} -> bad!(:pty, ":echo or the :echo mode, not both", opts)
        {{:ok, e}, false} when is_boolean(e) -> [echo: if(e, do: 1, else: 0)]
        {{:ok, e}, false} -> bad!(:pty, "a boolean for :echo", e)
        {:error, true} -> []
        {:error, false} -> [echo: 0]
      end

    %{
      rows: size!(:rows, Keyword.get(opts, :rows, @default_rows)),
      cols: size!(:cols, Keyword.get(opts, :cols, @default_cols)),
      modes: Enum.map(echo ++ modes, fn {name, v} -> {Map.fetch!(@opcode, name), v} end)
    }
  end

  def check!(other), do: bad!(:pty, "true, false or a keyword list", other)

  @doc false
  # Whether a terminal made from `spec` has an end of input: canonical (`icanon` on) with
  # a VEOF, as the kernel's defaults are, unless the modes change them (the last value of
  # a mode wins; a control character 0 or 255 is disabled).
  @spec end_of_input?(spec) :: boolean
  def end_of_input?(%{modes: modes}) do
    last = fn name, default ->
      code = Map.fetch!(@opcode, name)
      Enum.reduce(modes, default, fn {c, v}, acc -> if c == code, do: v, else: acc end)
    end

    last.(:icanon, 1) != 0 and last.(:veof, 4) not in [0, 255]
  end

  defguardp dimension?(n) when is_integer(n) and n >= 1 and n <= @max_dimension

  @doc false
  # A window dimension argument of Sluice.Process.set_window_size/3.
  @spec dimension!(atom, term) :: pos_integer
  def dimension!(_name, n) when dimension?(n), do: n

  def dimension!(name, n),
    do: argument!(name, "an integer 1..#{@max_dimension} (character cells)", n)

  defp size!(_key, n) when dimension?(n), do: n

  defp size!(key, n),
    do: bad!(:pty, "an integer 1..#{@max_dimension} for #{inspect(key)}", n)

  @doc false
  # The modes argument of Sluice.Process.set_terminal_modes/2, checked as `pty: [modes:]`
  # is: `{opcode, value}` pairs, in order.
  @spec modes_argument!(term) :: [{0..255, non_neg_integer}]
  def modes_argument!(modes) do
    modes
    |> modes!(:argument)
    |> Enum.map(fn {name, v} -> {Map.fetch!(@opcode, name), v} end)
  end

  @doc false
  # The name of an opcode, for messages.
  @spec mode_name(0..255) :: atom
  def mode_name(opcode) do
    Enum.find_value(@opcodes, opcode, fn {name, code} -> if code == opcode, do: name end)
  end

  # Checked as the `:pty` option's `:modes` (`:option`) or as the argument `modes`.
  defp modes!(modes, as) do
    unless is_list(modes) and Keyword.keyword?(modes) do
      fail!(as, "a keyword list of RFC 4254 terminal modes for :modes", modes)
    end

    Enum.map(modes, fn {name, value} ->
      unless Map.has_key?(@opcode, name) do
        fail!(
          as,
          "RFC 4254 terminal mode names (see Sluice.Pty); unknown mode #{inspect(name)}",
          name
        )
      end

      {name, mode_value!(name, value, as)}
    end)
  end

  defp mode_value!(_name, true, _as), do: 1
  defp mode_value!(_name, false, _as), do: 0
  defp mode_value!(_name, v, _as) when is_integer(v) and v >= 0 and v <= @max_value, do: v

  defp mode_value!(name, v, as),
    do: fail!(as, "a boolean or an integer 0..#{@max_value} for mode #{inspect(name)}", v)

  @spec fail!(:option | :argument, String.t(), term) :: no_return
  defp fail!(:option, expected, got), do: bad!(:pty, expected, got)
  defp fail!(:argument, expected, got), do: argument!(:modes, expected, got)

  # Mistakes as Sluice.Options.Check raises them, without calling it (it calls in here).
  @spec bad!(atom, String.t(), term) :: no_return
  defp bad!(key, expected, got),
    do: OptionError.raise!(kind: :invalid, option: key, expected: expected, value: got)

  @spec argument!(atom, String.t(), term) :: no_return
  defp argument!(name, expected, got),
    do: OptionError.raise!(kind: :argument, option: name, expected: expected, value: got)
end
