defmodule Bench.Format do
  @moduledoc false
  # Number formatting for the report.

  def us(nil), do: "-"
  def us(us), do: "#{round1(us)} µs"

  def ms(nil), do: "-"
  def ms(ms), do: "#{round1(ms)} ms"

  def mb(nil), do: "-"
  def mb(bytes), do: "#{round2(bytes / 1_000_000)} MB"

  def kb(nil), do: "-"
  def kb(bytes), do: "#{round1(bytes / 1_000)} KB"

  def mib_s(nil), do: "-"
  def mib_s(bytes_per_s), do: "#{round0(bytes_per_s / 1_048_576)} MiB/s"

  def ratio(nil), do: "-"
  def ratio(r), do: "#{round2(r)}x"

  def count(nil), do: "-"
  def count(n) when is_integer(n), do: Integer.to_string(n)
  def count(n), do: "#{round2(n)}"

  def size(bytes) when bytes >= 1_048_576 and rem(bytes, 1_048_576) == 0,
    do: "#{div(bytes, 1_048_576)} MiB"

  def size(bytes) when bytes >= 1024 and rem(bytes, 1024) == 0, do: "#{div(bytes, 1024)} KiB"
  def size(bytes), do: "#{bytes} B"

  defp round0(x), do: x |> round() |> Integer.to_string()
  defp round1(x), do: :erlang.float_to_binary(x / 1, decimals: 1)
  defp round2(x), do: :erlang.float_to_binary(x / 1, decimals: 2)
end
