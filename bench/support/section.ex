defmodule Bench.Section do
  @moduledoc false
  # The result of one measurement: a table, the targets it checks and notes, rendered by
  # Bench.Report. `rows` are lists of already formatted cells, one per column.

  defstruct [:title, :what, columns: [], rows: [], targets: [], notes: []]
end
