defmodule Sluice.Result do
  @moduledoc """
  The outcome of `Sluice.run/2`: the exit `status` (an exit code or `{:signal, name}`),
  everything the program wrote to `stdout` and `stderr`, and its `os_pid`.

  `stderr` is `nil` unless it was captured (`stderr: :capture`, the default of `Sluice.run/2`);
  `stdout` is `nil` when it was not piped (`stdout: :null`, `:console` or a file).
  """
  defstruct [:status, :os_pid, stdout: "", stderr: nil]

  @type t :: %__MODULE__{
          status: Sluice.Process.status() | nil,
          os_pid: pos_integer | nil,
          stdout: binary | nil,
          stderr: binary | nil
        }
end
