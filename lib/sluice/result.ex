defmodule Sluice.Result do
  @moduledoc """
  The outcome of `Sluice.run/2`: the exit `status` (an exit code or `{:signal, name}`),
  everything the program wrote to `stdout` and `stderr`, and its `os_pid`.

  `stderr` is `nil` unless it was captured (`stderr: :capture`, the default of `Sluice.run/2`);
  `stdout` is `nil` when it was not piped (`stdout: :null`, `:console` or a file). With
  `into:` a collectable, `stdout` is the collectable's final value (`nil` in the partial
  result of a failure, the collectable halted).

  * `core_dumped` - `true` when the program was killed by a signal and dumped a core.
  * `statuses` - for a `Sluice.pipeline/1`, every stage's status in order (like a shell's
    `PIPESTATUS`; `status` is the last one's); `[status]` for a single program.
  * `usage` - what the program cost: `%{source: :cgroup | :rusage, cpu_user_us:,
    cpu_system_us:, max_rss_kb:}`. With cgroups (`source: :cgroup`) the CPU times are
    those of everything that ran in the program's cgroup (its whole tree, from
    `cpu.stat`); without, those of `wait4`'s rusage of the program (of each stage of a
    pipeline), which include the children it waited for. `max_rss_kb` is the largest
    resident set of the program (or a stage, or a child it waited for), from rusage.
    `nil` when the program did not end (a timeout whose stop was not reported).
  """
  defstruct [:status, :os_pid, :statuses, :usage, stdout: "", stderr: nil, core_dumped: false]

  @type usage :: %{
          source: :cgroup | :rusage,
          cpu_user_us: non_neg_integer,
          cpu_system_us: non_neg_integer,
          max_rss_kb: non_neg_integer
        }
  @type t :: %__MODULE__{
          status: Sluice.Process.status() | nil,
          statuses: [Sluice.Process.status()] | nil,
          os_pid: pos_integer | nil,
          stdout: binary | Collectable.t() | nil,
          stderr: binary | nil,
          core_dumped: boolean,
          usage: usage | nil
        }

  @doc false
  # The exit's details the program's pipes hold (Sluice.Control.Protocol), into the result.
  @spec with_exit(t, map | nil) :: t
  def with_exit(%__MODULE__{status: nil} = result, _info), do: result
  def with_exit(result, nil), do: %{result | statuses: [result.status]}

  def with_exit(result, info) do
    %{
      result
      | statuses: info.statuses || [result.status],
        core_dumped: info.core_dumped,
        usage: info.usage
    }
  end
end
