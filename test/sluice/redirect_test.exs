defmodule Sluice.RedirectTest do
  @moduledoc """
  stdin, stdout and stderr to files, `/dev/null` and the console, opened by the helper
  program (no byte through the VM), with real programs and real files.
  """
  use Sluice.Case, async: false

  alias Sluice.Process, as: P

  @moduletag :temp_dir

  test "stdout truncates by default, appends with append: true, and run gives stdout: nil",
       %{temp_dir: dir} do
    out = Path.join(dir, "out")
    File.write!(out, "old content that is longer\n")

    assert {:ok, %{status: 0, stdout: nil}} =
             Sluice.run(["echo", "one"], stdout: {:file, out, []})

    assert File.read!(out) == "one\n"
    assert {:ok, _} = Sluice.run(["echo", "two"], stdout: {:file, out, append: true})
    assert File.read!(out) == "one\ntwo\n"
    assert {:ok, _} = Sluice.run(["echo", "three"], stdout: {:file, out, append: false})
    assert File.read!(out) == "three\n"
  end

  test "a created file gets the mode (under the umask), relative paths follow cd",
       %{temp_dir: dir} do
    assert {:ok, %{status: 0}} =
             Sluice.run(["echo", "x"], cd: dir, stdout: {:file, "made", mode: 0o640})

    assert %File.Stat{mode: mode} = File.stat!(Path.join(dir, "made"))
    assert Bitwise.band(mode, 0o777) == 0o640

    assert {:ok, _} = Sluice.run(["echo", "y"], cd: dir, stdout: {:file, "default"})
    assert Bitwise.band(File.stat!(Path.join(dir, "default")).mode, 0o777) == 0o644
  end

  test "stdout and stderr into one file keep their order", %{temp_dir: dir} do
    both = Path.join(dir, "both")
    script = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done"

    assert {:ok, %{stdout: nil, stderr: nil}} =
             Sluice.run(["sh", "-c", script],
               stdout: {:file, both, []},
               stderr: {:file, both, []}
             )

    expected = Enum.map_join(1..5, fn i -> "out#{i}\nerr#{i}\n" end)
    assert File.read!(both) == expected

    # stderr: :stdout follows stdout into its file as well.
    assert {:ok, _} = Sluice.run(["sh", "-c", script], stdout: {:file, both}, stderr: :stdout)
    assert File.read!(both) == expected
  end

  test "stderr alone into a file, stdout still captured", %{temp_dir: dir} do
    err = Path.join(dir, "err")

    assert {:ok, %{stdout: "out\n", stderr: nil}} =
             Sluice.run(["sh", "-c", "echo out; echo err >&2"], stderr: {:file, err, []})

    assert File.read!(err) == "err\n"
  end

  test "stdin from a file and from /dev/null", %{temp_dir: dir} do
    input = Path.join(dir, "in")
    File.write!(input, "from a file\n")
    assert {:ok, %{stdout: "from a file\n"}} = Sluice.run(["cat"], stdin: {:file, input})
    assert {:ok, %{stdout: "", status: 0}} = Sluice.run(["cat"], stdin: :null)
    assert {:ok, %{stdout: "12\n"}} = Sluice.run(["wc", "-c"], cd: dir, stdin: {:file, "in"})
  end

  test "stdout: :null discards, and a Sluice.Process read says :not_piped" do
    assert {:ok, %{stdout: nil, status: 0}} = Sluice.run(["echo", "gone"], stdout: :null)

    {:ok, p} = P.start_link(["sh", "-c", "echo hidden; sleep 0.2"], stdout: :null)
    assert P.read(p, 100, 1_000) == {:error, :not_piped}
    assert {:ok, 0} = P.await_exit(p, 5_000)
  end

  @tag :external_vm
  test "stdout: :console writes to the VM's console (its stderr), not into the result" do
    # A VM of its own, so its console is a pipe this test reads.
    code =
      Sluice.ChildVM.start_sluice() <>
        Sluice.ChildVM.reporter() <>
        ~S"""
        report.("console", Sluice.run(["echo", "console-marker"], stdout: :console))
        {:ok, p} = Sluice.Process.start_link(["echo", "process-marker"], stdout: :console)
        report.("read", Sluice.Process.read(p))
        report.("exit", Sluice.Process.await_exit(p, 5_000))
        report.("piped", Sluice.run(["echo", "piped-marker"]))
        """

    vm = Sluice.ChildVM.run(["-e", code])
    reports = Sluice.ChildVM.reports(vm)
    assert vm.status == 0, vm.stdout <> vm.stderr

    assert {:ok, %{stdout: nil, status: 0}} = reports["console"]
    assert {:error, :not_piped} = reports["read"]
    assert {:ok, 0} = reports["exit"]
    assert vm.stderr =~ "console-marker\n"
    assert vm.stderr =~ "process-marker\n"
    refute vm.stdout =~ "marker"
    # The default is the data pipe: into the result, not onto the console.
    assert {:ok, %{stdout: "piped-marker\n"}} = reports["piped"]
    refute vm.stderr =~ "piped-marker"
  end

  test "a missing directory and a read-only file are errors of their stage", %{temp_dir: dir} do
    missing = Path.join([dir, "no", "such", "dir", "out"])

    assert {:error, %Sluice.Error{reason: :enoent, stage: :stdout}} =
             Sluice.run(["echo"], stdout: {:file, missing, []})

    assert {:error, %Sluice.Error{reason: :enoent, stage: :stdin}} =
             Sluice.run(["cat"], stdin: {:file, missing})

    read_only = Path.join(dir, "ro")
    File.write!(read_only, "")
    File.chmod!(read_only, 0o444)
    # root ignores file modes: make the file immutable to the helper program as well.
    {_, 0} = System.cmd("chattr", ["+i", read_only], stderr_to_stdout: true)

    try do
      assert {:error, %Sluice.Error{reason: reason, stage: :stderr}} =
               Sluice.run(["echo"], stderr: {:file, read_only, append: true})

      assert reason in [:eacces, :eperm]
    after
      System.cmd("chattr", ["-i", read_only])
    end
  end

  test "options are checked" do
    for {opts, key} <- [
          {[stdout: {:file, "", []}], :stdout},
          {[stdout: {:file, "x", append: :yes}], :stdout},
          {[stdout: {:file, "x", mode: 0o10000}], :stdout},
          {[stdin: {:file, 5}], :stdin},
          {[stdin: :file], :stdin},
          {[stderr: {:file, "x", [:append]}], :stderr},
          {[stdin: :null, input: "x"], :input},
          {[pty: true, stdout: :null], :pty}
        ] do
      assert_raise ArgumentError, ~r/option #{inspect(key)}/, fn -> Sluice.run(["true"], opts) end
    end
  end
end
