defmodule Sluice.Program.Log do
  @moduledoc false
  # A program's own stdout and stderr sent to Logger line by line, when its data goes
  # through fds 3 and 4 (`stdout: :log`, `stderr: :log`). Nobody asks for these pipes, so
  # they are read as soon as they have data, a few chunks per turn (a flood cannot hold
  # the holder's process), and a partial line is kept only up to @max_line bytes: memory
  # stays bounded whatever the program writes. Lines go to Logger at :info with `os_pid`
  # and `stream` metadata.

  require Logger

  alias Sluice.{Lines, Program}
  alias Sluice.Program.Output

  @chunk 65_536
  @max_line 16_384
  # Chunks read per readiness message before the holder serves anything else.
  @chunks_per_turn 4

  @type t :: %{optional(Program.log_source()) => Lines.t()}

  @doc "The line buffers of the log sources `pipes` has (none without `:log`)."
  @spec new(Program.t()) :: t
  def new(pipes) do
    for role <- [:log_stdout, :log_stderr],
        Program.piped?(pipes, role),
        into: %{},
        do: {role, Lines.new(@max_line)}
  end

  @doc "Reads and logs what every log source holds now, arming those that are empty."
  @spec drain_all(t, Program.t()) :: {t, Program.t()}
  def drain_all(log, pipes) do
    Enum.reduce(Map.keys(log), {log, pipes}, fn role, {log, pipes} -> drain(log, pipes, role) end)
  end

  @doc "Reads and logs what `role` holds, up to a few chunks (then it asks to be called again)."
  @spec drain(t, Program.t(), Program.log_source()) :: {t, Program.t()}
  def drain(log, pipes, role), do: drain(log, pipes, role, @chunks_per_turn)

  defp drain(log, pipes, role, 0) do
    # More may be waiting: come back after the holder's other messages.
    send(self(), {:select, Program.fd(pipes, role), :undefined, :ready_input})
    {log, pipes}
  end

  defp drain(log, pipes, role, turns) do
    case Output.read(pipes, role, @chunk) do
      {:ok, data, pipes} ->
        {lines, buffer} = Lines.split(log[role], data)
        Enum.each(lines, &line(pipes, role, &1))
        drain(%{log | role => buffer}, pipes, role, turns - 1)

      {:wait, pipes} ->
        {log, pipes}

      {_eof_or_error, pipes} ->
        Enum.each(Lines.flush(log[role]), &line(pipes, role, &1))
        {%{log | role => Lines.new(@max_line)}, pipes}

      {:error, _reason, pipes} ->
        {log, pipes}
    end
  end

  defp line(pipes, role, text) do
    stream = if role == :log_stdout, do: :stdout, else: :stderr
    Logger.info(text, os_pid: Program.os_pid(pipes), stream: stream)
  end
end
