# The Sluice demo: the main jobs on real programs, with a short report.
# Run with `bash scripts/demo.sh` (or `mix run examples/demo.exs`).

defmodule Demo do
  alias Sluice.Process, as: P

  def step(title, fun) do
    t0 = System.monotonic_time(:microsecond)
    detail = fun.()
    ms = (System.monotonic_time(:microsecond) - t0) / 1000

    IO.puts(
      String.pad_trailing("  " <> title, 58) <>
        " #{:erlang.float_to_binary(ms, decimals: 1)} ms  #{detail}"
    )
  end

  def alive?(os_pid) do
    case File.read("/proc/#{os_pid}/stat") do
      {:ok, stat} -> not String.contains?(stat, ") Z ")
      _ -> false
    end
  end

  def mib(bytes), do: "#{Float.round(bytes / 1_048_576, 1)} MiB"

  def run do
    IO.puts("Sluice demo (OTP #{System.otp_release()}, Elixir #{System.version()})\n")

    IO.puts("1. Sluice.run: one call, any exit status")

    step("uname -sr", fn ->
      {:ok, r} = Sluice.run(["uname", "-sr"])
      "status #{r.status}: #{String.trim(r.stdout)}"
    end)

    step("sh -c 'echo oops >&2; exit 3'", fn ->
      {:ok, r} = Sluice.run(["sh", "-c", "echo oops >&2; exit 3"])
      "status #{r.status}, stderr #{inspect(r.stderr)}"
    end)

    step("missing program", fn ->
      {:error, e} = Sluice.run(["no-such-program"])
      "#{inspect(e.reason)}: #{e.message}"
    end)

    step("timeout on a shell that ignores SIGTERM (grace 200 ms)", fn ->
      {:error, e} =
        Sluice.run(["sh", "-c", "trap '' TERM; sleep 30"], timeout: 300, kill_grace: 200)

      "#{inspect(e.reason)}, program ended by #{inspect(e.result.status)}"
    end)

    IO.puts("\n2. Streams: lazy, chained, with back-pressure")

    step("64 MiB through gzip -c | gzip -dc, compared", fn ->
      chunk = :crypto.strong_rand_bytes(65_536)
      source = Stream.repeatedly(fn -> chunk end) |> Stream.take(1024)
      expected = Enum.reduce(source, :crypto.hash_init(:sha256), &:crypto.hash_update(&2, &1))
      :erlang.garbage_collect()
      before = :erlang.memory(:total)
      zipped = Sluice.stream!(["gzip", "-c"], input: source)

      {bytes, hash} =
        Sluice.stream!(["gzip", "-dc"], input: zipped)
        |> Enum.reduce({0, :crypto.hash_init(:sha256)}, fn data, {n, hash} ->
          {n + byte_size(data), :crypto.hash_update(hash, data)}
        end)

      growth = :erlang.memory(:total) - before
      same? = :crypto.hash_final(hash) == :crypto.hash_final(expected)
      "#{mib(bytes)}, identical: #{same?}, BEAM memory +#{mib(max(growth, 0))}"
    end)

    step("Stream.take(3) on `yes`, then nothing left running", fn ->
      lines = Sluice.stream!(["yes", "sluice"], lines: true) |> Enum.take(3)
      "#{inspect(lines)}"
    end)

    IO.puts("\n3. Sluice.Process: close stdin alone, back-pressure, cleanup")

    step("sort answers after close_stdin", fn ->
      {:ok, p} = P.start_link(["sort"])
      :ok = P.write(p, "pear\napple\nfig\n")
      :ok = P.close_stdin(p)
      {:ok, out} = P.read(p)
      {:ok, 0} = P.await_exit(p)
      inspect(out)
    end)

    step("`yes` with nobody reading for 1 s", fn ->
      {:ok, p} = P.start_link(["yes"])
      before = :erlang.memory(:total)
      Process.sleep(1_000)
      growth = :erlang.memory(:total) - before
      {:ok, _} = P.stop(p, 1_000)

      "BEAM memory +#{Float.round(max(growth, 0) / 1024, 1)} KiB (the pipe is full, yes is blocked)"
    end)

    step("owner killed: its `sh -c 'sleep & sleep'` group dies", fn ->
      me = self()

      owner =
        spawn(fn ->
          {:ok, p} = P.start_link(["sh", "-c", "sleep 60 & sleep 60"])
          send(me, {:pid, P.os_pid(p)})
          Process.sleep(:infinity)
        end)

      os_pid = receive do: ({:pid, pid} -> pid)
      Process.exit(owner, :kill)
      wait_dead(os_pid, 50)
      "program #{os_pid} alive afterwards: #{alive?(os_pid)}"
    end)

    step("active mode: messages like :gen_tcp", fn ->
      {:ok, p} = P.start_link(["sh", "-c", "echo one; echo two >&2"], stderr: :consume)
      :ok = P.set_active(p, 10)
      msgs = collect([])
      Enum.map_join(msgs, ", ", &inspect/1)
    end)

    IO.puts("\n4. Sluice.Daemon under a supervisor")

    # The daemon exits on purpose here: keep its crash reports out of the demo's report.
    Logger.configure(level: :critical)

    step("daemon restarted after its program exits", fn ->
      {:ok, sup} =
        Supervisor.start_link(
          [
            {Sluice.Daemon,
             argv: ["sh", "-c", "echo started; sleep 0.2; exit 1"], name: DemoDaemon, log: false}
          ],
          strategy: :one_for_one,
          max_restarts: 10
        )

      first = Sluice.Daemon.os_pid(DemoDaemon)
      Process.sleep(500)
      second = Sluice.Daemon.os_pid(DemoDaemon)
      Supervisor.stop(sup)
      "os pids #{first} -> #{second}"
    end)

    Logger.configure(level: :info)
    helper = Sluice.Helper.info()

    left =
      Path.wildcard("/proc/#{helper.os_pid}/task/*/children")
      |> Enum.map(&File.read!/1)
      |> Enum.join()
      |> String.trim()

    IO.puts(
      "\nhelper pid #{helper.os_pid}, cgroup root #{inspect(helper.cgroup_root)}; programs left running: #{if left == "", do: "none", else: left}"
    )
  end

  defp collect(acc) do
    receive do
      {:sluice_exit, _p, status} -> Enum.reverse([{:exit, status} | acc])
      {tag, _p, data} when tag in [:sluice_stdout, :sluice_stderr] -> collect([{tag, data} | acc])
    after
      2_000 -> Enum.reverse(acc)
    end
  end

  defp wait_dead(_os_pid, 0), do: :ok

  defp wait_dead(os_pid, n) do
    if alive?(os_pid),
      do:
        (
          Process.sleep(20)
          wait_dead(os_pid, n - 1)
        ),
      else: :ok
  end
end

Demo.run()
