defmodule Sluice.FaultMatrixTest do
  @moduledoc """
  Rows (a)-(d) of the fault matrix, in this VM, with cgroups as configured (`:auto`):
  every program (column) must be gone, dead and reaped, within `kill_grace` + 1 s of the
  fault. Rows (e)-(g) are in `fault_matrix_vm_test.exs`; the same rows without cgroups in
  `no_cgroup_test.exs`. See `docs/guarantees.md`.
  """
  use Sluice.Case, async: false

  alias Sluice.FaultMatrix, as: M
  alias Sluice.Process, as: P

  @grace 500

  setup_all do
    %{cgroups?: Sluice.Helper.info().cgroup_root != nil}
  end

  for row <- M.rows(), kind <- M.programs() do
    @tag :temp_dir
    test "#{row} x #{kind}", %{temp_dir: dir, cgroups?: cgroups?} do
      row = unquote(row)
      kind = unquote(kind)
      cell = M.run_cell(row, kind, dir, @grace)
      expected = M.expected_survivors(row, kind, cgroups?)
      M.assert_left(cell.left, expected, "#{row} x #{kind}")
      M.kill_survivors(cell.procs)

      if kind == :ignore_term and row in [:stop, :run_timeout] do
        # SIGTERM is ignored: only the SIGKILL after the grace ends it.
        assert cell.status == {:signal, :sigkill}
      end
    end
  end

  test "with cgroups available, each program runs in its own cgroup under the Sluice root" do
    case Sluice.Helper.info() do
      %{cgroup_root: nil} ->
        :ok

      %{cgroup_root: root, os_pid: helper} ->
        {:ok, p} = P.start_link(["sleep", "30"])
        [_, path] = Regex.run(~r/^0::(.*)$/m, File.read!("/proc/#{P.os_pid(p)}/cgroup"))
        # <root>/h<helper pid>/<one cgroup per program>
        assert Path.basename(Path.dirname(path)) == "h#{helper}"
        assert String.ends_with?(root, path |> Path.dirname() |> Path.dirname())
        P.stop(p, 0)
    end
  end

  describe "kill escalation" do
    @tag :temp_dir
    test "a program that ignores SIGTERM dies by SIGKILL after kill_grace, not before",
         %{temp_dir: dir} do
      pidfile = M.pidfile(dir, :ignore_term)
      {:ok, p} = P.start(M.argv(:ignore_term, pidfile), kill_grace: 1_000, stderr: :null)
      procs = M.await_ready(:ignore_term, pidfile, helper_pid())
      t = M.now()
      Process.exit(p, :kill)
      Process.sleep(800)
      assert Enum.all?(procs, &(M.status(&1) == :alive)), "killed before the grace"
      assert M.left_at(procs, t + 1_000 + 500) == []
    end

    @tag :temp_dir
    test "the default kill_grace is 5 s", %{temp_dir: dir} do
      pidfile = M.pidfile(dir, :ignore_term)
      {:ok, p} = P.start(M.argv(:ignore_term, pidfile), stderr: :null)
      procs = M.await_ready(:ignore_term, pidfile, helper_pid())
      t = M.now()
      Process.exit(p, :kill)
      Process.sleep(4_700)
      assert Enum.all?(procs, &(M.status(&1) == :alive)), "killed before the default grace"
      assert M.left_at(procs, t + 5_000 + 1_000) == []
    end

    test "kill_signal chooses the first signal" do
      {:ok, p} = P.start(["sleep", "30"], kill_signal: :sigint)
      assert {:ok, {:signal, :sigint}} = P.stop(p, 1_000)

      assert {:error, %Sluice.Error{reason: :timeout, result: %{status: {:signal, :sighup}}}} =
               Sluice.run(["sleep", "30"], timeout: 100, kill_signal: :sighup)
    end

    test "a program that honours SIGTERM ends at once, long before the grace" do
      {:ok, p} = P.start(["sleep", "30"], kill_grace: 10_000)
      t = M.now()
      assert {:ok, {:signal, :sigterm}} = P.stop(p, 10_000)
      assert M.now() - t < 1_000
    end
  end
end
