defmodule Sluice.PtyTest do
  @moduledoc """
  Programs on a pseudo-terminal (`pty:`), with real programs: the terminal itself, its
  size and modes, interrupts, end of input, back-pressure, and that nothing the program
  wrote is lost when it exits at once. The pty column of the fault matrix is in
  `fault_matrix_test.exs`, `no_cgroup_test.exs` and `fault_matrix_vm_test.exs`.
  """
  use Sluice.Case, async: false

  alias Sluice.Process, as: P

  # Reads until `pattern` appears in what was read, or flunks after `ms`.
  defp read_until(p, pattern, ms \\ 5_000, acc \\ "") do
    if acc =~ pattern do
      acc
    else
      case P.read(p, 65_536, ms) do
        {:ok, data} ->
          read_until(p, pattern, ms, acc <> data)

        other ->
          flunk("expected #{inspect(pattern)}, got #{inspect(other)} after #{inspect(acc)}")
      end
    end
  end

  defp read_all(p, acc \\ "") do
    case P.read(p, 65_536, 10_000) do
      {:ok, data} -> read_all(p, acc <> data)
      :eof -> acc
    end
  end

  describe "the terminal" do
    test "tty prints a /dev/pts path, and every stdio is the terminal" do
      assert {:ok, %{status: 0, stdout: out}} = Sluice.run(["tty"], pty: true)
      assert out =~ ~r{^/dev/pts/\d+\r\n$}

      script = "import sys; print(sys.stdin.isatty(), sys.stdout.isatty(), sys.stderr.isatty())"

      assert {:ok, %{stdout: "True True True\r\n"}} =
               Sluice.run(["python3", "-c", script], pty: true)
    end

    test "stderr goes elsewhere only when asked: on a terminal both streams are one" do
      script = "echo out; echo err >&2"

      assert {:ok, %{stdout: "out\r\nerr\r\n", stderr: nil}} =
               Sluice.run(["sh", "-c", script], pty: true)

      assert {:ok, %{stdout: "out\r\n", stderr: "err\n"}} =
               Sluice.run(["sh", "-c", script], pty: true, stderr: :capture)
    end

    test "stty size reports the requested size" do
      assert {:ok, %{stdout: "40 100\r\n"}} =
               Sluice.run(["stty", "size"], pty: [rows: 40, cols: 100])

      assert {:ok, %{stdout: "24 80\r\n"}} = Sluice.run(["stty", "size"], pty: true)
    end

    test "set_window_size/3 reaches a shell that traps WINCH" do
      script = "trap 'stty size' WINCH; echo ready; while :; do sleep 0.05; done"
      {:ok, p} = P.start_link(["sh", "-c", script], pty: true)
      read_until(p, "ready\r\n")
      assert :ok = P.set_window_size(p, 33, 120)
      assert read_until(p, "33 120\r\n") =~ "33 120"
      assert :ok = P.set_window_size(p, 10, 20)
      assert read_until(p, "10 20\r\n") =~ "10 20"
      assert {:ok, _} = P.stop(p, 1_000)
    end

    test "set_window_size/3 on pipes and on an ended terminal" do
      {:ok, p} = P.start_link(["sleep", "10"])
      assert {:error, :not_a_terminal} = P.set_window_size(p, 10, 10)
      assert_raise ArgumentError, ~r/rows/, fn -> P.set_window_size(p, 0, 10) end
      assert_raise ArgumentError, ~r/cols/, fn -> P.set_window_size(p, 10, 65_536) end
      P.stop(p, 0)

      {:ok, p} = P.start_link(["sh", "-c", "echo bye; sleep 0.3"], pty: true)
      assert "bye\r\n" = read_all(p)
      assert {:error, :closed} = P.set_window_size(p, 10, 10)
      assert {:ok, 0} = P.await_exit(p)
    end

    test "stty -a shows the requested modes" do
      modes = [icanon: 0, opost: 0, vintr: 7, tty_op_ospeed: 9600, iutf8: 1, vdsusp: 25]

      assert {:ok, %{stdout: out}} = Sluice.run(["stty", "-a"], pty: [modes: modes])
      assert out =~ ~r/(^|\s)-icanon\s/
      assert out =~ ~r/(^|\s)-opost\s/
      assert out =~ ~r/(^|\s)iutf8\s/
      assert out =~ "intr = ^G"
      assert out =~ "speed 9600 baud"
      # opost off: lines end with a bare newline.
      refute out =~ "\r"

      assert {:ok, %{stdout: out}} = Sluice.run(["stty", "-a"], pty: true)
      assert out =~ ~r/(^|\s)icanon\s/ and out =~ ~r/(^|\s)-echo\s/
    end

    test "a mode the terminal rejects is an error at the pty stage" do
      assert {:error, %Sluice.Error{stage: :pty, reason: :einval, message: msg}} =
               Sluice.run(["true"], pty: [modes: [parenb: 1]])

      assert msg =~ "PARENB"

      assert {:error, %Sluice.Error{stage: :pty, reason: :einval}} =
               P.start(["true"], pty: [modes: [tty_op_ispeed: 12_345]])
    end
  end

  describe "input" do
    test "echo: false (default) gives cat's output once, echo: true twice" do
      assert {:ok, %{stdout: "abc\r\n"}} = Sluice.run(["cat"], pty: true, input: "abc\n")

      assert {:ok, %{stdout: "abc\r\nabc\r\n"}} =
               Sluice.run(["cat"], pty: [echo: true], input: "abc\n")

      assert {:ok, %{stdout: "abc\r\nabc\r\n"}} =
               Sluice.run(["cat"], pty: [modes: [echo: 1]], input: "abc\n")
    end

    test "\\x03 interrupts the foreground group when isig is on" do
      {:ok, p} = P.start_link(["sleep", "100"], pty: true)
      assert :ok = P.write(p, "\x03")
      assert {:ok, {:signal, :sigint}} = P.await_exit(p, 5_000)

      # With isig off it is just a byte for the program.
      {:ok, p} = P.start_link(["head", "-c", "1"], pty: [modes: [isig: 0, icanon: 0]])
      assert :ok = P.write(p, "\x03")
      assert read_all(p) == "\x03"
      assert {:ok, 0} = P.await_exit(p, 5_000)
    end

    test "close_stdin/1 makes cat exit 0 with its output delivered" do
      {:ok, p} = P.start_link(["cat"], pty: true)
      :ok = P.write(p, "one\ntwo\n")
      assert :ok = P.close_stdin(p)
      assert {:error, :closed} = P.write(p, "more")
      assert read_all(p) == "one\r\ntwo\r\n"
      assert {:ok, 0} = P.await_exit(p, 5_000)
    end

    test "close_stdin/1 after an unfinished line hands the line over, then ends input" do
      {:ok, p} = P.start_link(["cat"], pty: true)
      :ok = P.write(p, "partial")
      :ok = P.close_stdin(p)
      assert read_all(p) == "partial"
      assert {:ok, 0} = P.await_exit(p, 5_000)
    end

    test "a program that reads on after end of input: the terminal stays open" do
      # Unlike a closed pipe, the terminal still reaches the program: after the one end
      # of input, a second read waits for more.
      wait = "import select; print('more' if select.select([0], [], [], 0.5)[0] else 'quiet')"
      script = "cat; echo after-eof; python3 -c \"#{wait}\""
      {:ok, p} = P.start_link(["sh", "-c", script], pty: true)
      :ok = P.write(p, "x\n")
      :ok = P.close_stdin(p)
      assert read_all(p) == "x\r\nafter-eof\r\nquiet\r\n"
      assert {:ok, 0} = P.await_exit(p, 5_000)
    end

    test "input larger than the terminal holds is written with back-pressure, then VEOF" do
      # 1 MiB of lines through the terminal's 4 KiB line discipline: the end-of-input
      # character often finds the terminal full, and waits its turn.
      data = :binary.copy("abcdefghijklmnopqrstuvwxyz01234\n", 32_768)

      for _ <- 1..3 do
        assert {:ok, %{status: 0, stdout: "1048576\r\n"}} =
                 Sluice.run(["wc", "-c"], pty: true, input: data, timeout: 20_000)
      end

      stream =
        Sluice.stream!(["wc", "-c"],
          pty: true,
          input: Stream.map(1..64, fn _ -> binary_part(data, 0, 16_384) end)
        )

      assert Enum.join(stream) == "1048576\r\n"
    end
  end

  describe "long lines on a canonical terminal" do
    # n_tty keeps at most 4,095 bytes of an unfinished line (and room for its end): the
    # rest of a longer line used to be dropped while Sluice reported it written.
    @line :binary.copy("x", 4_999) <> "\n"
    @lines :binary.copy(@line, 3)
    @count_lines "import sys; print([len(l) for l in sys.stdin])"

    test "run and stream deliver every byte of lines over 4,095 bytes" do
      assert {:ok, %{status: 0, stdout: "15000\r\n"}} =
               Sluice.run(["wc", "-c"], pty: true, input: @lines, timeout: 20_000)

      # The program reads each line in pieces, as a pipe would give it: whole lines again.
      assert {:ok, %{status: 0, stdout: "[5000, 5000, 5000]\r\n"}} =
               Sluice.run(["python3", "-c", @count_lines], pty: true, input: @lines)

      stream = Sluice.stream!(["wc", "-c"], pty: true, input: Stream.map(1..3, fn _ -> @line end))

      assert Enum.join(stream) == "15000\r\n"
    end

    test "Sluice.Process.write/3 of one long line in several writes" do
      {:ok, p} = P.start_link(["python3", "-c", @count_lines], pty: true)
      half = :binary.copy("y", 3_000)
      assert :ok = P.write(p, half)
      assert :ok = P.write(p, half)
      assert :ok = P.write(p, half <> "\nshort\n" <> :binary.copy("z", 9_000))
      assert :ok = P.write(p, "\n")
      assert :ok = P.close_stdin(p)
      assert read_all(p) == "[9001, 6, 9001]\r\n"
      assert {:ok, 0} = P.await_exit(p, 5_000)
    end

    test "a newline quoted with ^V (VLNEXT) does not end the line" do
      # One line of 6,002 bytes for the terminal: 3,000 bytes, a quoted newline, 3,000.
      input = :binary.copy("a", 3_000) <> "\x16\n" <> :binary.copy("b", 3_000) <> "\n"
      assert {:ok, %{stdout: "6002\r\n"}} = Sluice.run(["wc", "-c"], pty: true, input: input)
    end

    test "the terminal's input bytes, as the NIF reads them from its modes" do
      input = fn modes ->
        {:ok, p} = P.start_link(["sleep", "10"], pty: [modes: modes])
        answer = Sluice.Native.terminal_input(:sys.get_state(p).program.fds.stdin)
        P.stop(p, 0)
        answer
      end

      # Linux's defaults: ^C ^D \n \r(ICRNL) ^U ^Z ^\\ end or empty the line; ^Q ^S ^W DEL
      # are stored nowhere; ^V quotes.
      assert {:ok, {:canonical, 4, 4_095, <<3, 4, 10, 13, 0x15, 0x1A, 0x1C>>, controls, "\x16"}} =
               input.([])

      assert controls == <<0x11, 0x13, 0x17, 0x7F>>
      assert {:ok, :raw} = input.(icanon: 0)

      # No ISIG, no IEXTEN, IGNCR, VEOF off: \r is dropped, ^C ^V ^W are data.
      assert {:ok, {:canonical, 0, 4_095, <<10, 0x15>>, <<13, 0x7F>>, ""}} =
               input.(isig: 0, iexten: 0, igncr: 1, veof: 255, ixon: 0)

      # ISTRIP: 0x8a is a newline, 0xff an erase; PARMRK stores 0xff twice: half a line.
      assert {:ok, {:canonical, 4, 2_047, ends, controls, <<0x16, 0x96>>}} =
               input.(istrip: 1, parmrk: 1)

      default_ends = <<3, 4, 10, 13, 0x15, 0x1A, 0x1C>>
      assert ends == default_ends <> for(<<b <- default_ends>>, into: "", do: <<b + 0x80>>)
      assert controls == <<0x11, 0x13, 0x17, 0x7F, 0x91, 0x93, 0x97, 0xFF>>
    end

    test "without a VEOF to hand a line over, a long line is refused, not cut" do
      {:ok, p} = P.start_link(["cat"], pty: [modes: [veof: 255]])
      assert {:error, :line_too_long} = P.write(p, "ab\n" <> :binary.copy("x", 5_000))
      # Nothing of that write went in; shorter lines still do.
      assert :ok = P.write(p, "short\n")
      assert read_until(p, "short\r\n") == "short\r\n"
      assert {:error, %Sluice.Error{reason: :no_eof}} = P.close_stdin(p)
      assert :ok = P.write(p, "\x03")
      assert {:ok, {:signal, :sigint}} = P.await_exit(p, 5_000)
    end
  end

  describe "a program that changes its terminal's modes itself" do
    @tag :temp_dir
    test "run fails with :line_too_long when the program disabled VEOF before a long line",
         %{temp_dir: dir} do
      marker = Path.join(dir, "veof-off")

      script = """
      import sys, termios
      a = termios.tcgetattr(0)
      a[6][termios.VEOF] = b"\\0"
      termios.tcsetattr(0, termios.TCSANOW, a)
      open(sys.argv[1], "w").close()
      sys.stdin.readline()
      """

      # The long line is given only once the program has disabled its VEOF.
      input =
        Stream.resource(
          fn -> :wait end,
          fn
            :wait ->
              :ok = await_file(marker)
              {[:binary.copy("x", 5_000) <> "\n"], :done}

            :done ->
              {:halt, :done}
          end,
          fn _ -> :ok end
        )

      assert {:error, %Sluice.Error{reason: :line_too_long, message: msg}} =
               Sluice.run(["python3", "-c", script, marker],
                 pty: true,
                 input: input,
                 timeout: 15_000
               )

      assert msg =~ "VEOF"
    end
  end

  defp await_file(path, tries \\ 500) do
    cond do
      File.exists?(path) ->
        :ok

      tries == 0 ->
        flunk("#{path} was never created")

      true ->
        Process.sleep(20)
        await_file(path, tries - 1)
    end
  end

  describe "end of input on a raw terminal" do
    test "close_stdin/1 writes nothing and says why; stdin stays open" do
      {:ok, p} = P.start_link(["cat"], pty: [modes: [icanon: 0]])
      assert :ok = P.write(p, "abc")
      assert {:error, %Sluice.Error{reason: :raw_terminal, message: msg}} = P.close_stdin(p)
      assert msg =~ "raw"
      assert :ok = P.write(p, "d")
      assert read_until(p, "abcd") == "abcd"
      assert {:ok, {:signal, :sigterm}} = P.stop(p, 1_000)
    end

    test "with VEOF disabled, close_stdin/1 says so instead of doing nothing" do
      {:ok, p} = P.start_link(["cat"], pty: [modes: [veof: 0]])
      assert {:error, %Sluice.Error{reason: :no_eof}} = P.close_stdin(p)
      assert :ok = P.write(p, "still open\n")
      assert read_until(p, "still open\r\n")
      assert {:ok, _} = P.stop(p, 1_000)
    end

    test "a program that puts its terminal in raw mode itself gets no byte from close_stdin/1" do
      script = """
      import os, sys, tty
      tty.setraw(0)
      os.write(1, b"raw\\n")
      data = os.read(0, 100)
      os.write(1, repr(data).encode() + b"\\n")
      """

      {:ok, p} = P.start_link(["python3", "-c", script], pty: true)
      read_until(p, "raw")
      assert {:error, %Sluice.Error{reason: :raw_terminal}} = P.close_stdin(p)
      assert :ok = P.write(p, "q")
      assert read_all(p) =~ "b'q'"
      assert {:ok, 0} = P.await_exit(p, 5_000)
    end

    test "run and stream refuse input: on a terminal that has no end of input" do
      for modes <- [[icanon: 0], [veof: 255], [icanon: 1, veof: 0]] do
        assert_raise ArgumentError, ~r/:input.*(raw|VEOF)/s, fn ->
          Sluice.run(["wc", "-c"], pty: [modes: modes], input: "abc", timeout: 3_000)
        end

        assert_raise ArgumentError, ~r/:input/, fn ->
          Sluice.stream!(["wc", "-c"], pty: [modes: modes], input: ["abc"]) |> Enum.to_list()
        end
      end

      # A canonical terminal again, and no input on a raw one: nothing is written.
      assert {:ok, %{stdout: "3\r\n"}} =
               Sluice.run(["wc", "-c"], pty: [modes: [icanon: 0, icanon: 1]], input: "abc")

      quiet = "import select; print('got' if select.select([0], [], [], 0.5)[0] else 'quiet')"

      assert {:ok, %{status: 0, stdout: "quiet\r\n"}} =
               Sluice.run(["python3", "-c", quiet], pty: [modes: [icanon: 0]])
    end
  end

  describe "output" do
    test "1,000,000 bytes from a program that exits at once all arrive, 100 times in a row" do
      for i <- 1..100 do
        assert {:ok, %{status: 3, stdout: out}} =
                 Sluice.run(["sh", "-c", "head -c 1000000 /dev/zero; exit 3"], pty: true)

        assert byte_size(out) == 1_000_000, "run #{i}: #{byte_size(out)} bytes"
      end
    end

    test "a program that closed the terminal is not hung up before it exits" do
      # Its output ends (EIO) while it still runs: closing the master then would send it
      # SIGHUP (`wc` was reported killed by SIGHUP after printing its count).
      script = "echo bye; exec <&- >&- 2>&-; sleep 0.3; exit 5"
      assert {:ok, %{status: 5, stdout: "bye\r\n"}} = Sluice.run(["sh", "-c", script], pty: true)

      {:ok, p} = P.start_link(["sh", "-c", script], pty: true)
      assert read_all(p) == "bye\r\n"
      assert {:ok, 5} = P.await_exit(p, 5_000)
    end

    test "the same through a Sluice.Process and a stream" do
      {:ok, p} = P.start_link(["head", "-c", "1000000", "/dev/zero"], pty: true)
      assert byte_size(read_all(p)) == 1_000_000
      assert {:ok, 0} = P.await_exit(p)

      size =
        Sluice.stream!(["head", "-c", "1000000", "/dev/zero"], pty: true)
        |> Enum.reduce(0, &(byte_size(&1) + &2))

      assert size == 1_000_000
    end

    test "yes under a pty, unread for 2 s: BEAM memory grows less than 2 MB" do
      :erlang.garbage_collect()
      base = :erlang.memory(:total)
      {:ok, p} = P.start_link(["yes"], pty: true)
      Process.sleep(2_000)
      grown = :erlang.memory(:total) - base
      assert grown < 2_000_000, "BEAM memory grew by #{grown} bytes"
      # The program is blocked on the full terminal, not spinning.
      assert {"S", _} = stat(P.os_pid(p))
      assert {:ok, "y\r\n" <> _} = P.read(p)
      assert {:ok, _} = P.stop(p, 1_000)
    end

    test "active mode delivers a terminal's output" do
      {:ok, p} = P.start_link(["echo", "hi"], pty: true)
      :ok = P.set_active(p, 10)
      assert_receive {:sluice_stdout, ^p, "hi\r\n"}, 2_000
      assert_receive {:sluice_exit, ^p, 0}, 2_000
    end
  end

  describe "an interactive session" do
    test "python3 -i driven line by line" do
      {:ok, p} = P.start_link(["python3", "-i", "-q"], pty: true, env: %{"PYTHONSTARTUP" => nil})
      read_until(p, ">>> ")
      :ok = P.write(p, "x = 6 * 7\n")
      read_until(p, ">>> ")
      :ok = P.write(p, "print(x)\n")
      assert read_until(p, ">>> ") =~ "42\r\n"
      :ok = P.write(p, "import os; os.isatty(0)\n")
      assert read_until(p, ">>> ") =~ "True\r\n"
      # The REPL's line editor reads with its terminal raw: there is no end of input to
      # send, and nothing is written; its own end of input is ^D, sent in-band.
      assert {:error, %Sluice.Error{reason: :raw_terminal}} = P.close_stdin(p)
      :ok = P.write(p, "\x04")
      read_all(p)
      assert {:ok, 0} = P.await_exit(p, 5_000)
    end

    test "sh -i with job control: \\x03 stops the foreground job, not the shell" do
      {:ok, p} = P.start_link(["sh", "-i"], pty: true, env: %{"PS1" => "$ ", "ENV" => nil})
      read_until(p, "$ ")
      :ok = P.write(p, "sleep 100\n")
      Process.sleep(300)
      :ok = P.write(p, "\x03")
      read_until(p, "$ ")
      :ok = P.write(p, "echo still here\n")
      assert read_until(p, "still here\r\n")
      :ok = P.write(p, "exit 4\n")
      read_all(p)
      assert {:ok, 4} = P.await_exit(p, 5_000)
    end
  end

  test "examples/pty_session.exs runs" do
    out =
      ExUnit.CaptureIO.capture_io(fn ->
        Code.eval_file(Path.expand("../../examples/pty_session.exs", __DIR__))
      end)

    assert out =~ "(True, True)"
    assert out =~ "os.terminal_size(columns=132, lines=50)"
    assert out =~ "total: 45"
    assert out =~ "python3 exited with status 0"
    assert out =~ "the shell is still here"
    assert out =~ "exit 3 -> status 3"
  end

  describe "Sluice.Daemon" do
    test "logs a terminal's output" do
      import ExUnit.CaptureLog

      log =
        capture_log(fn ->
          {:ok, d} = Sluice.Daemon.start_link(argv: ["sh", "-c", "tty; sleep 5"], pty: true)
          Process.sleep(500)
          GenServer.stop(d)
        end)

      assert log =~ ~r{/dev/pts/\d+}
    end
  end
end
