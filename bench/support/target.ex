defmodule Bench.Target do
  @moduledoc false
  # A performance target of the issue, checked against a measured value.

  defstruct [:name, :value, :shown, :op, :limit, :limit_shown, :met]

  @doc """
  `value op limit`, e.g. `check("Spawn vs Port", 0.7, :<=, 0.8, &Bench.Format.ratio/1)`.
  The limit may be another measured value (nil when it is missing: not met).
  """
  def check(name, value, op, limit, format) do
    met =
      case {value, op} do
        {nil, _} -> false
        {_, _} when limit == nil -> false
        {v, :<=} -> v <= limit
        {v, :<} -> v < limit
        {v, :>=} -> v >= limit
        {v, :==} -> v == limit
      end

    %__MODULE__{
      name: name,
      value: value,
      shown: format.(value),
      op: op,
      limit: limit,
      limit_shown: format.(limit),
      met: met
    }
  end
end
