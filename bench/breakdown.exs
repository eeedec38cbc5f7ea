# Where one spawn's time goes: the milestones of `Sluice.run(["/bin/true"])`, of
# `Port.open({:spawn_executable, "/bin/true"}, [:binary, :exit_status])` and of a native
# posix_spawn loop (`sluice_bench spawn N std`), as medians over N sequential spawns.
#
#     MIX_ENV=prod mix run bench/breakdown.exs [--n 200] [--gap MS] [--out PATH]
#
# `--gap MS` pauses MS ms (untimed) before each spawn of the BEAM contenders, as an
# application that spawns now and then does: costs that only show after an idle spell
# (the kernel's per-cpu locks, caches, CPU wake-ups) land in the figures.
#
# Needs root and `perf` (linux-perf): the OS milestones (clone, exec, exit, reaped, the
# spawner reading the request) are kernel tracepoints recorded system-wide with
# `perf record -k CLOCK_MONOTONIC`; the BEAM milestones are Erlang trace events (messages
# received, calls of `Sluice.Native` and their returns) with monotonic timestamps, put on
# the same clock (the VM's monotonic clock is CLOCK_MONOTONIC plus an offset). Tracing
# slows the BEAM side by a few µs per event: the last table compares with untraced runs.
# Not part of `bench/run.exs`: see bench/README.md, "Where one spawn's time goes".

Code.require_file("support/native.ex", __DIR__)

