defmodule Bench.Interleave do
  @moduledoc false
  # Runs contenders round-robin: repetition 1 of every contender, then repetition 2, ...,
  # starting each round one contender later, so slow drift and noise from other load on the
  # machine spread over every contender instead of hitting one.

  @doc """
  `contenders` is a list of `{name, fun}`; each fun takes no argument and returns one
  sample (a number or a map). Returns `%{name => [sample]}` in repetition order.
  """
  def run(contenders, reps) do
    n = length(contenders)

    samples =
      for rep <- 0..(reps - 1), i <- 0..(n - 1) do
        {name, fun} = Enum.at(contenders, rem(i + rep, n))
        settle()
        {name, fun.()}
      end

    Map.new(contenders, fn {name, _} ->
      {name, for({^name, s} <- samples, do: s)}
    end)
  end

  @doc "Waits until the last programs are gone, then collects garbage everywhere."
  def settle do
    Bench.OsProcs.wait_baseline()
    Enum.each(Process.list(), &:erlang.garbage_collect/1)
    Process.sleep(50)
  end
end
