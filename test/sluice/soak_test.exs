defmodule Sluice.SoakTest do
  @moduledoc """
  Soak: 10,000 sequential runs, then 1,000 concurrent runs (twice). Afterwards the BEAM's
  open fd count is back to its baseline, there are no zombies and no programs left, BEAM
  memory grew by less than 5 MB, and the helper's RSS is stable.
  """
  use Sluice.Case, async: false

  @moduletag :soak
  @moduletag timeout: 300_000

  defp helper_rss_kb do
    "/proc/#{helper_pid()}/status"
    |> File.read!()
    |> then(&Regex.run(~r/VmRSS:\s+(\d+) kB/, &1))
    |> Enum.at(1)
    |> String.to_integer()
  end

  defp beam_memory do
    for pid <- Process.list(), do: :erlang.garbage_collect(pid)
    :erlang.memory(:total)
  end

  defp sequential(n) do
    for i <- 1..n do
      {:ok, %Sluice.Result{status: 0, stdout: out}} = Sluice.run(["echo", "#{i}"])
      ^out = "#{i}\n"
    end
  end

  # n programs at once: each lives long enough (3 s) for all n to have started.
  defp concurrent(n, secs \\ 3) do
    1..n
    |> Task.async_stream(
      fn _ -> Sluice.run(["sh", "-c", "echo $$; sleep #{secs}"], timeout: 60_000) end,
      max_concurrency: n,
      timeout: 120_000
    )
    |> Enum.map(fn {:ok, {:ok, %Sluice.Result{status: 0, stdout: out}}} -> out end)
  end

  test "10,000 sequential and 1,000 concurrent runs leak nothing" do
    # Warm-up: code loading, the helper's allocations, the registry's tables.
    sequential(200)
    concurrent(200, 1)
    fds = beam_fd_count()
    memory = beam_memory()
    rss0 = helper_rss_kb()

    {us, _} = :timer.tc(fn -> sequential(10_000) end)
    IO.puts("\n  soak: 10,000 sequential runs in #{div(us, 1000)} ms")
    rss1 = helper_rss_kb()

    peak = Task.async(fn -> peak_children(6_000) end)
    {us, outs} = :timer.tc(fn -> concurrent(1_000) end)
    IO.puts("  soak: 1,000 concurrent runs in #{div(us, 1000)} ms")
    assert length(Enum.uniq(outs)) == 1_000
    peak = Task.await(peak, 10_000)
    assert peak >= 900, "only #{peak} programs ran at once"
    rss2 = helper_rss_kb()

    concurrent(1_000)
    rss3 = helper_rss_kb()

    assert eventually(fn -> beam_fd_count() == fds end),
           "BEAM fds: #{beam_fd_count()} now, #{fds} before"

    assert zombies() == []
    assert eventually(fn -> children(helper_pid()) == [] end)

    growth = beam_memory() - memory
    assert growth < 5_000_000, "BEAM memory grew by #{growth} bytes"

    IO.puts("  soak: helper RSS #{rss0} kB, #{rss1} kB, #{rss2} kB, #{rss3} kB")
    assert rss1 - rss0 < 1_024, "helper RSS grew from #{rss0} to #{rss1} kB in 10,000 runs"
    assert rss3 - rss2 < 1_024, "helper RSS grew from #{rss2} to #{rss3} kB"
  end

  defp peak_children(ms) do
    deadline = System.monotonic_time(:millisecond) + ms

    Stream.repeatedly(fn -> length(children(helper_pid())) end)
    |> Enum.reduce_while(0, fn n, peak ->
      if System.monotonic_time(:millisecond) > deadline do
        {:halt, max(n, peak)}
      else
        Process.sleep(20)
        {:cont, max(n, peak)}
      end
    end)
  end
end
