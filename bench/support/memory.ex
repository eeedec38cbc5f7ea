defmodule Bench.Memory do
  @moduledoc false
  # BEAM memory, sampled with :erlang.memory(:total).

  @interval_ms 5

  # Every section's target for a BEAM whose memory stays flat while a program streams,
  # floods or is not read: peak growth under 2 MB.
  @flat_bytes 2_000_000

  def total, do: :erlang.memory(:total)

  @doc "The peak growth below which the BEAM's memory counts as flat (every section's target)."
  def flat_bytes, do: @flat_bytes

  @doc """
  Runs `fun` while a high-priority process samples the total every few ms. Returns
  `{result, peak_growth_bytes}`: the highest total seen minus the total before `fun`.
  """
  def peak_growth(fun) do
    base = total()
    sampler = spawn_link(fn -> sample(base) end)

    try do
      result = fun.()
      send(sampler, {:stop, self()})
      receive do: ({:peak, peak} -> {result, peak - base})
    after
      Process.unlink(sampler)
      Process.exit(sampler, :kill)
    end
  end

  defp sample(peak) do
    Process.flag(:priority, :high)

    receive do
      {:stop, from} -> send(from, {:peak, max(peak, total())})
    after
      @interval_ms -> sample(max(peak, total()))
    end
  end
end
