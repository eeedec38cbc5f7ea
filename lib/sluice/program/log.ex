defmodule Sluice.Program.Log do
  @moduledoc false
  # A program's own stdout and stderr sent to Logger line by line, when its data goes
  # through fds 3 and 4 (`stdout: :log`, `stderr: :log`). Nobody asks for these pipes, so
  # they are read as soon as they have data, a few chunks per turn (a flood cannot hold
  # the holder's process), and a partial line is kept only up to @max_line bytes: memory
  # stays bounded whatever the program writes. Lines go to Logger at :info with `os_pid`
  # and `stream` metadata.

  require Logger

  alias Sluice.Program
  alias Sluice.Program.{Lines, Output}

  @chunk 65_536
  @max_line 16_384
  # Chunks read per readiness message before the holder serves anything else.
  @chunks_per_turn 4

  @type t :: %{optional(Program.log_source()) => Lines.t()}

  @doc "The line buffers of the log sources `program` has (none without `:log`)."
  @spec new(Program.t()) :: t
  def new(program) do
    for role <- [:log_stdout, :log_stderr],
        Program.piped?(program, role),
        into: %{},
        do: {role, Lines.new(@max_line)}
  end

  @doc "Reads and logs what every log source holds now, arming those that are empty."
  @spec drain_all(t, Program.t()) :: {t, Program.t()}
  def drain_all(log, program) do
    Enum.reduce(Map.keys(log), {log, program}, fn role, {log, program} ->
      drain(log, program, role)
    end)
  end

  @doc "Reads and logs what `role` holds, up to a few chunks (then it asks to be called again)."
  @spec drain(t, Program.t(), Program.log_source()) :: {t, Program.t()}
  def drain(log, program, role), do: drain(log, program, role, @chunks_per_turn)

  defp drain(log, program, role, 0) do
    # More may be waiting: come back after the holder's other messages.
    send(self(), {:select, Program.fd(program, role), :undefined, :ready_input})
    {log, program}
  end

  defp drain(log, program, role, turns) do
    case Output.read(program, role, @chunk) do
      {:ok, data, program} ->
        {lines, buffer} = Lines.split(log[role], data)
        Enum.each(lines, &line(program, role, &1))
        drain(%{log | role => buffer}, program, role, turns - 1)

      {:wait, program} ->
        {log, program}

      {_eof_or_error, program} ->
        Enum.each(Lines.flush(log[role]), &line(program, role, &1))
        {%{log | role => Lines.new(@max_line)}, program}

      {:error, _reason, program} ->
        {log, program}
    end
  end

  defp line(program, role, text) do
    stream = if role == :log_stdout, do: :stdout, else: :stderr
    Logger.info(text, os_pid: Program.os_pid(program), stream: stream)
  end
end
