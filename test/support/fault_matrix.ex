defmodule Sluice.FaultMatrix do
  @moduledoc """
  The columns of the fault matrix (see `docs/guarantees.md`): the programs, how to start
  them, when they are ready, and whether anything of them survives.

  Every program is `test/fixtures/programs.sh KIND PIDFILE`; it appends `TAG PID` lines to
  PIDFILE for each process that must die (`leader`, `child`, `escapee`, `daemon`). A process
  is identified by its pid and its start time, so a reused pid never counts as a survivor.
  """

  import ExUnit.Assertions

  @programs [
    :sleep,
    :ignore_term,
    :group,
    :setsid,
    :double_fork,
    :stopped,
    :closed_stdout,
    :pty,
    :sandbox
  ]

  @tags %{
    sleep: [:leader],
    ignore_term: [:child, :leader],
    group: [:child, :leader],
    setsid: [:escapee, :leader],
    double_fork: [:daemon, :leader],
    stopped: [:leader],
    closed_stdout: [:leader],
    pty: [:child, :leader],
    sandbox: [:child, :daemon, :leader]
  }

  @doc "The programs (columns), in the order of `docs/guarantees.md`."
  def programs, do: @programs

  @doc "The tags of the processes `kind` reports."
  def tags(kind), do: Map.fetch!(@tags, kind)

  @doc "Path of the fixture script."
  def fixture, do: Path.expand("../fixtures/programs.sh", __DIR__)

  @doc "Path of the script the separate VMs run."
  def vm_script, do: Path.expand("../fixtures/fault_vm.exs", __DIR__)

  @doc "argv of program `kind` reporting to `pidfile`."
  def argv(kind, pidfile), do: ["/bin/sh", fixture(), Atom.to_string(kind), pidfile]

  @doc """
  The options `kind` needs besides the row's: the pty column runs on a terminal, the
  sandbox column in a sandbox that sees the system, the fixture and its pidfile's
  directory (writable) only: the checkout may be under /tmp, which a sandbox hides.
  """
  def options(:pty, _pidfile), do: [pty: true]

  def options(:sandbox, pidfile) do
    view = [read_only: [:system, Path.dirname(fixture())], writable: [Path.dirname(pidfile)]]
    [sandbox: view]
  end

  def options(_kind, _pidfile), do: []

  @doc "A fresh pidfile path under `dir`."
  def pidfile(dir, kind) do
    path = Path.join(dir, "#{kind}-#{System.unique_integer([:positive])}.pids")
    File.rm(path)
    path
  end

  @doc """
  Waits until `kind` reported every process and is in its steady state (the stopped one is
  stopped, the daemon was re-parented to `reaper`, stdout is closed), and returns the
  processes as `[{tag, pid, start_time}]`.
  """
  def await_ready(kind, pidfile, reaper, ms \\ 5_000) do
    ready =
      Sluice.OsProbe.eventually(
        fn ->
          with procs when is_list(procs) <- read_pidfile(pidfile, kind, reaper),
               true <- Enum.sort(Enum.map(procs, &elem(&1, 0))) == Enum.sort(tags(kind)),
               true <- steady?(kind, procs, reaper) do
            procs
          else
            _ -> false
          end
        end,
        ms
      )

    assert ready, "#{kind} did not get ready: #{inspect(File.read(pidfile))}"
    ready
  end

  defp read_pidfile(path, kind, reaper) do
    case File.read(path) do
      {:ok, text} ->
        procs =
          for line <- String.split(text, "\n", trim: true),
              [tag, pid] = String.split(line),
              pid = host_pid(kind, String.to_integer(pid), reaper),
              do: {String.to_existing_atom(tag), pid, pid && start_time(pid)}

        if Enum.all?(procs, fn {_, _, st} -> st != nil end), do: procs, else: false

      _ ->
        false
    end
  end

  # A sandbox's pids are those of its pid namespace: the host's pid of the process whose
  # innermost pid is `pid`, in the namespace of a sandbox's init (the child of a child of
  # the helper program `reaper`).
  defp host_pid(:sandbox, pid, reaper) do
    inits = for m <- Sluice.OsProbe.children(reaper), i <- Sluice.OsProbe.children(m), do: i
    namespaces = MapSet.new(inits, &File.read_link("/proc/#{&1}/ns/pid"))

    Enum.find(Sluice.OsProbe.descendants(reaper), fn host ->
      MapSet.member?(namespaces, File.read_link("/proc/#{host}/ns/pid")) and
        innermost_pid(host) == pid
    end)
  end

  defp host_pid(_kind, pid, _reaper), do: pid

  defp innermost_pid(host) do
    with {:ok, status} <- File.read("/proc/#{host}/status"),
         [_, pids] <- Regex.run(~r/^NSpid:\s+(.*)$/m, status) do
      pids |> String.split() |> List.last() |> String.to_integer()
    else
      _ -> nil
    end
  end

  defp steady?(:stopped, [{:leader, pid, _}], _reaper),
    do: match?({"T", _}, Sluice.OsProbe.stat(pid))

  defp steady?(:double_fork, procs, reaper) do
    {:daemon, pid, _} = List.keyfind(procs, :daemon, 0)
    match?({_, ^reaper}, Sluice.OsProbe.stat(pid))
  end

  defp steady?(:closed_stdout, [{:leader, pid, _}], _reaper),
    do: not File.exists?("/proc/#{pid}/fd/1")

  defp steady?(_kind, procs, _reaper),
    do: Enum.all?(procs, fn {_, pid, _} -> Sluice.OsProbe.alive?(pid) end)

  @doc "The start time (clock ticks since boot) of `pid`, or nil when it is gone."
  def start_time(pid) do
    with {:ok, text} <- File.read("/proc/#{pid}/stat"),
         [_, rest] <- String.split(text, ") ", parts: 2) do
      rest |> String.split(" ") |> Enum.at(19) |> String.to_integer()
    else
      _ -> nil
    end
  end

  @doc "`:alive`, `:zombie` or `:gone` (reaped, or the pid now names another process)."
  def status({_tag, pid, start}) do
    case {start_time(pid), Sluice.OsProbe.stat(pid)} do
      {^start, {"Z", _}} -> :zombie
      {^start, {_, _}} -> :alive
      _ -> :gone
    end
  end

  @doc "The processes not yet gone (alive or zombies)."
  def left(procs), do: Enum.reject(procs, &(status(&1) == :gone))

  @doc """
  Waits until `deadline` (monotonic ms) for every process to be gone (dead and reaped);
  returns those left, with their status.
  """
  def left_at(procs, deadline) do
    Sluice.OsProbe.eventually(fn -> left(procs) == [] end, max(deadline - now(), 0))
    Enum.map(left(procs), fn p -> {p, status(p)} end)
  end

  @doc "SIGKILLs processes a test expected to survive, so nothing leaks into other tests."
  def kill_survivors(procs) do
    for {_, pid, _} = p <- procs, status(p) == :alive do
      System.cmd("kill", ["-KILL", to_string(pid)], stderr_to_stdout: true)
    end

    :ok
  end

  ## The in-VM rows (a)-(d)

  @rows [:owner_exits, :owner_killed, :process_killed, :stop, :run_timeout]

  @doc "The in-VM rows, in the order of `docs/guarantees.md`."
  def rows, do: @rows

  @doc """
  Runs one cell: starts `kind` with `kill_grace: grace`, waits until it is ready, inflicts
  the fault of `row`, and returns `%{procs: procs, left: left, ms: ms, status: status}`:
  `left` are the processes still there (alive or zombie) `grace + 1000` ms after the fault,
  `ms` is how long after the fault the last one went, `status` the exit status Sluice
  reported (where the row returns one).
  """
  def run_cell(row, kind, dir, grace) do
    pidfile = pidfile(dir, kind)
    opts = [kill_grace: grace, stderr: :null] ++ options(kind, pidfile)
    reaper = Sluice.OsProbe.helper_pid()
    {procs, t_fault, status} = fault(row, argv(kind, pidfile), opts, kind, pidfile, reaper)
    left = left_at(procs, t_fault + grace + 1_000)
    %{procs: procs, left: left, ms: now() - t_fault, status: status}
  end

  defp fault(row, argv, opts, kind, pidfile, reaper) when row in [:owner_exits, :owner_killed] do
    test = self()

    owner =
      spawn(fn ->
        {:ok, p} = Sluice.Process.start_link(argv, opts)
        send(test, {:started, self(), p})

        receive do
          :exit -> :ok
        end
      end)

    assert_receive {:started, ^owner, p}, 5_000
    procs = await_ready(kind, pidfile, reaper)
    ref = Process.monitor(p)
    t = now()

    case row do
      :owner_exits -> send(owner, :exit)
      :owner_killed -> Process.exit(owner, :kill)
    end

    assert_receive {:DOWN, ^ref, :process, ^p, _}, 5_000
    {procs, t, nil}
  end

  defp fault(:process_killed, argv, opts, kind, pidfile, reaper) do
    {:ok, p} = Sluice.Process.start(argv, opts)
    procs = await_ready(kind, pidfile, reaper)
    t = now()
    Process.exit(p, :kill)
    {procs, t, nil}
  end

  defp fault(:stop, argv, opts, kind, pidfile, reaper) do
    {:ok, p} = Sluice.Process.start(argv, opts)
    procs = await_ready(kind, pidfile, reaper)
    t = now()
    assert {:ok, status} = Sluice.Process.stop(p, opts[:kill_grace])
    refute Process.alive?(p)
    {procs, t, status}
  end

  defp fault(:run_timeout, argv, opts, kind, pidfile, reaper) do
    timeout = 1_000
    t0 = now()
    task = Task.async(fn -> Sluice.run(argv, [timeout: timeout] ++ opts) end)
    procs = await_ready(kind, pidfile, reaper, timeout)
    assert {:error, %Sluice.Error{reason: :timeout} = e} = Task.await(task, 15_000)
    {procs, t0 + timeout, e.result.status}
  end

  @doc """
  The tags expected to survive `row` for `kind`, with or without cgroups: the claims of
  `docs/guarantees.md`. With cgroups nothing survives. Without them, a double-forked daemon
  escapes the in-VM rows (it is no longer a descendant of the program, and not in its
  group), and when the helper is SIGKILLed only the direct child dies (by PDEATHSIG); a
  sandbox's processes die with its pid namespace.
  """
  def expected_survivors(_row, _kind, true = _cgroups?), do: []
  # A sandbox's processes all live in its pid namespace, which the kernel empties when its
  # init dies: nothing escapes, cgroups or not.
  def expected_survivors(_row, :sandbox, false), do: []
  def expected_survivors(row, :double_fork, false) when row in @rows, do: [:daemon]
  def expected_survivors(row, _kind, false) when row in @rows, do: []
  def expected_survivors(row, _kind, false) when row in [:vm_stop, :vm_kill], do: []

  def expected_survivors(:helper_kill, kind, false),
    do: tags(kind) -- [:leader]

  @doc "Asserts that exactly `expected` (tags) are left, all alive (never zombies)."
  def assert_left(left, expected, context) do
    tags = left |> Enum.map(fn {{tag, _, _}, _} -> tag end) |> Enum.sort()

    assert tags == Enum.sort(expected),
           "#{context}: expected #{inspect(expected)} to be left, got #{inspect(left)}"

    zombies = for {p, :zombie} <- left, do: p
    assert zombies == [], "#{context}: zombies left: #{inspect(zombies)}"
  end

  @doc "Monotonic milliseconds."
  def now, do: System.monotonic_time(:millisecond)
end
