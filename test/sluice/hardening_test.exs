defmodule Sluice.HardeningTest do
  @moduledoc """
  The fifteen findings of the hardening issue: no public call hangs or exits, nothing
  leaks, errors say what happened. Each test failed on the core before the reshaping.
  """
  use Sluice.Case, async: false

  alias Sluice.Process, as: P

  defp kill_helper do
    helper = helper_pid()
    System.cmd("kill", ["-KILL", "#{helper}"])
    helper
  end

  defp await_new_helper(old) do
    assert eventually(
             fn ->
               match?(%{os_pid: pid} when is_integer(pid) and pid != old, Sluice.Helper.info())
             end,
             5_000
           )
  end

  defp with_helper_stopped(fun) do
    :ok = Supervisor.terminate_child(Sluice.Supervisor, Sluice.Helper)

    try do
      fun.()
    after
      {:ok, _} = Supervisor.restart_child(Sluice.Supervisor, Sluice.Helper)
    end
  end

  defp beam_fds, do: length(File.ls!("/proc/self/fd"))

  # Opens /dev/null until the VM is out of fds (every number below the limit taken).
  defp fill_fd_table(acc) do
    case File.open("/dev/null", [:read]) do
      {:ok, file} when length(acc) < 10_000 -> fill_fd_table([file | acc])
      {:ok, file} -> [file | acc]
      {:error, :emfile} -> acc
    end
  end

  describe "1, 2: a dead helper never hangs a caller and never raises the wrong thing" do
    test "run returns :helper_down within 2 s when the helper dies under it" do
      task = Task.async(fn -> Sluice.run(["sh", "-c", "sleep 30; true"]) end)
      Process.sleep(300)
      old = kill_helper()
      assert {:ok, {:error, %Sluice.Error{reason: :helper_down}}} = Task.yield(task, 2_000)
      await_new_helper(old)
    end

    test "stream! raises Sluice.Error :helper_down when the helper dies under it" do
      task =
        Task.async(fn ->
          try do
            Sluice.stream!(["sh", "-c", "sleep 30; true"]) |> Enum.to_list()
          rescue
            e -> e
          end
        end)

      Process.sleep(300)
      old = kill_helper()
      assert {:ok, %Sluice.Error{reason: :helper_down}} = Task.yield(task, 2_000)
      await_new_helper(old)
    end

    test "with no helper every entry point answers with a Sluice.Error" do
      with_helper_stopped(fn ->
        down = %Sluice.Error{reason: :helper_down}
        assert {:error, ^down} = Sluice.run(["true"]) |> strip()
        assert {:error, ^down} = Sluice.run(["cat"], input: "x") |> strip()
        assert {:error, ^down} = Sluice.run(["true"], timeout: 3_000) |> strip()
        assert {:error, ^down} = P.start(["true"]) |> strip()

        assert_raise Sluice.Error, ~r/not running/, fn ->
          Sluice.stream!(["true"]) |> Enum.to_list()
        end

        assert_raise Sluice.Error, fn -> Sluice.stream(["true"]) |> Enum.to_list() end
        assert_raise Sluice.Error, fn -> Sluice.run!(["true"]) end
      end)
    end
  end

  defp strip({:error, %Sluice.Error{reason: reason}}),
    do: {:error, %Sluice.Error{reason: reason}}

  defp strip(other), do: other

  test "3: a request too large for the control channel is :e2big at once, nothing pending" do
    big = :binary.copy("a", 65 * 1024 * 1024)
    {us, result} = :timer.tc(fn -> Sluice.run(["true", big], timeout: 5_000) end)
    assert {:error, %Sluice.Error{reason: :e2big}} = result
    assert us < 2_000_000
    assert {:error, %Sluice.Error{reason: :e2big}} = Sluice.run(["true"], env: %{"BIG" => big})
    # A large request that fits (over the 64 KiB of one socket message) still runs.
    arg = :binary.copy("b", 100_000)
    assert {:ok, %{stdout: out}} = Sluice.run(["sh", "-c", "printf %s \"$1\" | wc -c", "sh", arg])
    assert String.trim(out) == "100000"
  end

  test "4: timeout and start_timeout bound the spawn when the helper is stopped" do
    helper = helper_pid()
    System.cmd("kill", ["-STOP", "#{helper}"])

    try do
      {us, result} = :timer.tc(fn -> Sluice.run(["true"], timeout: 1_000) end)
      assert {:error, %Sluice.Error{reason: :timeout}} = result
      assert us < 2_500_000
      assert {:error, %Sluice.Error{reason: :timeout}} = P.start(["true"], start_timeout: 300)
    after
      System.cmd("kill", ["-CONT", "#{helper}"])
    end
  end

  test "4: a stopped helper does not start requests whose caller already timed out" do
    marker = Path.join(System.tmp_dir!(), "sluice-late-#{System.unique_integer([:positive])}")
    helper = helper_pid()
    System.cmd("kill", ["-STOP", "#{helper}"])

    try do
      assert {:error, %Sluice.Error{reason: :timeout}} =
               Sluice.run(["sh", "-c", "touch #{marker}"], timeout: 300)
    after
      System.cmd("kill", ["-CONT", "#{helper}"])
    end

    assert {:ok, _} = Sluice.run(["true"])
    Process.sleep(200)
    refute File.exists?(marker)
  end

  describe "timeout: bounds run whatever the program and the input do" do
    test "a producer that never pauses" do
      # 100 ms of `yes` is a few hundred MB to collect; before the check per chunk this
      # ran until the reader happened to find the pipe empty (1.7 s in a review).
      {us, result} = :timer.tc(fn -> Sluice.run(["yes"], timeout: 100, max_output: 2 ** 40) end)
      assert {:error, %Sluice.Error{reason: :timeout}} = result
      assert us < 1_000_000
    end

    test "a function input writing to a program that never reads" do
      input = fn stdin -> Enum.into(Stream.repeatedly(fn -> "x" end), stdin) end
      {us, result} = :timer.tc(fn -> Sluice.run(["sleep", "30"], input: input, timeout: 500) end)
      assert {:error, %Sluice.Error{reason: :timeout}} = result
      assert us < 3_000_000
    end
  end

  describe "a Sluice stream as input is driven with its consumer" do
    test "output already there is not held back by a quiet upstream" do
      upstream = Sluice.stream!(["sh", "-c", "echo hi; exec sleep 1000"], kill_grace: 200)
      task = Task.async(fn -> Sluice.stream!(["cat"], input: upstream) |> Enum.take(1) end)
      assert Task.yield(task, 3_000) == {:ok, ["hi\n"]}
    end

    test "timeout: bounds the whole chain" do
      upstream = Sluice.stream!(["sh", "-c", "exec sleep 1000"], kill_grace: 200)
      {us, result} = :timer.tc(fn -> Sluice.run(["cat"], input: upstream, timeout: 500) end)
      assert {:error, %Sluice.Error{reason: :timeout}} = result
      assert us < 2_000_000
    end

    test "three stages, every byte, and an upstream's failure raises ExitError" do
      head = Sluice.stream!(["head", "-c", "1000000", "/dev/zero"])
      chain = Sluice.stream!(["wc", "-c"], input: Sluice.stream!(["cat"], input: head))
      assert Enum.join(chain) == "1000000\n"

      assert_raise Sluice.ExitError, ~r/exited with status 3/, fn ->
        Sluice.run(["cat"], input: Sluice.stream!(["sh", "-c", "echo a; exit 3"]))
      end
    end
  end

  test "an input element that is not iodata stops the input stream's program too" do
    fds = Sluice.Case.beam_fds()

    assert_raise ArgumentError, ~r/option :input: expected elements that are iodata/, fn ->
      Sluice.run(["cat"], input: Stream.zip(Sluice.stream!(["yes"]), [:a]))
    end

    assert eventually(fn -> Sluice.Case.beam_fds() <= fds end, 2_000)
  end

  test "5: active mode hears {:sluice_error, p, :helper_down}" do
    {:ok, p} = P.start(["sleep", "30"])
    :ok = P.set_active(p, :once)
    old = kill_helper()
    assert_receive {:sluice_error, ^p, :helper_down}, 2_000
    await_new_helper(old)
  end

  describe "6: the working directory is the VM's at the spawn" do
    setup do
      cwd = File.cwd!()
      dir = Path.join(System.tmp_dir!(), "sluice-cwd-#{System.unique_integer([:positive])}")
      File.mkdir_p!(dir)

      on_exit(fn ->
        File.cd!(cwd)
        File.rm_rf(dir)
      end)

      %{dir: dir}
    end

    test "after File.cd!, relative cd and ./prog resolve against it", %{dir: dir} do
      File.cd!(dir)
      assert Sluice.run!(["pwd"]).stdout == dir <> "\n"
      File.mkdir_p!("sub")
      assert Sluice.run!(["pwd"], cd: "sub").stdout == Path.join(dir, "sub") <> "\n"
      File.write!("prog", "#!/bin/sh\necho here\n")
      File.chmod!("prog", 0o755)
      assert Sluice.run!(["./prog"]).stdout == "here\n"
    end

    test "a deleted current directory is :enoent at :chdir", %{dir: dir} do
      File.cd!(dir)
      File.rm_rf!(dir)

      assert {:error, %Sluice.Error{reason: :enoent, stage: :chdir}} = Sluice.run(["pwd"])
    end
  end

  describe "7: input is enumerated in the calling process" do
    test "it sees the process dictionary and the caller's messages" do
      Process.put(:sluice_test_word, "dictionary")
      input = Stream.map([1], fn _ -> Process.get(:sluice_test_word) end)
      assert Sluice.run!(["cat"], input: input).stdout == "dictionary"

      send(self(), {:chunk, "mail"})
      send(self(), :done)

      mailbox =
        Stream.resource(
          fn -> nil end,
          fn nil ->
            receive do
              {:chunk, c} -> {[c], nil}
              :done -> {:halt, nil}
            after
              1_000 -> raise "no message"
            end
          end,
          fn _ -> :ok end
        )

      assert Enum.join(Sluice.stream!(["cat"], input: mailbox)) == "mail"

      assert Sluice.run!(["cat"],
               input: fn s -> Enum.into([Process.get(:sluice_test_word)], s) end
             ).stdout ==
               "dictionary"
    end

    test "every element reaches the program, the last of a Stream.take too" do
      taken = Stream.repeatedly(fn -> "x" end) |> Stream.take(5)
      assert Sluice.run!(["cat"], input: taken).stdout == "xxxxx"
      chunk = :binary.copy("y", 65_536)
      big = Stream.repeatedly(fn -> chunk end) |> Stream.take(64)
      assert Sluice.stream!(["wc", "-c"], input: big) |> Enum.join() == "#{64 * 65_536}\n"
      chained = Sluice.stream!(["cat"], input: Sluice.stream!(["cat"], input: big))
      assert chained |> Enum.map(&byte_size/1) |> Enum.sum() == 64 * 65_536
      assert Sluice.run!(["cat"], input: Stream.map(1..3, &to_string/1)).stdout == "123"
      assert Sluice.run!(["cat"], input: []).stdout == ""
    end

    test "no process is started for input" do
      before = length(Process.list())
      parent = self()

      input =
        Stream.map(1..3, fn i ->
          send(parent, {:count, length(Process.list())})
          "#{i}"
        end)

      assert Sluice.run!(["cat"], input: input).stdout == "123"
      counts = for _ <- 1..3, do: receive(do: ({:count, n} -> n))
      assert Enum.all?(counts, &(&1 <= before))
    end
  end

  test "8: killing the consumer of a chained stream stops every program in the chain" do
    before = length(Process.list())
    pidfile = Path.join(System.tmp_dir!(), "sluice-chain-#{System.unique_integer([:positive])}")
    on_exit(fn -> File.rm(pidfile) end)

    consumer =
      spawn(fn ->
        upstream =
          Sluice.stream!(["sh", "-c", "echo $$ > #{pidfile}; exec sleep 1000"], kill_grace: 500)

        Sluice.stream!(["cat"], input: upstream, kill_grace: 500) |> Enum.to_list()
      end)

    assert eventually(fn -> match?({:ok, <<_, _::binary>>}, File.read(pidfile)) end, 5_000)
    sleep_pid = pidfile |> File.read!() |> String.trim() |> String.to_integer()
    assert alive?(sleep_pid)
    Process.exit(consumer, :kill)
    assert eventually(fn -> not alive?(sleep_pid) end, 1_500)
    assert eventually(fn -> length(Process.list()) <= before end, 1_000)
  end

  test "9: a finished Sluice.Process releases its fds and its process" do
    fds = beam_fds()
    procs = length(Process.list())

    for _ <- 1..100 do
      {:ok, p} = P.start_link(["echo", "x"])
      assert {:ok, "x\n"} = P.read(p)
      assert :eof = P.read(p)
      assert {:ok, 0} = P.await_exit(p)
    end

    assert eventually(fn -> beam_fds() <= fds + 2 end, 2_000)
    assert eventually(fn -> length(Process.list()) <= procs end, 2_000)

    {:ok, p} = P.start(["true"])
    assert :eof = P.read(p)
    assert {:ok, 0} = P.await_exit(p)
    assert eventually(fn -> not Process.alive?(p) end, 1_000)

    # The other order: the status first, then the read that finds EOF ends it.
    {:ok, q} = P.start(["echo", "y"])
    assert {:ok, 0} = P.await_exit(q)
    assert {:ok, "y\n"} = P.read(q)
    assert :eof = P.read(q)
    assert eventually(fn -> not Process.alive?(q) end, 1_000)
    assert {:error, :closed} = P.read(p)
    assert {:error, :closed} = P.write(p, "x")
    assert {:error, :closed} = P.await_exit(p)
  end

  describe "10: lines are bounded by max_line_length" do
    test "a stream of /dev/zero gives pieces of max_line_length" do
      {:memory, m0} = Process.info(self(), :memory)

      [piece] =
        Sluice.stream!(["cat", "/dev/zero"], lines: true, max_line_length: 100_000)
        |> Enum.take(1)

      assert byte_size(piece) == 100_000
      {:memory, m1} = Process.info(self(), :memory)
      assert m1 - m0 < 10_000_000
    end

    test "the default is 1 MiB" do
      [piece] = Sluice.stream!(["cat", "/dev/zero"], lines: true) |> Enum.take(1)
      assert byte_size(piece) == 1_048_576
    end

    test "a Daemon's log lines are bounded too" do
      {:ok, d} =
        Sluice.Daemon.start_link(
          argv: ["sh", "-c", "head -c 50000000 /dev/zero; sleep 30"],
          log: false,
          max_line_length: 65_536
        )

      Process.sleep(1_500)
      {:memory, mem} = Process.info(d, :memory)
      assert mem < 5_000_000
      GenServer.stop(d)
    end
  end

  test "11: out of fds in the VM is :emfile with a message that says so" do
    pid = System.pid()

    {limits, 0} =
      System.cmd("prlimit", ["--pid", pid, "--nofile", "--output=SOFT,HARD", "--noheadings"])

    [soft, hard] = String.split(limits)
    # Restoring needs fds too: a restorer started beforehand puts the limit back.
    restore = "sleep 0.5; prlimit --pid #{pid} --nofile=#{soft}:#{hard}"
    restorer = Port.open({:spawn_executable, "/bin/sh"}, [:exit_status, args: ["-c", restore]])
    {_, 0} = System.cmd("prlimit", ["--pid", pid, "--nofile=#{beam_fds()}:#{hard}"])
    # The limit bounds fd numbers: fds closed by earlier tests leave free numbers below it.
    fillers = fill_fd_table([])
    result = Sluice.run(["true"])
    Enum.each(fillers, &File.close/1)
    assert_receive {^restorer, {:exit_status, 0}}, 5_000

    assert {:error, %Sluice.Error{reason: :emfile, message: message}} = result
    assert message =~ "VM ran out of file descriptors"
    assert {:ok, %{stdout: "fine\n"}} = Sluice.run(["echo", "fine"])
  end

  describe "12: configuration" do
    setup do
      on_exit(fn ->
        Application.delete_env(:sluice, :cgroup)
        Application.delete_env(:sluice, :shutdown_grace)
        Application.delete_env(:sluice, :allowed_users)
      end)
    end

    test "invalid values name the key and the value" do
      Application.put_env(:sluice, :cgroup, true)
      assert_raise ArgumentError, ~r/:cgroup.*got: true/, &Sluice.Control.Config.load!/0
      Application.put_env(:sluice, :cgroup, :auto)
      Application.put_env(:sluice, :shutdown_grace, -1)
      assert_raise ArgumentError, ~r/:shutdown_grace.*got: -1/, &Sluice.Control.Config.load!/0
    end

    test "allowed_users: checked at start, names (charlists from sys.config) and uids" do
      for bad <- ["root", :none, [-1], [""], [:root], ["a\0b"], [[:x]], ["root" | "daemon"]] do
        Application.put_env(:sluice, :allowed_users, bad)

        assert_raise ArgumentError,
                     ~r/config :sluice, :allowed_users: expected :any or a list.*got: /,
                     &Sluice.Control.Config.load!/0
      end

      Application.put_env(:sluice, :allowed_users, ["root", ~c"daemon", 0, 1001])
      assert %{cgroup: _} = Sluice.Control.Config.load!()
      assert Sluice.Control.Config.allowed_users!() == ["root", "daemon", 0, 1001]
      Application.put_env(:sluice, :allowed_users, :any)
      assert Sluice.Control.Config.allowed_users!() == nil
    end

    @tag :external_vm
    test "a bad allowed_users stops the application start, naming the key" do
      code =
        Sluice.ChildVM.reporter() <>
          ~S"""
          Application.put_env(:sluice, :cgroup, false)
          Application.put_env(:sluice, :allowed_users, "www-data")
          report.("start", Application.ensure_all_started(:sluice))
          """

      vm = Sluice.ChildVM.run(["-e", code])
      assert {:error, {:sluice, reason}} = Sluice.ChildVM.reports(vm)["start"], vm.stderr
      assert inspect(reason) =~ ~s(invalid value for config :sluice, :allowed_users)
    end

    test "a cgroup path from sys.config (a charlist) is read as a path" do
      Application.put_env(:sluice, :cgroup, ~c"/sys/fs/cgroup/sluice")
      assert %{cgroup: "/sys/fs/cgroup/sluice"} = Sluice.Control.Config.load!()
      Application.put_env(:sluice, :cgroup, ~c"relative")
      assert_raise ArgumentError, ~r/:cgroup.*absolute/, &Sluice.Control.Config.load!/0
    end

    test "an explicit cgroup path the helper cannot use is an error" do
      config = %{cgroup: "/nonexistent/sluice", shutdown_grace: 1_000}

      assert {:error, {:invalid_config, :cgroup, "/nonexistent/sluice", _}} =
               Sluice.Control.Config.check_cgroup(config, nil)
    end
  end

  test "13: a write timeout says how many bytes reached the program" do
    {:ok, p} = P.start_link(["sleep", "10"])
    assert {:error, {:timeout, n}} = P.write(p, :binary.copy("x", 200_000), 100)
    assert n > 0 and n < 200_000
    P.stop(p, 0)
  end

  describe "14: validation" do
    test "improper argv, huge read sizes, fn/0 input, duplicate keys" do
      assert_raise ArgumentError, ~r/argv/, fn -> Sluice.run(["echo" | "x"]) end
      {:ok, p} = P.start_link(["sleep", "10"])
      assert_raise ArgumentError, ~r/max/, fn -> P.read(p, 2 ** 70) end
      P.stop(p, 0)
      assert_raise ArgumentError, ~r/:input/, fn -> Sluice.run(["cat"], input: fn -> "x" end) end

      for call <- [
            fn -> Sluice.run!(["true"], timeout: 1, timeout: 2) end,
            fn -> Sluice.stream!(["true"], lines: true, lines: false) end,
            fn -> P.start(["true"], cd: "/", cd: "/tmp") end
          ] do
        assert_raise ArgumentError, ~r/more than once/, call
      end
    end
  end

  describe "15: robustness of the application" do
    test "the helper is restarted however often it dies" do
      for _ <- 1..12 do
        old = kill_helper()
        await_new_helper(old)
      end

      assert {:ok, %{stdout: "alive\n"}} = Sluice.run(["echo", "alive"])
      assert Enum.any?(Application.started_applications(), &match?({:sluice, _, _}, &1))
    end

    test "stopping the application with programs running: owners get {:shutdown, :helper_down}" do
      parent = self()

      owners =
        for _ <- 1..5 do
          spawn(fn ->
            Process.flag(:trap_exit, true)
            {:ok, p} = P.start_link(["sleep", "60"])
            send(parent, {:running, self()})

            receive do
              {:EXIT, ^p, reason} -> send(parent, {:ended, self(), reason})
            after
              30_000 -> :ok
            end
          end)
        end

      for o <- owners, do: assert_receive({:running, ^o}, 10_000)

      log =
        ExUnit.CaptureLog.capture_log(fn ->
          try do
            :ok = Application.stop(:sluice)
            # As documented for the helper program's death: never a crash of the servers.
            for o <- owners, do: assert_receive({:ended, ^o, {:shutdown, :helper_down}}, 10_000)
            # Without the application nothing runs, so nothing is listed.
            assert Sluice.list() == []
          after
            {:ok, _} = Application.ensure_all_started(:sluice)
          end
        end)

      refute log =~ "terminating"
    end

    test "Daemon accepts log: :warn, and two unnamed daemons get distinct child ids" do
      children = [
        {Sluice.Daemon, argv: ["sleep", "30"], log: :warn},
        {Sluice.Daemon, argv: ["sleep", "31"], log: false}
      ]

      {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
      assert length(Supervisor.which_children(sup)) == 2
      Supervisor.stop(sup)
    end
  end
end
