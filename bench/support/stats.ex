defmodule Bench.Stats do
  @moduledoc false
  # Medians, percentiles and ratios of samples.

  def median([]), do: nil

  def median(samples) do
    sorted = Enum.sort(samples)
    n = length(sorted)
    mid = div(n, 2)

    if rem(n, 2) == 1,
      do: Enum.at(sorted, mid),
      else: (Enum.at(sorted, mid - 1) + Enum.at(sorted, mid)) / 2
  end

  @doc "The `p`-th percentile (0..100), nearest rank."
  def percentile([], _p), do: nil

  def percentile(samples, p) do
    sorted = Enum.sort(samples)
    rank = max(ceil(p / 100 * length(sorted)), 1)
    Enum.at(sorted, rank - 1)
  end

  def ratio(_a, b) when b in [nil, 0, 0.0], do: nil
  def ratio(nil, _b), do: nil
  def ratio(a, b), do: a / b
end
