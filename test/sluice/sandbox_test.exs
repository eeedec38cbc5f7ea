defmodule Sluice.SandboxTest do
  @moduledoc """
  `sandbox:`, tested as the attack with real programs: the network, files outside the
  view, writes outside the writable paths, other processes, refused system calls; real
  conversions by ImageMagick and ffmpeg in a view of only their input and output; the
  lifecycle (kill_signal on a program under a pid 1, its own exit status), and the
  composition with `user:`, `rlimits:`, `pty:`, redirect files and accounting.
  """
  use Sluice.Case, async: false

  alias Sluice.Process, as: P

  @moduletag :temp_dir
  @moduletag timeout: 120_000

  # What a program needs to run at all, plus the test's directory.
  defp narrow(dir, more \\ []), do: [read_only: [:system], writable: [dir]] ++ more

  # The namespaces of the init under a sandbox's monitor (the program's os_pid).
  defp init_of(os_pid) do
    [init | _] = "/proc/#{os_pid}/task/#{os_pid}/children" |> File.read!() |> String.split()

    init
  end

  defp ns(pid, kind), do: File.read_link!("/proc/#{pid}/ns/#{kind}")

  defp sandboxed?(os_pid), do: ns(init_of(os_pid), "net") != ns("self", "net")

  describe "the network" do
    setup do
      {:ok, listen} = :gen_tcp.listen(0, [:binary, ip: {127, 0, 0, 1}, active: false])
      {:ok, port} = :inet.port(listen)

      server =
        spawn_link(fn ->
          Stream.repeatedly(fn -> :gen_tcp.accept(listen) end)
          |> Enum.each(fn
            {:ok, s} ->
              :gen_tcp.send(s, "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")
              :gen_tcp.close(s)

            _ ->
              Process.sleep(:infinity)
          end)
        end)

      on_exit(fn -> Process.exit(server, :kill) end)
      %{port: port}
    end

    test "with network: :none curl and python3 cannot reach a server on 127.0.0.1 outside",
         %{port: port} do
      url = "http://127.0.0.1:#{port}/"
      curl = ["curl", "-sS", "--connect-timeout", "2", url]
      assert {:ok, %{status: 0, stdout: "hello"}} = Sluice.run(curl)

      assert {:ok, %{status: 7, stderr: err}} = Sluice.run(curl, sandbox: true)
      assert err =~ "Failed to connect" or err =~ "Couldn't connect"

      py = """
      import socket, sys
      try:
          socket.create_connection(("127.0.0.1", #{port}), timeout=2); print("connected")
      except OSError as e:
          print("refused", e.errno)
      """

      assert {:ok, %{stdout: "connected\n"}} = Sluice.run(["python3", "-c", py])
      assert {:ok, %{stdout: "refused 111\n"}} = Sluice.run(["python3", "-c", py], sandbox: [])

      # Loopback is up inside: a server of its own answers.
      inside =
        "python3 -m http.server -b 127.0.0.1 8765 >/dev/null 2>&1 & sleep 0.5; " <>
          "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8765/; kill %1"

      assert {:ok, %{stdout: "200"}} = Sluice.run(["sh", "-c", inside], sandbox: true)
      # network: :host keeps the host's.
      assert {:ok, %{status: 0, stdout: "hello"}} = Sluice.run(curl, sandbox: [network: :host])
    end
  end

  describe "files" do
    test "a root-only file and another user's home are absent from a narrowed view",
         %{temp_dir: dir} do
      secret = "/root/sluice-sandbox-secret-#{System.unique_integer([:positive])}"
      File.write!(secret, "secret")
      File.chmod!(secret, 0o600)
      on_exit(fn -> File.rm(secret) end)
      other = Sluice.TestUser.create("sl23other")
      File.write!(Path.join(other.home, "diary"), "private")

      for path <- [secret, Path.join(other.home, "diary"), "/root", other.home] do
        assert {:ok, %{status: 2, stdout: out}} =
                 Sluice.run(["sh", "-c", "ls -d #{path} 2>&1"], sandbox: narrow(dir))

        assert out =~ "No such file or directory", path
      end

      # Without the sandbox (root) both are there.
      assert {:ok, %{stdout: "secret"}} = Sluice.run(["cat", secret])
    end

    test "writes outside the writable paths fail with EROFS or ENOENT; inside they land",
         %{temp_dir: dir} do
      script = """
      for f in /usr/sluice-x /etc/sluice-x /root/x /nonexistent/x; do
        echo data > $f 2>&1 || true
      done
      echo kept > #{dir}/out && echo private > /tmp/scratch && cat /tmp/scratch
      """

      assert {:ok, %{status: 0, stdout: out}} =
               Sluice.run(["sh", "-c", script], sandbox: narrow(dir), stderr: :stdout)

      assert out =~ "/usr/sluice-x: Read-only file system"
      assert out =~ "/etc/sluice-x: Read-only file system"
      # dash says ENOENT as "Directory nonexistent".
      assert out =~ ~r"/root/x: (Read-only file system|Directory nonexistent)"
      assert out =~ ~r"/nonexistent/x: (Read-only file system|Directory nonexistent)"
      assert out =~ "private\n"
      assert File.read!(Path.join(dir, "out")) == "kept\n"
      refute File.exists?("/usr/sluice-x")

      # The strict default: the whole host read-only, /tmp private and empty.
      assert {:ok, %{stdout: out}} =
               Sluice.run(["sh", "-c", "touch #{dir}/y 2>&1; ls -A /tmp | wc -l"],
                 sandbox: true
               )

      assert out =~ "No such file or directory" or out =~ "Read-only file system"
      assert out =~ ~r/^0$/m
      refute File.exists?(Path.join(dir, "y"))
    end

    test "a sandbox without cd: starts where the VM is when the view shows it, else in /",
         %{temp_dir: dir} do
      {:ok, cwd} = File.cwd()
      # The private /tmp hides a VM working under /tmp (a checkout there, as CI's may be).
      shown = if String.starts_with?(cwd, "/tmp/"), do: "/", else: cwd
      assert {:ok, %{stdout: out}} = Sluice.run(["pwd"], sandbox: true)
      assert out == shown <> "\n"
      assert {:ok, %{stdout: "/\n"}} = Sluice.run(["pwd"], sandbox: [read_only: [:system]])
      assert {:ok, %{stdout: out}} = Sluice.run(["pwd"], sandbox: narrow(dir), cd: dir)
      assert out == dir <> "\n"

      assert {:error, %Sluice.Error{stage: :chdir}} =
               Sluice.run(["pwd"], sandbox: [read_only: [:system]], cd: dir)
    end
  end

  test "ps and /proc show only the sandbox's processes, under a hostname of its own" do
    assert {:ok, %{status: 0, stdout: out}} =
             Sluice.run(["sh", "-c", "hostname; ls /proc | grep -c '^[0-9]'; ps -e -o pid="],
               sandbox: true
             )

    [host, count | pids] = String.split(out, "\n", trim: true)
    assert host == "sandbox"
    pids = Enum.map(pids, &(&1 |> String.trim() |> String.to_integer()))
    assert 1 in pids and 2 in pids
    assert Enum.all?(pids, &(&1 < 20)), out
    assert String.to_integer(count) < 10, out
    refute to_string(System.pid()) in String.split(out)

    # processes: :host shows the host's (the VM among them).
    assert {:ok, %{stdout: out}} = Sluice.run(["ls", "/proc"], sandbox: [processes: :host])

    assert System.pid() in String.split(out)
  end

  test "ImageMagick converts an uploaded image in a view of only its input and output",
       %{temp_dir: dir} do
    input = Path.join(dir, "in")
    output = Path.join(dir, "out")
    File.mkdir_p!(input)
    File.mkdir_p!(output)
    upload = Path.join(input, "upload.png")
    {:ok, %{status: 0}} = Sluice.run(["convert", "-size", "32x24", "xc:red", upload])

    sandbox = [read_only: [:system, input], writable: [output]]
    thumb = Path.join(output, "thumb.jpg")

    assert {:ok, %{status: 0}} =
             Sluice.run(["convert", upload, "-resize", "16x12", thumb], sandbox: sandbox)

    assert <<0xFF, 0xD8, _::binary>> = File.read!(thumb)
    assert {:ok, %{stdout: "16x12"}} = Sluice.run(["identify", "-format", "%wx%h", thumb])

    # Its input is read-only to it.
    assert {:ok, %{status: status}} =
             Sluice.run(["convert", thumb, upload], sandbox: sandbox, stderr: :null)

    assert status != 0
  end

  test "ffmpeg converts audio in a view of only its input and output", %{temp_dir: dir} do
    input = Path.join(dir, "in")
    output = Path.join(dir, "out")
    File.mkdir_p!(input)
    File.mkdir_p!(output)
    wav = Path.join(input, "tone.wav")

    {:ok, %{status: 0}} =
      Sluice.run(~w(ffmpeg -v error -f lavfi -i sine=frequency=440:duration=1 -y) ++ [wav])

    flac = Path.join(output, "tone.flac")
    sandbox = [read_only: [:system, input], writable: [output]]

    assert {:ok, %{status: 0}} =
             Sluice.run(["ffmpeg", "-v", "error", "-i", wav, "-y", flac], sandbox: sandbox)

    assert <<"fLaC", _::binary>> = File.read!(flac)
  end

  describe "the seccomp filter" do
    test "refused calls fail with EPERM and the program carries on" do
      py = """
      import ctypes, os
      libc = ctypes.CDLL(None, use_errno=True)
      for name, call in [("unshare", lambda: libc.unshare(0x10000000)),
                         ("mount", lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
                         ("keyctl", lambda: libc.syscall(250, 0, 0, 0, 0, 0)),
                         ("ptrace", lambda: libc.ptrace(16, 1, 0, 0))]:
          r = call()
          print(name, r, os.strerror(ctypes.get_errno()))
      print("alive")
      """

      assert {:ok, %{status: 0, stdout: out}} = Sluice.run(["python3", "-c", py], sandbox: true)

      for name <- ~w(unshare mount keyctl ptrace),
          do: assert(out =~ "#{name} -1 Operation not permitted", out)

      assert out =~ "alive"

      assert {:ok, %{status: status, stderr: err}} =
               Sluice.run(["unshare", "-r", "true"], sandbox: true)

      assert status != 0
      assert err =~ "Operation not permitted"
      # Threads still start (clone without namespace flags), and so do programs.
      threads =
        "import threading; t = threading.Thread(target=print, args=('thread',)); " <>
          "t.start(); t.join()"

      assert {:ok, %{stdout: "thread\n"}} = Sluice.run(["python3", "-c", threads], sandbox: true)
    end

    test "no capabilities and no_new_privs, even as root" do
      assert {:ok, %{stdout: out}} =
               Sluice.run(
                 [
                   "grep",
                   "-E",
                   "^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):",
                   "/proc/self/status"
                 ],
                 sandbox: true
               )

      for cap <- ~w(CapInh CapPrm CapEff CapBnd CapAmb),
          do: assert(out =~ ~r/#{cap}:\s+0000000000000000/, out)

      assert out =~ ~r/NoNewPrivs:\s+1/
      assert out =~ ~r/Seccomp:\s+2/

      assert {:ok, %{stdout: out}} =
               Sluice.run(["grep", "Seccomp:", "/proc/self/status"],
                 sandbox: [seccomp: false]
               )

      assert out =~ ~r/Seccomp:\s+0/
    end
  end

  describe "the lifecycle" do
    test "the exit status is the program's own, a signal included" do
      assert {:ok, %{status: 7}} = Sluice.run(["sh", "-c", "exit 7"], sandbox: true)
      assert {:ok, %{status: 0}} = Sluice.run(["true"], sandbox: true)

      assert {:ok, %{status: {:signal, :sigusr1}}} =
               Sluice.run(["sh", "-c", "kill -USR1 $$"], sandbox: true)
    end

    test "kill_signal stops a sandboxed sleep at once, by that signal" do
      {:ok, p} = P.start_link(["sleep", "100"], sandbox: true, kill_grace: 10_000)
      assert sandboxed?(P.os_pid(p))
      {t, {:ok, status}} = :timer.tc(fn -> P.stop(p) end)
      assert status == {:signal, :sigterm}
      assert t < 2_000_000

      assert {:error, %Sluice.Error{reason: :timeout, result: %{status: {:signal, :sighup}}}} =
               Sluice.run(["sleep", "100"], sandbox: true, timeout: 300, kill_signal: :sighup)
    end

    test "signals reach the program; its background children stop with it" do
      {:ok, p} =
        P.start_link(["sh", "-c", "sleep 100 & trap 'echo got; exit 3' USR2; wait"],
          sandbox: true
        )

      Process.sleep(200)
      :ok = P.signal(p, :sigusr2)
      assert {:ok, 3} = P.await_exit(p, 5_000)
    end
  end

  describe "composition" do
    test "with user:, rlimits:, a redirect file and accounting", %{temp_dir: dir} do
      user = Sluice.TestUser.create("sl23sand")
      {_, 0} = System.cmd("chown", ["#{user.uid}:#{user.gid}", dir])

      log =
        Path.join(System.tmp_dir!(), "sluice-sandbox-log-#{System.unique_integer([:positive])}")

      on_exit(fn -> File.rm(log) end)

      script = "id -u; ulimit -n; echo made > #{dir}/mine; cat /proc/self/status | grep CapEff"

      assert {:ok, %{status: 0, stdout: nil, usage: %{source: :cgroup}}} =
               Sluice.run(["sh", "-c", script],
                 sandbox: narrow(dir),
                 user: user.name,
                 rlimits: [nofile: 77],
                 stdout: {:file, log, []}
               )

      # The log is outside the view: the helper opened it before the clone.
      [uid, nofile, cap] = log |> File.read!() |> String.split("\n", trim: true)
      assert String.to_integer(uid) == user.uid
      assert nofile == "77"
      assert cap =~ "0000000000000000"
      assert File.stat!(Path.join(dir, "mine")).uid == user.uid
    end

    test "pty: true, the terminal bound into /dev/pts" do
      assert {:ok, %{status: 0, stdout: out}} =
               Sluice.run(["sh", "-c", "tty; test -t 0 && echo terminal"],
                 sandbox: true,
                 pty: true
               )

      assert out =~ ~r"^/dev/pts/\d+\r?\n"
      assert out =~ "terminal"
    end

    test "streams, Sluice.Process, Daemon, Worker and every stage of a pipeline", %{
      temp_dir: dir
    } do
      assert ["sandbox\n"] = Sluice.stream!(["hostname"], sandbox: true) |> Enum.to_list()

      {:ok, w} = Sluice.Worker.start_link(["cat"], sandbox: true)
      assert {:ok, "ping"} = Sluice.Worker.call(w, "ping")
      assert sandboxed?(Sluice.Worker.os_pid(w))
      GenServer.stop(w)

      out = Path.join(dir, "daemon")

      {:ok, d} =
        Sluice.Daemon.start_link(
          argv: ["sh", "-c", "hostname > #{out}; exec sleep 100"],
          sandbox: narrow(dir),
          log: false
        )

      assert sandboxed?(Sluice.Daemon.os_pid(d))
      assert eventually(fn -> File.read(out) == {:ok, "sandbox\n"} end, 2_000)
      GenServer.stop(d)

      pipeline = Sluice.pipeline([["sh", "-c", "hostname; ls /proc | grep -c '^[0-9]'"], ["cat"]])
      assert {:ok, %{stdout: out, statuses: [0, 0]}} = Sluice.run(pipeline, sandbox: true)
      assert [host, count] = String.split(out)
      assert host == "sandbox" and String.to_integer(count) < 10
    end
  end

  describe "refusals" do
    test "bad settings are ArgumentErrors naming the setting" do
      for {value, named} <- [
            {[network: :lan], "network"},
            {[read_only: "/usr"], "read_only"},
            {[read_only: ["usr"]], "read_only"},
            {[writable: ["relative"]], "writable"},
            {[writable: ["/a\0b"]], "writable"},
            {[tmp: :shared], "tmp"},
            {[processes: :none], "processes"},
            {[seccomp: :strict], "seccomp"},
            {[nosuch: 1], "nosuch"},
            {[network: :none, network: :host], "network"},
            {:yes, "keyword"}
          ] do
        e = assert_raise ArgumentError, fn -> Sluice.run(["true"], sandbox: value) end
        assert e.message =~ ":sandbox", e.message
        assert e.message =~ named, e.message
      end
    end

    test "what cannot be set up fails at stage :sandbox, and nothing runs" do
      assert {:error, %Sluice.Error{stage: :sandbox, reason: :enoent}} =
               Sluice.run(["touch", "/ran"], sandbox: [writable: ["/nonexistent-sluice"]])

      refute File.exists?("/ran")
    end
  end
end

defmodule Sluice.SandboxNodeTest do
  @moduledoc "`sandbox:` with `node:`: the program is sandboxed on its node."
  use Sluice.Case, async: false

  alias Sluice.Nodes

  setup_all do
    started = Nodes.distribute!()
    {peer, node} = Nodes.start_peer!("sluice_sandbox")

    on_exit(fn ->
      :peer.stop(peer)
      if started, do: Node.stop()
    end)

    %{peer: peer, node: node}
  end

  test "a node: program is sandboxed on its node", %{peer: peer, node: node} do
    assert {:ok, %{status: 0, stdout: out}} =
             Sluice.run(["sh", "-c", "hostname; ls /proc | grep -c '^[0-9]'"],
               node: node,
               sandbox: true
             )

    assert [host, count] = String.split(out)
    assert host == "sandbox" and String.to_integer(count) < 10

    assert ["sandbox\n"] =
             Sluice.stream!(["hostname"], node: node, sandbox: true) |> Enum.to_list()

    Nodes.assert_peer_clean(peer)
  end
end
