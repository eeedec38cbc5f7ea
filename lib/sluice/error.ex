defmodule Sluice.Error do
  @moduledoc """
  A runtime failure of Sluice, returned as `{:error, %Sluice.Error{}}` (or raised by the
  bang functions and streams). A status outside `success_exit_codes` is not one of these
  but `Sluice.ExitError`; programming mistakes raise `ArgumentError` (its fields as a
  `Sluice.OptionError`).

  ## `:reason`

  A short atom:

    * a spawn failure: the errno name of what failed (`:enoent`, `:eacces`, `:enotdir`,
      `:e2big`, `:enoexec`, `:etxtbsy`, `:eloop`, `:enametoolong`, `:emfile`, `:enfile`,
      `:enomem`, `:eagain`, `:eperm`, `:einval` for a value the helper program refused,
      ...; `:eunknown` for an errno it has no name for), or `:nouser` / `:nogroup` for a
      `user:` or `group:` that does not exist (stage `:credentials`); a user outside
      `allowed_users` is `:eperm` at stage `:credentials`;
    * adopting a process (`Sluice.Process.manage/2`, stage `:manage`): `:esrch` (no such
      process), `:eperm` (this node may not signal it), `:ebusy` (Sluice started or
      manages it already), `:einval`;
    * `:timeout` - the program did not start within `:start_timeout`, `run/2` ran past
      `:timeout`, or an exit was not reported in time after a stop
      (`Sluice.Process.stop/2`, a stream's `:exit_timeout`);
    * `:max_output` - `run/2`'s output exceeded `:max_output`;
    * `:idle_timeout` - no output for `:idle_timeout` ms (`run/2` and streams);
    * `:frame_too_large` - a stream's program announced a packet over `:max_frame`;
    * `:not_ready` - a `Sluice.Daemon` did not match `:ready` within `:ready_timeout`;
    * `:raw_terminal`, `:no_eof` - `Sluice.Process.close_stdin/1` on a terminal in raw
      mode, or whose `VEOF` is disabled: it has no end of input (`Sluice.Pty`);
    * `:line_too_long` - `run/2`'s or a stream's input has a line longer than a
      canonical terminal holds, and the program disabled the `VEOF` that would hand it
      over (`Sluice.Pty`);
    * `:helper_down` - the node's helper program died (its programs were killed);
    * `:nodedown` - with `node:`, that node cannot be reached or went away;
    * `:nosluice` - with `node:`, the `:sluice` application does not run on that node;
    * `:start_failed` - the process that was to hold the program could not start;
    * `:eproto` - the helper program answered a spawn with something unexpected
      (stage `:handoff`);
    * an errno name (`:eio`, ...) when reading a program's output failed.

  ## `:stage`

  For spawn failures, where it failed (`native/sluice_protocol/src/stage.rs` is the list):
  `:argv`, `:env`, `:spec` (another option's value), `:chdir` (`:cd`, or the VM's own
  current directory is gone), `:stdin`, `:stdout`, `:stderr` (opening a file they name),
  `:pipe` (a pipe or `/dev/null`; the VM out of fds), `:pty` (no pseudo-terminal, or a
  terminal mode it refused), `:cgroup`, `:fork`, `:credentials` (`user:`, `group:`),
  `:priority` (`nice:`), `:limits` (`rlimits:`, `umask:`; also `:ebadf` when the
  `nofile` limit leaves the program no fd for its own stdio, as with `nofile: 0`),
  `:sandbox` (`sandbox:`: a namespace, mount, capability drop or the seccomp filter
  refused, or a writable path missing), `:setup` (the child's set-up before exec), `:exec`, `:request` (the spawn request itself: refused, or not answered
  within `:start_timeout`), `:handoff` (receiving the program's fds), and `:manage` for
  `Sluice.Process.manage/2`. `nil` for failures that are not a spawn's.

  ## `:result`

  `run/2` returns the partial `Sluice.Result` (the output so far, and the status once the
  program was stopped) with every failure after the program started: `:timeout`,
  `:max_output`, `:idle_timeout`, a read error, and `:helper_down` or `:nodedown` (then
  `status: nil`). Other failures, and those raised by streams, have `result: nil`.

  ## `:message`

  A sentence for people.
  """

  defexception [:reason, :message, :stage, :result]

  @typedoc "Where a spawn failed; see the moduledoc."
  @type stage ::
          :argv
          | :env
          | :spec
          | :chdir
          | :stdin
          | :stdout
          | :stderr
          | :pipe
          | :pty
          | :cgroup
          | :fork
          | :credentials
          | :priority
          | :limits
          | :sandbox
          | :setup
          | :exec
          | :request
          | :handoff
          | :manage

  @type t :: %__MODULE__{
          reason: atom,
          message: String.t(),
          stage: stage | nil,
          result: Sluice.Result.t() | nil
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
