defmodule Sluice.Sl19AttackTest do
  @moduledoc """
  Attacks on issue 19's trust-boundary fix, as a hostile program started with `user:`
  (node as root, `allowed_users: ["sl19atk"]`) and as a careless caller. Each test asserts
  the *secure* behaviour: a failing test is a weakness. Results are printed (ATTACK ...).
  """
  use ExUnit.Case, async: false
  import Sluice.OsProbe

  alias Sluice.TestUser

  @user "sl19atk"
  @moduletag timeout: 600_000
  @tools_src Path.join(__DIR__, "tools")

  setup_all do
    true = TestUser.root?()
    user = TestUser.create(@user)
    old = Application.fetch_env(:sluice, :allowed_users)
    Application.put_env(:sluice, :allowed_users, [@user])

    tools = "/tmp/#{@user}-tools"
    File.rm_rf!(tools)
    File.mkdir_p!(tools)
    File.chmod!(tools, 0o755)

    for t <- ~w(lease stopper tiocsti) do
      {_, 0} =
        System.cmd("gcc", ["-O2", "-o", Path.join(tools, t), Path.join(@tools_src, t <> ".c")],
          stderr_to_stdout: true
        )
    end

    secret_dir = "/tmp/#{@user}-secret"
    File.rm_rf!(secret_dir)
    File.mkdir_p!(secret_dir)
    File.chmod!(secret_dir, 0o711)
    secret = Path.join(secret_dir, "secret")
    File.write!(secret, "root only\n")
    File.chmod!(secret, 0o600)
    # A world-writable file behind a root-only directory: reachable only with root's
    # right to traverse the directory.
    closed_dir = "/tmp/#{@user}-closed"
    File.rm_rf!(closed_dir)
    File.mkdir_p!(closed_dir)
    File.chmod!(closed_dir, 0o700)
    open_file = Path.join(closed_dir, "log")
    File.write!(open_file, "")
    File.chmod!(open_file, 0o666)

    on_exit(fn ->
      case old do
        {:ok, v} -> Application.put_env(:sluice, :allowed_users, v)
        :error -> Application.delete_env(:sluice, :allowed_users)
      end

      Enum.each([tools, secret_dir, closed_dir], &File.rm_rf!/1)
    end)

    {:ok, user: user, tools: tools, secret: secret, closed_dir: closed_dir, open_file: open_file}
  end

  defp as_user(script) do
    {:ok, %{status: st, stdout: out}} = Sluice.run(["sh", "-c", script], user: @user)
    {st, out}
  end

  defp report(what, result), do: IO.puts("ATTACK #{what}: #{inspect(result, limit: :infinity)}")

  defp helper_children_state(hp) do
    for pid <- children(hp), st = stat_line(pid), st != nil, do: {pid, st}
  end

  defp stat_line(pid) do
    with {:ok, s} <- File.read("/proc/#{pid}/stat"),
         {:ok, status} <- File.read("/proc/#{pid}/status") do
      [_, comm, rest] = Regex.run(~r/^\d+ \((.*)\) (.*)$/s, s)
      [state | _] = String.split(rest)
      [_, uid] = Regex.run(~r/Uid:\s+(\d+)/, status)
      %{comm: comm, state: state, uid: String.to_integer(uid)}
    else
      _ -> nil
    end
  end

  # ---------------------------------------------------------------------------------------
  # 1. Freezing the single-threaded helper through its CLONE_VFORK wait.

  @tag :freeze
  test "SIGSTOP to the vfork child after setuid, before execve, freezes the helper", ctx do
    {:ok, attacker} =
      Sluice.Process.start_link([Path.join(ctx.tools, "stopper"), "40"], user: @user)

    attacker_pid = Sluice.Process.os_pid(attacker)
    assert {:ok, "started\n"} = Sluice.Process.read(attacker, 100, 2_000)
    hp = helper_pid()

    frozen =
      Enum.find_value(1..400, fn i ->
        r = Sluice.run(["true"], user: @user, timeout: 3_000)

        stuck =
          Enum.filter(helper_children_state(hp), fn {_, s} ->
            s.state == "T" and s.comm == "sluice_helper"
          end)

        if stuck != [], do: {i, r, stuck}
      end)

    result =
      case frozen do
        nil ->
          :never_frozen

        {i, r, stuck} ->
          # An unrelated root spawn and a stop of the attacker: neither is answered.
          IO.puts("ATTACK-DEBUG stuck #{inspect(stuck)}")
          other = Task.async(fn -> Sluice.run(["echo", "unrelated"]) end)
          other_answer = Task.yield(other, 3_000)
          IO.puts("ATTACK-DEBUG other #{inspect(other_answer)}")
          wchan = File.read!("/proc/#{hp}/wchan")
          helper_state = stat_line(hp).state
          # Recover: kill the attacker, continue the stopped child.
          System.cmd("kill", ["-KILL", "#{attacker_pid}"])
          for {pid, _} <- stuck, do: System.cmd("kill", ["-CONT", "#{pid}"])
          IO.puts("ATTACK-DEBUG other after #{inspect(Task.yield(other, 10_000))}")

          %{
            spawns_before_freeze: i,
            the_spawn_that_froze_got: r,
            stopped_children: stuck,
            unrelated_root_spawn_answered_in_3s: other_answer != nil,
            helper_state: helper_state,
            helper_wchan: wchan
          }
      end

    report("vfork SIGSTOP freeze", result)
    Sluice.Process.stop(attacker, 1_000)
    assert result == :never_frozen
  end

  @tag :freeze
  test "a write lease on a user-owned executable freezes the helper (lease-break-time)",
       ctx do
    job = Path.join(ctx.user.home, "job.sh")
    {0, _} = as_user("printf '#!/bin/sh\\necho job\\n' > #{job} && chmod 755 #{job}")

    {:ok, holder} =
      Sluice.Process.start_link([Path.join(ctx.tools, "lease"), job, "120"], user: @user)

    assert {:ok, "leased\n"} = Sluice.Process.read(holder, 100, 2_000)

    hp = helper_pid()
    t0 = System.monotonic_time(:millisecond)
    victim = Task.async(fn -> Sluice.run([job], user: @user) end)
    Process.sleep(300)
    other = Task.async(fn -> Sluice.run(["echo", "unrelated"]) end)
    quick = Task.yield(other, 3_000)
    wchan = File.read!("/proc/#{hp}/wchan")
    kids = helper_children_state(hp)
    other_result = quick || Task.yield(other, 60_000)
    other_ms = System.monotonic_time(:millisecond) - t0
    victim_result = Task.yield(victim, 10_000)

    report("exec lease freeze", %{
      unrelated_spawn_answered_in_3s: quick != nil,
      unrelated_spawn_ms: other_ms,
      helper_wchan_during: wchan,
      helper_children_during: kids,
      unrelated_result: other_result,
      victim_result: victim_result
    })

    Sluice.Process.stop(holder, 1_000)
    assert quick != nil
  end

  test "a lease on a redirect file: O_NONBLOCK answers at once", ctx do
    log = Path.join(ctx.user.home, "leased.log")
    {0, _} = as_user("echo x > #{log}")

    {:ok, holder} =
      Sluice.Process.start_link([Path.join(ctx.tools, "lease"), log, "60"], user: @user)

    assert {:ok, "leased\n"} = Sluice.Process.read(holder, 100, 2_000)
    {us, r1} = :timer.tc(fn -> Sluice.run(["echo", "y"], user: @user, stdout: {:file, log}) end)
    {us2, r2} = :timer.tc(fn -> Sluice.run(["cat"], user: @user, stdin: {:file, log}) end)
    report("redirect lease", %{stdout: {us, r1}, stdin: {us2, r2}})
    Sluice.Process.stop(holder, 1_000)
    assert us < 2_000_000 and us2 < 2_000_000
  end

  # ---------------------------------------------------------------------------------------
  # 2. Files: symlinks, races, hard links, /proc, devices.

  test "TOCTOU: a directory component swapped for a symlink during spawns", ctx do
    d = Path.join(ctx.user.home, "d")
    # The user swaps d between its own directory and a symlink to the root-only one.
    {:ok, swapper} =
      Sluice.Process.start_link(
        [
          "sh",
          "-c",
          "mkdir -p #{d}.real; i=0; while [ $i -lt 200000 ]; do " <>
            "ln -sfn #{ctx.closed_dir} #{d}.l; mv -T #{d}.l #{d}; " <>
            "rm -f #{d}; ln -sfn #{d}.real #{d}; i=$((i+1)); done"
        ],
        user: @user
      )

    results =
      for _ <- 1..300 do
        case Sluice.run(["echo", "pwned"],
               user: @user,
               stdout: {:file, Path.join(d, "log"), append: true}
             ) do
          {:ok, _} -> :ok
          {:error, e} -> e.reason
        end
      end

    Sluice.Process.stop(swapper, 1_000)
    freq = Enum.frequencies(results)
    report("TOCTOU dir swap", %{results: freq, root_file: File.read!(ctx.open_file)})
    assert File.read!(ctx.open_file) == ""
  end

  test "hard link to a root-only file in the user's directory", ctx do
    hl = Path.join(ctx.user.home, "hl")
    {st, out} = as_user("ln #{ctx.secret} #{hl} 2>&1")
    # The kernel refused it (protected_hardlinks=1); plant it as root to see what Sluice does.
    File.rm(hl)
    :ok = File.ln(ctx.secret, hl)

    r = Sluice.run(["echo", "pwned"], user: @user, stdout: {:file, hl, append: true})
    r2 = Sluice.run(["cat"], user: @user, stdin: {:file, hl})
    File.rm(hl)

    report("hardlink", %{
      user_ln: {st, out},
      stdout: reason(r),
      stdin: reason(r2),
      secret: File.read!(ctx.secret)
    })

    assert File.read!(ctx.secret) == "root only\n"
    assert {:error, %{reason: :eacces}} = r
    assert {:error, %{reason: :eacces}} = r2
  end

  defp reason({:ok, r}), do: {:ok, Map.take(r, [:status, :stdout])}
  defp reason({:error, e}), do: {:error, e.reason, e.stage}

  test "/proc paths reached without the words self/fd, and symlinks into them", ctx do
    hp = helper_pid()
    tid = hp

    paths = [
      "/proc/#{hp}/mem",
      "/proc/#{hp}/fd/1",
      "/proc/#{hp}/task/#{tid}/fd/1",
      "/proc/#{hp}/task/#{tid}/mem",
      "/proc/thread-self/fd/1",
      "/proc/thread-self/mem",
      "/proc/#{hp}/environ",
      "/proc/#{hp}/root/#{ctx.secret}",
      "/proc/#{hp}/cwd",
      "/proc/#{hp}/map_files",
      "/proc/self/../#{hp}/mem",
      "/dev/fd/0",
      "/dev/stdin"
    ]

    res =
      for p <- paths, opts <- [[user: @user], []] do
        {p, Keyword.has_key?(opts, :user),
         reason(Sluice.run(["echo", "x"], [stdout: {:file, p, append: true}] ++ opts)),
         reason(Sluice.run(["cat"], [stdin: {:file, p}, timeout: 2_000] ++ opts))}
      end

    report("proc paths", res)

    for {_, _, out, inp} <- res do
      assert match?({:error, _, _}, out)
      assert match?({:error, _, _}, inp)
    end
  end

  test "devices, directories and FIFOs as cd, executable, stdin: nothing waits", ctx do
    fifo = Path.join(ctx.user.home, "fifo")
    {0, _} = as_user("mkfifo #{fifo}")

    cases = [
      {"dir as stdin", ["cat"], [stdin: {:file, ctx.user.home}]},
      {"/dev/tty as stdout", ["echo", "x"], [stdout: {:file, "/dev/tty"}]},
      {"/dev/tty as stdin", ["cat"], [stdin: {:file, "/dev/tty"}]},
      {"/dev/ptmx as stdout", ["echo", "x"], [stdout: {:file, "/dev/ptmx"}]},
      {"/dev/console as stdout", ["echo", "x"], [stdout: {:file, "/dev/console"}]},
      {"fifo as cd", ["true"], [cd: fifo]},
      {"fifo as executable", [fifo], []},
      {"fifo as stdin", ["cat"], [stdin: {:file, fifo}]},
      {"fifo as stdout", ["echo"], [stdout: {:file, fifo}]},
      {"fifo as pipeline stage stderr", Sluice.pipeline([["true"], {["true"], stderr: {:file, fifo}}]), []},
      {"/dev/zero as stdin, head", ["head", "-c", "5"], [stdin: {:file, "/dev/zero"}]}
    ]

    res =
      for {name, argv, opts} <- cases do
        {us, r} = :timer.tc(fn -> Sluice.run(argv, [user: @user, timeout: 5_000] ++ opts) end)
        {name, div(us, 1000), reason(r)}
      end

    report("blocking candidates", res)
    for {_, ms, _} <- res, do: assert(ms < 2_000)
  end

  test "a pipeline's later stage stderr file is opened with the user's rights", ctx do
    link = Path.join(ctx.user.home, "stage.log")
    {0, _} = as_user("ln -sf #{ctx.secret} #{link}")

    r =
      Sluice.run(
        Sluice.pipeline([["echo", "x"], {["sh", "-c", "cat; echo pwned >&2"], stderr: {:file, link}}]),
        user: @user
      )

    r2 =
      Sluice.run(
        Sluice.pipeline([
          ["echo", "x"],
          {["sh", "-c", "cat; echo pwned >&2"],
           stderr: {:file, "log", append: true}, cd: ctx.closed_dir}
        ]),
        user: @user
      )

    report("pipeline stage stderr", %{symlink: reason(r), closed_dir_cd: reason(r2)})
    assert File.read!(ctx.secret) == "root only\n"
    assert File.read!(ctx.open_file) == ""
    assert {:error, :eacces, :stderr} = reason(r)
  end

  test "stdout and stderr naming one file: shared or separate, with whose rights", ctx do
    log = Path.join(ctx.user.home, "both.log")

    r =
      Sluice.run(["sh", "-c", "echo out; echo err >&2"],
        user: @user,
        stdout: {:file, log},
        stderr: {:file, "./" <> Path.basename(log), append: true},
        cd: ctx.user.home
      )

    report("stdout/stderr same file", %{result: reason(r), content: File.read(log)})
  end

  test "the helper's fs identity and groups are back after user opens (ok and failing)",
       ctx do
    hp = helper_pid()
    before = File.read!("/proc/#{hp}/status") |> ids()

    _ = Sluice.run(["echo"], user: @user, stdout: {:file, ctx.secret, append: true})
    _ = Sluice.run(["echo"], user: @user, stdout: {:file, Path.join(ctx.user.home, "ok.log")})
    _ = Sluice.run(["echo"], user: @user, stdout: {:file, "/nonexistent/x"})

    after_ = File.read!("/proc/#{hp}/status") |> ids()
    root_log = Path.join(ctx.closed_dir, "root.log")
    r = Sluice.run(["echo", "root"], stdout: {:file, root_log})
    st = File.stat!(root_log)
    File.rm!(root_log)
    report("fs identity", %{before: before, after: after_, root_open: reason(r), owner: {st.uid, st.gid}})
    assert before == after_
    assert {st.uid, st.gid} == {0, 0}
  end

  defp ids(status) do
    for l <- String.split(status, "\n"), String.match?(l, ~r/^(Uid|Gid|Groups|CapEff):/), do: l
  end

  # ---------------------------------------------------------------------------------------
  # 3. Environment and the console.

  test "RELEASE_COOKIE through every entry point with user:", ctx do
    System.put_env("RELEASE_COOKIE", "the-node-cookie")
    System.put_env("SL19_NODE_SECRET", "node")
    System.put_env("LD_PRELOAD", "/tmp/#{@user}-home/evil.so")
    on_exit(fn -> Enum.each(~w(RELEASE_COOKIE SL19_NODE_SECRET LD_PRELOAD), &System.delete_env/1) end)
    leak = fn out -> Regex.scan(~r/^(RELEASE_COOKIE|SL19_NODE_SECRET|LD_PRELOAD)=.*$/m, out) end

    pipeline = Sluice.pipeline([["env"], {["sh", "-c", "cat; env"], env: [{"X", "1"}]}])
    {:ok, %{stdout: p}} = Sluice.run(pipeline, user: @user)
    {:ok, %{stdout: uidnum}} = Sluice.run(["env"], user: ctx.user.uid)
    {:ok, %{stdout: pty}} = Sluice.run(["env"], user: @user, pty: true)
    {:ok, e1} = :sluice.run([~c"env"], [{:user, ~c"sl19atk"}])
    {:ok, e2} = :sluice.run([<<"env">>], %{user: <<"sl19atk">>})
    {:ok, proc} = Sluice.Process.start_link(["env"], user: @user)
    {:ok, procout} = Sluice.Process.read(proc, 65_536, 2_000)
    Sluice.Process.await_exit(proc, 2_000)
    stream = Sluice.stream!(["env"], user: @user) |> Enum.join()
    {:ok, %{stdout: clear}} = Sluice.run(["env"], user: @user, clear_env: true)

    kc_out = Path.join(ctx.user.home, "kc.env")
    File.rm(kc_out)

    {:ok, k} =
      Sluice.Process.start_link(["sleep", "30"],
        user: @user,
        kill_command: ["sh", "-c", "id -u > #{kc_out}; env >> #{kc_out}; kill -9 $CHILD_PID"]
      )

    Sluice.Process.stop(k, 2_000)
    Process.sleep(200)
    kc = File.read(kc_out)

    res = %{
      pipeline: leak.(p),
      uid_number: leak.(uidnum),
      pty: leak.(pty),
      erlang_proplist: leak.(e1.stdout),
      erlang_map: leak.(e2.stdout),
      process: leak.(procout),
      stream: leak.(stream),
      clear_env: leak.(clear),
      kill_command: kc
    }

    report("env leaks", res)

    for {k, v} <- res, k != :kill_command, do: assert(v == [], "#{k}")
  end

  test ":console output of a user: program is the VM's own stderr description" do
    {:ok, %{stdout: out}} =
      Sluice.run(
        ["sh", "-c", "readlink /proc/self/fd/2; stat -L -c '%U %a %F' /proc/self/fd/2"],
        user: @user,
        stderr: :console
      )

    vm = File.read_link("/proc/self/fd/2")
    report(":console fd 2", %{user_program_sees: out, vm_stderr: vm})
  end

  test "pty with user: who owns the terminal" do
    {:ok, %{stdout: out}} =
      Sluice.run(["sh", "-c", "ls -l $(tty); cat $(tty) </dev/null >/dev/null; echo reopen=$?"],
        user: @user,
        pty: true
      )

    report("pty owner", out)
  end

  # Run with the VM's stderr on a root-owned file (mix test ... 2>/tmp/x.log) or on a
  # root terminal (test/attack/tools/tiocsti_demo.py) to see the effect.
  @tag :console
  test ":console: the user program writes, truncates, or types into the VM's stderr", ctx do
    vm = File.read_link!("/proc/self/fd/2")

    out =
      cond do
        String.starts_with?(vm, "/dev/pts/") ->
          {Sluice.run([Path.join(ctx.tools, "tiocsti"), "2", "id > /tmp/#{@user}-pwned"],
             user: @user,
             stderr: :console
           ),
           # What the operator types at the node's terminal, read by the user's program.
           Sluice.run(["sh", "-c", "i=0; while [ $i -lt 200 ]; do head -n 1 <&2 2>/dev/null && break; sleep 0.1; i=$((i+1)); done"],
             user: @user,
             stderr: :console
           )}

        String.starts_with?(vm, "/") ->
          Sluice.run(["perl", "-e", "truncate(STDERR, 0) or die qq(no: $!); print qq(truncated)"],
            user: @user,
            stderr: :console
          )

        true ->
          :not_a_file_nor_a_terminal
      end

    report(":console with #{vm}", out)
  end
end
