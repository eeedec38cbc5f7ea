defmodule Sluice.Program.Errors do
  @moduledoc false
  # Every Sluice.Error the core and its callers return, built here and only here: each
  # reason's words are written once, whichever module meets the failure (the same start
  # timeout from the spawn request and from a server's start, the same lost helper
  # program from a start, a read, a stop or a stats request).

  alias Sluice.Error

  ## The helper program and the VM

  @doc "The helper program is not running (it died, or the application stopped)."
  @spec helper_down() :: Error.t()
  def helper_down, do: Error.new(:helper_down, "the Sluice helper program is not running")

  @doc """
  No helper program to ask for a spawn: it is down, or the `:sluice` application was
  never started (no `Sluice.Supervisor`), which the message then says, with the fix.
  """
  @spec no_helper() :: Error.t()
  def no_helper do
    if Process.whereis(Sluice.Supervisor) do
      helper_down()
    else
      Error.new(
        :helper_down,
        "the :sluice application is not started, so its helper program does not run (a " <>
          "Mix task, `mix run --no-start` or a script starts no application by itself): " <>
          "call Application.ensure_all_started(:sluice) first"
      )
    end
  end

  @doc "A program lost as it started, on the node that ran it."
  @spec lost_at_start() :: Error.t()
  def lost_at_start, do: Error.new(:helper_down, "the program was lost as it started")

  @doc "The VM is out of file descriptors."
  @spec emfile() :: Error.t()
  def emfile do
    Error.new(:emfile, "the VM ran out of file descriptors (EMFILE): raise `ulimit -n`",
      stage: :pipe
    )
  end

  ## Start

  @doc "The helper program's socket stayed full until the start's deadline."
  @spec request_not_taken() :: Error.t()
  def request_not_taken,
    do: Error.new(:timeout, "the helper program did not take the spawn request")

  @doc "The spawn request could not be sent."
  @spec request_failed(atom) :: Error.t()
  def request_failed(reason),
    do: Error.new(reason, "cannot send the spawn request: #{reason}", stage: :request)

  @doc "The program did not start before the deadline; `stage`, when the request was sent."
  @spec not_started(atom | nil) :: Error.t()
  def not_started(nil), do: Error.new(:timeout, "the program did not start in time")

  def not_started(stage),
    do: Error.new(:timeout, "the program did not start in time", stage: stage)

  @doc "The spawn reply could not be read."
  @spec handoff_lost(atom) :: Error.t()
  def handoff_lost(reason),
    do: Error.new(reason, "lost the spawn reply: #{reason}", stage: :handoff)

  @doc "The helper program could not read the request at all."
  @spec refused(String.t()) :: Error.t()
  def refused(message),
    do: Error.new(:einval, "the helper program refused the request: #{message}", stage: :request)

  @doc "A reply that is not the start's."
  @spec unexpected_reply(term) :: Error.t()
  def unexpected_reply(other),
    do: Error.new(:eproto, "unexpected spawn reply: #{inspect(other)}", stage: :handoff)

  @doc "A holder's start failed for a reason of its own (not a Sluice.Error)."
  @spec start_failed(term) :: Error.t()
  def start_failed(reason), do: Error.new(:start_failed, "could not start: #{inspect(reason)}")

  ## Data

  @doc """
  A terminal without an end of input: raw now (`:raw_terminal`), or its VEOF disabled
  (`:no_eof`).
  """
  @spec no_eof(:raw_terminal | :no_eof) :: Error.t()
  def no_eof(:raw_terminal) do
    Error.new(
      :raw_terminal,
      "the terminal is in raw mode (icanon off): it has no end of input, so nothing was " <>
        "written and stdin stays open; tell the program in-band (a line editor such as " <>
        "a REPL's takes \"\\x04\", ^D, on an empty line as end of input)"
    )
  end

  def no_eof(:no_eof) do
    Error.new(
      :no_eof,
      "the terminal's end-of-file character (VEOF) is disabled: it has no end of input, " <>
        "so nothing was written and stdin stays open; tell the program in-band"
    )
  end

  @doc """
  A terminal mode `Sluice.Process.set_terminal_modes/2` could not set: Linux has no place
  for its value (`:unsupported`: nothing was set), or the terminal did not take it
  (`:rejected`: the other modes were set).
  """
  @spec terminal_mode(:unsupported | :rejected, atom, non_neg_integer) :: Error.t()
  def terminal_mode(:unsupported, name, value),
    do: Error.new(:einval, "terminal mode #{name} = #{value} is not supported; nothing was set")

  def terminal_mode(:rejected, name, value) do
    Error.new(
      :einval,
      "the terminal rejected mode #{name} = #{value}; the other modes given were set"
    )
  end

  @doc "The error of a failed read of the program's output, or of its input refused."
  @spec data(atom) :: Error.t()
  def data(:line_too_long) do
    Error.new(
      :line_too_long,
      "a line of input is longer than the terminal holds (4,095 bytes) and the terminal's " <>
        "VEOF, which would hand it over in pieces, is disabled"
    )
  end

  def data(reason), do: Error.new(reason, "reading output failed: #{reason}")

  @doc "Reading a stream given as input failed."
  @spec input(atom) :: Error.t()
  def input(reason), do: Error.new(reason, "reading input failed: #{reason}")

  @doc "A `run` past its `timeout` of `ms`."
  @spec timed_out(timeout) :: Error.t()
  def timed_out(ms), do: Error.new(:timeout, "timed out after #{ms} ms")

  @doc "A `run` whose output exceeded `max_output` (`max` bytes)."
  @spec max_output(non_neg_integer) :: Error.t()
  def max_output(max), do: Error.new(:max_output, "output exceeded max_output (#{max} bytes)")

  @doc "No output for `ms` (`idle_timeout`)."
  @spec idle(timeout) :: Error.t()
  def idle(ms), do: Error.new(:idle_timeout, "no output for #{ms} ms (idle_timeout)")

  ## Exit

  @doc "A stopped program's exit was not reported in time (a server's stop request)."
  @spec exit_not_reported() :: Error.t()
  def exit_not_reported,
    do: Error.new(:timeout, "the program's exit was not reported in time")

  @doc "A stream's program's exit was not reported after it was stopped."
  @spec exit_not_reported_after_stop() :: Error.t()
  def exit_not_reported_after_stop,
    do: Error.new(:timeout, "the program's exit was not reported after it was stopped")

  @doc "A program's server did not answer a call in time."
  @spec no_answer() :: Error.t()
  def no_answer, do: Error.new(:timeout, "the program's server did not answer")

  @doc """
  A daemon that did not become ready: no line matched `:ready` within `ms`
  (`{:no_match, ms}`), or the program exited first (`{:exited, status}`).
  """
  @spec not_ready({:no_match, timeout} | {:exited, term}) :: Error.t()
  def not_ready({:no_match, ms}),
    do:
      Error.new(
        :not_ready,
        "no line of output matched :ready within #{ms} ms; " <> buffering()
      )

  def not_ready({:exited, status}),
    do:
      Error.new(
        :not_ready,
        "the program exited with status #{inspect(status)} before it was ready"
      )

  @doc """
  The sentence about output buffering, for the failures it most often explains (a
  daemon never ready, a worker's call timed out).
  """
  @spec buffering() :: String.t()
  def buffering do
    "a program whose output is a pipe (not a terminal) often keeps what it writes in a " <>
      "buffer until the buffer fills or it exits: make it flush each line " <>
      "(python3 -u, stdbuf -oL) or run it with pty: true"
  end

  ## Other nodes

  @doc "A node that cannot be reached or went away."
  @spec nodedown(node) :: Error.t()
  def nodedown(node), do: Error.new(:nodedown, "the node #{node} is not reachable")

  @doc "A node that distribution failed to reach for `reason`."
  @spec unreachable(node, term) :: Error.t()
  def unreachable(node, reason),
    do: Error.new(:nodedown, "cannot reach #{node}: #{inspect(reason)}")

  @doc "A node without Sluice's code or application."
  @spec nosluice(node) :: Error.t()
  def nosluice(node),
    do: Error.new(:nosluice, "the :sluice application does not run on #{node}")

  @doc "A node that did not start the program in time."
  @spec remote_not_started(node) :: Error.t()
  def remote_not_started(node),
    do: Error.new(:timeout, "#{node} did not start the program in time")

  @doc "A node that could not start the program (`node` nil: the error was met there)."
  @spec remote_start_failed(node | nil, term) :: Error.t()
  def remote_start_failed(nil, reason), do: Error.new(:start_failed, "#{inspect(reason)}")

  def remote_start_failed(node, reason),
    do: Error.new(:start_failed, "#{node} could not start it: #{inspect(reason)}")
end
