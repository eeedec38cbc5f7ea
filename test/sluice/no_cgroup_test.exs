defmodule Sluice.NoCgroupTest do
  @moduledoc """
  Rows (a)-(d) of the fault matrix with cgroups forced off (`config :sluice, cgroup:
  false`): the helper is restarted in that mode for this module. Containment is then the
  process group, plus the descendants walked while the program is alive. A double-forked
  daemon is neither, so it survives these rows: the test asserts exactly that, as
  `docs/guarantees.md` states, and then kills it.
  """
  use Sluice.Case, async: false

  alias Sluice.FaultMatrix, as: M

  @grace 500

  setup_all do
    Sluice.Case.restart_helper(false)
    on_exit(fn -> Sluice.Case.restart_helper(:auto) end)
    :ok
  end

  for row <- M.rows(), kind <- M.programs() do
    @tag :temp_dir
    test "without cgroups: #{row} x #{kind}", %{temp_dir: dir} do
      row = unquote(row)
      kind = unquote(kind)
      assert %{cgroup_root: nil} = Sluice.Helper.info()
      cell = M.run_cell(row, kind, dir, @grace)
      M.assert_left(cell.left, M.expected_survivors(row, kind, false), "#{row} x #{kind}")
      M.kill_survivors(cell.procs)
    end
  end
end
