defmodule Sluice.FramingTest do
  use Sluice.Case, async: false

  import ExUnit.CaptureLog

  alias Sluice.Program.Framing
  alias Sluice.Process, as: P

  @frames Path.expand("../fixtures/frames.py", __DIR__)

  defp frames(mode, extra \\ []), do: ["python3", @frames, mode | extra]

  defp decode_all(d, chunks) do
    d = Enum.reduce(chunks, d, &Framing.feed(&2, &1))
    pop_all(d, [])
  end

  defp pop_all(d, acc) do
    case Framing.pop(d) do
      {:ok, frame, d} -> pop_all(d, [frame | acc])
      :more -> {Enum.reverse(acc), d}
      {:error, reason} -> {Enum.reverse(acc), {:error, reason}}
    end
  end

  describe "the decoder, without programs" do
    test "packets split across reads and packed into one" do
      wire = <<0, 0, 0, 5, "hello", 0, 0, 0, 0, 0, 0, 0, 3, "abc">>
      d = Framing.decoder({:packet, 4}, 100)
      bytewise = for <<b <- wire>>, do: <<b>>
      assert {["hello", "", "abc"], _} = decode_all(d, bytewise)
      assert {["hello", "", "abc"], _} = decode_all(d, [wire])
      assert {["hello"], d2} = decode_all(d, [binary_part(wire, 0, 11)])
      assert {["", "abc"], _} = decode_all(d2, [binary_part(wire, 11, byte_size(wire) - 11)])
      assert {["hi"], _} = decode_all(Framing.decoder({:packet, 1}, 100), [<<2, "hi">>])
      assert {["hi"], _} = decode_all(Framing.decoder({:packet, 2}, 100), [<<0, 2, "hi">>])
    end

    test "reads ask for exactly what completes the current header or body" do
      d = Framing.decoder({:packet, 4}, 100)
      assert Framing.read_size(d) == 4
      d = Framing.feed(d, <<0, 0>>)
      assert Framing.read_size(d) == 2
      d = Framing.feed(d, <<0, 10, "abc">>)
      assert Framing.read_size(d) == 7
      assert Framing.read_size(Framing.decoder({:line, 10}, 100)) == 11
    end

    test "an announced packet over max_frame fails for good" do
      d = Framing.decoder({:packet, 4}, 10)

      assert {["ok"], {:error, :frame_too_large}} =
               decode_all(d, [<<0, 0, 0, 2, "ok", 0, 0, 0, 11>>])

      assert {[], {:error, :frame_too_large}} = decode_all(d, [<<0, 0, 0, 11, "more">>])
      assert {["0123456789"], _} = decode_all(d, [<<0, 0, 0, 10, "0123456789">>])
    end

    test "lines: eol, pieces of max bytes, and a last line without newline" do
      d = Framing.decoder({:line, 4}, 100)

      assert {[eol: "a", eol: "", noeol: "bbbb", eol: "bbbb", eol: "c"], d} =
               decode_all(d, ["a\n\nbbbb", "bbbb\nc\ncc"])

      assert {[noeol: "cc"], _} = pop_all(Framing.finish(d), [])
      assert {[eol: "abcd"], _} = decode_all(Framing.decoder({:line, 4}, 100), ["ab", "cd\n"])
    end

    test "encoding" do
      assert {:ok, iodata} = Framing.encode({:packet, 2}, "abc")
      assert IO.iodata_to_binary(iodata) == <<0, 3, "abc">>
      assert {:error, expected} = Framing.encode({:packet, 1}, :binary.copy("x", 256))
      assert expected =~ "at most 255 bytes"
      assert {:ok, "as is"} = Framing.encode({:line, 10}, "as is")
    end
  end

  describe "Sluice.Process with {:packet, n}" do
    test "a frame written byte by byte is reassembled" do
      {:ok, p} = P.start_link(frames("bytewise"), framing: {:packet, 4})
      assert {:ok, "hello"} = P.read(p)
      assert {:ok, "world"} = P.read(p)
      assert :eof = P.read(p)
      assert {:ok, 0} = P.await_exit(p)
    end

    test "two frames written at once are split, for every header size" do
      for n <- [1, 2, 4] do
        {:ok, p} = P.start_link(frames("two", ["#{n}"]), framing: {:packet, n})
        assert {:ok, "one"} = P.read(p)
        assert {:ok, "two"} = P.read(p)
        assert :eof = P.read(p)
        assert {:ok, 0} = P.await_exit(p)
      end
    end

    test "a 10 MB frame comes whole" do
      {:ok, p} = P.start_link(frames("big"), framing: {:packet, 4})
      assert {:ok, frame} = P.read(p, 65_536, 20_000)
      assert byte_size(frame) == 10_000_000
      assert binary_part(frame, 256 * 1000, 256) == :binary.list_to_bin(Enum.to_list(0..255))
      assert :eof = P.read(p)
      assert {:ok, 0} = P.await_exit(p)
    end

    test "an oversized announced frame is :frame_too_large and the program is stopped" do
      {:ok, p} = P.start_link(frames("oversized"), framing: {:packet, 4}, max_frame: 1_000)
      assert {:error, :frame_too_large} = P.read(p)
      assert {:ok, {:signal, :sigterm}} = P.await_exit(p, 5_000)
      assert {:error, :frame_too_large} = P.read(p)
    end

    test "the default max_frame (64 MiB) refuses a 2 GB announcement" do
      {:ok, p} = P.start_link(frames("oversized"), framing: {:packet, 4})
      assert {:error, :frame_too_large} = P.read(p)
      assert {:ok, {:signal, :sigterm}} = P.await_exit(p, 5_000)
    end

    test "write sends one frame; a frame too long for n bytes is an ArgumentError" do
      {:ok, p} = P.start_link(frames("echo", ["2"]), framing: {:packet, 2})
      assert :ok = P.write(p, ["he", "llo"])
      assert {:ok, "hello"} = P.read(p)
      assert :ok = P.write(p, "")
      assert {:ok, ""} = P.read(p)

      assert_raise ArgumentError, ~r/too long for \{:packet, 2\}/, fn ->
        P.write(p, :binary.copy("x", 65_536))
      end

      # The server carries on.
      assert :ok = P.write(p, "again")
      assert {:ok, "again"} = P.read(p)
      assert :ok = P.close_stdin(p)
      assert :eof = P.read(p)
    end

    test "active :once and n deliver one message per frame, and only what was granted" do
      {:ok, p} = P.start_link(frames("flood"), framing: {:packet, 4})
      :ok = P.set_active(p, :once)
      assert_receive {:sluice_stdout, ^p, frame}, 5_000
      assert frame == :binary.copy("x", 1024)
      :ok = P.set_active(p, 3)
      for _ <- 1..3, do: assert_receive({:sluice_stdout, ^p, ^frame}, 5_000)
      assert_receive {:sluice_passive, ^p}, 5_000
      refute_receive {:sluice_stdout, ^p, _}, 200
      assert {:ok, {:signal, :sigterm}} = P.stop(p, 1_000)
    end

    test "active mode reports a frame over max_frame and the program is stopped" do
      {:ok, p} = P.start_link(frames("oversized"), framing: {:packet, 4}, max_frame: 1_000)
      :ok = P.set_active(p, :once)
      assert_receive {:sluice_error, ^p, :frame_too_large}, 5_000
      assert {:ok, {:signal, :sigterm}} = P.await_exit(p, 5_000)
    end

    test "a controller that used active mode hears of a later bad frame; one that never did, not" do
      # One good frame, then, once told to, a header announcing 2 GiB.
      script = ~S"printf '\000\000\000\002hi'; read go; printf '\177\377\377\377'; sleep 30"

      for active? <- [true, false] do
        {:ok, p} = P.start_link(["sh", "-c", script], framing: {:packet, 4}, max_frame: 1_000)

        if active? do
          :ok = P.set_active(p, :once)
          assert_receive {:sluice_stdout, ^p, "hi"}, 5_000
        else
          assert {:ok, "hi"} = P.read(p)
        end

        # Passive again (the grant is used up): the read gets the error either way.
        :ok = P.write(p, "go\n")
        assert {:error, :frame_too_large} = P.read(p, 65_536, 5_000)

        if active?,
          do: assert_received({:sluice_error, ^p, :frame_too_large}),
          else: refute_received({:sluice_error, ^p, _})

        assert {:ok, {:signal, :sigterm}} = P.await_exit(p, 5_000)
      end
    end
  end

  describe "Sluice.Process with {:line, max}" do
    test "eol and noeol, like Port" do
      {:ok, p} = P.start_link(["printf", "a\\nbbbbbbbb\\nlast"], framing: {:line, 4})
      assert {:ok, {:eol, "a"}} = P.read(p)
      assert {:ok, {:noeol, "bbbb"}} = P.read(p)
      assert {:ok, {:eol, "bbbb"}} = P.read(p)
      assert {:ok, {:noeol, "last"}} = P.read(p)
      assert :eof = P.read(p)
      assert {:ok, 0} = P.await_exit(p)
    end

    test "active mode delivers lines and then the exit" do
      {:ok, p} = P.start_link(["printf", "x\\ny\\n"], framing: {:line, 100})
      :ok = P.set_active(p, 5)
      assert_receive {:sluice_stdout, ^p, {:eol, "x"}}, 5_000
      assert_receive {:sluice_stdout, ^p, {:eol, "y"}}, 5_000
      assert_receive {:sluice_exit, ^p, 0}, 5_000
    end

    test "stderr: :consume stays unframed" do
      {:ok, p} =
        P.start_link(["sh", "-c", "printf 'line\\n'; printf 'raw' >&2"],
          framing: {:line, 100},
          stderr: :consume
        )

      assert {:ok, {:eol, "line"}} = P.read(p)
      assert {:ok, "raw"} = P.read_stderr(p)
    end
  end

  describe "streams" do
    test "elements are frames" do
      assert ["one", "two"] =
               Sluice.stream!(frames("two"), framing: {:packet, 4}) |> Enum.to_list()

      assert [eol: "a", noeol: "b"] =
               Sluice.stream!(["printf", "a\\nb"], framing: {:line, 10}) |> Enum.to_list()

      assert ["hello", "world", {:exit, 0}] =
               Sluice.stream(frames("bytewise"), framing: {:packet, 4}) |> Enum.to_list()
    end

    test "an oversized frame raises and stops the program" do
      error =
        assert_raise Sluice.Error, fn ->
          Sluice.stream!(frames("oversized"), framing: {:packet, 4}, max_frame: 10)
          |> Enum.to_list()
        end

      assert error.reason == :frame_too_large
    end
  end

  describe "use_stdio: false" do
    test "the data goes through fds 3 and 4, and the program sees only fds 0 to 4" do
      {:ok, p} = P.start_link(frames("fds", ["--fd4"]), use_stdio: false, framing: {:packet, 4})
      assert {:ok, "0 1 2 3 4"} = P.read(p)
      assert :eof = P.read(p)
      assert {:ok, 0} = P.await_exit(p)
    end

    test "stdin is /dev/null; stdout and stderr are logged with :log" do
      script = """
      read x; echo "stdin gave '$x'"; echo to-stderr >&2
      printf data >&4; cat <&3 >&4
      """

      log =
        capture_log([metadata: [:os_pid, :stream]], fn ->
          {:ok, p} =
            P.start_link(["sh", "-c", script], use_stdio: false, stdout: :log, stderr: :log)

          os_pid = P.os_pid(p)
          assert {:ok, "data"} = P.read(p)
          :ok = P.write(p, "echoed")
          assert {:ok, "echoed"} = P.read(p)
          :ok = P.close_stdin(p)
          assert :eof = P.read(p)
          assert {:ok, 0} = P.await_exit(p)
          send(self(), {:os_pid, os_pid})
          Process.sleep(100)
        end)

      assert_received {:os_pid, os_pid}
      assert log =~ ~r/os_pid=#{os_pid} stream=stdout .*stdin gave ''/
      assert log =~ ~r/os_pid=#{os_pid} stream=stderr .*to-stderr/
    end

    test "stdout: :null discards the program's prints; the channel is unaffected" do
      {:ok, p} =
        P.start_link(["sh", "-c", "echo noise; printf quiet >&4"], use_stdio: false, stdout: :null)

      assert {:ok, "quiet"} = P.read(p)
      assert :eof = P.read(p)
    end

    test "bad combinations name the option" do
      assert_raise ArgumentError, ~r/option :stdout/, fn -> P.start(["true"], stdout: :log) end

      assert_raise ArgumentError, ~r/option :stderr/, fn ->
        P.start(["true"], use_stdio: false, stderr: :consume)
      end

      assert_raise ArgumentError, ~r/option :stderr/, fn -> P.start(["true"], stderr: :log) end

      assert_raise ArgumentError, ~r/option :framing/, fn ->
        P.start(["true"], framing: {:packet, 3})
      end

      assert_raise ArgumentError, ~r/option :framing/, fn ->
        Sluice.stream!(["true"], framing: {:packet, 4}, lines: true) |> Enum.to_list()
      end
    end
  end
end
