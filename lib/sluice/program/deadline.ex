defmodule Sluice.Program.Deadline do
  @moduledoc false
  # The one clock of the core: a deadline is a point in monotonic milliseconds (or
  # `:infinity`), made from a timeout once, where a call begins, so that every wait of
  # that call (a start, each read, the exit) shares what is left of it instead of
  # starting its timeout again.

  @type t :: integer | :infinity

  # The longest wait the VM's timers take (receive's after, GenServer.call, a shutdown):
  # 2^32 - 1 ms. Sluice.Options.Check refuses longer timeouts with it.
  @max_ms 4_294_967_295

  @doc "The longest timeout in ms the VM's timers take."
  @spec max_ms() :: pos_integer
  def max_ms, do: @max_ms

  @doc """
  A wait of `ms` and `margin` more, the one way Sluice adds a margin of its own to a
  timeout (a caller's wait for a server's answer, a start, a stop, a supervisor's
  shutdown): `:infinity` past the longest wait the timers take (a timer, a
  GenServer.call or a shutdown that long would raise :timeout_value).
  """
  @spec plus_margin(timeout, non_neg_integer) :: timeout
  def plus_margin(:infinity, _margin), do: :infinity
  def plus_margin(ms, margin) when ms + margin > @max_ms, do: :infinity
  def plus_margin(ms, margin), do: ms + margin

  @doc "The deadline `ms` from now."
  @spec at(timeout) :: t
  def at(:infinity), do: :infinity
  def at(ms), do: now() + ms

  @doc """
  The deadline `ms` plus `margin` from now: `:infinity` past the timers' range (see
  `plus_margin/2`), for the waits where Sluice adds time of its own (a
  stop's SIGKILL comes at the grace, its report a little later).
  """
  @spec with_margin(timeout, non_neg_integer) :: t
  def with_margin(ms, margin), do: at(plus_margin(ms, margin))

  # How much longer than its grace a stopped program's exit may take to be reported
  # (SIGKILL comes at the grace; the report follows through the helper program).
  @stop_slack 2_000

  @doc """
  The deadline for the exit status of a program stopped now with `grace` ms: its grace
  and a slack for the report.
  """
  @spec after_stop(non_neg_integer) :: t
  def after_stop(grace), do: with_margin(grace, @stop_slack)

  @doc "Milliseconds left until `deadline`, 0 once it has passed."
  @spec remaining(t) :: timeout
  def remaining(:infinity), do: :infinity
  def remaining(deadline), do: max(deadline - now(), 0)

  @doc "Whether `deadline` has passed."
  @spec passed?(t) :: boolean
  def passed?(deadline), do: remaining(deadline) == 0

  @doc "The clock's time now, in monotonic milliseconds (a program's start, its age)."
  @spec now() :: integer
  def now, do: System.monotonic_time(:millisecond)
end
