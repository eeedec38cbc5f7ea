defmodule Sluice.FaultMatrixVmTest do
  @moduledoc """
  Rows (e) `System.stop/0`, (f) the VM SIGKILLed and (g) the helper SIGKILLed, each in a
  separate VM (`elixir` running `test/fixtures/fault_vm.exs` on the built ebin), with every
  program (column) running at once, with cgroups (`:auto`) and without (`false`).

  The separate VM is itself started through Sluice, so this VM's helper (a child
  subreaper) adopts and reaps whatever the separate VM leaves: a survivor stays visible as
  a live process, and nothing becomes a zombie under an init that might not reap.
  """
  use Sluice.Case, async: false

  alias Sluice.FaultMatrix, as: M
  alias Sluice.Process, as: P

  @moduletag :external_vm
  # The helper's default shutdown grace (SIGTERM to SIGKILL when the VM dies).
  @shutdown_grace 1_000

  for mode <- [:auto, :off], row <- [:vm_stop, :vm_kill, :helper_kill] do
    @tag :temp_dir
    test "#{mode}: #{row}", %{temp_dir: dir} do
      run_row(unquote(row), unquote(mode), dir)
    end
  end

  # Issue 19, finding 10: the VM halts right after the helper program's death (as a script
  # does when the Sluice.Processes it linked exit with {:shutdown, :helper_down}), so no
  # new helper program ever sweeps the dead one's cgroup. The sweep must not depend on it:
  # everything is gone all the same.
  # The separate VM's cgroup root is its own: no helper program of another VM (whose
  # start-up sweeps every dead helper program's cgroup under its root) can clean up for it.
  @tag :temp_dir
  @tag :cgroup
  test "auto: helper_kill and the VM halts at once", %{temp_dir: dir} do
    kinds = M.programs()
    pidfiles = Map.new(kinds, &{&1, M.pidfile(dir, &1)})
    mount = Path.dirname(Sluice.Helper.info().cgroup_root)
    root = Path.join(mount, "sluice-halt-#{System.unique_integer([:positive])}")
    on_exit(fn -> rmdir_tree(root) end)
    vm = start_vm(root, pidfiles)
    ["ready", _beam, helper, ^root] = vm |> read_line("ready ") |> String.split()
    helper = String.to_integer(helper)
    procs = Map.new(kinds, &{&1, M.await_ready(&1, pidfiles[&1], helper)})

    t = M.now()
    :ok = P.write(vm, "kill_helper_halt\n")
    assert {:ok, 0} = P.await_exit(vm, 15_000)
    deadline = max(t + 1_100, M.now()) + 1_000

    for kind <- kinds do
      left = M.left_at(procs[kind], deadline)
      M.assert_left(left, [], "auto helper_kill and halt x #{kind}")
    end

    # Nobody is left to remove the dead helper program's (empty) cgroup: the next
    # application start would (on_exit removes the private root).
    Enum.each(procs, fn {_, ps} -> M.kill_survivors(ps) end)
  end

  defp rmdir_tree(dir) do
    case File.ls(dir) do
      {:ok, subs} ->
        for sub <- subs, File.dir?(Path.join(dir, sub)), do: rmdir_tree(Path.join(dir, sub))

      _ ->
        :ok
    end

    File.rmdir(dir)
  end

  defp run_row(row, mode, dir) do
    kinds = M.programs()
    pidfiles = Map.new(kinds, &{&1, M.pidfile(dir, &1)})
    vm = start_vm(mode, pidfiles)
    ["ready", beam, helper, root] = vm |> read_line("ready ") |> String.split()
    [beam, helper] = Enum.map([beam, helper], &String.to_integer/1)
    cgroups? = root != "-"
    if mode == :off, do: refute(cgroups?)

    if mode == :auto and File.dir?("/sys/fs/cgroup/unified/sluice") do
      assert cgroups?, "cgroups are available but the separate VM's helper did not use them"
    end

    procs = Map.new(kinds, &{&1, M.await_ready(&1, pidfiles[&1], helper)})
    helper_proc = {:helper, helper, M.start_time(helper)}

    {t, result} = inflict(row, vm, beam)
    grace = if row == :helper_kill, do: 1_100, else: @shutdown_grace
    deadline = t + grace + 1_000

    for kind <- kinds do
      left = M.left_at(procs[kind], deadline)
      M.assert_left(left, M.expected_survivors(row, kind, cgroups?), "#{mode} #{row} x #{kind}")
    end

    case row do
      :helper_kill ->
        check_helper_kill(result, kinds, root, helper)
        :ok = P.close_stdin(vm)
        assert {:ok, _} = P.await_exit(vm, 15_000)

      _ ->
        # The helper itself is gone too, and the VM ended as it was told.
        assert M.left_at([helper_proc], deadline) == []
        status = if row == :vm_stop, do: 0, else: {:signal, :sigkill}
        assert {:ok, ^status} = P.await_exit(vm, 15_000)
    end

    if cgroups?, do: refute(File.exists?(Path.join(root, "h#{helper}")))
    Enum.each(procs, fn {_, ps} -> M.kill_survivors(ps) end)
  end

  defp inflict(:vm_stop, vm, _beam) do
    t = M.now()
    :ok = P.write(vm, "stop\n")
    {t, nil}
  end

  defp inflict(:vm_kill, _vm, beam) do
    t = M.now()
    {_, 0} = System.cmd("kill", ["-KILL", to_string(beam)])
    {t, nil}
  end

  defp inflict(:helper_kill, vm, _beam) do
    t = M.now()
    :ok = P.write(vm, "kill_helper\n")
    # The separate VM kills its helper 100 ms after the command.
    result = vm |> read_line("result ") |> String.trim_leading("result ")
    {t + 100, result |> Base.decode64!() |> :erlang.binary_to_term()}
  end

  defp check_helper_kill(result, kinds, root, old_helper) do
    # Every Sluice.Process exits with the documented reason, and no caller hangs: a
    # blocked reader gets {:error, :helper_down}, or :eof when the program's death closed
    # the pipe first; await_exit always gets {:error, :helper_down}.
    for kind <- kinds do
      kind = Atom.to_string(kind)
      assert {^kind, {:shutdown, :helper_down}} = List.keyfind(result.exits, kind, 0)
      assert {^kind, {:ok, read}} = List.keyfind(result.reads, kind, 0)
      assert read in [:eof, {:error, :helper_down}]
      assert {^kind, {:ok, {:error, :helper_down}}} = List.keyfind(result.waits, kind, 0)
    end

    # The supervisor restarted the helper within 1 s, and new spawns work.
    assert %{os_pid: new} = result.new_helper
    assert new != old_helper
    assert result.restart_ms < 1_000, "helper restarted after #{result.restart_ms} ms"
    assert {:ok, %Sluice.Result{status: 0, stdout: "after\n"}} = result.spawn_after
    # The restarted helper swept the dead one's cgroup.
    if root != "-", do: refute(File.exists?(Path.join(root, "h#{old_helper}")))
  end

  defp start_vm(mode, pidfiles) do
    ebin = Path.join(Mix.Project.build_path(), "lib/sluice/ebin")
    programs = Enum.map_join(pidfiles, ",", fn {kind, file} -> "#{kind}:#{file}" end)

    {:ok, vm} =
      P.start_link(["elixir", "-pa", ebin, M.vm_script()],
        env: %{"SLUICE_TEST_CGROUP" => to_string(mode), "SLUICE_TEST_PROGRAMS" => programs},
        kill_grace: 2_000
      )

    Process.put(:vm_buffer, "")
    vm
  end

  # The next stdout line starting with `prefix` (log lines are skipped).
  defp read_line(vm, prefix) do
    buffer = Process.get(:vm_buffer)

    case String.split(buffer, "\n", parts: 2) do
      [line, rest] ->
        Process.put(:vm_buffer, rest)
        if String.starts_with?(line, prefix), do: line, else: read_line(vm, prefix)

      [_partial] ->
        case P.read(vm, 65_536, 30_000) do
          {:ok, data} ->
            Process.put(:vm_buffer, buffer <> data)
            read_line(vm, prefix)

          other ->
            flunk(
              "the separate VM ended before #{inspect(prefix)}: #{inspect(other)}, " <>
                "output so far: #{inspect(buffer)}"
            )
        end
    end
  end
end
