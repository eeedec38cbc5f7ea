defmodule Sluice.PtyUserTest do
  @moduledoc """
  Issue 19, finding 15: with `pty:` and `user:`, the terminal belongs to that user, as a
  login leaves it (owner the user, group `tty` where there is one, mode 0620), so the
  program can reopen its own terminal (`screen`, `pinentry`, `ssh`'s password prompt do).
  Tested as the user would: a real unprivileged user, created for this module.
  """
  use Sluice.Case, async: false

  @moduletag :pty

  setup_all do
    unless Sluice.TestUser.root?(), do: raise("these tests create a user: they need root")
    %{user: Sluice.TestUser.create("sl19host")}
  end

  test "the program reopens its own terminal by name and as /dev/tty", %{user: user} do
    script = """
    t=$(tty) || exit 9
    stat -c 'owner=%U group=%G mode=%a' "$t"
    echo by-name > "$t" && echo reopened-by-name
    echo by-dev-tty > /dev/tty && echo reopened-dev-tty
    id -un
    """

    assert {:ok, %Sluice.Result{status: 0, stdout: out}} =
             Sluice.run(["sh", "-c", script], user: user.name, pty: true, cd: user.home)

    group = if tty_group?(), do: "tty", else: user.name
    mode = if tty_group?(), do: "620", else: "600"
    assert out =~ "owner=#{user.name} group=#{group} mode=#{mode}"
    assert out =~ "by-name" and out =~ "reopened-by-name"
    assert out =~ "by-dev-tty" and out =~ "reopened-dev-tty"
    assert out =~ "#{user.name}\r\n"
  end

  test "without user: the terminal is left as the kernel made it" do
    assert {:ok, %Sluice.Result{status: 0, stdout: out}} =
             Sluice.run(["sh", "-c", "stat -c 'owner=%U' \"$(tty)\""], pty: true)

    assert out =~ "owner=root"
  end

  defp tty_group?, do: match?({_, 0}, System.cmd("getent", ["group", "tty"]))
end
