defmodule Sluice.Signal do
  @moduledoc """
  Signal names and numbers (Linux numbering).

  Signals are named by lowercase atoms such as `:sigterm`; any integer from 1 to 64 is
  accepted as well.
  """

  @signals [
    sighup: 1,
    sigint: 2,
    sigquit: 3,
    sigill: 4,
    sigtrap: 5,
    sigabrt: 6,
    sigbus: 7,
    sigfpe: 8,
    sigkill: 9,
    sigusr1: 10,
    sigsegv: 11,
    sigusr2: 12,
    sigpipe: 13,
    sigalrm: 14,
    sigterm: 15,
    sigstkflt: 16,
    sigchld: 17,
    sigcont: 18,
    sigstop: 19,
    sigtstp: 20,
    sigttin: 21,
    sigttou: 22,
    sigurg: 23,
    sigxcpu: 24,
    sigxfsz: 25,
    sigvtalrm: 26,
    sigprof: 27,
    sigwinch: 28,
    sigio: 29,
    sigpwr: 30,
    sigsys: 31
  ]

  @type t :: atom | 1..64

  @doc """
  The number of a signal given by name or number, or `:error`.

      iex> Sluice.Signal.to_number(:sigterm)
      {:ok, 15}
      iex> Sluice.Signal.to_number(:sigfoo)
      :error
  """
  @spec to_number(term) :: {:ok, 1..64} | :error
  def to_number(sig) when is_integer(sig) and sig in 1..64, do: {:ok, sig}

  def to_number(sig) when is_atom(sig) do
    case Keyword.fetch(@signals, sig) do
      {:ok, n} -> {:ok, n}
      :error -> :error
    end
  end

  def to_number(_), do: :error

  @doc """
  The name of a signal number, or the number itself when it has no name (real-time signals).

      iex> Sluice.Signal.name(9)
      :sigkill
  """
  @spec name(pos_integer) :: atom | pos_integer
  for {name, n} <- @signals do
    def name(unquote(n)), do: unquote(name)
  end

  def name(n) when is_integer(n), do: n
end
