defmodule Sluice.ChildSpecTest do
  @moduledoc """
  The child specs of `Sluice.Daemon` and `Sluice.Worker` check their options when they
  are built, as `start_link` does: a mistake is an ArgumentError naming the option there,
  not a failure of the supervisor that later starts the child. Valid specs are unchanged
  and start their programs.
  """
  use Sluice.Case, async: false

  alias Sluice.{Daemon, Worker}

  @pipeline Sluice.pipeline([["cat"], ["cat"]])

  test "a Daemon child spec with a bad option raises, naming it" do
    mistakes = [
      {[argv: ["sleep", "1"], bogus: 1], ~r/unknown option :bogus for Sluice.Daemon/},
      {[argv: ["sleep", "1"], kill_grace: -1], ~r/option :kill_grace/},
      {[argv: ["sleep", "1"], stderr: :null], ~r/child_spec\/1 does not take the option :stderr/},
      {[argv: ["sleep", "1"], log: :loud], ~r/option :log/},
      {[argv: ["sleep", "1"], ready: "up"], ~r/option :ready/},
      {[argv: ["sleep", "1"], lines: true], ~r/unknown option :lines/},
      {[argv: @pipeline, pty: true], ~r/option :pty: expected nil for a pipeline/},
      {[argv: "sleep 1"], ~r/argv must be a list of strings, one per argument.*\["sleep", "1"\]/},
      {[name: :d], ~r/needs the option :argv/},
      {:not_a_list, ~r/needs the option :argv/}
    ]

    for {opts, message} <- mistakes do
      assert_raise ArgumentError, message, fn -> Daemon.child_spec(opts) end
    end
  end

  test "a Worker child spec with a bad option raises, naming it" do
    mistakes = [
      {[argv: ["cat"], bogus: 1], ~r/unknown option :bogus for Sluice.Worker/},
      {[argv: ["cat"], framing: :raw], ~r/option :framing/},
      {[argv: ["cat"], stderr: :consume], ~r/option :stderr/},
      {[argv: ["cat"], kill_grace: :soon], ~r/option :kill_grace/},
      {[argv: ["cat"], timeout: 5], ~r/unknown option :timeout/},
      {[argv: @pipeline, use_stdio: false], ~r/option :use_stdio/},
      {[argv: ["cat"], name: :w, node: :elsewhere@nowhere], ~r/option :name/},
      {[argv: []], ~r/argv must be a non-empty list/},
      {[name: :w], ~r/needs the option :argv/}
    ]

    for {opts, message} <- mistakes do
      assert_raise ArgumentError, message, fn -> Worker.child_spec(opts) end
    end
  end

  test "valid specs are what they were, and a supervisor starts them" do
    daemon_opts = [argv: ["sleep", "100"], name: :sluice_spec_daemon, log: false, kill_grace: 200]

    assert Daemon.child_spec(daemon_opts) == %{
             id: :sluice_spec_daemon,
             start: {Daemon, :start_link, [daemon_opts]},
             shutdown: 1_200
           }

    assert Worker.child_spec(argv: ["cat"], name: :sluice_spec_worker) == %{
             id: :sluice_spec_worker,
             start: {Worker, :start_link, [["cat"], [name: :sluice_spec_worker]]},
             shutdown: 6_000
           }

    assert %{id: {Worker, @pipeline}} = Worker.child_spec(argv: @pipeline, framing: {:line, 100})

    children = [
      {Daemon, daemon_opts},
      {Worker, argv: ["cat"], name: :sluice_spec_worker, framing: {:line, 100}}
    ]

    {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
    assert {:ok, {:eol, "echo"}} = Worker.call(:sluice_spec_worker, "echo\n")
    assert is_integer(Daemon.os_pid(:sluice_spec_daemon))
    :ok = Supervisor.stop(sup)
  end
end
