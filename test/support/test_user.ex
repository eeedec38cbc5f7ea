defmodule Sluice.TestUser do
  @moduledoc """
  A real unprivileged user for the tests that attack the trust boundary: created with
  `useradd` (with a home directory of its own), removed with `userdel -r` when the test
  module is done. Needs root; `root?/0` says whether the tests can run.
  """

  import ExUnit.Callbacks, only: [on_exit: 1]

  @doc "Whether this VM runs as root (creating users and changing to them needs it)."
  @spec root?() :: boolean
  def root?, do: match?({"0\n", 0}, System.cmd("id", ["-u"]))

  @doc """
  Creates `name` (removing a leftover of an earlier run first) with a home directory under
  `/tmp`, and removes it, with its home, when the calling test module or test exits.
  Returns its uid, gid and home.
  """
  @spec create(String.t()) :: %{name: String.t(), uid: integer, gid: integer, home: String.t()}
  def create(name) do
    remove(name)
    home = "/tmp/#{name}-home"
    File.rm_rf!(home)

    {_, 0} =
      System.cmd("useradd", ["-m", "-d", home, "-s", "/bin/sh", name], stderr_to_stdout: true)

    on_exit(fn -> remove(name) end)
    %{name: name, uid: id(["-u", name]), gid: id(["-g", name]), home: home}
  end

  @doc "Removes `name` and its home, if it exists."
  @spec remove(String.t()) :: :ok
  def remove(name) do
    # A leftover process of the user would make userdel refuse.
    System.cmd("pkill", ["-KILL", "-u", name], stderr_to_stdout: true)
    System.cmd("userdel", ["-r", "-f", name], stderr_to_stdout: true)
    File.rm_rf("/tmp/#{name}-home")
    :ok
  end

  defp id(args) do
    {out, 0} = System.cmd("id", args)
    out |> String.trim() |> String.to_integer()
  end
end