defmodule Bench.Breakdown do
  @moduledoc false

  @true_bin "/bin/true"
  @warmup 50

  def main(argv) do
    {opts, _} = OptionParser.parse!(argv, strict: [n: :integer, gap: :integer, out: :string])
    n = opts[:n] || 200
    Process.put(:gap, opts[:gap] || 0)
    perf = System.find_executable("perf") || raise "perf not found (apt-get install linux-perf)"
    native = Bench.Native.build!()
    {:ok, _} = Application.ensure_all_started(:sluice)

    for _ <- 1..@warmup, do: {sluice_run(), port_run()}
    helper = os_pid_of("sluice_helper")
    forker = os_pid_of("erl_child_setup")
    offset = clock_offset()

    data = Path.join(System.tmp_dir!(), "sluice-breakdown.#{System.os_time()}.perf")
    recorder = start_perf(perf, data)

    sluice = traced(n, &sluice_run/0, [])
    port = traced(n, &port_run/0, [])
    {_, 0} = System.cmd(native, ["spawn", "#{n}", "std"])

    stop_perf(recorder)
    os_events = perf_events(perf, data)
    File.rm(data)

    plain = %{
      sluice: plain(n, &sluice_run/0),
      port: plain(n, &port_run/0),
      native: native_plain(native, n)
    }

    syscalls = %{
      sluice: syscalls(perf, [beam(), helper], n, &sluice_run/0),
      port: syscalls(perf, [beam(), forker], n, &port_run/0)
    }

    report =
      render(
        n,
        sluice_rows(sluice, os_events, helper, offset),
        port_rows(port, os_events, forker, offset),
        native_rows(os_events),
        plain,
        syscalls,
        %{
          sluice:
            {messages(traced(20, &sluice_run/0, [:send]), :send), messages(sluice, :receive)},
          port: {messages(traced(20, &port_run/0, [:send]), :send), messages(port, :receive)}
        }
      )

    IO.puts(report)
    if opts[:out], do: File.write!(opts[:out], report)
  end

  # ---------------------------------------------------------------- the contenders

  defp sluice_run do
    {:ok, %{status: 0}} = Sluice.run([@true_bin])
    :ok
  end

  defp port_run do
    port = Port.open({:spawn_executable, @true_bin}, [:binary, :exit_status])
    opened = System.monotonic_time()

    receive do
      {^port, {:exit_status, 0}} -> {:opened, opened}
    end
  end

  # The untimed pause before each spawn (`--gap`); kept in the process dictionary of the
  # script's process, and handed to the traced worker.
  defp pause, do: Process.sleep(Process.get(:gap, 0))

  defp plain(n, fun) do
    for _ <- 1..n do
      pause()
      t0 = System.monotonic_time()
      fun.()
      System.monotonic_time() - t0
    end
    |> median()
  end

  defp native_plain(native, n) do
    {out, 0} = System.cmd(native, ["spawn", "#{n}", "std"])
    ["ns_per_spawn=" <> ns] = String.split(out)
    String.to_integer(ns)
  end

  # ---------------------------------------------------------------- Erlang side

  # Runs `fun` n times in a fresh process traced (with every process it spawns, and the
  # helper server if there is one) for messages received (and sent, with [:send]) and
  # calls of Sluice.Native. Returns [%{c0, c1, extra, events}] with events in the window.
  defp traced(n, fun, extra_flags) do
    tracer = spawn(fn -> collect([]) end)
    parent = self()

    gap = Process.get(:gap, 0)

    worker =
      spawn(fn ->
        Process.put(:gap, gap)
        receive do: (:go -> :ok)

        windows =
          for _ <- 1..n do
            pause()
            c0 = :erlang.monotonic_time()
            extra = fun.()
            %{c0: c0, c1: :erlang.monotonic_time(), extra: extra}
          end

        send(parent, {:windows, self(), windows})
      end)

    flags = extra_flags ++ [:receive, :call, :monotonic_timestamp, {:tracer, tracer}]
    :erlang.trace(worker, true, [:set_on_spawn | flags])
    helper_server = Process.whereis(Sluice.Helper)
    if helper_server, do: :erlang.trace(helper_server, true, flags)
    :erlang.trace_pattern({Sluice.Native, :_, :_}, [{:_, [], [{:return_trace}]}], [:local])
    send(worker, :go)
    windows = receive do: ({:windows, ^worker, w} -> w)
    if helper_server, do: :erlang.trace(helper_server, false, flags)
    :erlang.trace_pattern({Sluice.Native, :_, :_}, false, [:local])
    send(tracer, {:dump, self()})
    events = receive do: ({:events, e} -> Enum.reverse(e))
    roles = %{worker => :caller, helper_server => :helper_server}

    events =
      for {:trace_ts, pid, kind, a, b_or_ts, ts} <- pad(events), a != :go do
        {ts, Map.get(roles, pid, :spawned_proc), kind, a, b_or_ts}
      end

    split(windows, events)
  end

  # Trace messages have 4 or 5 elements before the timestamp: make them all 6 long.
  defp pad(events) do
    Enum.map(events, fn
      {:trace_ts, pid, kind, a, ts} -> {:trace_ts, pid, kind, a, nil, ts}
      {:trace_ts, pid, kind, a, b, ts} -> {:trace_ts, pid, kind, a, b, ts}
      other -> other
    end)
  end

  defp collect(acc) do
    receive do
      {:dump, from} ->
        # Late trace messages: everything was sent before the dump request... nearly.
        Process.sleep(200)
        send(from, {:events, drain(acc)})

      msg ->
        collect([msg | acc])
    end
  end

  defp drain(acc) do
    receive do
      msg -> drain([msg | acc])
    after
      0 -> acc
    end
  end

  defp split(windows, events) do
    {out, _} =
      Enum.map_reduce(windows, events, fn w, rest ->
        rest = Enum.drop_while(rest, fn {ts, _, _, _, _} -> ts < w.c0 end)
        {mine, rest} = Enum.split_while(rest, fn {ts, _, _, _, _} -> ts <= w.c1 end)
        {Map.put(w, :events, mine), rest}
      end)

    out
  end

  # Erlang messages sent (kind :send) or received (:receive) per spawn by the traced
  # processes (the caller, what it spawned, the helper server).
  defp messages(windows, kind) do
    windows
    |> Enum.map(fn w -> Enum.count(w.events, fn {_, _, k, _, _} -> k == kind end) end)
    |> median()
  end

  defp clock_offset do
    samples =
      for _ <- 1..5 do
        a = :erlang.monotonic_time()
        os = :erlang.system_info(:os_monotonic_time_source)[:time]
        b = :erlang.monotonic_time()
        {b - a, os - div(a + b, 2)}
      end

    {_, offset} = Enum.min(samples)
    offset
  end

  # ---------------------------------------------------------------- perf

  @events ~w(sched:sched_process_fork sched:sched_process_exec sched:sched_process_exit
             syscalls:sys_exit_wait4 syscalls:sys_exit_read syscalls:sys_exit_recvmsg
             syscalls:sys_exit_clone syscalls:sys_exit_clone3 syscalls:sys_exit_vfork
             syscalls:sys_enter_write syscalls:sys_enter_writev syscalls:sys_enter_sendmsg)

  defp start_perf(perf, data) do
    args =
      ["record", "-q", "-a", "-k", "CLOCK_MONOTONIC", "-o", data] ++
        Enum.flat_map(@events, &["-e", &1])

    port = Port.open({:spawn_executable, perf}, [:exit_status, :stderr_to_stdout, args: args])
    wait_file(data, 50)
    Process.sleep(1_000)
    port
  end

  defp wait_file(_data, 0), do: raise("perf record did not start")

  defp wait_file(data, n) do
    if File.exists?(data), do: :ok, else: Process.sleep(100) && wait_file(data, n - 1)
  end

  defp stop_perf(port) do
    Process.sleep(200)
    {:os_pid, os_pid} = Port.info(port, :os_pid)
    System.cmd("kill", ["-INT", "#{os_pid}"])
    receive do: ({^port, {:exit_status, _}} -> :ok), after: (30_000 -> raise "perf hangs")
    flush(port)
  end

  defp flush(port) do
    receive do
      {^port, _} -> flush(port)
    after
      0 -> :ok
    end
  end

  @spawners ["sluice_helper", "erl_child_setup", "sluice_bench"]
  @line ~r/^\s*(.+?)\s+(\d+)\/(\d+)\s+(\d+)\.(\d+):\s+(\S+):\s*(.*)$/

  # [{ts_ns, tgid, event, fields}]
  defp perf_events(perf, data) do
    {out, 0} =
      System.cmd(perf, ["script", "-i", data, "--ns", "-F", "comm,pid,tid,time,event,trace"],
        stderr_to_stdout: false
      )

    for line <- String.split(out, "\n"),
        [_, comm, pid, _tid, s, ns, event, fields] <- [Regex.run(@line, line)],
        # The syscalls of the spawners only (the forks, execs and exits of everyone).
        not String.starts_with?(event, "syscalls:") or comm in @spawners do
      ts =
        String.to_integer(s) * 1_000_000_000 + String.to_integer(String.pad_trailing(ns, 9, "0"))

      {ts, String.to_integer(pid), event, fields}
    end
  end

  defp field(fields, name) do
    case Regex.run(~r/\b#{name}=(\S+)/, fields) do
      [_, v] -> String.to_integer(v)
      nil -> nil
    end
  end

  # A syscall's return value: "0x340" (perf 6.x) or "NR 0 = 832"; negative errnos are
  # printed as 64-bit two's complement, which stay larger than any pid or byte count.
  defp ret(fields) do
    case Regex.run(~r/(?:0x([0-9a-f]+)|= (-?\d+))\s*$/, String.trim(fields)) do
      [_, hex] -> String.to_integer(hex, 16)
      [_, "", dec] -> String.to_integer(dec)
      nil -> nil
    end
  end

  # The OS milestones of the first program `spawner` cloned within [t0, t1].
  defp os_milestones(events, spawner, t0, t1) do
    in_window = Enum.filter(events, fn {ts, _, _, _} -> ts >= t0 and ts <= t1 end)

    # The spawner's last read before it cloned: the request (earlier reads in the window
    # may be the previous program's release or SIGCHLD).
    req = fn fork_ts ->
      in_window
      |> Enum.filter(fn {ts, pid, ev, f} ->
        ts <= fork_ts and
          pid == spawner and ev in ["syscalls:sys_exit_read", "syscalls:sys_exit_recvmsg"] and
          (ret(f) || 0) in 1..0xFFFFFFFF
      end)
      |> List.last()
    end

    fork =
      Enum.find(in_window, fn {_, pid, ev, _} ->
        pid == spawner and ev == "sched:sched_process_fork"
      end)

    case fork do
      nil ->
        %{}

      {fork_ts, _, _, f} ->
        child = field(f, "child_pid")
        at = fn pred -> Enum.find_value(events, fn {ts, _, _, _} = e -> pred.(e) && ts end) end

        reaped =
          at.(fn {_, pid, ev, f} ->
            pid == spawner and ev == "syscalls:sys_exit_wait4" and ret(f) == child
          end)

        sends = fn after_ts ->
          after_ts &&
            at.(fn {ts, pid, ev, _} ->
              ts > after_ts and pid == spawner and
                ev in [
                  "syscalls:sys_enter_write",
                  "syscalls:sys_enter_writev",
                  "syscalls:sys_enter_sendmsg"
                ]
            end)
        end

        resumed =
          at.(fn {ts, pid, ev, _} ->
            ts >= fork_ts and pid == spawner and
              ev in [
                "syscalls:sys_exit_clone",
                "syscalls:sys_exit_clone3",
                "syscalls:sys_exit_vfork"
              ]
          end)

        %{
          req: (r = req.(fork_ts)) && elem(r, 0),
          fork: fork_ts,
          exec:
            at.(fn {_, _, ev, f} ->
              ev == "sched:sched_process_exec" and field(f, "pid") == child
            end),
          exit:
            at.(fn {_, _, ev, f} ->
              ev == "sched:sched_process_exit" and field(f, "pid") == child
            end),
          reaped: reaped,
          resumed: resumed,
          reply: sends.(resumed),
          exit_sent: sends.(reaped)
        }
    end
  end

  # ---------------------------------------------------------------- milestones

  defp sluice_rows(windows, os_events, helper, offset) do
    samples =
      for w <- windows do
        os = os_milestones(os_events, helper, w.c0 + offset, w.c1 + offset)
        beam = sluice_beam_milestones(w.events)
        rel = fn ts -> ts && (ts - w.c0) / 1_000 end
        os_rel = fn ts -> ts && (ts - offset - w.c0) / 1_000 end

        %{
          request_sent: rel.(beam[:request_sent]),
          request_read: os_rel.(os[:req]),
          fork: os_rel.(os[:fork]),
          exec: os_rel.(os[:exec]),
          resumed: os_rel.(os[:resumed]),
          reply: os_rel.(os[:reply]),
          spawned_beam: rel.(beam[:spawned_beam]),
          holds: rel.(beam[:holds]),
          exit: os_rel.(os[:exit]),
          reaped: os_rel.(os[:reaped]),
          exit_sent: os_rel.(os[:exit_sent]),
          exit_beam: rel.(beam[:exit_beam]),
          status_caller: rel.(beam[:status_caller]),
          returned: rel.(w.c1)
        }
      end

    [
      {"request sent to the helper", :request_sent},
      {"helper has read the request", :request_read},
      {"clone (program process exists)", :fork},
      {"exec", :exec},
      {"helper resumes (clone returns)", :resumed},
      {"helper sends the spawn reply", :reply},
      {"spawn reply in the BEAM", :spawned_beam},
      {"caller holds the program's fds", :holds},
      {"program exited", :exit},
      {"exit reaped (wait4 returns)", :reaped},
      {"helper sends the exit status", :exit_sent},
      {"exit status in the BEAM", :exit_beam},
      {"exit status seen by the caller", :status_caller},
      {"call returns", :returned}
    ]
    |> medians(samples)
  end

  # Both designs: before (a helper server relays requests over the port and replies with
  # messages) and after (the caller calls Sluice.Native.spawn and receives on its channel).
  defp sluice_beam_milestones(events) do
    Enum.reduce(events, %{}, fn {ts, role, kind, a, b}, acc ->
      case classify(role, kind, a, b) do
        nil -> acc
        labels -> Enum.reduce(List.wrap(labels), acc, &Map.put_new(&2, &1, ts))
      end
    end)
  end

  # before: the helper server gets the spawn call and sends it on the port at once
  defp classify(:helper_server, :receive, {:"$gen_call", _, {:spawn, _, _, _}}, _),
    do: :request_sent

  defp classify(:helper_server, :receive, {port, {:data, frame}}, _) when is_port(port) do
    case :erlang.binary_to_term(frame) do
      {:spawned, _, _} -> :spawned_beam
      {:exit, _, _} -> :exit_beam
      _ -> nil
    end
  end

  # before: Sluice.Process's init returned to the caller (proc_lib ack)
  defp classify(:caller, :receive, {:ack, _, {:ok, _}}, _), do: :holds
  # before: the caller's await_exit reply
  defp classify(:caller, :receive, {_tag, {:ok, 0}}, _), do: :status_caller

  # after: the caller sends the request through the NIF and reads its channel
  defp classify(:caller, :call, {Sluice.Native, f, _}, _) when f in [:spawn, :spawn_large],
    do: :request_sent

  defp classify(:caller, :return_from, {Sluice.Native, :recv, 2}, {:ok, payload, _fds})
       when is_binary(payload) do
    case :erlang.binary_to_term(payload) do
      {:spawned, _, _, _, _} -> [:spawned_beam, :holds]
      # With its details (usage, statuses) or without.
      exit when elem(exit, 0) == :exit -> [:exit_beam, :status_caller]
      _ -> nil
    end
  end

  defp classify(_role, _kind, _a, _b), do: nil

  defp port_rows(windows, os_events, forker, offset) do
    samples =
      for w <- windows do
        os = os_milestones(os_events, forker, w.c0 + offset, w.c1 + offset)
        rel = fn ts -> ts && (ts - w.c0) / 1_000 end
        os_rel = fn ts -> ts && (ts - offset - w.c0) / 1_000 end
        {:opened, opened} = w.extra

        status =
          Enum.find_value(w.events, fn
            {ts, :caller, :receive, {_, {:exit_status, _}}, _} -> ts
            _ -> nil
          end)

        %{
          opened: rel.(opened),
          request_read: os_rel.(os[:req]),
          fork: os_rel.(os[:fork]),
          exec: os_rel.(os[:exec]),
          resumed: os_rel.(os[:resumed]),
          reply: os_rel.(os[:reply]),
          exit: os_rel.(os[:exit]),
          reaped: os_rel.(os[:reaped]),
          exit_sent: os_rel.(os[:exit_sent]),
          status_caller: rel.(status),
          returned: rel.(w.c1)
        }
      end

    [
      {"Port.open returns", :opened},
      {"erl_child_setup has read the request", :request_read},
      {"clone (program process exists)", :fork},
      {"exec", :exec},
      {"erl_child_setup resumes (clone returns)", :resumed},
      {"erl_child_setup sends the os pid", :reply},
      {"program exited", :exit},
      {"exit reaped (wait4 returns)", :reaped},
      {"erl_child_setup sends the exit status", :exit_sent},
      {"exit status seen by the caller", :status_caller},
      {"call returns", :returned}
    ]
    |> medians(samples)
  end

  # sluice_bench spawn N std: one clone per spawn; "start" is the previous wait4 return.
  defp native_rows(events) do
    forks =
      for {ts, pid, "sched:sched_process_fork", f} <- events,
          String.contains?(f, "comm=sluice_bench"),
          do: {ts, pid, field(f, "child_pid")}

    at = fn pred -> Enum.find_value(events, fn {ts, _, _, _} = e -> pred.(e) && ts end) end

    spawns =
      for {fork, bench, child} <- forks do
        %{
          fork: fork,
          exec:
            at.(fn {_, _, ev, f} ->
              ev == "sched:sched_process_exec" and field(f, "pid") == child
            end),
          exit:
            at.(fn {_, _, ev, f} ->
              ev == "sched:sched_process_exit" and field(f, "pid") == child
            end),
          reaped:
            at.(fn {_, pid, ev, f} ->
              pid == bench and ev == "syscalls:sys_exit_wait4" and ret(f) == child
            end)
        }
      end

    samples =
      for [prev, s] <- Enum.chunk_every(spawns, 2, 1, :discard) do
        rel = fn ts -> ts && prev.reaped && (ts - prev.reaped) / 1_000 end
        %{fork: rel.(s.fork), exec: rel.(s.exec), exit: rel.(s.exit), reaped: rel.(s.reaped)}
      end

    [
      {"clone (program process exists)", :fork},
      {"exec", :exec},
      {"program exited", :exit},
      {"exit reaped (wait4 returns)", :reaped}
    ]
    |> medians(samples)
  end

  defp medians(labels, samples) do
    for {label, key} <- labels do
      {label, samples |> Enum.map(& &1[key]) |> Enum.reject(&is_nil/1) |> median()}
    end
  end

  # ---------------------------------------------------------------- syscall counts

  # Syscalls per spawn made by each of `pids` (the BEAM, the spawner) while n spawns run.
  defp syscalls(perf, pids, n, fun) do
    for pid <- pids, into: %{} do
      out = Path.join(System.tmp_dir!(), "sluice-breakdown-stat.#{pid}.txt")
      args = ["stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p", "#{pid}", "-o", out]
      port = Port.open({:spawn_executable, perf}, [:exit_status, args: args])
      Process.sleep(500)
      for _ <- 1..n, do: fun.()
      stop_perf(port)

      [count | _] =
        out
        |> File.read!()
        |> String.split("\n")
        |> Enum.find(&(&1 =~ "raw_syscalls"))
        |> String.split(",")

      File.rm(out)
      {pid, String.to_integer(count) / n}
    end
  end

  # ---------------------------------------------------------------- report

  defp render(n, sluice, port, native, plain, syscalls, messages) do
    us = fn
      nil -> "-"
      x -> :erlang.float_to_binary(x / 1, decimals: 1)
    end

    step_table = fn rows ->
      {lines, _} =
        Enum.map_reduce(rows, 0.0, fn {label, t}, prev ->
          delta = if t && prev, do: t - prev
          {"| #{label} | #{us.(t)} | #{us.(delta)} |\n", t || prev}
        end)

      ["| milestone | µs since call start (median) | step |\n|---|---|---|\n" | lines]
    end

    [beam] = [beam()]
    sl = syscalls.sluice
    po = syscalls.port

    [
      "Medians over #{n} sequential spawns of `/bin/true` after #{@warmup} warm-up spawns, ",
      gap_text(Process.get(:gap, 0)),
      "Erlang tracing and `perf record` on.\n\n",
      "### `Sluice.run([\"/bin/true\"])`\n\n",
      step_table.(sluice),
      "\n### `Port.open({:spawn_executable, \"/bin/true\"}, [:binary, :exit_status])` until `exit_status`\n\n",
      step_table.(port),
      "\n### native: `std::process::Command::status()` loop (posix_spawn), from the previous wait4\n\n",
      step_table.(native),
      "\n### Per spawn\n\n",
      "| | Sluice.run | Port.open | native |\n|---|---|---|---|\n",
      "| time per spawn, untraced (median) | #{us.(plain.sluice / 1_000)} µs | ",
      "#{us.(plain.port / 1_000)} µs | #{us.(plain.native / 1_000)} µs (mean) |\n",
      "| Erlang messages sent / received (caller, processes it started, helper server) | ",
      "#{elem(messages.sluice, 0)} / #{elem(messages.sluice, 1)} | ",
      "#{elem(messages.port, 0)} / #{elem(messages.port, 1)} | - |\n",
      "| syscalls by the BEAM | #{us.(Map.get(sl, beam))} | #{us.(Map.get(po, beam))} | - |\n",
      "| syscalls by the spawner (helper / erl_child_setup) | ",
      "#{us.(sl |> Map.delete(beam) |> Map.values() |> Enum.sum())} | ",
      "#{us.(po |> Map.delete(beam) |> Map.values() |> Enum.sum())} | - |\n"
    ]
    |> IO.iodata_to_binary()
  end

  # ---------------------------------------------------------------- helpers

  defp gap_text(0), do: "back to back, "
  defp gap_text(ms), do: "each after #{ms} ms without a spawn (the native loop: back to back), "

  defp median([]), do: nil

  defp median(xs) do
    sorted = Enum.sort(xs)
    Enum.at(sorted, div(length(sorted), 2))
  end

  defp beam, do: String.to_integer(System.pid())

  # An OS process named `comm` started by this BEAM (directly, or through its forker
  # erl_child_setup, which starts every port program).
  defp os_pid_of(comm) do
    procs =
      for dir <- Path.wildcard("/proc/[0-9]*"),
          {:ok, stat} <- [File.read(Path.join(dir, "stat"))],
          [_, pid, c, ppid] <- [Regex.run(~r/^(\d+) \((.*)\) \S (\d+)/, stat)],
          do: {String.to_integer(pid), c, String.to_integer(ppid)}

    parents = [beam() | for({p, "erl_child_setup", pp} <- procs, pp == beam(), do: p)]

    Enum.find_value(procs, fn {p, c, pp} -> c == comm and pp in parents and p end) ||
      raise "no #{comm} under this BEAM"
  end
end

Bench.Breakdown.main(System.argv())
