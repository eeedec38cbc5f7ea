defmodule Sluice.BufferingTest do
  # The README's "Output buffering", claim by claim: programs that block-buffer a pipe
  # keep their answers (a worker's call times out, a daemon is never ready, idle_timeout
  # fires), and each fix it names works. PYTHONUNBUFFERED is unset for every program: a
  # machine that exports it (some do) would hide the problem.
  use Sluice.Case, async: false

  alias Sluice.Worker

  @moduletag :capture_log

  # Long enough for a python3 to start on a loaded machine, the same for the cases that
  # answer and those that cannot: it is not a matter of speed.
  @call_ms 2_000

  @upper "import sys\nfor line in sys.stdin: print(line.upper(), end='')"
  @upper_flush "import sys\nfor line in sys.stdin: print(line.upper(), end='', flush=True)"
  @no_env %{"PYTHONUNBUFFERED" => nil}

  # {argv, options, what one call of "hello\n" gets}
  @cases [
    # Python
    {["python3", "-c", @upper], [], {:error, :timeout}},
    {["python3", "-u", "-c", @upper], [], {:ok, {:eol, "HELLO"}}},
    {["python3", "-c", @upper], [env: %{"PYTHONUNBUFFERED" => "1"}], {:ok, {:eol, "HELLO"}}},
    {["python3", "-c", @upper_flush], [], {:ok, {:eol, "HELLO"}}},
    {["stdbuf", "-oL", "python3", "-c", @upper], [], {:error, :timeout}},
    # C stdio: stdbuf, or the tool's own flag
    {["sed", "s/h/H/"], [], {:error, :timeout}},
    {["stdbuf", "-oL", "sed", "s/h/H/"], [], {:ok, {:eol, "Hello"}}},
    {["sed", "-u", "s/h/H/"], [], {:ok, {:eol, "Hello"}}},
    {["tr", "a-z", "A-Z"], [], {:error, :timeout}},
    {["stdbuf", "-oL", "tr", "a-z", "A-Z"], [], {:ok, {:eol, "HELLO"}}},
    {["cut", "-c", "1-4"], [], {:error, :timeout}},
    {["stdbuf", "-oL", "cut", "-c", "1-4"], [], {:ok, {:eol, "hell"}}},
    {["grep", "h"], [], {:error, :timeout}},
    {["grep", "--line-buffered", "h"], [], {:ok, {:eol, "hello"}}},
    {["mawk", "{ print toupper($0) }"], [], {:error, :timeout}},
    {["stdbuf", "-oL", "mawk", "{ print toupper($0) }"], [], {:error, :timeout}},
    {["mawk", "-W", "interactive", "{ print toupper($0) }"], [], {:ok, {:eol, "HELLO"}}},
    {["perl", "-ne", "print uc"], [], {:error, :timeout}},
    {["perl", "-ne", "BEGIN { $| = 1 } print uc"], [], {:ok, {:eol, "HELLO"}}},
    # A terminal: stdio line-buffers it; onlcr makes \r\n unless opost is off
    {["python3", "-c", @upper], [pty: true], {:ok, {:eol, "HELLO\r"}}},
    {["python3", "-c", @upper], [pty: [modes: [opost: 0]]], {:ok, {:eol, "HELLO"}}},
    {["sed", "s/h/H/"], [pty: true], {:ok, {:eol, "Hello\r"}}}
  ]

  test "a line worker's call: what block buffering does, and each fix" do
    got =
      @cases
      |> Task.async_stream(&call/1, max_concurrency: 8, timeout: 4 * @call_ms, ordered: true)
      |> Enum.map(fn {:ok, reply} -> reply end)

    wrong =
      for {{argv, opts, expected}, reply} <- Enum.zip(@cases, got),
          reply != expected,
          do: {argv, opts, expected: expected, got: reply}

    assert wrong == []
  end

  defp call({argv, opts, _expected}) do
    opts = Keyword.merge([framing: {:line, 1_000}, env: @no_env], opts)
    {:ok, w} = Worker.start_link(argv, opts)
    reply = Worker.call(w, "hello\n", @call_ms)
    GenServer.stop(w)
    reply
  end

  test "a daemon's ready: never sees http.server's line without -u; with -u it does" do
    server = ["-m", "http.server", "0", "--bind", "127.0.0.1"]
    ready = [ready: ~r/Serving HTTP/, ready_timeout: @call_ms, env: @no_env]

    assert {:error, %Sluice.Error{reason: :not_ready}} =
             Sluice.Daemon.start_link([argv: ["python3" | server]] ++ ready)

    assert {:ok, daemon} = Sluice.Daemon.start_link([argv: ["python3", "-u" | server]] ++ ready)
    GenServer.stop(daemon)
  end

  test "idle_timeout stops a busy program whose prints stay in its buffer; -u" do
    # A line every 0.3 s for 2.4 s; idle_timeout 1.5 s (python3's start counts too).
    progress = "import time\nfor i in range(8):\n    print(i)\n    time.sleep(0.3)"
    opts = [idle_timeout: 1_500, env: @no_env]

    assert {:error, %Sluice.Error{reason: :idle_timeout, result: %{stdout: ""}}} =
             Sluice.run(["python3", "-c", progress], opts)

    assert {:ok, %{status: 0, stdout: "0\n1\n2\n3\n4\n5\n6\n7\n"}} =
             Sluice.run(["python3", "-u", "-c", progress], opts)
  end
end
