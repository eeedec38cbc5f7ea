defmodule Sluice.Options.Rules do
  @moduledoc false
  # The rules between options, on options whose values Sluice.Options.Check has checked:
  # a value one option implies for another (stderr on a terminal, stdout with
  # use_stdio: false), and the combinations refused, each an ArgumentError naming the
  # option (a Sluice.OptionError). Every rule between options is here.

  import Sluice.Options.Check, only: [bad!: 3]

  # Where a program's own stdout and stderr may go when its data uses fds 3 and 4.
  @private_outputs [:console, :null, :log]

  @doc """
  Applies the rules to options checked for an entry point: `stderr_given?` is whether the
  caller chose stderr (or the entry has none of its own).
  """
  @spec apply!(Sluice.Options.t(), boolean) :: Sluice.Options.t()
  def apply!(opts, stderr_given?) do
    opts
    |> terminal_stderr(stderr_given?)
    |> stdio!()
    |> data!()
    |> terminal_input!()
  end

  @doc """
  Checks that checked options fit a pipeline: its ends are pipes (no `:pty`, no
  `use_stdio: false`). Raises `ArgumentError` naming the option.
  """
  @spec pipeline!(Sluice.Options.t()) :: :ok
  def pipeline!(opts) do
    if opts.pty != nil, do: bad!(:pty, "nil for a pipeline", opts.pty)

    if opts.use_stdio == false,
      do: bad!(:use_stdio, "true for a pipeline", false)

    :ok
  end

  # On a terminal, stderr is the terminal unless the caller sends it elsewhere (or the
  # entry has no stderr of its own).
  defp terminal_stderr(%{pty: pty} = opts, false) when pty != nil,
    do: %{opts | stderr: :stdout}

  defp terminal_stderr(opts, _given), do: opts

  # Where stdin and stdout go: stdout's default is the data pipe (or the console with
  # use_stdio: false), a terminal needs stdin and stdout piped, and run's input needs
  # stdin piped.
  defp stdio!(%{use_stdio: stdio?, stdout: stdout, stdin: stdin} = opts) do
    cond do
      stdio? and stdout == :log ->
        bad!(:stdout, ":pipe, :null, :console or a file unless use_stdio: false", :log)

      not stdio? and stdout == :pipe ->
        bad!(:stdout, "one of :console, :null, :log or a file with use_stdio: false", :pipe)

      not stdio? and stdin != :pipe ->
        bad!(:stdin, ":pipe with use_stdio: false (the program's stdin is /dev/null)", stdin)

      opts.pty != nil and (stdin != :pipe or stdout not in [nil, :pipe]) ->
        bad!(:pty, "nil when stdin or stdout is redirected (a terminal is both)", opts.pty)

      stdin != :pipe and opts.input != nil ->
        bad!(:input, "nil when stdin is not :pipe", opts.input)

      # nil is the data pipe with stdio.
      not stdio? and stdout == nil ->
        %{opts | stdout: :console}

      true ->
        opts
    end
  end

  # The data's way (fds 3 and 4, a terminal, framing, lines), stderr and the environment.
  defp data!(%{use_stdio: false, pty: pty}) when pty != nil,
    do: bad!(:pty, "nil with use_stdio: false (the data goes through fds 3 and 4)", pty)

  defp data!(%{use_stdio: true, stderr: :log}),
    do: bad!(:stderr, ":console, :null, :stdout or :consume unless use_stdio: false", :log)

  defp data!(%{use_stdio: false, stderr: stderr})
       when stderr not in @private_outputs and not is_tuple(stderr),
       do: bad!(:stderr, "one of :console, :null, :log or a file with use_stdio: false", stderr)

  defp data!(%{lines: true, framing: framing}) when framing != :raw,
    do: bad!(:framing, ":raw with lines: true (or {:line, max} instead of lines:)", framing)

  defp data!(%{clear_env: true, inherit_env: true}),
    do:
      bad!(:inherit_env, "false with clear_env: true (they ask for opposite environments)", true)

  defp data!(opts), do: opts

  # Input that ends needs a terminal with an end of input: run and streams would
  # otherwise wait for the program until their timeout (Sluice.Pty, "Input: lines and
  # end of input").
  defp terminal_input!(%{input: input, pty: %{} = pty} = opts) when input != nil do
    unless Sluice.Pty.end_of_input?(pty) do
      bad!(
        :input,
        "nil with a raw terminal (icanon: 0) or one whose VEOF is disabled: it has no end " <>
          "of input; start the program with Sluice.Process.start_link/2, write to it, and end its " <>
          "input in-band",
        input
      )
    end

    opts
  end

  defp terminal_input!(opts), do: opts
end
