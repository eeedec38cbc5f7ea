# A stateful Python interpreter as a supervised Sluice.Worker, talking {:packet, 4} frames
# over fds 3 and 4 (examples/python_worker.py), so that its prints go to the console and
# never into the protocol. Run with `mix run examples/python_worker.exs`.

defmodule PythonWorkerExample do
  def run do
    {:ok, _} = Application.ensure_all_started(:sluice)
    script = Path.expand("python_worker.py", __DIR__)

    children = [
      {Sluice.Worker,
       argv: ["python3", script], name: Python, use_stdio: false, framing: {:packet, 4}}
    ]

    {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)

    # Statements and expressions share one namespace.
    {:ok, "None"} = Sluice.Worker.call(Python, "import math\nx = 20")
    {:ok, "42"} = Sluice.Worker.call(Python, "x * 2 + 2")
    {:ok, "3.0"} = Sluice.Worker.call(Python, "math.sqrt(9)")
    IO.puts("x * 2 + 2 = 42, math.sqrt(9) = 3.0: state kept between requests")

    # A debugging print goes to the console (stdout: :console), not into the responses.
    {:ok, "None"} = Sluice.Worker.call(Python, "print('debug: x is', x)")

    # An exception nobody catches ends the interpreter: the caller sees the exit status,
    # and the supervisor starts a fresh interpreter.
    first = Process.whereis(Python)
    {:error, {:exit, 1}} = Sluice.Worker.call(Python, "1 / 0")
    IO.puts("1 / 0 ended the interpreter: {:error, {:exit, 1}}")
    fresh = await_restart(first)
    {:ok, "False"} = Sluice.Worker.call(fresh, "'x' in globals()")
    IO.puts("restarted by its supervisor with a fresh namespace: 'x' in globals() is False")

    Supervisor.stop(sup)
  end

  defp await_restart(old) do
    case Process.whereis(Python) do
      pid when is_pid(pid) and pid != old ->
        pid

      _ ->
        Process.sleep(10)
        await_restart(old)
    end
  end
end

PythonWorkerExample.run()
