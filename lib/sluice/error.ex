defmodule Sluice.Error do
  @moduledoc """
  A runtime failure of Sluice, returned as `{:error, %Sluice.Error{}}` (or raised by the
  bang functions).

  * `:reason` - a short atom: an errno name for spawn failures (`:enoent`, `:eacces`,
    `:enotdir`, `:e2big`, `:emfile`, ...), or `:timeout`, `:max_output`, `:helper_down`,
    `:closed`, `:epipe`.
  * `:message` - a sentence for people.
  * `:stage` - for spawn failures, where it failed: `:exec`, `:chdir`, `:pipe`, `:pty`
    (no pseudo-terminal available, or a terminal mode it refused), `:fork`, `:cgroup`,
    `:handoff`.
  * `:result` - the partial `Sluice.Result` for `:timeout` and `:max_output`.
  """

  defexception [:reason, :message, :stage, :result]

  @type t :: %__MODULE__{
          reason: atom,
          message: String.t(),
          stage: atom | nil,
          result: term
        }

  @doc """
  Builds an error from a reason and a message.

      iex> Sluice.Error.new(:timeout, "timed out").message
      "timed out"
  """
  @spec new(atom, String.t(), keyword) :: t
  def new(reason, message, fields \\ []) do
    struct!(%__MODULE__{reason: reason, message: message}, fields)
  end
end
