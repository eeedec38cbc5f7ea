defmodule Sluice.PtyLimitTest do
  @moduledoc """
  Issue 19, finding 16: no free pseudo-terminal. The kernel answers ENOSPC when every
  pseudo-terminal its limit allows is in use; Sluice reports it as it is, `:enospc` at
  stage `:pty`, with a message naming the limit, as `Sluice.Pty` documents (it promised
  `:enoent`/`:eagain`). Tested for real: a separate VM in a mount namespace of its own
  (`unshare -m`), where a fresh devpts instance allows one terminal (`max=1`); the host's
  terminals are untouched.
  """
  use Sluice.Case, async: false

  @moduletag :external_vm
  @moduletag :pty

  test "the last terminal taken: :enospc at stage :pty, naming the limit" do
    code =
      Sluice.ChildVM.start_sluice() <>
        Sluice.ChildVM.reporter() <>
        ~S"""
        {:ok, held} = Sluice.Process.start_link(["sleep", "30"], pty: true)
        report.("second", Sluice.run(["true"], pty: true))
        Sluice.Process.stop(held, 1_000)
        report.("after", Sluice.run(["true"], pty: true))
        """

    namespace =
      "mount -t devpts -o newinstance,max=1,ptmxmode=0666 devpts /dev/pts && " <>
        "mount --bind /dev/pts/ptmx /dev/ptmx && exec \"$@\""

    argv = ["unshare", "-m", "sh", "-c", namespace, "sh"] ++ Sluice.ChildVM.argv(["-e", code])
    {:ok, result} = Sluice.run(argv, stderr: :capture, timeout: 60_000)
    reports = Sluice.ChildVM.reports(result)

    assert {:error, %Sluice.Error{reason: :enospc, stage: :pty, message: message}} =
             reports["second"],
           inspect(result)

    assert message =~ "no free pseudo-terminal"
    assert message =~ "kernel.pty.max"
    # One terminal free again: it works.
    assert {:ok, %Sluice.Result{status: 0}} = reports["after"]
  end
end
