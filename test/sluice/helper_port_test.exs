defmodule Sluice.HelperPortTest do
  @moduledoc """
  Issue 19, finding 4: bytes on the helper program's stdout (the port) that the helper
  program did not write. The helper server decodes the port totally: a crafted frame,
  garbage and an oversize length prefix are logged and survived (the helper server and
  the helper program stay the same, a program running alongside keeps working), and a
  length prefix allocates nothing. The bytes are written where an attacker would: into
  `/proc/HELPER/fd/1`, the write end of the port's pipe.
  """
  use Sluice.Case, async: false

  import ExUnit.CaptureLog

  require Logger

  alias Sluice.Process, as: P

  defp into_port(helper, bytes) do
    File.write!("/proc/#{helper}/fd/1", bytes)
  end

  defp frame(term) do
    payload = :erlang.term_to_binary(term)
    <<byte_size(payload)::32, payload::binary>>
  end

  # Whatever the port delivered has been handled and logged by now: the cat's round trip
  # lets the VM read the port, the call lets the server take what was read.
  defp handled(helper) do
    assert %{os_pid: ^helper} = Sluice.Helper.info()
    Logger.flush()
  end

  defp echoes?(cat) do
    :ok = P.write(cat, "ping\n")
    P.read(cat, 100, 5_000) == {:ok, "ping\n"}
  end

  test "PortFrames cuts frames however the bytes come, and skips an oversize one unbuffered" do
    alias Sluice.Control.PortFrames
    a = frame(:a)
    big = PortFrames.max_frame() + 1
    stream = a <> <<big::32>> <> :binary.copy("x", big) <> a <> a

    for size <- [1, 3, 7, 1000, byte_size(stream)] do
      {events, d} =
        stream
        |> chunks(size)
        |> Enum.reduce({[], PortFrames.new()}, fn chunk, {acc, d} ->
          {events, d} = PortFrames.feed(d, chunk)
          # Never more than a frame and a chunk held.
          assert byte_size(d.buffer) <= PortFrames.max_frame() + 4 + size
          {acc ++ events, d}
        end)

      payload = binary_part(a, 4, byte_size(a) - 4)
      assert events == [{:frame, payload}, {:oversize, big}, {:frame, payload}, {:frame, payload}]
      assert d == PortFrames.new()
    end
  end

  defp chunks(bin, size) when byte_size(bin) <= size, do: [bin]

  defp chunks(bin, size) do
    <<chunk::binary-size(size), rest::binary>> = bin
    [chunk | chunks(rest, size)]
  end

  test "crafted frames and garbage are logged and survived" do
    {:ok, cat} = P.start_link(["cat"])
    server = Process.whereis(Sluice.Helper)
    helper = helper_pid()

    crafted = [
      # Shapes of the program channel's replies with impossible contents.
      {:exit, 1, :bogus},
      {:exit, 1, {:exited, 0}, %{statuses: :not_a_list}},
      {:spawned, 1, -1, :roles, nil},
      {:stats, 1, %{usage: 1, pids_current: -1}},
      {:error, nil, {:not, :binary}},
      {:hello, 2, "/nonexistent", 1, nil},
      :erlang.make_ref(),
      "just a binary"
    ]

    log =
      capture_log(fn ->
        # Thirteen crashes in a row would have stopped the :sluice application.
        for _ <- 1..13, do: into_port(helper, frame({:exit, 1, :bogus}))
        for term <- crafted, do: into_port(helper, frame(term))
        into_port(helper, <<0, 0, 0, 3, 1, 2, 3>>)
        into_port(helper, <<0, 0, 0, 2, 131, 255>>)
        assert echoes?(cat)
        handled(helper)
      end)

    assert Process.whereis(Sluice.Helper) == server
    assert helper_pid() == helper
    assert log =~ "the helper program's port"
    assert echoes?(cat)
    assert {:ok, _} = P.stop(cat, 1_000)
  end

  # A node that does not run as root runs its programs as its own user: the same uid as
  # the helper program, which may open /proc/HELPER/fd/1 (the port) and /proc/HELPER/mem
  # unless the helper program is not dumpable. Root, here, may always (CAP_SYS_PTRACE).
  @tag :external_vm
  @tag :temp_dir
  test "a program of a node that is not root cannot reach the helper program's fds",
       %{temp_dir: dir} do
    code =
      Sluice.ChildVM.start_sluice() <>
        Sluice.ChildVM.reporter() <>
        ~S"""
        # The program's parent is the helper program.
        script = "printf 'xxxxx' > /proc/$PPID/fd/1 && echo port-open; " <>
          "head -c 1 /proc/$PPID/mem > /dev/null 2>&1 && echo mem-open; echo done"
        report.("probe", Sluice.run(["sh", "-c", script], stderr: :null))
        report.("alive", Sluice.run(["echo", "still"]))
        """

    result = Sluice.ChildVM.run(["-e", code], as: :nobody, dir: dir)
    reports = Sluice.ChildVM.reports(result)
    assert {:ok, %Sluice.Result{stdout: out}} = reports["probe"], inspect(result)
    assert out =~ "done"
    refute out =~ "port-open"
    refute out =~ "mem-open"
    assert {:ok, %Sluice.Result{stdout: "still\n"}} = reports["alive"]
  end

  test "an oversize length prefix allocates nothing and is survived" do
    {:ok, cat} = P.start_link(["cat"])
    server = Process.whereis(Sluice.Helper)
    helper = helper_pid()
    :erlang.garbage_collect()
    before = :erlang.memory(:total)

    log =
      capture_log(fn ->
        # 5 bytes: a length of 2 GiB - 1 and the first byte of its "payload".
        into_port(helper, <<0x7F, 0xFF, 0xFF, 0xFF, 0>>)
        into_port(helper, :binary.copy(<<0>>, 100_000))
        assert echoes?(cat)
        handled(helper)
      end)

    grown = :erlang.memory(:total) - before
    assert grown < 64 * 1024 * 1024, "the VM grew by #{grown} bytes"
    assert log =~ "the helper program's port"
    assert Process.whereis(Sluice.Helper) == server
    assert echoes?(cat)
    assert {:ok, _} = P.stop(cat, 1_000)
    # The server now skips the 2 GiB announced: a fresh helper program for the next tests.
    System.cmd("kill", ["-KILL", "#{helper}"])

    assert eventually(
             fn -> match?(%{os_pid: pid} when pid not in [nil, helper], Sluice.Helper.info()) end,
             5_000
           )
  end
end
