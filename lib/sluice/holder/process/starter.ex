defmodule Sluice.Holder.Process.Starter do
  @moduledoc false
  # How a Sluice.Process comes to be: its server started for a spawn spec or an adoption,
  # with every way the start can fail turned into a Sluice.Error.

  alias Sluice.Error
  alias Sluice.Holder.Process.Server
  alias Sluice.Program.{Deadline, Errors}

  @doc "Checks a pid to adopt: never pid 1, the VM or the helper program."
  @spec adoptable!(term) :: pos_integer
  def adoptable!(os_pid) do
    unless is_integer(os_pid) and os_pid > 0 and os_pid < 2 ** 31 do
      Sluice.Options.argument!(:os_pid, "a positive integer", os_pid)
    end

    helper = with {:ok, conn} <- Sluice.Helper.conn(), do: conn.os_pid

    cond do
      os_pid == 1 ->
        Sluice.Options.argument!(:os_pid, "a process other than pid 1 (init)", os_pid)

      os_pid == String.to_integer(System.pid()) ->
        Sluice.Options.argument!(:os_pid, "a process other than the VM itself", os_pid)

      os_pid == helper ->
        Sluice.Options.argument!(:os_pid, "a process other than the helper program", os_pid)

      true ->
        os_pid
    end
  end

  @doc """
  Starts the server of a program owned by `owner` (on this node, or on another one when
  called by Sluice.Holder.Remote). The server bounds the spawn by start_timeout; the margin
  covers its own start.
  """
  @spec start_server(map | {:manage, map}, map, pid) :: {:ok, pid} | {:error, Error.t()}
  def start_server(spec, opts, owner) do
    timeout = Deadline.plus_margin(opts.start_timeout, 5_000)

    case Sluice.Holder.start_server(Server, {spec, owner, opts}, timeout: timeout) do
      {:failed, :timeout} -> {:error, Errors.not_started(nil)}
      {:failed, reason} -> {:error, Errors.start_failed(reason)}
      started_or_error -> started_or_error
    end
  end
end
