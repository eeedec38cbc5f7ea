defmodule Sluice.OptionsTest do
  @moduledoc """
  The options schema, checked without starting any OS process: every option's default,
  which entry points accept it, one clear ArgumentError per mistake.
  """
  use ExUnit.Case, async: true

  alias Sluice.Options

  doctest Sluice.Options
  doctest Sluice.OptionError

  @entries [:process, :worker, :run, :stream, :daemon]

  test "defaults, once each, per entry point" do
    assert %{stderr: :capture, kill_grace: 5_000, timeout: :infinity} =
             Options.validate!([], :run, "run")

    assert %{stderr: :console, chunk_size: 65_536, max_line_length: 1_048_576} =
             Options.validate!([], :stream, "stream")

    assert %{stderr: :console, start_timeout: 10_000} = Options.validate!([], :process, "p")
    assert %{log: :info, max_line_length: 1_048_576} = Options.validate!([], :daemon, "d")

    # Precomputed defaults equal what checking the defaults one by one gives.
    for entry <- @entries do
      defaults = Options.validate!([], entry, "x")
      assert Options.validate!([kill_grace: 5_000], entry, "x") == defaults
    end
  end

  describe "one schema, one struct" do
    test "every option of the schema is a field of %Sluice.Options{}, with a default for every entry point" do
      fields = Map.keys(%Options{}) -- [:__struct__]
      assert Enum.sort(Options.keys()) == Enum.sort(fields)

      for entry <- [:manage, :stage | @entries] do
        defaults = Options.defaults(entry)
        assert %Options{} = defaults
        assert Options.validate!([], entry, "x") == defaults

        # Every option an entry takes is a key of the schema, and its default passes its
        # own check unchanged (validate!/3 checks only what was given).
        for key <- Options.accepted(entry) do
          assert key in fields
          default = Map.fetch!(defaults, key)
          assert Options.Check.check!(key, default, entry) == default, "#{entry} #{key}"
        end
      end
    end

    test "an entry's defaults differ only where the table says so" do
      assert Options.defaults(:run).stderr == :capture
      assert Options.defaults(:manage).group == false
      assert Options.defaults(:worker).framing == {:packet, 4}
      assert Options.defaults(:process).framing == :raw

      # Sluice.Worker takes the options of Sluice.Process.
      assert Options.accepted(:worker) == Options.accepted(:process)
    end

    test "the moduledoc's table has a row for every option, with the schema's default" do
      {:docs_v1, _, _, _, %{"en" => doc}, _, _} = Code.fetch_docs(Options)

      rows =
        for "| `:" <> _ = line <- String.split(doc, "\n"),
            [names, default | _] =
              line |> String.split(" | ") |> Enum.map(&String.trim(&1, "| ")),
            name <- Regex.scan(~r/`:(\w+)`/, names, capture: :all_but_first) |> List.flatten(),
            into: %{},
            do: {String.to_existing_atom(name), default}

      assert Enum.sort(Map.keys(rows)) == Enum.sort(Options.keys())

      # Where the table says more than the value (what nil means for :stdout and :cd, the
      # entry points' own stderr), the table's words stand.
      worded = [:cd, :stdout, :stderr, :pty]

      for {key, text} <- rows, key not in worded do
        [literal] = Regex.run(~r/^`([^`]+)`/, text, capture: :all_but_first)
        {documented, _} = Code.eval_string(literal)
        assert documented == Map.fetch!(%Options{}, key), "#{key}: #{text}"
      end
    end

    test "no option is read with a default of its own outside the schema" do
      keys = Enum.map_join(Options.keys(), "|", &Atom.to_string/1)

      fallback =
        ~r/(Map|Keyword)\.(get|get_lazy|pop)\(\w+, :(#{keys}), |Keyword\.put_new\(\w+, :(#{keys}), |Map\.get\(opts, /

      # lib/mix's task reads its command line's switches, not Sluice's options.
      files = Path.wildcard("lib/sluice/**/*.ex") ++ ["lib/sluice.ex"]
      assert length(files) > 40

      for file <- files, {line, n} <- Enum.with_index(File.stream!(file), 1) do
        refute line =~ fallback, "#{file}:#{n}: #{String.trim(line)}"
      end

      # The Erlang face calls the Elixir API, whose defaults apply: it writes none of its own.
      for file <- Path.wildcard("src/*.erl"),
          {line, n} <- Enum.with_index(File.stream!(file), 1) do
        refute line =~ ~r/-define\(DEFAULT|\b5000\b/, "#{file}:#{n}: #{String.trim(line)}"
      end
    end
  end

  test "which entry point accepts which option" do
    assert_raise ArgumentError, ~r/unknown option :lines for run/, fn ->
      Options.validate!([lines: true], :run, "run")
    end

    assert_raise ArgumentError, ~r/unknown option :timeout/, fn ->
      Options.validate!([timeout: 1], :process, "start")
    end

    assert_raise ArgumentError, ~r/unknown option :stderr/, fn ->
      Options.validate!([stderr: :null], :daemon, "daemon")
    end

    assert %{input: "x"} = Options.validate!([input: "x"], :stream, "s")
  end

  test "input_in: :caller by default for run and streams, :process on request, nowhere else" do
    for entry <- [:run, :stream] do
      assert %{input_in: :caller} = Options.validate!([], entry, "x")
      assert %{input_in: :process} = Options.validate!([input_in: :process], entry, "x")

      for bad <- [:elsewhere, nil, true, "process"] do
        assert_raise ArgumentError,
                     ~r/invalid value for option :input_in: expected :caller or :process/,
                     fn -> Options.validate!([input_in: bad], entry, "x") end
      end
    end

    for entry <- [:process, :daemon] do
      assert_raise ArgumentError, ~r/unknown option :input_in/, fn ->
        Options.validate!([input_in: :process], entry, "x")
      end
    end
  end

  test "stderr modes per entry point" do
    assert %{stderr: :capture} = Options.validate!([stderr: :capture], :stream, "s")
    assert %{stderr: :consume} = Options.validate!([stderr: :consume], :process, "p")

    assert_raise ArgumentError, ~r/:stderr/, fn ->
      Options.validate!([stderr: :consume], :run, "run")
    end

    assert_raise ArgumentError, ~r/:stderr/, fn ->
      Options.validate!([stderr: :capture], :process, "p")
    end
  end

  test "framing, the private channel, readiness and idle timeouts" do
    assert %{framing: :raw, max_frame: 67_108_864, use_stdio: true, stdout: nil} =
             Options.validate!([], :process, "p")

    assert %{framing: {:line, 80}} = Options.validate!([framing: {:line, 80}], :stream, "s")

    assert %{use_stdio: false, stdout: :console} =
             Options.validate!([use_stdio: false], :process, "p")

    assert %{idle_timeout: :infinity} = Options.validate!([], :run, "run")
    assert %{ready: nil, ready_timeout: 30_000} = Options.validate!([], :daemon, "d")

    for {opts, entry, key} <- [
          {[framing: {:packet, 8}], :process, :framing},
          {[framing: {:line, 0}], :stream, :framing},
          {[max_frame: 0], :process, :max_frame},
          {[use_stdio: :no], :process, :use_stdio},
          {[stdout: :pipe, use_stdio: false], :process, :stdout},
          {[stdout: :log], :process, :stdout},
          {[use_stdio: false, stderr: :stdout], :process, :stderr},
          {[stderr: :log], :process, :stderr},
          {[use_stdio: false, pty: true], :process, :pty},
          {[framing: {:line, 9}, lines: true], :stream, :framing},
          {[idle_timeout: -5], :run, :idle_timeout},
          {[ready: :yes], :daemon, :ready},
          {[ready_timeout: :infinity], :daemon, :ready_timeout}
        ] do
      assert_raise ArgumentError, ~r/option #{inspect(key)}/, fn ->
        Options.validate!(opts, entry, "x")
      end
    end

    for {key, entry} <- [framing: :run, use_stdio: :stream, idle_timeout: :process, ready: :run] do
      assert_raise ArgumentError, ~r/unknown option #{inspect(key)}/, fn ->
        Options.validate!([{key, nil}], entry, "x")
      end
    end

    spec =
      Options.Command.spawn_spec(
        ["x"],
        Options.validate!([use_stdio: false, stdout: :log], :process, "p")
      )

    assert %{use_stdio: false, stdout: :pipe, stderr: :inherit} = spec

    assert %{use_stdio: true, stdout: :pipe} =
             Options.Command.spawn_spec(["x"], Options.validate!([], :run, "r"))
  end

  test "each bad value names its option" do
    bad = [
      cd: "",
      cd: "a\0b",
      env: [{"A=B", "x"}],
      env: %{"A" => 1},
      clear_env: :yes,
      kill_signal: :sigfoo,
      kill_grace: -1,
      pipe_size: 100,
      start_timeout: :soon,
      timeout: -5,
      max_output: 0,
      success_exit_codes: [],
      chunk_size: 0,
      max_line_length: 2 ** 40,
      input: fn -> "x" end,
      input: 42
    ]

    for {key, value} <- bad do
      entry = if key in [:timeout, :max_output], do: :run, else: :stream
      entry = if key == :start_timeout, do: :process, else: entry

      assert_raise ArgumentError, ~r/option #{inspect(key)}/, fn ->
        Options.validate!([{key, value}], entry, "x")
      end
    end
  end

  test "duplicates are a mistake everywhere" do
    for entry <- @entries do
      assert_raise ArgumentError, ~r/given more than once/, fn ->
        Options.validate!([kill_grace: 1, kill_grace: 2], entry, "x")
      end
    end
  end

  test "argv, timeouts and byte counts" do
    assert_raise ArgumentError, ~r/argv/, fn -> Options.argv!(["a" | "b"]) end
    assert_raise ArgumentError, ~r/argv/, fn -> Options.argv!([]) end
    assert_raise ArgumentError, ~r/argv\[0\]/, fn -> Options.argv!([""]) end
    assert_raise ArgumentError, ~r/NUL/, fn -> Options.argv!(["a\0"]) end
    assert Options.timeout!(:infinity) == :infinity
    assert_raise ArgumentError, ~r/timeout/, fn -> Options.timeout!(-1) end
    assert Options.max_bytes!(10, :max) == 10
    assert_raise ArgumentError, ~r/max/, fn -> Options.max_bytes!(2 ** 70, :max) end
  end

  # Past 2^32 - 1 ms no timer of the VM can wait: every timeout is checked up front.
  test "every timeout, option or argument, is at most 2^32 - 1 ms, or :infinity" do
    max = 4_294_967_295

    for {key, entry} <- [
          timeout: :run,
          idle_timeout: :run,
          idle_timeout: :stream,
          exit_timeout: :stream,
          kill_grace: :process,
          start_timeout: :process,
          ready_timeout: :daemon
        ] do
      assert %{^key => ^max} = Options.validate!([{key, max}], entry, "x")

      for bad <- [max + 1, 2 ** 42] do
        assert_raise ArgumentError, ~r/option #{inspect(key)}.*4294967295/, fn ->
          Options.validate!([{key, bad}], entry, "x")
        end
      end
    end

    assert Options.timeout!(max) == max

    for bad <- [max + 1, 2 ** 42, -1, 1.5, :soon] do
      assert_raise ArgumentError, ~r/^timeout must be/, fn -> Options.timeout!(bad) end
    end
  end

  # The fields travel with the ArgumentError, for the Erlang face (no message is parsed).
  test "every mistake is an ArgumentError carrying a Sluice.OptionError with its fields" do
    cases = [
      {fn -> Options.validate!([nice: 99], :run, "f") end, :invalid, :nice, 99},
      {fn -> Options.validate!([bogus: 1], :run, "f") end, :unknown, :bogus, 1},
      {fn -> Options.validate!([cd: "/", cd: "/a"], :run, "f") end, :duplicate, :cd, ["/", "/a"]},
      {fn -> Options.validate!(:x, :run, "f") end, :options, :options, :x},
      {fn -> Options.argv!(["a", 1]) end, :argument, :argv, ["a", 1]},
      {fn -> Options.timeout!(2 ** 32) end, :argument, :timeout, 2 ** 32},
      {fn -> Sluice.pipeline([]) end, :argument, :stages, []},
      {fn -> Sluice.pipeline([{["a"], [bogus: 1]}]) end, :unknown, :bogus, 1},
      {fn -> Sluice.Daemon.child_spec(name: :d) end, :missing, :argv, [name: :d]},
      {fn -> Sluice.Daemon.child_spec(argv: ["a"], stderr: :null) end, :refused, :stderr, :null},
      {fn -> Sluice.Process.signal(self(), :sigbogus) end, :argument, :signal, :sigbogus},
      {fn -> Sluice.Process.write(self(), {:x}) end, :argument, :data, {:x}},
      {fn -> Sluice.Process.manage(0) end, :argument, :os_pid, 0},
      {fn -> Sluice.run(["true"], env: [{"A", 1}]) end, :invalid, :env, 1}
    ]

    for {call, kind, option, value} <- cases do
      {error, stack} =
        try do
          call.()
          flunk("no ArgumentError")
        rescue
          e in ArgumentError -> {e, __STACKTRACE__}
        end

      assert {:ok, %Sluice.OptionError{kind: ^kind, option: ^option} = fields} =
               Sluice.OptionError.from_stacktrace(stack)

      if value != nil, do: assert(fields.value == value)
      assert error.message == Exception.message(fields)
    end

    assert :error = Sluice.OptionError.from_stacktrace([])
  end

  # uid_t and gid_t are 32 bits, and (uid_t)-1 means "no change" to the kernel: ids past
  # 2^32 - 2 are refused here, naming the option, not at the child's set-up.
  test "user and group ids are 0..2^32 - 2, rlimits 0..2^64 - 2 or :infinity" do
    for key <- [:user, :group] do
      assert %{^key => 4_294_967_294} = Options.validate!([{key, 4_294_967_294}], :run, "x")

      for bad <- [4_294_967_295, 2 ** 32, 2 ** 64] do
        error = assert_raise ArgumentError, fn -> Options.validate!([{key, bad}], :run, "x") end
        assert error.message =~ "invalid value for option #{inspect(key)}"
        assert error.message =~ "0..4294967294"
      end
    end

    max = 2 ** 64 - 2

    assert %{rlimits: [nofile: {^max, ^max}]} =
             Options.validate!([rlimits: [nofile: max]], :run, "x")

    for bad <- [[nofile: 2 ** 64 - 1], [as: 2 ** 70], [nofile: {1, 2 ** 64}]] do
      assert_raise ArgumentError, ~r/option :rlimits/, fn ->
        Options.validate!([rlimits: bad], :run, "x")
      end
    end
  end

  test "manage options: their defaults, their checks, and the manage spec" do
    assert %{stop_on_owner_exit: true, group: false, kill_grace: 5_000, start_timeout: 10_000} =
             opts = Options.validate!([], :manage, "manage")

    assert Options.validate!([group: false], :manage, "manage") == opts
    refute :cd in Options.accepted(:manage)

    for {key, value} <- [stop_on_owner_exit: :yes, group: 1, kill_grace: -1] do
      assert_raise ArgumentError, ~r/option #{inspect(key)}/, fn ->
        Options.validate!([{key, value}], :manage, "manage")
      end
    end

    for key <- [:cd, :env, :stderr, :pipe_size] do
      assert_raise ArgumentError, ~r/unknown option #{inspect(key)}/, fn ->
        Options.validate!([{key, nil}], :manage, "manage")
      end
    end

    assert_raise ArgumentError, ~r/option :group: expected a name/, fn ->
      Options.validate!([group: true], :process, "start")
    end

    opts = Options.validate!([kill_signal: :sigint, stop_on_owner_exit: false], :manage, "m")

    assert Options.manage_spec(42, opts) == %{
             os_pid: 42,
             kill_signal: 2,
             kill_grace: 5_000,
             stop_on_owner_exit: false,
             group: false
           }
  end

  test "the spawn spec" do
    spec = Options.Command.spawn_spec(["true"], Options.validate!([], :run, "run"))
    assert %{argv: ["true"], env: :default, stderr: :pipe, kill_signal: 15} = spec

    spec =
      Options.Command.spawn_spec(["true"], Options.validate!([env: %{"A" => "1"}], :run, "run"))

    assert "A=1" in spec.env
  end

  test "node: nil or a node name, for every entry point that starts a program, never sent to the helper" do
    for entry <- @entries do
      assert %{node: nil} = Options.validate!([], entry, "x")
      assert %{node: :"b@127.0.0.1"} = Options.validate!([node: :"b@127.0.0.1"], entry, "x")

      for bad <- ["b@127.0.0.1", true, 1] do
        assert_raise ArgumentError, ~r/option :node: expected a node name/, fn ->
          Options.validate!([node: bad], entry, "x")
        end
      end
    end

    assert_raise ArgumentError, ~r/unknown option :node/, fn ->
      Options.validate!([node: :b@h], :manage, "manage")
    end

    opts = Options.validate!([node: :"b@127.0.0.1"], :run, "run")
    refute Map.has_key?(Options.Command.spawn_spec(["true"], opts), :node)
  end

  describe "pty" do
    test "every entry point takes it; true is the defaults, false and nil are pipes" do
      defaults = %{rows: 24, cols: 80, modes: [{53, 0}]}

      for entry <- @entries do
        assert %{pty: ^defaults} = Options.validate!([pty: true], entry, "x")
        assert %{pty: nil} = Options.validate!([pty: false], entry, "x")
        assert %{pty: nil} = Options.validate!([], entry, "x")
      end

      spec = Options.Command.spawn_spec(["sh"], Options.validate!([pty: true], :run, "run"))
      assert spec.pty == defaults
      assert Options.Command.spawn_spec(["sh"], Options.validate!([], :run, "run")).pty == nil
    end

    test "size, echo and modes become opcodes in order, after echo" do
      pty = [
        rows: 40,
        cols: 100,
        echo: true,
        modes: [vintr: 3, icanon: false, tty_op_ospeed: 38_400]
      ]

      assert %{pty: %{rows: 40, cols: 100, modes: [{53, 1}, {1, 3}, {51, 0}, {129, 38_400}]}} =
               Options.validate!([pty: pty], :process, "p")

      # The echo mode instead of echo: replaces the default.
      assert %{pty: %{modes: [{53, 1}]}} = Options.validate!([pty: [modes: [echo: 1]]], :run, "r")
    end

    test "every RFC 4254 mode name is known, opcodes are unique" do
      opcodes = Sluice.Pty.opcodes()
      assert length(opcodes) == 56
      assert opcodes |> Keyword.values() |> Enum.uniq() |> length() == 56

      for {name, opcode} <- opcodes, name != :echo do
        assert %{pty: %{modes: [{53, 0}, {^opcode, 1}]}} =
                 Options.validate!([pty: [modes: [{name, 1}]]], :run, "r")
      end
    end

    test "stderr is the terminal unless given" do
      assert %{stderr: :stdout} = Options.validate!([pty: true], :run, "r")
      assert %{stderr: :stdout} = Options.validate!([pty: true], :process, "p")
      assert %{stderr: :capture} = Options.validate!([pty: true, stderr: :capture], :run, "r")
      assert %{stderr: :capture} = Options.validate!([pty: false], :run, "r")
    end

    test "input: needs a terminal with an end of input (canonical, with a VEOF)" do
      for modes <- [[icanon: 0], [icanon: false], [veof: 0], [veof: 255], [icanon: 1, veof: 0]],
          entry <- [:run, :stream] do
        assert_raise ArgumentError, ~r/option :input.*no end of input/, fn ->
          Options.validate!([pty: [modes: modes], input: "x"], entry, "r")
        end

        # Without input there is nothing to end; a Sluice.Process writes in-band.
        assert %{pty: %{}} = Options.validate!([pty: [modes: modes]], entry, "r")
        assert %{pty: %{}} = Options.validate!([pty: [modes: modes]], :process, "p")
      end

      for modes <- [[], [icanon: 0, icanon: 1], [veof: 255, veof: 4], [vintr: 0]] do
        assert %{input: "x"} = Options.validate!([pty: [modes: modes], input: "x"], :run, "r")
      end
    end

    test "mistakes raise, naming :pty" do
      bad = [
        :yes,
        [rows: 0],
        [cols: 65_536],
        [rows: 1.5],
        [echo: 1],
        [colour: true],
        [modes: [no_such_mode: 1]],
        [modes: [echo: -1]],
        [modes: [vintr: 2 ** 32]],
        [modes: :raw],
        [echo: true, modes: [echo: 0]],
        [{"rows", 1}]
      ]

      for value <- bad do
        assert_raise ArgumentError, ~r/option :pty/, fn ->
          Options.validate!([pty: value], :run, "r")
        end
      end

      assert_raise ArgumentError, ~r/unknown mode :no_such_mode/, fn ->
        Options.validate!([pty: [modes: [no_such_mode: 1]]], :run, "r")
      end
    end
  end
end
