defmodule Sluice do
  @moduledoc """
  Run external OS programs from Elixir, safely and fast.

  Sluice gives four styles, all with back-pressure in both directions and with the
  guarantee that no program outlives its owner:

    * `run/2` - one call, the whole output: `Sluice.run(["git", "status"])`;
    * `stream!/2` and `stream/2` - a lazy Enumerable of output chunks or lines, for
      pipelines (`input` may be another stream);
    * `Sluice.Process` - a process per program, with `read`/`write`/`close_stdin`,
      and active mode (`set_active/2`) for interactive programs;
    * `Sluice.Daemon` - a long-lived program under a supervisor, its output sent to Logger.

  argv is executed directly: no shell is involved unless you run one
  (`["sh", "-c", "..."]`). A program name without a slash is looked up in the `PATH` of the
  program's environment.
  """

  alias Sluice.{Error, ExitError, Input, Reader, Result}
  alias Sluice.Process, as: P

  @run_defaults [
    input: nil,
    timeout: :infinity,
    max_output: :infinity,
    success_exit_codes: [0]
  ]
  @run_stderr [:capture, :stdout, :null, :console]

  @stream_defaults [
    input: nil,
    chunk_size: 65_536,
    exit_timeout: :infinity,
    lines: false,
    success_exit_codes: [0]
  ]
  @stream_stderr [:console, :null, :stdout, :consume, :capture]

  @doc """
  Runs `argv` to completion and collects its output.

  Returns `{:ok, %Sluice.Result{}}` for every exit status (a non-zero exit is a result,
  not an error), or `{:error, %Sluice.Error{}}` when the program could not start, on
  `:timeout`, or when the output exceeds `:max_output`; the last two carry the partial
  result in `error.result`, and the program's process group is dead when they return.

  ## Options

    * `:input` - iodata, an Enumerable of iodata, or `fn collectable -> ... end`; written
      with back-pressure while output is read. Without it stdin is closed at once.
    * `:timeout` - ms or `:infinity` (default).
    * `:stderr` - `:capture` (default, into `result.stderr`), `:stdout` (merged in order),
      `:null` or `:console`.
    * `:max_output` - bytes of stdout + stderr to accept (default `:infinity`).
    * every `Sluice.Process` option (`:cd`, `:env`, `:clear_env`, `:kill_grace`, ...).

  ## Examples

      iex> {:ok, result} = Sluice.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
      iex> {result.status, result.stdout, result.stderr}
      {3, "out\\n", "err\\n"}

      iex> Sluice.run(["tr", "a-z", "A-Z"], input: "sluice") |> elem(1) |> Map.get(:stdout)
      "SLUICE"

      iex> {:error, %Sluice.Error{reason: :timeout}} = Sluice.run(["sleep", "10"], timeout: 100)
  """
  @spec run([String.t()], keyword) :: {:ok, Result.t()} | {:error, Error.t()}
  def run(argv, opts \\ []) do
    {spec, kill, opts} = P.prepare!(argv, opts, "Sluice.run/2", @run_defaults, stderr: :capture)

    check_stderr!(opts.stderr, @run_stderr)
    input = Input.check!(opts.input)
    deadline = deadline(opts.timeout)

    with {:ok, p} <- P.start_prepared(spec, kill) do
      {:ok, lease} = P.lease_output(p)
      writer = Input.start(p, input, self())
      reader = Reader.new(lease)

      st = %{
        p: p,
        opts: opts,
        deadline: deadline,
        capture?: opts.stderr == :capture,
        reader: reader,
        out: [],
        err: [],
        size: 0,
        result: %Result{os_pid: lease.os_pid}
      }

      try do
        collect(st)
      after
        Input.stop(writer)
        Reader.flush(reader)
      end
    end
  end

  @doc """
  Like `run/2`, but returns the result, or raises: `Sluice.ExitError` when the status is
  not in `:success_exit_codes` (default `[0]`), `Sluice.Error` for other failures.

      iex> Sluice.run!(["echo", "hello"]).stdout
      "hello\\n"

      iex> Sluice.run!(["sh", "-c", "exit 1"], success_exit_codes: [0, 1]).status
      1
  """
  @spec run!([String.t()], keyword) :: Result.t()
  def run!(argv, opts \\ []) do
    case run(argv, opts) do
      {:ok, %Result{status: status} = result} ->
        codes = Keyword.get(opts, :success_exit_codes, [0])

        if status in codes,
          do: result,
          else: raise(ExitError.new(argv, status, result.stderr, result))

      {:error, error} ->
        raise error
    end
  end

  defp collect(st) do
    case Reader.next(st.reader, 65_536, st.deadline) do
      {:ok, source, data, reader} -> add_output(%{st | reader: reader}, source, data)
      {:eof, reader} -> finish(%{st | reader: reader})
      {:error, :timeout, _reader} -> fail(st, :timeout, "timed out after #{st.opts.timeout} ms")
      {:error, reason, _reader} -> fail(st, reason, "reading output failed: #{reason}")
    end
  end

  defp add_output(st, source, data) do
    st =
      case source do
        :stdout -> %{st | out: [st.out, data]}
        :stderr -> %{st | err: [st.err, data]}
      end

    st = %{st | size: st.size + byte_size(data)}
    max = st.opts.max_output

    if max != :infinity and st.size > max,
      do: fail(st, :max_output, "output exceeded max_output (#{max} bytes)"),
      else: collect(st)
  end

  defp finish(st) do
    case P.await_exit(st.p, remaining(st.deadline)) do
      {:ok, status} ->
        Input.reraise_failure(st.p)
        # Every output is at EOF and the program exited: nothing to wait for.
        P.release(st.p)
        {:ok, result(st, status)}

      {:error, :timeout} ->
        fail(st, :timeout, "timed out after #{st.opts.timeout} ms")
    end
  end

  # Stops the program's group (kill_signal, SIGKILL after kill_grace) before returning.
  defp fail(st, reason, message) do
    {:ok, status} = P.stop(st.p, st.opts.kill_grace)
    Input.reraise_failure(st.p)
    {:error, Error.new(reason, message, result: result(st, status))}
  end

  defp result(st, status) do
    %{
      st.result
      | status: status,
        stdout: IO.iodata_to_binary(st.out),
        stderr: if(st.capture?, do: IO.iodata_to_binary(st.err))
    }
  end

  @doc """
  A lazy Enumerable of the program's output. Nothing runs until it is enumerated; each
  enumeration runs the program anew, owned by the enumerating process (any process may
  enumerate it).

  Elements are stdout chunks (binaries), or `{:stdout | :stderr, binary}` with
  `stderr: :consume`. When the exit status is not in `:success_exit_codes`, it raises
  `Sluice.ExitError` after the last element.

  Halting early (`Enum.take/2`, `Enum.find/2`, an exception in the consumer) stops the
  program's process group and the input writer and raises nothing of its own.

  ## Options

    * `:input` - an Enumerable (another Sluice stream included) or
      `fn collectable -> ... end`; iodata works too.
    * `:chunk_size` - the most bytes per read (default `65_536`).
    * `:lines` - emit whole lines without their `"\\n"`, of any length; the last partial
      line is flushed at EOF (default `false`).
    * `:stderr` - `:console` (default), `:null`, `:stdout`, `:consume` (emit tagged
      elements), or `:capture` (kept for `Sluice.ExitError`, not emitted).
    * `:exit_timeout` - ms to wait for the exit after EOF before stopping the program
      (default `:infinity`).
    * `:success_exit_codes` - default `[0]`.
    * every `Sluice.Process` option.

  ## Examples

      iex> Sluice.stream!(["seq", "3"], lines: true) |> Enum.to_list()
      ["1", "2", "3"]

      iex> Sluice.stream!(["yes"]) |> Enum.take(1) |> hd() |> binary_part(0, 4)
      "y\\ny\\n"

      iex> numbers = Sluice.stream!(["seq", "1000"])
      iex> Sluice.stream!(["wc", "-l"], input: numbers) |> Enum.join()
      "1000\\n"
  """
  @spec stream!([String.t()], keyword) :: Enumerable.t()
  def stream!(argv, opts \\ []), do: build_stream(argv, opts, :raise, "Sluice.stream!/2")

  @doc """
  Like `stream!/2`, but ends with an `{:exit, status}` element and never raises on an exit
  status.

      iex> Sluice.stream(["sh", "-c", "echo hi; exit 2"]) |> Enum.to_list()
      ["hi\\n", {:exit, 2}]
  """
  @spec stream([String.t()], keyword) :: Enumerable.t()
  def stream(argv, opts \\ []), do: build_stream(argv, opts, :exit_element, "Sluice.stream/2")

  defp build_stream(argv, opts, mode, who) do
    # Validate eagerly, so mistakes raise where the stream is built.
    {spec, kill, opts} = P.prepare!(argv, opts, who, @stream_defaults)
    check_stderr!(opts.stderr, @stream_stderr)
    input = Input.check!(opts.input)
    Sluice.OutputStream.new(argv, spec, kill, input, mode, opts)
  end

  defp check_stderr!(value, allowed) do
    unless value in allowed do
      expected = Enum.map_join(allowed, ", ", &inspect/1)
      Sluice.Options.bad!(:stderr, "one of #{expected}", value)
    end
  end

  defp deadline(:infinity), do: :infinity
  defp deadline(ms), do: System.monotonic_time(:millisecond) + ms

  defp remaining(:infinity), do: :infinity
  defp remaining(deadline), do: max(deadline - System.monotonic_time(:millisecond), 0)
end
