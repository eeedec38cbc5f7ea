defmodule Sluice.PipelineStderrTest do
  @moduledoc """
  Where each stage of a kernel pipeline writes its stderr: a stage's own `stderr:` wins
  for that stage, on any stage (first, middle or last); the pipeline's `stderr:` (`run`'s
  default `:capture`) applies to the others, through one pipe to the BEAM.

  The stages print `out1`, then their own `errN` on stderr; the second and third
  uppercase what they read, so bytes sent down the pipe show which stages they crossed.
  Each stage writes its stderr before it closes its stdout, so the next stage writes only
  after it: the order of everything is fixed.
  """
  use Sluice.Case, async: false

  doctest Sluice.Pipeline

  @first ["sh", "-c", "echo out1; echo err1 >&2"]
  @middle ["sh", "-c", "tr a-z A-Z; echo err2 >&2"]
  @last ["sh", "-c", "tr a-z A-Z; echo err3 >&2"]

  # {position, stage stderr} => {stdout, what the pipeline's stderr pipe gets}
  @cases %{
    {:first, :stdout} => {"OUT1\nERR1\n", "err2\nerr3\n"},
    {:first, :null} => {"OUT1\n", "err2\nerr3\n"},
    {:middle, :stdout} => {"OUT1\nERR2\n", "err1\nerr3\n"},
    {:middle, :null} => {"OUT1\n", "err1\nerr3\n"},
    {:last, :stdout} => {"OUT1\nerr3\n", "err1\nerr2\n"},
    {:last, :null} => {"OUT1\n", "err1\nerr2\n"}
  }

  defp pipeline(position, stderr) do
    [first: @first, middle: @middle, last: @last]
    |> Enum.map(fn
      {^position, argv} -> {argv, stderr: stderr}
      {_, argv} -> argv
    end)
    |> Sluice.pipeline()
  end

  test "without stage options every stage's stderr is the pipeline's" do
    plain = Sluice.pipeline([@first, @middle, @last])
    assert {:ok, %{stdout: "OUT1\n", stderr: "err1\nerr2\nerr3\n"}} = Sluice.run(plain)
  end

  for {{position, stderr}, {stdout, captured}} <- @cases do
    test "stderr: #{inspect(stderr)} on the #{position} stage, through run and run!" do
      pipeline = pipeline(unquote(position), unquote(stderr))

      assert {:ok, %{stdout: unquote(stdout), stderr: unquote(captured), statuses: [0, 0, 0]}} =
               Sluice.run(pipeline)

      assert %{stdout: unquote(stdout), stderr: unquote(captured)} = Sluice.run!(pipeline)

      # The pipeline's stderr elsewhere: only the stage's own setting differs.
      assert {:ok, %{stdout: unquote(stdout), stderr: nil}} = Sluice.run(pipeline, stderr: :null)
    end

    test "stderr: #{inspect(stderr)} on the #{position} stage, through stream!" do
      pipeline = pipeline(unquote(position), unquote(stderr))
      # The default (:console): the captured lines go to the VM's console.
      assert pipeline |> Sluice.stream!() |> Enum.join() == unquote(stdout)
      assert pipeline |> Sluice.stream!(stderr: :null) |> Enum.join() == unquote(stdout)

      tagged = pipeline |> Sluice.stream!(stderr: :consume) |> Enum.to_list()
      assert for({:stdout, data} <- tagged, into: "", do: data) == unquote(stdout)
      assert for({:stderr, data} <- tagged, into: "", do: data) == unquote(captured)
    end
  end

  test "every stage with its own stderr: the pipeline's captures nothing" do
    pipeline =
      Sluice.pipeline([
        {@first, stderr: :stdout},
        {@middle, stderr: :null},
        {@last, stderr: :stdout}
      ])

    assert {:ok, %{stdout: "OUT1\nERR1\nerr3\n", stderr: ""}} = Sluice.run(pipeline)

    tagged = pipeline |> Sluice.stream!(stderr: :consume) |> Enum.to_list()
    assert for({:stdout, data} <- tagged, into: "", do: data) == "OUT1\nERR1\nerr3\n"
    assert for({:stderr, _} = element <- tagged, do: element) == []
  end

  test "make 2>&1 | tr: the first stage's stderr down the pipe" do
    pipeline =
      Sluice.pipeline([{["sh", "-c", "echo err >&2"], stderr: :stdout}, ["tr", "a-z", "A-Z"]])

    assert {:ok, %{stdout: "ERR\n", stderr: ""}} = Sluice.run(pipeline)
    assert Sluice.run!(pipeline).stdout == "ERR\n"
    assert pipeline |> Sluice.stream!() |> Enum.join() == "ERR\n"
  end

  test "Sluice.Process reads the pipeline's stderr while the first stage sends its own on" do
    pipeline = Sluice.pipeline([{@first, stderr: :stdout}, @middle, {@last, stderr: :null}])

    {:ok, p} = Sluice.Process.start_link(pipeline, stderr: :consume)
    assert read_all(fn -> Sluice.Process.read(p, 1024, 5_000) end) == "OUT1\nERR1\n"
    assert read_all(fn -> Sluice.Process.read_stderr(p, 1024, 5_000) end) == "err2\n"
    assert {:ok, 0} = Sluice.Process.await_exit(p, 5_000)
  end

  defp read_all(read, acc \\ "") do
    case read.() do
      {:ok, data} -> read_all(read, acc <> data)
      :eof -> acc
    end
  end
end
