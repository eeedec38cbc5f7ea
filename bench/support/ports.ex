defmodule Bench.Ports do
  @moduledoc false
  # The BEAM's own way to run a program: Port.open({:spawn_executable, ...}) with
  # :exit_status, the contender every Sluice figure is compared with.

  @doc "Opens `argv` (argv[0] looked up in PATH) as a binary port with :exit_status."
  def open(argv, opts \\ []) do
    [exe | args] = argv
    path = exe(exe)
    Port.open({:spawn_executable, path}, [:binary, :exit_status, args: args] ++ opts)
  end

  @doc "Receives until the exit status; returns `{status, bytes_of_output}`."
  def drain(port, bytes \\ 0) do
    receive do
      {^port, {:data, data}} -> drain(port, bytes + byte_size(data))
      {^port, {:exit_status, status}} -> {status, bytes}
    end
  end

  @doc "Runs `argv` to completion, discarding output; returns the exit status."
  def run(argv) do
    argv |> open() |> drain() |> elem(0)
  end

  @doc """
  Writes `total` bytes into the port in `chunk`-sized commands (each blocks while the port
  is busy), closes it (the queue is flushed first, then stdin is closed) and waits until
  the OS process is gone: a Port cannot close stdin alone and report the exit status.
  """
  def feed(port, chunk, total) do
    {:os_pid, os_pid} = Port.info(port, :os_pid)
    write_chunks(port, chunk, total)
    Port.close(port)
    wait_gone(os_pid)
  end

  defp write_chunks(_port, _chunk, left) when left <= 0, do: :ok

  defp write_chunks(port, chunk, left) do
    data = if left >= byte_size(chunk), do: chunk, else: binary_part(chunk, 0, left)
    true = Port.command(port, data)
    write_chunks(port, chunk, left - byte_size(data))
  end

  defp wait_gone(os_pid) do
    if Bench.OsProcs.alive?(os_pid) do
      Process.sleep(1)
      wait_gone(os_pid)
    else
      :ok
    end
  end

  def exe(name) do
    if String.contains?(name, "/"),
      do: name,
      else: System.find_executable(name) || raise("#{name} not found in PATH")
  end
end
