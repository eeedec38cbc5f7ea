defmodule Sluice.Ps do
  @moduledoc """
  `Sluice.list/0` as a table, the output of `mix sluice.ps`. From a remote shell on a
  node (`iex --remsh`, `bin/my_app remote`), `IO.puts(Sluice.Ps.table())` prints it.
  """

  @headers ["OS PID", "STARTED (UTC)", "OWNER", "PID", "MANAGED", "CGROUP", "COMMAND"]

  @doc """
  The table of `entries` (default: every program of this node), one row per program,
  oldest first. Registered processes are shown by name, a pipeline as `a | b | c`.

      iex> Sluice.Ps.table([])
      "no programs running\\n"
  """
  @spec table([Sluice.Process.info()]) :: String.t()
  def table(entries \\ Sluice.list())
  def table([]), do: "no programs running\n"

  def table(entries) do
    rows = Enum.map(entries, &row/1)
    widths = Enum.reduce(rows, Enum.map(@headers, &String.length/1), &widen/2)

    [@headers | rows]
    |> Enum.map_join("\n", fn cells ->
      cells
      |> Enum.zip(widths)
      |> Enum.map_join("  ", fn {cell, w} -> String.pad_trailing(cell, w) end)
      |> String.trim_trailing()
    end)
    |> Kernel.<>("\n")
  end

  defp widen(cells, widths) do
    Enum.zip_with(cells, widths, fn cell, w -> max(String.length(cell), w) end)
  end

  defp row(e) do
    [
      Integer.to_string(e.os_pid),
      Calendar.strftime(e.started_at, "%Y-%m-%d %H:%M:%S"),
      name(e.owner),
      name(e.pid),
      if(e.managed, do: "yes", else: "no"),
      e.cgroup || "-",
      command(e)
    ]
  end

  # A pipeline as a shell would show it.
  defp command(%{pipeline: [_ | _] = stages}),
    do: Enum.map_join(stages, " | ", &Enum.join(&1, " "))

  defp command(%{argv: argv}), do: Enum.join(argv, " ")

  defp name(pid) do
    case Process.info(pid, :registered_name) do
      {:registered_name, name} when name != [] -> inspect(name)
      _ -> inspect(pid)
    end
  end
end
