defmodule Sluice.MessagesTest do
  # Errors that say what to do: each message asserted as a user reads it.
  use Sluice.Case, async: false

  import ExUnit.CaptureLog

  describe "argv written as one string" do
    test "a program and its arguments apart: the argv to write" do
      error = assert_raise ArgumentError, fn -> Sluice.run("echo", ["hi"]) end

      assert error.message ==
               ~s(argv must be a list of strings, the program first and then its arguments: ) <>
                 ~s{Sluice.run(["echo", "hi"]), got: "echo"}
    end

    test "one string or charlist: split at spaces, one string per argument" do
      for argv <- ["echo hi", ~c"echo hi"] do
        error = assert_raise ArgumentError, fn -> Sluice.run(argv) end

        assert error.message ==
                 ~s{argv must be a list of strings, one per argument (no shell splits a } <>
                   ~s{string): Sluice.run(["echo", "hi"]), got: #{inspect(argv)}}
      end

      error = assert_raise ArgumentError, fn -> Sluice.stream!("seq 3") end
      assert error.message =~ ~s{Sluice.stream!(["seq", "3"])}
      error = assert_raise ArgumentError, fn -> Sluice.run!("seq 3") end
      assert error.message =~ ~s{Sluice.run!(["seq", "3"])}
      error = assert_raise ArgumentError, fn -> Sluice.Process.start_link("seq 3") end
      assert error.message =~ ~s{(no shell splits a string): ["seq", "3"]}
    end

    test "a shell command line: run a shell" do
      error = assert_raise ArgumentError, fn -> Sluice.run("echo a; exit 3") end

      assert error.message ==
               ~s{argv must be a list of strings, one per argument (no shell splits a } <>
                 ~s{string); for a shell command line, run a shell: } <>
                 ~s{Sluice.run(["sh", "-c", "echo a; exit 3"]), got: "echo a; exit 3"}
    end

    test "a blank string is the usual mistake" do
      error = assert_raise ArgumentError, fn -> Sluice.run("") end
      assert error.message == ~s(argv must be a non-empty list of strings, got: "")
    end
  end

  test "an unknown option near a known one: did you mean" do
    error = assert_raise ArgumentError, fn -> Sluice.run(["true"], timout: 100) end

    assert error.message =~
             ~r/^unknown option :timout for Sluice.run\/2; did you mean :timeout\? known options: :cd, /

    error = assert_raise ArgumentError, fn -> Sluice.stream!(["true"], line: true) end
    assert error.message =~ "did you mean :lines?"

    # Nothing near: no guess.
    error = assert_raise ArgumentError, fn -> Sluice.run(["true"], bogus: 1) end
    assert error.message =~ ~r/^unknown option :bogus for Sluice.run\/2; known options: /
  end

  test "Sluice.ExitError quotes the arguments that need it" do
    error = assert_raise Sluice.ExitError, fn -> Sluice.run!(["sh", "-c", "echo a; exit 3"]) end
    assert Exception.message(error) == ~s(sh -c "echo a; exit 3" exited with status 3)

    error =
      assert_raise Sluice.ExitError, fn ->
        Sluice.run!(["sh", "-c", "exit $1", "it's", "4", ""])
      end

    assert Exception.message(error) == ~s(sh -c 'exit $1' "it's" 4 "" exited with status 4)

    pipeline = Sluice.pipeline([["printf", "a b"], ["sh", "-c", "cat; exit 2"]])
    error = assert_raise Sluice.ExitError, fn -> Sluice.run!(pipeline) end

    assert Exception.message(error) ==
             ~s{printf "a b" | sh -c "cat; exit 2" failed: stage 2 (sh -c "cat; exit 2") } <>
               "exited with status 2; statuses [0, 2]"
  end

  test "a daemon never ready mentions output buffering" do
    capture_log(fn ->
      assert {:error, %Sluice.Error{reason: :not_ready, message: message}} =
               Sluice.Daemon.start_link(
                 argv: ["sleep", "30"],
                 ready: ~r/listening/,
                 ready_timeout: 200
               )

      assert message ==
               "no line of output matched :ready within 200 ms; a program whose output is " <>
                 "a pipe (not a terminal) often keeps what it writes in a buffer until the " <>
                 "buffer fills or it exits: make it flush each line (python3 -u, stdbuf -oL) " <>
                 "or run it with pty: true"
    end)
  end

  test "a worker's first call timed out before any answer logs the buffering hint, once" do
    {:ok, w} = Sluice.Worker.start_link(["sleep", "30"])

    log =
      capture_log(fn ->
        assert {:error, :timeout} = Sluice.Worker.call(w, "a", 100)
        assert {:error, :timeout} = Sluice.Worker.call(w, "b", 100)
        # The log is written by the worker: its next call has seen it done.
        Sluice.Worker.os_pid(w)
      end)

    assert log =~
             "Sluice.Worker #{inspect(w)}: a call timed out before the program answered any; " <>
               "a program whose output is a pipe (not a terminal) often keeps what it writes " <>
               "in a buffer until the buffer fills or it exits: make it flush each line " <>
               "(python3 -u, stdbuf -oL) or run it with pty: true"

    assert length(String.split(log, "timed out before")) == 2
    GenServer.stop(w)

    # A worker that answered once times out without the hint.
    {:ok, cat} = Sluice.Worker.start_link(["cat"], framing: {:line, 100})

    log =
      capture_log(fn ->
        assert {:ok, {:eol, "x"}} = Sluice.Worker.call(cat, "x\n")
        assert {:error, :timeout} = Sluice.Worker.call(cat, "no newline", 100)
        Sluice.Worker.os_pid(cat)
      end)

    refute log =~ "buffer"
    GenServer.stop(cat)
  end

  @tag :external_vm
  test ":helper_down when :sluice was never started says how to start it" do
    code =
      Sluice.ChildVM.reporter() <>
        ~S"""
        report.("run", Sluice.run(["echo", "hi"]))
        report.("process", Sluice.Process.start_link(["echo", "hi"]))
        {:ok, _} = Application.ensure_all_started(:sluice)
        report.("started", Sluice.run(["echo", "hi"]))
        """

    vm = Sluice.ChildVM.run(["-e", code])
    assert vm.status == 0, vm.stdout <> vm.stderr
    reports = Sluice.ChildVM.reports(vm)

    expected =
      "the :sluice application is not started, so its helper program does not run (a Mix " <>
        "task, `mix run --no-start` or a script starts no application by itself): call " <>
        "Application.ensure_all_started(:sluice) first"

    assert {:error, %Sluice.Error{reason: :helper_down, message: ^expected}} = reports["run"]
    assert {:error, %Sluice.Error{reason: :helper_down, message: ^expected}} = reports["process"]
    assert {:ok, %Sluice.Result{stdout: "hi\n"}} = reports["started"]
  end
end
