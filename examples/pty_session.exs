# An interactive session on a pseudo-terminal: `python3 -i` driven line by line, as a
# person at a terminal would, then a shell interrupted with ^C.
#
#     mix run examples/pty_session.exs
#
# The program runs with `pty: true`: its stdin, stdout and stderr are a terminal, so the
# REPL prompts, line-buffers and handles ^C and ^D as it would for a user. Each step
# writes a line and reads until the next prompt.

defmodule PtySession do
  alias Sluice.Process, as: P

  # Reads until `prompt` ends the output, or gives up after `ms`.
  def read_until(p, prompt, ms \\ 5_000, acc \\ "") do
    if String.ends_with?(acc, prompt) do
      acc
    else
      case P.read(p, 65_536, ms) do
        {:ok, data} -> read_until(p, prompt, ms, acc <> data)
        other -> raise "waiting for #{inspect(prompt)}: #{inspect(other)} after #{inspect(acc)}"
      end
    end
  end

  def say(p, line, prompt) do
    :ok = P.write(p, line <> "\n")
    answer = read_until(p, prompt)
    IO.puts("  #{prompt}#{line}")

    for out <- answer |> String.trim_trailing(prompt) |> String.split("\r\n", trim: true),
        do: IO.puts("  #{out}")
  end

  def python do
    IO.puts("python3 -i on a 30 x 100 terminal:")
    {:ok, p} = P.start_link(["python3", "-i", "-q"], pty: [rows: 30, cols: 100])
    read_until(p, ">>> ")
    say(p, "import os, sys", ">>> ")
    say(p, "sys.stdin.isatty(), sys.stdout.isatty()", ">>> ")
    say(p, "os.get_terminal_size()", ">>> ")
    :ok = P.set_window_size(p, 50, 132)
    say(p, "os.get_terminal_size()", ">>> ")
    say(p, "total = sum(range(10))", ">>> ")
    say(p, "print('total:', total)", ">>> ")
    # The REPL's line editor reads with its terminal in raw mode, which has no end of
    # input: close_stdin/1 says so and writes nothing. ^D, written as a key, is the line
    # editor's own end of input at an empty prompt: the REPL exits.
    {:error, %Sluice.Error{reason: :raw_terminal}} = P.close_stdin(p)
    :ok = P.write(p, "\x04")
    {:ok, status} = P.await_exit(p, 5_000)
    IO.puts("  ^D -> python3 exited with status #{status}\n")
  end

  def shell do
    IO.puts("sh -i: ^C ends the foreground job, not the shell:")
    {:ok, p} = P.start_link(["sh", "-i"], pty: true, env: %{"PS1" => "$ ", "ENV" => nil})
    read_until(p, "$ ")
    :ok = P.write(p, "sleep 100\n")
    Process.sleep(200)
    :ok = P.write(p, "\x03")
    read_until(p, "$ ")
    IO.puts("  $ sleep 100   (^C)")
    say(p, "echo the shell is still here", "$ ")
    :ok = P.write(p, "exit 3\n")
    {:ok, status} = P.await_exit(p, 5_000)
    IO.puts("  $ exit 3 -> status #{status}")
  end
end

PtySession.python()
PtySession.shell()
