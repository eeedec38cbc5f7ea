defmodule Sluice.CmdTest do
  # Sluice.cmd/3 against System.cmd/3: a table of cases run through both, the answers
  # compared; then what Sluice adds (cleanup, timeouts) and `into:` of Sluice.run/2.
  use Sluice.Case, async: false

  import ExUnit.CaptureIO

  # Elixir 1.15 gave System.cmd/3 `lines:` and `use_stdio:`; on older versions their
  # documented behaviour is the reference.
  @modern Version.match?(System.version(), ">= 1.15.0")

  # {name, command, args, opts}: each run through both, the answers equal. A list
  # collectable's chunks are where the reads happened to cut the output, in both: those
  # are compared joined (`:joined`).
  defp table(dir) do
    big = Path.join(dir, "big")

    [
      {"echo", "echo", ["hello"], []},
      {"exit 0", "sh", ["-c", "exit 0"], []},
      {"exit 1", "sh", ["-c", "echo partial; exit 1"], []},
      {"exit 7", "sh", ["-c", "exit 7"], []},
      {"exit 255", "sh", ["-c", "exit 255"], []},
      {"SIGKILL: 128 + 9", "sh", ["-c", "kill -9 $$"], []},
      {"SIGTERM: 128 + 15", "sh", ["-c", "echo before; kill -TERM $$"], []},
      {"argv[0] is the path found", "sh", ["-c", "echo $0"], []},
      {"arg0", "sh", ["-c", "echo $0"], [arg0: "renamed"]},
      {"absolute path", "/bin/echo", ["abs"], []},
      {"PATH of the VM, not of env:", "echo", ["found"], [env: [{"PATH", "/nonexistent"}]]},
      {"env adds", "sh", ["-c", "echo $SLUICE_CMD_A"], [env: [{"SLUICE_CMD_A", "1"}]]},
      {"env map", "sh", ["-c", "echo $SLUICE_CMD_A"], [env: %{"SLUICE_CMD_A" => "2"}]},
      {"env nil unsets", "sh", ["-c", "echo ${SLUICE_CMD_SET-unset}"],
       [env: [{"SLUICE_CMD_SET", nil}]]},
      {"inherited env", "sh", ["-c", "echo ${SLUICE_CMD_SET-unset}"], []},
      {"cd", "pwd", [], [cd: dir]},
      {"cd relative program", "sh", ["-c", "ls"], [cd: dir]},
      {"stderr_to_stdout", "sh", ["-c", "echo out; echo err >&2; echo out2"],
       [stderr_to_stdout: true]},
      {"stderr_to_stdout: false", "sh", ["-c", "echo out; echo err >&2"],
       [stderr_to_stdout: false]},
      {"binary output with NULs", "printf", ["a\\000b\\000\\377\\376"], []},
      {"binary into []", "printf", ["a\\000b\\377"], [into: []]},
      {"large output", "seq", ["1", "300000"], []},
      {"large output into []", "seq", ["1", "300000"], [into: []], :joined},
      {"large into a prefix", "seq", ["1", "100000"], [into: "seq:"]},
      {"empty output", "true", [], []},
      {"empty into []", "true", [], [into: []]},
      {"empty, non-zero", "false", [], []},
      {"parallelism", "echo", ["p"], [parallelism: true]},
      {"File.stream!", "seq", ["1", "50000"], [into: File.stream!(big)], {:file, big}}
    ]
  end

  # The lines of output `out` as System.cmd/3 (1.15+) gives them with `lines:`: each
  # without its "\n", the last one even without a newline.
  defp lines(""), do: []
  defp lines(out), do: out |> String.split("\n") |> drop_last_empty()

  defp drop_last_empty(parts) do
    if List.last(parts) == "", do: Enum.drop(parts, -1), else: parts
  end

  defp lines_table do
    [
      {"newline-terminated", "printf", ["a\\nb\\n"], 1024},
      {"no final newline", "printf", ["hello\\nworld"], 3},
      {"empty lines", "printf", ["\\n\\na\\n\\n"], 1024},
      {"empty output", "true", [], 1024},
      {"a line past the buffer comes whole", "sh",
       ["-c", "head -c 100000 /dev/zero | tr '\\0' x; echo; echo y"], 16},
      {"many lines", "seq", ["1", "20000"], 1024},
      {"stderr_to_stdout", "sh", ["-c", "echo out; echo err >&2"], 1024}
    ]
  end

  setup do
    System.put_env("SLUICE_CMD_SET", "inherited")
    on_exit(fn -> System.delete_env("SLUICE_CMD_SET") end)
  end

  @tag :temp_dir
  test "the table: System.cmd/3 and Sluice.cmd/3 answer the same", %{temp_dir: dir} do
    File.write!(Path.join(dir, "marker"), "")

    for row <- table(dir) do
      {name, command, args, opts, compare} =
        case row do
          {name, command, args, opts} -> {name, command, args, opts, :exact}
          {name, command, args, opts, compare} -> {name, command, args, opts, compare}
        end

      system = System.cmd(command, args, opts)
      system = settle(system, compare)
      sluice = settle(Sluice.cmd(command, args, opts), compare)

      assert sluice == system,
             "#{name}: System.cmd #{inspect(system)}, Sluice.cmd #{inspect(sluice)}"
    end
  end

  # A list's chunks joined; a file stream's file read back.
  defp settle({out, status}, :exact), do: {out, status}
  defp settle({out, status}, :joined), do: {IO.iodata_to_binary(out), status}
  defp settle({%File.Stream{} = out, status}, {:file, path}), do: {out, File.read!(path), status}

  test "into: IO.stream() writes to the group leader as System.cmd does" do
    for {command, args, opts} <- [
          {"echo", ["to the group leader"], []},
          {"sh", ["-c", "echo out; echo err >&2"], [stderr_to_stdout: true]},
          {"seq", ["1", "20000"], []}
        ] do
      system =
        capture_io(fn -> send(self(), System.cmd(command, args, [into: IO.stream()] ++ opts)) end)

      assert_received {%IO.Stream{}, 0} = system_answer

      sluice =
        capture_io(fn -> send(self(), Sluice.cmd(command, args, [into: IO.stream()] ++ opts)) end)

      assert_received {%IO.Stream{}, 0} = sluice_answer
      assert {sluice, sluice_answer} == {system, system_answer}
    end
  end

  test "lines: whole lines without their newline, as System.cmd's (Elixir 1.15+)" do
    for {name, command, args, n} <- lines_table(), into <- [[], ""] do
      opts =
        [into: into, lines: n] ++
          if(name == "stderr_to_stdout", do: [stderr_to_stdout: true], else: [])

      expected =
        if @modern do
          System.cmd(command, args, opts)
        else
          {out, status} = System.cmd(command, args, Keyword.drop(opts, [:lines, :into]))
          {Enum.into(lines(out), into), status}
        end

      assert Sluice.cmd(command, args, opts) == expected, name
    end

    assert Sluice.cmd("printf", ["a\\nb"], into: [], lines: 1) == {["a", "b"], 0}
    # The documented example.
    assert Sluice.cmd("echo", ["hello\nworld"], into: [], lines: 1024) == {["hello", "world"], 0}
  end

  test "use_stdio: false: nothing collected, the output on the console" do
    expected = if @modern, do: System.cmd("sh", ["-c", "exit 3"], use_stdio: false), else: {"", 3}
    assert Sluice.cmd("sh", ["-c", "echo x >&2; exit 3"], use_stdio: false) == expected
    assert Sluice.cmd("true", [], use_stdio: false, into: []) == {[], 0}

    error =
      assert_raise ArgumentError, fn ->
        Sluice.cmd("true", [], use_stdio: false, stderr_to_stdout: true)
      end

    assert error.message =~ ":stderr_to_stdout"
  end

  @tag :temp_dir
  test "command resolution and its errors, as System.cmd's", %{temp_dir: dir} do
    script = Path.join(dir, "sluice-cmd-script")
    File.write!(script, "#!/bin/sh\necho script\n")
    File.chmod!(script, 0o755)
    plain = Path.join(dir, "plain")
    File.write!(plain, "not a program")

    # System.cmd's answers: a failed Port.open/2 of OTP 25 leaks an fd on each call, which
    # this module's leak check would see, so those of an existing path are written out
    # (checked by hand against System.cmd/3).
    for {command, args, system} <- [
          {"sluice-no-such-program", ["a"], :system},
          # A name with a slash is looked up under PATH too, never in the cwd.
          {"./sluice-cmd-script", [], :system},
          {"/no/such/program", [], :enoent},
          {plain, [], :eacces}
        ] do
      # ErlangError's original reason, as `catch_error/1` gives it.
      system =
        if system == :system, do: catch_error(System.cmd(command, args, cd: dir)), else: system

      sluice = catch_error(Sluice.cmd(command, args, cd: dir))
      assert sluice == system, "#{command}: #{inspect(sluice)} for #{inspect(system)}"

      assert %ErlangError{original: ^system} =
               assert_raise(ErlangError, fn -> Sluice.cmd(command, args, cd: dir) end)
    end

    assert Sluice.cmd(script, []) == System.cmd(script, [])
    assert Sluice.cmd(script, []) == {"script\n", 0}
  end

  test "mistakes raise ArgumentError naming the option or argument" do
    for {fun, message} <- [
          {fn -> Sluice.cmd("echo", [], timout: 1) end,
           "unknown option :timout for Sluice.cmd/3; did you mean :timeout? known options: :into, :lines,"},
          {fn -> Sluice.cmd("echo", [], stderr: :null) end,
           "Sluice.cmd/3 does not take the option :stderr: System.cmd leaves stderr to the VM's stderr; use stderr_to_stdout: true, or Sluice.run/2"},
          {fn -> Sluice.cmd("echo", [], lines: 0) end, "invalid value for option :lines"},
          {fn -> Sluice.cmd("echo", [], into: 5) end, "invalid value for option :into"},
          {fn -> Sluice.cmd("echo", [], parallelism: 1) end,
           "invalid value for option :parallelism"},
          {fn -> Sluice.cmd("echo", [], cd: "/tmp", cd: "/") end,
           "option :cd given more than once"},
          {fn -> Sluice.cmd("echo", [:a]) end, "args must be a list of strings"},
          {fn -> Sluice.cmd(["echo", "hi"], []) end,
           ~s{command must be a string, the program, its arguments apart: Sluice.cmd("echo", ["hi"])}},
          {fn -> Sluice.cmd("ec\0ho", []) end, "command must be a string without NUL bytes"}
        ] do
      error = assert_raise ArgumentError, fun
      assert error.message =~ message
    end
  end

  test "Sluice's guarantees underneath: timeout, and no program outlives its caller" do
    assert %Sluice.Error{reason: :timeout} =
             catch_error(Sluice.cmd("sleep", ["10"], timeout: 100))

    assert_raise Sluice.Error, ~r/chdir/, fn -> Sluice.cmd("true", [], cd: "/no/such/dir") end

    assert Sluice.cmd("cat", [], input: ["a", "b"]) == {"ab", 0}
    # Without input stdin is at EOF: a program that reads it does not wait.
    assert Sluice.cmd("cat", []) == {"", 0}

    caller = spawn(fn -> Sluice.cmd("sleep", ["30"]) end)
    mine = fn -> Enum.filter(Sluice.list(), &(&1.owner == caller)) end
    assert Sluice.OsProbe.eventually(fn -> mine.() != [] end)
    [%{os_pid: os_pid, argv: argv}] = mine.()
    assert argv == [System.find_executable("sleep"), "30"]
    Process.exit(caller, :kill)
    assert Sluice.OsProbe.eventually(fn -> not Sluice.OsProbe.alive?(os_pid) end)
  end

  describe "into: of Sluice.run/2" do
    test "stdout into any collectable, result.stdout its final value" do
      assert {:ok, %{stdout: out, stderr: "err\n", status: 2}} =
               Sluice.run(["sh", "-c", "seq 1 50000; echo err >&2; exit 2"], into: [])

      assert IO.iodata_to_binary(out) == Enum.map_join(1..50_000, &"#{&1}\n")

      assert {:ok, %{stdout: "out:1\n"}} = Sluice.run(["echo", "1"], into: "out:")
      assert {:ok, %{stdout: ""}} = Sluice.run(["true"], into: "")
      # Not piped: the collectable gets nothing.
      assert {:ok, %{stdout: []}} = Sluice.run(["echo"], into: [], stdout: :null)
      assert {:ok, %{stdout: "x\n"}} = Sluice.run(["echo", "x"], into: nil)
    end

    @tag :temp_dir
    test "a file stream, and a failure halts the collectable", %{temp_dir: dir} do
      path = Path.join(dir, "out")
      stream = File.stream!(path)
      assert {:ok, %{stdout: ^stream}} = Sluice.run(["seq", "3"], into: stream)
      assert File.read!(path) == "1\n2\n3\n"

      # The collectable is halted (the file closed) and result.stdout is nil.
      assert {:error, %Sluice.Error{reason: :max_output, result: %{stdout: nil}}} =
               Sluice.run(["seq", "1", "100000"], into: File.stream!(path), max_output: 10)

      # What was read before the stop: max_output + 1 bytes, as run's partial result.
      assert File.read!(path) == "1\n2\n3\n4\n5\n6"

      assert {:error, %Sluice.Error{reason: :timeout, result: %{stdout: nil, stderr: "e\n"}}} =
               Sluice.run(["sh", "-c", "echo e >&2; echo o; exec sleep 10"],
                 into: [],
                 timeout: 300
               )
    end

    test "a collectable that raises stops the program and halts it" do
      parent = self()

      collectable = fn
        :ok, {:cont, _data} -> raise "full"
        :ok, :halt -> send(parent, :halted)
        :ok, :done -> :ok
      end

      into = %Sluice.TestSink{fun: collectable}
      assert_raise RuntimeError, "full", fn -> Sluice.run(["yes"], into: into) end
      assert_received :halted
    end

    test "a spawn failure halts the collectable" do
      into = %Sluice.TestSink{fun: fn :ok, :halt -> send(self(), :halted) end}

      assert {:error, %Sluice.Error{reason: :enoent}} =
               Sluice.run(["/no/such/program"], into: into)

      assert_received :halted
    end

    test "a bad into: raises ArgumentError naming it" do
      assert_raise ArgumentError,
                   ~r/invalid value for option :into: expected a Collectable/,
                   fn ->
                     Sluice.run(["true"], into: 42)
                   end
    end
  end

  @tag :external_vm
  test "the VM's stdout: into: IO.stream(); stderr stays on the VM's stderr" do
    code =
      Sluice.ChildVM.start_sluice() <>
        ~S"""
        {_, 0} = Sluice.cmd("echo", ["cmd-to-stdout"], into: IO.stream())
        {:ok, _} = Sluice.run(["echo", "run-to-stdout"], into: IO.binstream())
        {"", 0} = Sluice.cmd("sh", ["-c", "echo cmd-to-stderr >&2"])
        {"", 0} = System.cmd("sh", ["-c", "echo system-to-stderr >&2"])
        {_, 0} = System.cmd("echo", ["system-to-stdout"], into: IO.stream())
        """

    vm = Sluice.ChildVM.run(["-e", code])
    assert vm.status == 0, vm.stdout <> vm.stderr
    assert vm.stdout == "cmd-to-stdout\nrun-to-stdout\nsystem-to-stdout\n"
    assert vm.stderr =~ "cmd-to-stderr\n"
    assert vm.stderr =~ "system-to-stderr\n"
  end
end
