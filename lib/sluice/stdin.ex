defmodule Sluice.Stdin do
  @moduledoc """
  A `Collectable` that writes into a program's stdin, with back-pressure: each element is
  written before the next is taken. It is what a `fn collectable -> ... end` given as the
  `:input` of `Sluice.run/2` or `Sluice.stream!/2` receives.

  The function runs in the calling process. While it waits for the program to take its
  input, the program's output is read and kept, so neither side can block the other; with
  a stream, output produced while the function runs is therefore buffered in memory. An
  Enumerable as `:input` has no such buffer, nor has a function with `input_in: :process`:
  it then runs in a process of its own, and each element waits there until the caller
  has taken the ones before.

      iex> Sluice.run!(["cat"], input: fn stdin -> Enum.into(["a", "b"], stdin) end).stdout
      "ab"
  """
  defstruct [:key]

  @type t :: %__MODULE__{key: term}

  @doc false
  # Runs `fun` with a Sluice.Stdin for the Sluice.Caller.Source implementation `driver`
  # (Sluice.Caller.Pump, Sluice.Caller.RemoteConsumer): the source's state and deadline
  # live in the process dictionary under the key while it runs, for its `push/2` callback, which throws
  # `{driver, :input_done}` once stdin is gone. Returns the source as the function left it.
  @spec run(module, state, integer | :infinity, (t -> term)) :: state when state: term
  def run(driver, state, deadline, fun) do
    key = {driver, make_ref()}
    Process.put(key, {state, deadline})

    try do
      fun.(%__MODULE__{key: key})
    catch
      :throw, {^driver, :input_done} ->
        :ok

      kind, reason ->
        Process.delete(key)
        :erlang.raise(kind, reason, __STACKTRACE__)
    end

    {state, _deadline} = Process.delete(key)
    state
  end

  defimpl Collectable do
    # The key names the Sluice.Caller.Source implementation driving the program
    # (Sluice.Caller.Pump, or for a program on another node Sluice.Caller.RemoteConsumer).
    def into(%{key: {driver, _} = key} = stdin) do
      collector = fn
        :ok, {:cont, data} -> driver.push(key, Sluice.Caller.Input.Element.chunk!(data))
        :ok, :done -> stdin
        :ok, :halt -> :ok
      end

      {:ok, collector}
    end
  end
end
