defmodule Sluice.ProductionTest do
  # docs/production.md's claims, on this machine: a VM that is not root finds a delegated
  # cgroup (its own cgroup's `sluice`) and runs programs there; a cgroup only chown'ed
  # is not taken (programs run without cgroups, with the warning); without a writable cgroup the start-up warning
  # is logged, and `cgroup: false` silences it; a `mix release` carries the native
  # artifacts (the commands of the page, run as written) and its programs inherit
  # RELEASE_COOKIE unless env: unsets it; the systemd unit is valid.
  #
  # The VMs "not root" are separate VMs run as nobody (setpriv) and moved first into a
  # cgroup made here, as systemd moves a service into its own before it starts it.
  use Sluice.Case, async: false

  @moduletag :external_vm
  @moduletag :temp_dir
  @moduletag timeout: 300_000

  @nobody 65_534
  @doc_path "docs/production.md"
  @warning "no writable cgroup v2 hierarchy found"

  setup do
    if Sluice.TestUser.root?(), do: :ok, else: {:skip, "needs root (setpriv, chown)"}
  end

  describe "cgroups for a VM that is not root" do
    @describetag :cgroup

    test "delegated as Delegate=yes does: :auto finds OWN/sluice and programs run there",
         %{temp_dir: dir} do
      service = service_cgroup!(["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"])

      out =
        vm_as_nobody!(dir, service, ~S"""
        {:ok, _} = Application.ensure_all_started(:sluice)
        IO.puts("root #{Sluice.Helper.info().cgroup_root}")
        {:ok, %{stdout: out}} = Sluice.run(["sh", "-c", "grep ^0:: /proc/self/cgroup; id -u"])
        IO.write("program " <> out)
        """)

      rel = Path.relative_to(service, mount())
      assert out =~ "root #{service}/sluice\n", out
      assert out =~ ~r{program 0::/#{rel}/sluice/h\d+/c\d+\n#{@nobody}\n}, out
      refute out =~ @warning
    end

    test "a cgroup directory only chown'ed is not used: programs run, the warning says why",
         %{temp_dir: dir} do
      # Its cgroup.procs stays root's: a child could not be placed there. It used to be
      # taken, and then every spawn failed with :eacces at stage :cgroup.
      service = service_cgroup!([])

      out =
        vm_as_nobody!(dir, service, ~S"""
        {:ok, _} = Application.ensure_all_started(:sluice)
        IO.puts("root #{inspect(Sluice.Helper.info().cgroup_root)}")
        IO.inspect(Sluice.run(["true"]), label: "run")
        Logger.flush()
        """)

      assert out =~ "root nil\n", out
      assert out =~ ~r/run: \{:ok,\s+%Sluice.Result\{.*status: 0/s, out
      assert out =~ @warning
    end
  end

  test "the start-up warning without a writable cgroup, and cgroup: false silences it",
       %{temp_dir: dir} do
    # As nobody, in a cgroup of this node's helper (root's): nothing is writable.
    start = ~S"""
    {:ok, _} = Application.ensure_all_started(:sluice)
    IO.puts("root #{inspect(Sluice.Helper.info().cgroup_root)}")
    {:ok, %{status: 0}} = Sluice.run(["true"])
    Logger.flush()
    """

    auto = vm_as_nobody!(dir, nil, start)
    assert auto =~ "root nil\n", auto
    assert auto =~ @warning
    assert auto =~ "[warning] Sluice: #{@warning}"

    off = vm_as_nobody!(dir, nil, "Application.put_env(:sluice, :cgroup, false)\n" <> start)
    assert off =~ "root nil\n", off
    refute off =~ @warning
  end

  test "mix release carries the NIF and the helper program: the page's commands" do
    [commands] = for block <- blocks("sh"), block =~ "mix release", do: block
    # my_app is this project here: its release is named sluice.
    script = "set -euo pipefail\n" <> String.replace(commands, "my_app", "sluice")
    File.rm_rf!("_build/prod/rel/sluice")

    {out, status} = System.cmd("bash", ["-c", script], stderr_to_stdout: true)
    assert status == 0, out
    assert out =~ ~r/^Linux$/m, out
    assert out =~ ~r/^libsluice_nif.so\nsluice_helper$/m, out
    assert File.read!(@doc_path) =~ "The `eval` prints `Linux`"

    # A release exports RELEASE_COOKIE: programs inherit it, unless env: unsets it.
    printenv = ~S"""
    {:ok, _} = Application.ensure_all_started(:sluice)
    {:ok, %{status: 0, stdout: cookie}} = Sluice.run(["printenv", "RELEASE_COOKIE"])
    true = byte_size(cookie) > 1
    {:ok, %{status: 1, stdout: ""}} = Sluice.run(["printenv", "RELEASE_COOKIE"], env: %{"RELEASE_COOKIE" => nil})
    IO.puts("cookie checked")
    """

    assert {"cookie checked\n", 0} =
             System.cmd(Path.expand("_build/prod/rel/sluice/bin/sluice"), ["eval", printenv],
               stderr_to_stdout: true
             )
  end

  test "the systemd unit has no key systemd does not know", %{temp_dir: dir} do
    [unit] = for block <- blocks("ini"), block =~ "[Service]", do: block
    assert unit =~ "Delegate=yes" and unit =~ "KillMode=mixed"

    case System.find_executable("systemd-analyze") do
      nil ->
        :ok

      analyze ->
        # ExecStart names a release that is not on this machine: /bin/true stands in.
        unit = String.replace(unit, "/opt/my_app/bin/my_app", "/bin/true")
        file = Path.join(dir, "my_app.service")
        File.write!(file, unit <> "\n")
        assert {"", 0} = System.cmd(analyze, ["verify", file], stderr_to_stdout: true)
    end
  end

  # The cgroup v2 mount point.
  defp mount do
    "/proc/self/mountinfo"
    |> File.read!()
    |> String.split("\n")
    |> Enum.find_value(fn line ->
      case String.split(line, " - ") do
        [left, "cgroup2" <> _] -> left |> String.split(" ") |> Enum.at(4)
        _ -> nil
      end
    end)
  end

  # A cgroup for a "service", its directory nobody's and the `files` named too; removed
  # (with what the VM's helper left) when the test ends.
  defp service_cgroup!(files) do
    service = Path.join(mount(), "sluice_test_service_#{System.unique_integer([:positive])}")
    File.mkdir!(service)
    on_exit(fn -> remove_tree(service) end)
    for file <- ["." | files], do: File.chown!(Path.join(service, file), @nobody)
    service
  end

  defp remove_tree(dir) do
    for sub <- File.ls!(dir), File.dir?(Path.join(dir, sub)), do: remove_tree(Path.join(dir, sub))
    File.rmdir(dir)
  end

  # Runs `code` in a VM as nobody (in `cgroup`, if given) and returns its output.
  defp vm_as_nobody!(dir, cgroup, code) do
    File.chmod!(dir, 0o777)
    script = Path.join(dir, "vm_#{System.unique_integer([:positive])}.exs")
    File.write!(script, "require Logger\n" <> code)
    ebin = Path.join(:code.lib_dir(:sluice), "ebin")
    as_nobody = "exec setpriv --reuid=#{@nobody} --regid=#{@nobody} --clear-groups"
    vm = ~s(#{as_nobody} elixir -pa "$2" "$3")
    move = if cgroup, do: ~s(echo $$ > "$1/cgroup.procs" && ), else: ""

    {:ok, %{status: 0, stdout: out}} =
      Sluice.run(["sh", "-c", move <> vm, "sh", cgroup || "", ebin, script],
        cd: dir,
        env: %{"HOME" => dir},
        stderr: :stdout,
        timeout: 60_000
      )

    out
  end

  defp blocks(language) do
    Regex.scan(~r/^```#{language}\n(.*?)^```$/ms, File.read!(@doc_path), capture: :all_but_first)
    |> Enum.map(fn [code] -> String.trim_trailing(code) end)
  end
end
