defmodule Sluice.Case do
  @moduledoc """
  The case template of Sluice's tests: after every test the helper must have no children
  left (no program, no orphan) and there must be no zombies.
  """
  use ExUnit.CaseTemplate

  import ExUnit.Assertions

  using do
    quote do
      import Sluice.OsProbe
    end
  end

  setup do
    await_helper()
    fds = beam_fds()

    on_exit(fn ->
      assert_nothing_left()
      # Every fd a test's programs used is closed again (pipes, channels).
      back = Sluice.OsProbe.eventually(fn -> beam_fds() <= fds end, 2_000)
      assert back, "BEAM fds leaked: #{fds} before, #{beam_fds()} after"
    end)

    :ok
  end

  # `@tag :temp_dir`: a fresh directory under the system's temp dir as `temp_dir`, removed
  # after the test. (ExUnit's own `:tmp_dir` writes under the project's tmp/, and what it
  # leaves there could end up in a commit.)
  setup context do
    if context[:temp_dir] do
      dir = Path.join(System.tmp_dir!(), "sluice-test-#{System.unique_integer([:positive])}")
      File.mkdir_p!(dir)
      on_exit(fn -> File.rm_rf!(dir) end)
      %{temp_dir: dir}
    else
      :ok
    end
  end

  @doc "Waits until the helper program runs (a test before may have killed it)."
  @spec await_helper() :: :ok
  def await_helper do
    up = Sluice.OsProbe.eventually(fn -> match?({:ok, _}, Sluice.Helper.conn()) end, 10_000)
    assert up, "the helper program did not come back"
    :ok
  end

  @doc """
  Restarts the helper program with `config :sluice, cgroup: mode` (for a module that runs
  without cgroups, then with them again) and waits until the new one runs.
  """
  @spec restart_helper(boolean | :auto) :: :ok
  def restart_helper(mode) do
    Application.put_env(:sluice, :cgroup, mode)
    old = Process.whereis(Sluice.Helper)
    GenServer.stop(Sluice.Helper)

    assert Sluice.OsProbe.eventually(fn ->
             pid = Process.whereis(Sluice.Helper)
             pid != nil and pid != old
           end)

    if mode == false, do: assert(%{cgroup_root: nil} = Sluice.Helper.info())
    :ok
  end

  @doc "How many fds the BEAM has open."
  @spec beam_fds() :: non_neg_integer
  def beam_fds, do: length(File.ls!("/proc/self/fd"))

  @doc "Asserts that the helper has no children and there are no zombies (waiting briefly)."
  @spec assert_nothing_left(non_neg_integer) :: :ok
  def assert_nothing_left(ms \\ 7_000) do
    helper = Sluice.OsProbe.helper_pid()
    left = Sluice.OsProbe.eventually(fn -> Sluice.OsProbe.children(helper) == [] end, ms)
    assert left, "processes left behind: #{inspect(Sluice.OsProbe.descendants(helper))}"
    zombies = Sluice.OsProbe.eventually(fn -> Sluice.OsProbe.zombies() == [] end, 1_000)
    assert zombies, "zombies left behind: #{inspect(Sluice.OsProbe.zombies())}"
    :ok
  end
end
