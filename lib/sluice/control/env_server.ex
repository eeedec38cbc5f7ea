defmodule Sluice.Control.EnvServer do
  @moduledoc false
  # Answers "is the VM's environment still the one the helper program inherited?" for
  # every spawn with the default environment.
  #
  # Why a process: `:os.env/0` builds ~30 KB of charlists for a usual environment. Done in
  # each caller, that garbage stayed in every caller's heap (500 concurrent `run`s: 30 KB
  # each); done in a short-lived process per spawn, 500 of them held it at once. Here it
  # is one heap, and one comparison answers every request queued before it was made: a
  # `System.put_env/2` that happened before a caller asked is seen, since the environment
  # is read after the request arrived.

  use GenServer

  @call_timeout 5_000

  @doc "Starts the server, registered under its module name."
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(_opts \\ []), do: GenServer.start_link(__MODULE__, nil, name: __MODULE__)

  @doc """
  `:inherit` or the current environment as `NAME=value` binaries. Falls back to comparing
  in the caller if the server is not there.
  """
  @spec resolve([{charlist, charlist}]) :: :inherit | [binary]
  def resolve(inherited) do
    GenServer.call(__MODULE__, {:resolve, inherited}, @call_timeout)
  catch
    :exit, _ -> compare(inherited)
  end

  @impl true
  def init(nil), do: {:ok, nil}

  @impl true
  def handle_call({:resolve, inherited}, from, state) do
    # Every request already queued was sent before the environment is read below, so
    # whatever System.put_env/2 its sender did first is seen.
    waiting = [from | queued(inherited, [])]
    answer = compare(inherited)
    Enum.each(waiting, &GenServer.reply(&1, answer))
    {:noreply, state}
  end

  # The comparison itself, run here or, without the server, in the caller.
  @spec compare([{charlist, charlist}]) :: :inherit | [binary]
  defp compare(inherited) do
    case :os.env() do
      ^inherited -> :inherit
      raw -> Enum.map(raw, fn {name, value} -> IO.chardata_to_string([name, ?=, value]) end)
    end
  end

  defp queued(inherited, acc) do
    receive do
      {:"$gen_call", from, {:resolve, ^inherited}} -> queued(inherited, [from | acc])
    after
      0 -> acc
    end
  end
end
