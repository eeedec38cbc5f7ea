defmodule Sluice.ProcessTest do
  use Sluice.Case, async: false

  alias Sluice.Process, as: P

  doctest Sluice.Process

  defp read_all(p, fun \\ &P.read/1, acc \\ []) do
    case fun.(p) do
      {:ok, data} -> read_all(p, fun, [data | acc])
      :eof -> acc |> Enum.reverse() |> IO.iodata_to_binary()
    end
  end

  describe "I/O" do
    test "cat round trip" do
      {:ok, p} = P.start_link(["cat"])
      assert :ok = P.write(p, "hello\n")
      assert {:ok, "hello\n"} = P.read(p)
      assert :ok = P.write(p, ["wor", ?l, "d"])
      assert {:ok, "world"} = P.read(p)
      assert :ok = P.close_stdin(p)
      assert :eof = P.read(p)
      assert {:ok, 0} = P.await_exit(p)
    end

    test "close_stdin alone makes base64 and sort answer" do
      {:ok, b} = P.start_link(["base64"])
      :ok = P.write(b, "sluice")
      :ok = P.close_stdin(b)
      assert read_all(b) == "c2x1aWNl\n"

      {:ok, s} = P.start_link(["sort"])
      :ok = P.write(s, "pear\napple\nfig\n")
      assert {:error, :timeout} = P.read(s, 65_536, 200)
      :ok = P.close_stdin(s)
      assert read_all(s) == "apple\nfig\npear\n"
      assert {:ok, 0} = P.await_exit(s)
    end

    test "writes of several MiB arrive intact" do
      data = :crypto.strong_rand_bytes(6 * 1024 * 1024)
      {:ok, p} = P.start_link(["cat"])

      writer =
        Task.async(fn ->
          for <<chunk::binary-size(1_048_576) <- data>>, do: :ok = P.write(p, chunk)
          P.close_stdin(p)
        end)

      assert read_all(p) == data
      Task.await(writer)
      assert {:ok, 0} = P.await_exit(p)
    end

    test "one write larger than the pipe completes once the program reads it" do
      data = :crypto.strong_rand_bytes(3_000_000)
      {:ok, p} = P.start_link(["sha256sum"])
      assert :ok = P.write(p, data)
      :ok = P.close_stdin(p)
      expected = Base.encode16(:crypto.hash(:sha256, data), case: :lower)
      assert read_all(p) == expected <> "  -\n"
    end

    test "reads of any size come in order" do
      {:ok, p} = P.start_link(["seq", "1", "20000"])
      expected = Enum.map_join(1..20_000, &"#{&1}\n")
      sizes = Stream.cycle([7, 65_536, 1, 4_096, 100_000])

      got =
        Enum.reduce_while(sizes, [], fn max, acc ->
          case P.read(p, max) do
            {:ok, data} ->
              assert byte_size(data) <= max
              {:cont, [acc, data]}

            :eof ->
              {:halt, acc}
          end
        end)

      assert IO.iodata_to_binary(got) == expected
    end

    test "a read's binary holds what was read, not the room asked for" do
      # Up to 64 KiB the NIF allocates `max` at once and shrinks it to the bytes read.
      {:ok, p} = P.start_link(["cat"])

      for size <- [100, 1_000, 10_000] do
        :ok = P.write(p, :binary.copy("x", size))
        assert {:ok, data} = P.read(p, 65_536, 5_000)
        assert byte_size(data) == size
        assert :binary.referenced_byte_size(data) == size
      end

      :ok = P.close_stdin(p)
      assert read_all(p) == ""
    end

    test "read_any splits 1000 stdout and 1000 stderr lines" do
      script = "i=1; while [ $i -le 1000 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done"
      {:ok, p} = P.start_link(["sh", "-c", script], stderr: :consume)
      {out, err} = collect_any(p, [], [])
      assert out == Enum.map_join(1..1000, &"out#{&1}\n")
      assert err == Enum.map_join(1..1000, &"err#{&1}\n")
      assert {:ok, 0} = P.await_exit(p)
    end

    test "read_stderr reads stderr alone, and needs stderr: :consume" do
      {:ok, p} = P.start_link(["sh", "-c", "echo o; echo e >&2"], stderr: :consume)
      assert read_all(p, &P.read_stderr/1) == "e\n"
      assert read_all(p) == "o\n"

      {:ok, q} = P.start_link(["true"], stderr: :null)
      assert {:error, :not_captured} = P.read_stderr(q)
    end

    test "stderr: :stdout merges in order" do
      script = "i=1; while [ $i -le 500 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done"
      {:ok, p} = P.start_link(["sh", "-c", script], stderr: :stdout)
      expected = Enum.map_join(1..500, &"out#{&1}\nerr#{&1}\n")
      assert read_all(p) == expected
    end

    test "stderr: :null drops stderr" do
      {:ok, p} = P.start_link(["sh", "-c", "echo gone >&2; echo kept"], stderr: :null)
      assert read_all(p) == "kept\n"
    end

    test "any process may read and write" do
      {:ok, p} = P.start_link(["cat"])
      Task.async(fn -> P.write(p, "from a task") end) |> Task.await()
      assert Task.async(fn -> P.read(p) end) |> Task.await() == {:ok, "from a task"}
    end

    test "concurrent readers share the output without loss or duplication" do
      {:ok, p} = P.start_link(["seq", "1", "100000"])
      expected = Enum.map_join(1..100_000, &"#{&1}\n")

      chunks =
        1..4
        |> Enum.map(fn _ -> Task.async(fn -> read_chunks(p, []) end) end)
        |> Enum.flat_map(&Task.await/1)

      got = chunks |> IO.iodata_to_binary() |> :binary.bin_to_list() |> Enum.frequencies()
      assert got == expected |> :binary.bin_to_list() |> Enum.frequencies()
    end

    test "reads and waits time out in the server without losing data" do
      {:ok, p} = P.start_link(["cat"])
      assert {:error, :timeout} = P.read(p, 100, 50)
      assert {:error, :timeout} = P.await_exit(p, 50)
      :ok = P.write(p, "kept")
      assert {:ok, "kept"} = P.read(p)
    end

    test "write after close_stdin and to a program that exited" do
      {:ok, p} = P.start_link(["cat"])
      :ok = P.close_stdin(p)
      assert {:error, :closed} = P.write(p, "x")

      {:ok, q} = P.start_link(["true"])
      {:ok, 0} = P.await_exit(q)
      assert {:error, :epipe} = P.write(q, "x")
    end

    test "EOF and exit status in either order give the same answers" do
      # stdout closes long before the exit
      {:ok, a} = P.start_link(["sh", "-c", "echo a; exec >&-; sleep 0.3"])
      # the exit comes long before EOF (a background child holds stdout)
      {:ok, b} = P.start_link(["sh", "-c", "echo a; (sleep 0.3; echo b) & exit 0"])

      assert read_all(a) == "a\n"
      assert {:ok, 0} = P.await_exit(a)
      assert {:ok, 0} = P.await_exit(b)
      assert read_all(b) == "a\nb\n"
    end
  end

  describe "back-pressure" do
    test "with nobody reading, yes blocks and BEAM memory stays flat" do
      {:ok, p} = P.start_link(["yes"])
      Process.sleep(200)
      :erlang.garbage_collect()
      before = :erlang.memory(:total)
      Process.sleep(2_000)
      :erlang.garbage_collect()
      growth = :erlang.memory(:total) - before
      assert growth < 2_000_000, "BEAM memory grew by #{growth} bytes"
      # blocked in write(): sleeping, not running
      assert {"S", _} = stat(P.os_pid(p))
      assert {:ok, "y\ny\n" <> _} = P.read(p)
    end

    test "after a read, yes blocks again and BEAM memory stays flat" do
      {:ok, p} = P.start_link(["yes"])
      assert {:ok, "y\ny\n"} = P.read(p, 4)
      Process.sleep(200)
      :erlang.garbage_collect()
      before = :erlang.memory(:total)
      Process.sleep(1_000)
      :erlang.garbage_collect()
      assert :erlang.memory(:total) - before < 1_000_000
      assert {"S", _} = stat(P.os_pid(p))
    end

    test "a write larger than the pipes does not complete before the reader reads" do
      {:ok, p} = P.start_link(["cat"])
      # More than stdin's 64 KiB + stdout's 256 KiB + what cat holds.
      data = :crypto.strong_rand_bytes(12 * 65_536)

      writer =
        Task.async(fn ->
          for <<chunk::binary-size(65_536) <- data>>, do: :ok = P.write(p, chunk)
          :written
        end)

      assert Task.yield(writer, 500) == nil
      got = read_bytes(p, byte_size(data), [])
      assert Task.await(writer) == :written
      assert got == data
    end
  end

  describe "exit statuses" do
    test "exit codes 0, 3 and 255" do
      for code <- [0, 3, 255] do
        {:ok, p} = P.start_link(["sh", "-c", "exit #{code}"])
        assert {:ok, ^code} = P.await_exit(p)
      end
    end

    test "death by signal" do
      {:ok, p} = P.start_link(["sh", "-c", "kill -KILL $$"])
      assert {:ok, {:signal, :sigkill}} = P.await_exit(p)

      {:ok, q} = P.start_link(["sleep", "30"])
      :ok = P.signal(q, :sigusr1)
      assert {:ok, {:signal, :sigusr1}} = P.await_exit(q)

      {:ok, r} = P.start_link(["sleep", "30"])
      :ok = P.signal(r, 15)
      assert {:ok, {:signal, :sigterm}} = P.await_exit(r)
    end

    @tag :temp_dir
    test "stop gives a child that left the process group the kill signal too", %{temp_dir: dir} do
      marker = Path.join(dir, "graceful")

      escapee = "trap 'echo got-term > #{marker}; exit 0' TERM; echo ready; sleep 30 & wait"

      {:ok, p} = P.start_link(["sh", "-c", "setsid sh -c \"$0\" & wait", escapee])
      assert {:ok, "ready\n"} = P.read(p)
      assert {:ok, _} = P.stop(p, 3_000)
      # it ended by its own TERM handler, long before the SIGKILL deadline
      assert eventually(fn -> File.read(marker) == {:ok, "got-term\n"} end, 1_000)
    end

    test "stop escalates to SIGKILL after the grace" do
      {:ok, p} =
        P.start_link(["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"])

      assert {:ok, "ready\n"} = P.read(p)
      t0 = System.monotonic_time(:millisecond)
      assert {:ok, {:signal, :sigkill}} = P.stop(p, 300)
      assert System.monotonic_time(:millisecond) - t0 >= 300
      refute Process.alive?(p)
    end
  end

  describe "spawn errors" do
    test "missing program" do
      assert {:error, %Sluice.Error{reason: :enoent, stage: :exec} = e} =
               P.start_link(["sluice-no-such-program"])

      assert e.message =~ "sluice-no-such-program"

      assert {:error, %Sluice.Error{reason: :enoent}} = P.start_link(["/nonexistent/prog"])
    end

    @tag :temp_dir
    test "non-executable file and a directory", %{temp_dir: dir} do
      file = Path.join(dir, "plain.txt")
      File.write!(file, "echo hi\n")
      File.chmod!(file, 0o644)
      assert {:error, %Sluice.Error{reason: :eacces, stage: :exec}} = P.start_link([file])
      assert {:error, %Sluice.Error{reason: :eacces, stage: :exec}} = P.start_link([dir])
    end

    test "bad cwd" do
      assert {:error, %Sluice.Error{reason: :enoent, stage: :chdir}} =
               P.start_link(["true"], cd: "/nonexistent/dir")

      assert {:error, %Sluice.Error{reason: :enotdir, stage: :chdir}} =
               P.start_link(["true"], cd: "/etc/passwd")
    end

    test "the failure never becomes exit code 127 and nothing is left" do
      for _ <- 1..20, do: {:error, _} = P.start_link(["sluice-no-such-program"])
    end
  end

  describe "environment and cwd" do
    test "env set, unset and clear" do
      System.put_env("SLUICE_TEST_INHERITED", "yes")

      {:ok, p} =
        P.start_link(["sh", "-c", "echo $SLUICE_A-$SLUICE_TEST_INHERITED"],
          env: %{"SLUICE_A" => "1"}
        )

      assert read_all(p) == "1-yes\n"

      {:ok, p} =
        P.start_link(["sh", "-c", "echo x${SLUICE_TEST_INHERITED}x"],
          env: [{"SLUICE_TEST_INHERITED", nil}]
        )

      assert read_all(p) == "xx\n"

      {:ok, p} = P.start_link(["/usr/bin/env"], clear_env: true, env: [{"ONLY", "this"}])
      assert read_all(p) == "ONLY=this\n"
    after
      System.delete_env("SLUICE_TEST_INHERITED")
    end

    test "changes to the VM's environment after the helper started are seen" do
      System.put_env("SLUICE_LATE", "late")
      {:ok, p} = P.start_link(["sh", "-c", "echo x${SLUICE_LATE}x"])
      assert read_all(p) == "xlatex\n"
      System.delete_env("SLUICE_LATE")
      {:ok, p} = P.start_link(["sh", "-c", "echo x${SLUICE_LATE}x"])
      assert read_all(p) == "xx\n"
    after
      System.delete_env("SLUICE_LATE")
    end

    test "PATH comes from the program's environment" do
      assert {:error, %Sluice.Error{reason: :enoent}} =
               P.start_link(["true"], clear_env: true, env: %{"PATH" => "/nonexistent"})

      {:ok, p} = P.start_link(["true"], clear_env: true)
      assert {:ok, 0} = P.await_exit(p)
    end

    test "cd" do
      {:ok, p} = P.start_link(["pwd"], cd: "/usr")
      assert read_all(p) == "/usr\n"
    end
  end

  describe "no leaks" do
    test "200 runs leave the BEAM's fd count unchanged and no zombies" do
      run = fn ->
        {:ok, p} = P.start(["sh", "-c", "echo out; echo err >&2"], stderr: :consume)
        "out\n" = read_all(p)
        {:ok, 0} = P.stop(p)
      end

      run.()
      baseline = beam_fd_count()
      for _ <- 1..200, do: run.()

      assert eventually(fn -> beam_fd_count() == baseline end),
             "fds: #{beam_fd_count()} now, #{baseline} before"

      assert zombies() == []
    end

    test "active mode: a Sluice.Process ends once its exit is sent, even from set_active/2" do
      programs =
        for _ <- 1..50 do
          {:ok, p} = P.start(["true"])
          {p, P.os_pid(p), Process.monitor(p)}
        end

      # Every program has exited before it is made active, so most exits are sent while
      # set_active/2 is handled, not when the exit arrives.
      for {_p, os_pid, _ref} <- programs, do: assert(eventually(fn -> not alive?(os_pid) end))

      for {p, _os_pid, ref} <- programs do
        :ok = P.set_active(p, :once)
        assert_receive {:sluice_exit, ^p, 0}, 5_000
        # Its status delivered and its output at EOF, it ends: no fd nor process kept.
        assert_receive {:DOWN, ^ref, :process, ^p, :normal}, 5_000
      end
    end

    test "the program sees only fds 0, 1 and 2" do
      # ls lists the shell's fds while the shell waits for it
      {:ok, p} = P.start_link(["sh", "-c", "ls /proc/$$/fd"])
      assert read_all(p) == "0\n1\n2\n"
    end

    test "the program starts with no signal blocked or ignored" do
      {:ok, p} = P.start_link(["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"])

      assert read_all(p) ==
               "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    end

    test "the program is stopped when its owner exits" do
      test = self()

      owner =
        spawn(fn ->
          {:ok, p} = P.start_link(["sleep", "30"])
          send(test, {:os_pid, P.os_pid(p)})
          Process.sleep(:infinity)
        end)

      assert_receive {:os_pid, os_pid}
      assert alive?(os_pid)
      Process.exit(owner, :kill)
      assert eventually(fn -> not alive?(os_pid) end)
    end
  end

  describe "schedulers" do
    # Idle readers wait in enif_select: no process polls. Checked by work done (reductions
    # of every server and reader stay flat while idle), not by timing a scheduler, which a
    # loaded machine makes late whatever Sluice does.
    test "200 idle readers do no work while they wait" do
      procs =
        for _ <- 1..200 do
          {:ok, p} = P.start_link(["cat"])
          reader = Task.async(fn -> P.read(p) end)
          {p, reader}
        end

      pids = Enum.flat_map(procs, fn {p, reader} -> [p, reader.pid] end)
      work = fn -> Enum.map(pids, &elem(Process.info(&1, :reductions), 1)) end
      # Once every read is parked, a 300 ms window passes with no work at all (a reader
      # that polled would never have one).
      flat? = fn ->
        before = work.()
        Process.sleep(300)
        work.() == before
      end

      assert Enum.any?(1..10, fn _ -> flat?.() end)
      assert Enum.all?(pids, &(Process.info(&1, :status) == {:status, :waiting}))
      Enum.each(procs, fn {p, reader} -> P.close_stdin(p) && Task.await(reader) end)
    end
  end

  describe "bad arguments" do
    test "raise ArgumentError naming the option" do
      assert_raise ArgumentError, ~r/argv/, fn -> P.start_link("cat") end
      assert_raise ArgumentError, ~r/argv/, fn -> P.start_link([]) end
      assert_raise ArgumentError, ~r/argv/, fn -> P.start_link([:cat]) end
      assert_raise ArgumentError, ~r/NUL/, fn -> P.start_link(["ca\0t"]) end
      assert_raise ArgumentError, ~r/:cd/, fn -> P.start_link(["true"], cd: "a\0b") end
      assert_raise ArgumentError, ~r/:env/, fn -> P.start_link(["true"], env: %{"A=B" => "1"}) end
      assert_raise ArgumentError, ~r/:env/, fn -> P.start_link(["true"], env: %{"A" => "\0"}) end
      assert_raise ArgumentError, ~r/:stderr/, fn -> P.start_link(["true"], stderr: :capture) end
      assert_raise ArgumentError, ~r/:bogus/, fn -> P.start_link(["true"], bogus: 1) end

      assert_raise ArgumentError, ~r/:kill_grace/, fn ->
        P.start_link(["true"], kill_grace: -1)
      end

      assert_raise ArgumentError, ~r/timeout/, fn -> P.read(self(), 10, -5) end
    end
  end

  defp collect_any(p, out, err) do
    case P.read_any(p) do
      {:ok, {:stdout, data}} -> collect_any(p, [out, data], err)
      {:ok, {:stderr, data}} -> collect_any(p, out, [err, data])
      :eof -> {IO.iodata_to_binary(out), IO.iodata_to_binary(err)}
    end
  end

  defp read_chunks(p, acc) do
    case P.read(p, 4_096) do
      {:ok, data} -> read_chunks(p, [data | acc])
      :eof -> acc
    end
  end

  defp read_bytes(_p, 0, acc), do: acc |> Enum.reverse() |> IO.iodata_to_binary()

  defp read_bytes(p, left, acc) do
    {:ok, data} = P.read(p, left)
    read_bytes(p, left - byte_size(data), [data | acc])
  end
end
