defmodule Sluice.Run do
  @moduledoc false
  # Sluice.run/2: the program, its input and its output, all driven from the calling
  # process through a Sluice.Driver (a Sluice.Pump here, or a reader on another node with
  # `node:`). `timeout` bounds the whole call, spawn included.

  alias Sluice.Program.{Deadline, Errors}
  alias Sluice.{Driver, Error, Options, Result}
  alias Sluice.Options.Spec

  # Bytes per read: as much as a roomy output pipe holds (the NIF allocates only what is
  # there), so collecting takes a quarter of the reads that 64 KiB would.
  @read_max 262_144

  @spec run(Sluice.command(), keyword) :: {:ok, Result.t()} | {:error, Error.t()}
  def run(argv, opts) do
    argv = Options.argv!(argv)
    opts = Options.validate!(opts, :run, "Sluice.run/2")
    deadline = Deadline.at(opts.timeout)

    with {:ok, driver} <- Driver.open(argv, opts, deadline) do
      st = %{opts: opts, deadline: deadline, out: [], err: [], size: 0}

      try do
        collect(driver, st)
      catch
        kind, reason ->
          # The input raised: the program is stopped by the helper once its channel closes.
          Driver.close(driver)
          :erlang.raise(kind, reason, __STACKTRACE__)
      end
    end
  end

  # `idle_timeout` is a deadline renewed at every chunk of output; the wait ends at the
  # nearer of the two.
  defp collect(pump, st) do
    idle = Deadline.at(st.opts.idle_timeout)

    # min/2: any integer deadline is nearer than :infinity.
    case Driver.next(pump, @read_max, min(st.deadline, idle)) do
      {:data, source, data, pump} -> pump |> add_output(st, source, data)
      {:eof, pump} -> finish(pump, st)
      {:error, :timeout, pump} when idle != :infinity and idle < st.deadline -> idle(pump, st)
      {:error, :timeout, pump} -> fail(pump, st, Errors.timed_out(st.opts.timeout))
      {:error, reason, pump} when reason in [:helper_down, :nodedown] -> lost(pump, st, reason)
      {:error, reason, pump} -> fail(pump, st, Errors.data(reason))
    end
  end

  defp add_output(pump, st, source, data) do
    st =
      case source do
        :stdout -> %{st | out: [st.out, data]}
        :stderr -> %{st | err: [st.err, data]}
      end

    st = %{st | size: st.size + byte_size(data)}
    max = st.opts.max_output

    cond do
      max != :infinity and st.size > max ->
        fail(pump, st, Errors.max_output(max))

      # A producer that never pauses never makes a wait time out.
      st.deadline != :infinity and Deadline.passed?(st.deadline) ->
        fail(pump, st, Errors.timed_out(st.opts.timeout))

      true ->
        collect(pump, st)
    end
  end

  defp finish(pump, st) do
    case Driver.await_exit(pump, st.deadline) do
      {:ok, status, pump} ->
        Driver.close(pump)
        {:ok, result(pump, st, status)}

      {:error, :timeout, pump} ->
        fail(pump, st, Errors.timed_out(st.opts.timeout))

      {:error, reason, pump} ->
        lost(pump, st, reason)
    end
  end

  # Stops the program's group (kill_signal, SIGKILL after kill_grace) before returning.
  defp fail(pump, st, error) do
    {status, pump} = Driver.stop_and_await(pump, st.opts.kill_grace)
    Driver.close(pump)
    {:error, %{error | result: result(pump, st, status)}}
  end

  defp lost(pump, st, reason) do
    Driver.close(pump)
    error = Driver.lost_error(pump, reason)
    {:error, %{error | result: result(pump, st, nil)}}
  end

  defp idle(pump, st), do: fail(pump, st, Errors.idle(st.opts.idle_timeout))

  defp result(pump, st, status) do
    Result.with_exit(
      %Result{
        os_pid: Driver.os_pid(pump),
        status: status,
        stdout: if(Spec.stdout_piped?(st.opts), do: IO.iodata_to_binary(st.out)),
        stderr: if(st.opts.stderr == :capture, do: IO.iodata_to_binary(st.err))
      },
      Driver.exit_info(pump)
    )
  end
end
