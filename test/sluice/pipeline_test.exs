defmodule Sluice.PipelineTest do
  @moduledoc """
  Kernel pipelines (`Sluice.pipeline/1`) with real programs: bytes through the helper
  program's pipes, every stage's status, pipefail, per-stage options, and that a stop ends
  every stage.
  """
  use Sluice.Case, async: false

  alias Sluice.OsProbe
  alias Sluice.Process, as: P

  @mib 1_048_576

  @tag :temp_dir
  test "a three-stage pipeline of 100 MiB is byte-identical, with every status",
       %{temp_dir: dir} do
    source = Path.join(dir, "source")
    {_, 0} = System.cmd("sh", ["-c", "head -c #{100 * @mib} /dev/urandom > #{source}"])

    pipeline =
      Sluice.pipeline([["head", "-c", "#{100 * @mib}", source], ["gzip", "-1"], ["gzip", "-dc"]])

    assert {:ok, %{status: 0, statuses: [0, 0, 0], stdout: out}} =
             Sluice.run(pipeline, timeout: 120_000)

    assert byte_size(out) == 100 * @mib
    assert :crypto.hash(:sha256, out) == :crypto.hash(:sha256, File.read!(source))

    # The same through stream!, into a file with stdout: redirected, and through a file.
    streamed = pipeline |> Sluice.stream!() |> Enum.reduce(0, &(byte_size(&1) + &2))
    assert streamed == 100 * @mib

    copy = Path.join(dir, "copy")

    assert {:ok, %{stdout: nil, statuses: [0, 0, 0]}} =
             Sluice.run(pipeline, stdout: {:file, copy, []}, timeout: 120_000)

    assert File.read!(copy) == File.read!(source)
  end

  test "a failing middle stage: status is the last's, pipefail decides success" do
    # The first stage writes nothing: a write into `false`'s closed pipe could be SIGPIPE.
    pipeline = Sluice.pipeline([["true"], ["false"], ["cat"]])
    assert {:ok, %{status: 0, statuses: [0, 1, 0]}} = Sluice.run(pipeline)

    assert_raise Sluice.ExitError,
                 "true | false | cat failed: stage 2 (false) exited with status 1; " <>
                   "statuses [0, 1, 0]",
                 fn -> Sluice.run!(pipeline) end

    assert %{status: 0} = Sluice.run!(pipeline, pipefail: false)
    assert %{statuses: [0, 1, 0]} = Sluice.run!(pipeline, success_exit_codes: [0, 1])

    assert_raise Sluice.ExitError, fn -> pipeline |> Sluice.stream!() |> Enum.to_list() end
    assert [{:exit, 0}] = pipeline |> Sluice.stream() |> Enum.to_list()
    assert [] = pipeline |> Sluice.stream!(pipefail: false) |> Enum.to_list()
  end

  test "ExitError names the stage that failed and its status, with every status" do
    pipeline = Sluice.pipeline([["sh", "-c", "exit 1"], ["cat"]])

    message =
      ~s{sh -c "exit 1" | cat failed: stage 1 (sh -c "exit 1") exited with status 1; } <>
        "statuses [1, 0]"

    error = assert_raise Sluice.ExitError, message, fn -> Sluice.run!(pipeline) end
    assert {error.status, error.statuses, error.stage} == {0, [1, 0], 1}
    assert %Sluice.Result{statuses: [1, 0]} = error.result

    error =
      assert_raise Sluice.ExitError, message, fn -> Enum.to_list(Sluice.stream!(pipeline)) end

    assert {error.statuses, error.stage} == {[1, 0], 1}

    # Driven as another program's input, the pipeline's exit is checked the same way.
    assert_raise Sluice.ExitError, message, fn ->
      Sluice.run(["cat"], input: Sluice.stream!(pipeline))
    end

    assert {:ok, %{stdout: ""}} =
             Sluice.run(["cat"], input: Sluice.stream!(pipeline, pipefail: false))

    # Without pipefail the last stage decides, and is the one named.
    last = Sluice.pipeline([["true"], ["sh", "-c", "exit 3"]])

    assert_raise Sluice.ExitError,
                 ~s{true | sh -c "exit 3" failed: stage 2 (sh -c "exit 3") exited with status 3; } <>
                   "statuses [0, 3]",
                 fn -> Sluice.run!(last, pipefail: false) end

    # The first failing stage is named; a stage killed by a signal says so.
    killed = Sluice.pipeline([["sh", "-c", "kill -KILL $$"], ["sh", "-c", "exit 2"]])

    assert_raise Sluice.ExitError,
                 ~s{sh -c 'kill -KILL $$' | sh -c "exit 2" failed: stage 1 (sh -c 'kill -KILL $$') } <>
                   "was killed by sigkill; statuses [{:signal, :sigkill}, 2]",
                 fn -> Sluice.run!(killed) end
  end

  test "input goes to the first stage; per-stage cd, env and stderr" do
    pipeline =
      Sluice.pipeline([
        {["sh", "-c", "cat; echo $A; pwd; echo first-err >&2"], env: %{"A" => "a"}, cd: "/"},
        {["sh", "-c", "cat; echo $A$B; echo second-err >&2"],
         env: %{"B" => "b"}, stderr: :stdout},
        {["sh", "-c", "cat; echo third-err >&2"], stderr: :null}
      ])

    assert {:ok, result} = Sluice.run(pipeline, input: "in\n", env: %{"A" => "A"})

    assert result.stdout == "in\na\n/\nsecond-err\nAb\n" or
             result.stdout == "in\na\n/\nAb\nsecond-err\n"

    # The first stage's stderr is the pipeline's (captured); the others went elsewhere.
    assert result.stderr == "first-err\n"
    assert result.statuses == [0, 0, 0]
  end

  test "a pipeline stopped on timeout leaves no stage alive" do
    pipeline =
      Sluice.pipeline([
        ["sh", "-c", "echo $$; exec sleep 100"],
        ["sh", "-c", "head -n1; echo $$; exec sleep 100"],
        ["sh", "-c", "echo $$; exec cat"]
      ])

    assert {:error, %Sluice.Error{reason: :timeout, result: result}} =
             Sluice.run(pipeline, timeout: 500, kill_grace: 200)

    pids = result.stdout |> String.split() |> Enum.map(&String.to_integer/1)
    assert length(pids) == 3
    assert length(result.statuses) == 3
    assert Enum.all?(result.statuses, &match?({:signal, _}, &1))
    assert OsProbe.eventually(fn -> not Enum.any?(pids, &OsProbe.alive?/1) end)
  end

  test "Sluice.Process drives a pipeline; stop ends every stage" do
    {:ok, p} = P.start_link(Sluice.pipeline([["cat"], ["sed", "-u", "s/hello/HELLO/"], ["cat"]]))
    :ok = P.write(p, "hello\n")
    assert {:ok, "HELLO\n"} = P.read(p, 100, 5_000)
    assert %{os_pid: leader} = P.info(p)
    :ok = P.close_stdin(p)
    assert {:ok, 0} = P.await_exit(p, 5_000)
    refute OsProbe.alive?(leader)

    {:ok, p} = P.start_link(Sluice.pipeline([["sleep", "100"], ["sleep", "100"]]))
    assert {:ok, {:signal, :sigterm}} = P.stop(p, 1_000)
  end

  test "Sluice.list/0, Sluice.Process.info/1 and the ps table show every stage" do
    stages = [["sleep", "301"], {["cat"], cd: "/"}, ["sleep", "302"]]
    {:ok, p} = P.start_link(Sluice.pipeline(stages), kill_grace: 500)
    runner = spawn(fn -> Sluice.run(Sluice.pipeline([["sleep", "303"], ["cat"]])) end)
    {:ok, single} = P.start_link(["sleep", "304"], kill_grace: 500)

    assert %{
             os_pid: leader,
             argv: ["sleep", "301"],
             pipeline: [["sleep", "301"], ["cat"], ["sleep", "302"]]
           } = P.info(p)

    # os_pid and argv are the first stage's, the group leader's.
    assert File.read!("/proc/#{leader}/cmdline") == "sleep\0" <> "301\0"
    assert %{pipeline: nil, argv: ["sleep", "304"]} = P.info(single)
    assert Enum.find(Sluice.list(), &(&1.pid == p)) == P.info(p)

    assert OsProbe.eventually(fn ->
             Enum.any?(
               Sluice.list(),
               &(&1.pid == runner and &1.pipeline == [["sleep", "303"], ["cat"]])
             )
           end)

    table = Sluice.Ps.table()
    assert table =~ ~r/\ssleep 301 \| cat \| sleep 302\n/
    assert table =~ ~r/\ssleep 303 \| cat\n/
    assert table =~ ~r/\ssleep 304\n/

    Process.exit(runner, :kill)
    assert {:ok, _} = P.stop(p, 1_000)
    assert {:ok, _} = P.stop(single, 1_000)
  end

  test "a stage that cannot start fails the whole spawn, leaving nothing behind" do
    assert {:error, %Sluice.Error{reason: :enoent, stage: :exec}} =
             Sluice.run(Sluice.pipeline([["sleep", "100"], ["sluice-no-such-program"]]))
  end

  test "options a pipeline cannot honour raise, naming the option" do
    pipeline = Sluice.pipeline([["echo", "a"], ["cat"]])
    assert_raise ArgumentError, ~r/:pty/, fn -> Sluice.run(pipeline, pty: true) end
    assert_raise ArgumentError, ~r/:use_stdio/, fn -> Sluice.run(pipeline, use_stdio: false) end

    # A stage's own stderr is checked when the pipeline is built, naming what was given.
    assert_raise ArgumentError, ~r/:stderr.*got: :capture/, fn ->
      Sluice.pipeline([{["echo", "a"], stderr: :capture}, ["cat"]])
    end
  end

  test "pipelines are checked when built" do
    for bad <- [[], [[]], [{["ls"], bogus: 1}], [{["ls"], stderr: :capture}], :x, [["ls"] | :x]] do
      assert_raise ArgumentError, fn -> Sluice.pipeline(bad) end
    end
  end
end
