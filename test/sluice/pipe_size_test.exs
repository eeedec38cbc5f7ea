defmodule Sluice.PipeSizeTest do
  @moduledoc """
  Output pipes: 256 KiB by default for a bounded number of running programs (measured ~4x
  the throughput of the kernel's 64 KiB), the kernel's size past that budget, and exactly
  `pipe_size` when given.
  """
  use Sluice.Case, async: false

  # F_GETPIPE_SZ, from the program's side of its stdout.
  @probe ["python3", "-c", "import fcntl; print(fcntl.fcntl(1, 1032))"]

  test "a program's stdout pipe is 256 KiB by default, pipe_size when given" do
    assert Sluice.run!(@probe).stdout == "262144\n"
    assert Sluice.run!(@probe, pipe_size: 65_536).stdout == "65536\n"
    assert Sluice.run!(@probe, pipe_size: 1_048_576).stdout == "1048576\n"
  end

  test "past 64 running programs with roomy pipes, new ones get the kernel's size" do
    holders = for _ <- 1..64, do: elem(Sluice.Process.start_link(["sleep", "30"]), 1)
    assert Sluice.run!(@probe).stdout == "65536\n"
    Enum.each(holders, &Sluice.Process.stop(&1, 0))
    assert eventually(fn -> Sluice.run!(@probe).stdout == "262144\n" end, 3_000)
  end
end
