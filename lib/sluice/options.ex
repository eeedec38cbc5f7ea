defmodule Sluice.Options do
  @moduledoc """
  Every option of Sluice in one table: its default, which entry points accept it, and its
  check. Programming mistakes raise `ArgumentError` naming the option, with its fields
  (option, value, what was expected) as a `Sluice.OptionError`; an option given twice is a
  mistake too (one rule everywhere).

  | option | default | accepted by |
  |---|---|---|
  | `:cd` | the VM's current directory at the spawn | all |
  | `:env` | `[]` (a map or `{name, value}` list; `nil` unsets) | all |
  | `:clear_env` | `false` | all |
  | `:inherit_env` | `false`: with `:user`, a login environment; `true`: the VM's (never `RELEASE_COOKIE`) | all |
  | `:stderr` | `:console`; `:capture` for `run`; or `{:file, path, opts}` | process, run, stream, stage |
  | `:stdin` | `:pipe`; `:null` or `{:file, path}` (opened by the helper program) | process, run, stream |
  | `:stdout` | `:pipe` (`:console` with `use_stdio: false`); `:null`, `:console`, `{:file, path, opts}`, or `:log` with `use_stdio: false` | process, run, stream |
  | `:user`, `:group` | `nil`; a name or a numeric id 0..4_294_967_294 (2^32 - 1 means "no change" to the kernel) (`allowed_users` in `config :sluice` limits users) | all (`:group` of manage: `false`, a boolean) |
  | `:nice` | `nil`; -20..19 | all |
  | `:rlimits` | `[]`; `as`, `core`, `cpu`, `data`, `fsize`, `memlock`, `nofile`, `nproc`, `stack` to a number (up to 2^64 - 2), `:infinity` or `{soft, hard}`; a limit that leaves the program no room for its own stdio (`nofile` 0..4) fails at stage `:limits` | all |
  | `:umask` | `nil`; 0..0o777 | all |
  | `:arg0` | `nil`; the name the program sees as `argv[0]` | all |
  | `:kill_command` | `nil`; an argv the helper program runs (with `CHILD_PID`) instead of sending `kill_signal` | all |
  | `:pipefail` | `true`: `success_exit_codes` applies to every stage of a pipeline; `false`: to the last | run, stream |
  | `:kill_signal` | `:sigterm` | all, manage |
  | `:kill_grace` | `5_000` ms | all, manage |
  | `:pipe_size` | `nil`: stdout 256 KiB for up to 64 running programs, else the system's 64 KiB | all |
  | `:pty` | `false`; `true` or `[rows:, cols:, echo:, modes:]` runs on a terminal (`Sluice.Pty`) | all |
  | `:node` | `nil` (this node); another node's name runs the program there (`:sluice` must run on it) | all |
  | `:start_timeout` | `10_000` ms | process, stream, daemon, manage |
  | `:stop_on_owner_exit` | `true` | manage |
  | `:framing` | `:raw`; `{:packet, 1 \\| 2 \\| 4}` or `{:line, max_bytes}`: read and write in frames | process, stream |
  | `:max_frame` | `67_108_864` (64 MiB): a larger announced packet is `:frame_too_large` | process, stream |
  | `:use_stdio` | `true`; `false`: the data goes through fds 3 (input) and 4 (output) | process |
  | `:input` | `nil` | run, stream |
  | `:timeout` | `:infinity` | run |
  | `:idle_timeout` | `:infinity`: ms without any output before the program is stopped | run, stream |
  | `:max_output` | `:infinity` | run |
  | `:success_exit_codes` | `[0]` | run, stream |
  | `:chunk_size` | `65_536` | stream |
  | `:exit_timeout` | `:infinity` | stream |
  | `:lines` | `false` | stream |
  | `:max_line_length` | `1_048_576` | stream, daemon |
  | `:log` | `:info` | daemon |
  | `:ready` | `nil`; a `Regex` or `fn line -> boolean end`: start returns once a line matches | daemon |
  | `:ready_timeout` | `30_000` ms, then `{:error, %Sluice.Error{reason: :not_ready}}` | daemon |
  | `:name`, `:id` | `nil` | daemon |

  `:stderr` takes `:console`, `:null` or `:stdout` everywhere, `:consume` for
  `Sluice.Process` and streams, and `:capture` for `run` and streams. With `:pty` and no
  `:stderr`, stderr is the terminal too (`:stdout`). With `use_stdio: false` (not with
  `:pty`), `:stdout` and `:stderr` take `:console` (the VM's stderr), `:null` or `:log`
  (each line to `Logger` at `:info`, with `os_pid` and `stream` metadata, in pieces of at
  most 16 KiB: read as it comes, so memory stays bounded).

  `Sluice.Worker` takes the options of `Sluice.Process` (its `:framing` defaults to
  `{:packet, 4}`, and `:stderr` may not be `:consume`) plus `:name`.

  File options (`{:file, path, opts}` of `:stdout` and `:stderr`): `append:` (default
  `false`: truncate) and `mode:` (of a created file, default `0o644`, under the umask);
  a relative path resolves against the program's `cd`; `:stderr` naming the same path as
  `:stdout` shares its open file (writes interleave in order). The helper program opens
  the files with its own credentials, before the clone. With `:stdout` not piped, `run`
  returns `stdout: nil` and `Sluice.Process.read/3` `{:error, :not_piped}`.

  Every timeout, as an option or as an argument (`Sluice.Process.read/3`,
  `Sluice.Worker.call/3`, ...), is `:infinity` (where the table allows it) or an integer
  of ms from 0 to 4_294_967_295 (2^32 - 1, about 49.7 days: the longest wait of the VM's
  timers); a longer one is an `ArgumentError` naming it, raised before anything starts.

  "all" is every function that starts a program; "manage" is `Sluice.Process.manage/2`;
  "stage" is a stage of `Sluice.pipeline/1` (with `:cd` and `:env`).
  """

  @all [:process, :worker, :run, :stream, :daemon]
  # Where a program's own stdout and stderr may go when its data uses fds 3 and 4.
  @private_outputs [:console, :null, :log]
  @spawning [:process, :worker, :stream, :daemon]
  # Checked by Sluice.Options.Control (its keys/0).
  @control [:stdin, :stdout, :user, :group, :nice, :rlimits, :umask, :arg0, :kill_command]
  @log_levels [:emergency, :alert, :critical, :error, :warning, :warn, :notice, :info, :debug]

  # option => {default, accepted by}; a default may depend on the entry point.
  @schema [
    cd: {nil, [:stage | @all]},
    env: {[], [:stage | @all]},
    clear_env: {false, @all},
    inherit_env: {false, @all},
    stderr: {%{run: :capture, default: :console}, [:stage, :process, :worker, :run, :stream]},
    kill_signal: {:sigterm, [:manage | @all]},
    kill_grace: {5_000, [:manage | @all]},
    pipe_size: {nil, @all},
    pty: {nil, @all},
    node: {nil, @all},
    start_timeout: {10_000, [:manage | @spawning]},
    framing: {%{worker: {:packet, 4}, default: :raw}, [:process, :worker, :stream]},
    max_frame: {67_108_864, [:process, :worker, :stream]},
    use_stdio: {true, [:process, :worker]},
    stdin: {:pipe, [:process, :worker, :run, :stream]},
    stdout: {nil, [:process, :worker, :run, :stream]},
    user: {nil, @all},
    group: {%{manage: false, default: nil}, [:manage | @all]},
    nice: {nil, @all},
    rlimits: {[], @all},
    umask: {nil, @all},
    arg0: {nil, @all},
    kill_command: {nil, @all},
    stop_on_owner_exit: {true, [:manage]},
    input: {nil, [:run, :stream]},
    timeout: {:infinity, [:run]},
    idle_timeout: {:infinity, [:run, :stream]},
    max_output: {:infinity, [:run]},
    success_exit_codes: {[0], [:run, :stream]},
    pipefail: {true, [:run, :stream]},
    chunk_size: {65_536, [:stream]},
    exit_timeout: {:infinity, [:stream]},
    lines: {false, [:stream]},
    max_line_length: {1_048_576, [:stream, :daemon]},
    log: {:info, [:daemon]},
    ready: {nil, [:daemon]},
    ready_timeout: {30_000, [:daemon]},
    name: {nil, [:daemon]},
    id: {nil, [:daemon]}
  ]

  @stderr %{
    stage: [:console, :null, :stdout],
    process: [:console, :null, :stdout, :consume, :log],
    worker: [:console, :null, :stdout, :consume, :log],
    run: [:capture, :stdout, :null, :console],
    stream: [:console, :null, :stdout, :consume, :capture]
  }

  alias Sluice.OptionError
  alias Sluice.Options.Control

  @typedoc "An entry point: the functions that take the same options."
  @type entry :: :process | :worker | :run | :stream | :daemon | :manage | :stage

  @entries [:manage, :stage | @all]

  # The struct's own defaults are those of most entries; validate!/3 fills in the entry's
  # (`%{run: ..., default: ...}`), for the options it does not accept too, so every field
  # always holds what that entry means by it.
  defstruct for {key, {default, _entries}} <- @schema,
                do: {key, if(is_map(default), do: default.default, else: default)}

  @typedoc """
  Checked options: every option of the table, each given or its default for the entry
  point that checked them.
  """
  @type t :: %__MODULE__{
          cd: String.t() | nil,
          env: [{String.t(), String.t() | nil}],
          clear_env: boolean,
          inherit_env: boolean,
          stderr: atom | tuple,
          kill_signal: atom | pos_integer,
          kill_grace: non_neg_integer,
          pipe_size: pos_integer | nil,
          pty: map | nil,
          node: node | nil,
          start_timeout: non_neg_integer,
          framing: Sluice.Framing.t(),
          max_frame: pos_integer,
          use_stdio: boolean,
          stdin: :pipe | :null | {:file, String.t()},
          stdout: atom | tuple | nil,
          user: String.t() | non_neg_integer | nil,
          group: String.t() | non_neg_integer | boolean | nil,
          nice: integer | nil,
          rlimits: [{atom, {non_neg_integer | :infinity, non_neg_integer | :infinity}}],
          umask: non_neg_integer | nil,
          arg0: String.t() | nil,
          kill_command: [String.t()] | nil,
          stop_on_owner_exit: boolean,
          input: term,
          timeout: timeout,
          idle_timeout: timeout,
          max_output: pos_integer | :infinity,
          success_exit_codes: [0..255],
          pipefail: boolean,
          chunk_size: pos_integer,
          exit_timeout: timeout,
          lines: boolean,
          max_line_length: pos_integer,
          log: atom | false,
          ready: Regex.t() | (String.t() -> boolean) | nil,
          ready_timeout: non_neg_integer,
          name: term,
          id: term
        }

  @doc """
  Checks `opts` for `entry` and returns them as a `t:t/0` with every option, the defaults
  filled in. `who` names the function in error messages.

      iex> Sluice.Options.validate!([kill_grace: 10], :run, "Sluice.run/2").stderr
      :capture

      iex> Sluice.Options.validate!([lines: true], :run, "Sluice.run/2")
      ** (ArgumentError) unknown option :lines for Sluice.run/2; known options: :cd, :env, :clear_env, :inherit_env, :stderr, :kill_signal, :kill_grace, :pipe_size, :pty, :node, :stdin, :stdout, :user, :group, :nice, :rlimits, :umask, :arg0, :kill_command, :input, :timeout, :idle_timeout, :max_output, :success_exit_codes, :pipefail
  """
  @spec validate!(term, entry, String.t()) :: t
  # No options: the precomputed defaults, allocating nothing (a spawn's set-up garbage
  # grows every caller's heap).
  def validate!([], entry, _who), do: defaults(entry)

  def validate!(opts, entry, who) do
    unless is_list(opts) and Keyword.keyword?(opts) do
      OptionError.raise!(kind: :options, option: :options, value: opts, who: who)
    end

    accepted = accepted(entry)

    Enum.reduce(opts, MapSet.new(), fn {key, _}, seen ->
      unless key in accepted do
        OptionError.raise!(
          kind: :unknown,
          option: key,
          value: Keyword.get(opts, key),
          who: who,
          expected: accepted
        )
      end

      if MapSet.member?(seen, key) do
        values = Keyword.get_values(opts, key)
        OptionError.raise!(kind: :duplicate, option: key, value: values, who: who)
      end

      MapSet.put(seen, key)
    end)

    # In the schema's order, so that of two mistakes the same one is always named.
    accepted
    |> Enum.reduce(defaults(entry), fn key, checked ->
      case Keyword.fetch(opts, key) do
        {:ok, value} -> %{checked | key => check!(key, value, entry)}
        :error -> checked
      end
    end)
    |> terminal_stderr(Keyword.has_key?(opts, :stderr) or :stderr not in accepted)
    |> combined!()
  end

  @doc """
  The options `entry` accepts, in the table's order.

      iex> Sluice.Options.accepted(:stage)
      [:cd, :env, :stderr]
  """
  @spec accepted(entry) :: [atom]
  def accepted(entry)

  @doc """
  Every option with `entry`'s defaults: what `validate!/3` returns when given none.

      iex> Sluice.Options.defaults(:worker).framing
      {:packet, 4}
  """
  @spec defaults(entry) :: t
  def defaults(entry)

  # Every entry's accepted options and defaults, computed once at compile time.
  for entry <- @entries do
    accepted = for {key, {_default, entries}} <- @schema, entry in entries, do: key

    fields =
      for {key, {default, _entries}} <- @schema do
        {key, if(is_map(default), do: Map.get(default, entry, default.default), else: default)}
      end

    defaults = Map.new([{:__struct__, __MODULE__} | fields])

    def accepted(unquote(entry)), do: unquote(accepted)
    def defaults(unquote(entry)), do: unquote(Macro.escape(defaults))
  end

  @doc false
  # The schema's options (for tests: every one a field with a default).
  @spec keys() :: [atom]
  def keys, do: Keyword.keys(@schema)

  # On a terminal, stderr is the terminal unless the caller sends it elsewhere (or the
  # entry has no stderr of its own).
  defp terminal_stderr(%{pty: pty} = opts, false) when pty != nil,
    do: %{opts | stderr: :stdout}

  defp terminal_stderr(opts, _given), do: opts

  # Options that depend on each other; where stdio goes is Sluice.Options.Control's.
  defp combined!(opts), do: opts |> Control.combined!() |> combined_rest!() |> terminal_input!()

  # Input that ends needs a terminal with an end of input: run and streams would
  # otherwise wait for the program until their timeout (Sluice.Pty, "Input: lines and
  # end of input").
  defp terminal_input!(%{input: input, pty: %{} = pty} = opts) when input != nil do
    unless Sluice.Pty.end_of_input?(pty) do
      bad!(
        :input,
        "nil with a raw terminal (icanon: 0) or one whose VEOF is disabled: it has no end " <>
          "of input; start the program with Sluice.Process.start_link/2, write to it, and end its " <>
          "input in-band",
        input
      )
    end

    opts
  end

  defp terminal_input!(opts), do: opts

  defp combined_rest!(%{use_stdio: false, pty: pty}) when pty != nil,
    do: bad!(:pty, "nil with use_stdio: false (the data goes through fds 3 and 4)", pty)

  defp combined_rest!(%{use_stdio: true, stderr: :log}),
    do: bad!(:stderr, ":console, :null, :stdout or :consume unless use_stdio: false", :log)

  defp combined_rest!(%{use_stdio: false, stderr: stderr})
       when stderr not in @private_outputs and not is_tuple(stderr),
       do: bad!(:stderr, "one of :console, :null, :log or a file with use_stdio: false", stderr)

  defp combined_rest!(%{lines: true, framing: framing}) when framing != :raw,
    do: bad!(:framing, ":raw with lines: true (or {:line, max} instead of lines:)", framing)

  defp combined_rest!(%{clear_env: true, inherit_env: true}),
    do:
      bad!(:inherit_env, "false with clear_env: true (they ask for opposite environments)", true)

  defp combined_rest!(opts), do: opts

  @doc """
  Validates argv: a non-empty proper list of strings without NUL bytes, or a
  `Sluice.Pipeline` (checked when it was built).
  """
  @spec argv!(term) :: Sluice.command()
  def argv!(%Sluice.Pipeline{} = pipeline), do: pipeline

  def argv!(argv) do
    cond do
      not proper_list?(argv) or argv == [] ->
        bad_argv!("a non-empty list of strings", argv)

      not Enum.all?(argv, &is_binary/1) ->
        bad_argv!("a list of strings", argv)

      Enum.any?(argv, &String.contains?(&1, <<0>>)) ->
        bad_argv!("strings without NUL bytes", argv)

      hd(argv) == "" ->
        bad_argv!("a list whose argv[0] (the program) is not empty", argv)

      true ->
        argv
    end
  end

  @spec bad_argv!(String.t(), term) :: no_return
  defp bad_argv!(expected, argv) do
    OptionError.raise!(kind: :argument, option: :argv, expected: expected, value: argv)
  end

  @doc false
  @spec proper_list?(term) :: boolean
  def proper_list?([]), do: true
  def proper_list?([_ | tail]), do: proper_list?(tail)
  def proper_list?(_), do: false

  # The longest wait the VM's timers (and `receive ... after`) take: 2^32 - 1 ms, about
  # 49.7 days. Past it they raise :timeout_value, so every timeout is checked against it
  # before anything starts (ms/2, the one check of timeouts, options and arguments alike).
  @max_ms 4_294_967_295

  @doc false
  # A wait of `ms` and `margin` more, the one way Sluice adds a margin of its own to a
  # timeout (a caller's wait for a server's answer, a start, a stop, a supervisor's
  # shutdown): `:infinity` past the longest wait `receive` takes (a timer, a
  # GenServer.call or a shutdown that long would raise :timeout_value).
  @spec with_margin(timeout, non_neg_integer) :: timeout
  def with_margin(:infinity, _margin), do: :infinity
  def with_margin(ms, margin) when ms + margin > @max_ms, do: :infinity
  def with_margin(ms, margin), do: ms + margin

  @doc """
  Validates a timeout argument: `:infinity` or an integer of ms from 0 to 2^32 - 1 (the
  longest wait of the VM's timers); with `infinity: false`, an integer only. Raises
  `ArgumentError` naming the argument.
  """
  @spec timeout!(term, atom, infinity: boolean) :: timeout
  def timeout!(t, name \\ :timeout, opts \\ []) do
    case ms(t, Keyword.get(opts, :infinity, true)) do
      {:ok, t} -> t
      {:error, expected} -> argument!(name, expected, t)
    end
  end

  # The one check of a timeout (an option or an argument): `{:ok, ms}`, or what was
  # expected.
  @spec ms(term, boolean) :: {:ok, timeout} | {:error, String.t()}
  defp ms(:infinity, true), do: {:ok, :infinity}
  defp ms(t, _infinity?) when is_integer(t) and t >= 0 and t <= @max_ms, do: {:ok, t}
  defp ms(_t, true), do: {:error, "a non-negative integer (ms) up to #{@max_ms} or :infinity"}
  defp ms(_t, false), do: {:error, "a non-negative integer (ms) up to #{@max_ms}"}

  @doc "Validates a byte count argument such as `max` of a read: 1 byte to 1 GiB."
  @spec max_bytes!(term, atom) :: pos_integer
  def max_bytes!(n, _name) when is_integer(n) and n > 0 and n <= 1_073_741_824, do: n

  def max_bytes!(n, name), do: argument!(name, "a positive integer of bytes up to 1 GiB", n)

  @doc false
  # A bad argument (not an option) of a public function, named by `name`: an
  # ArgumentError carrying a Sluice.OptionError.
  @spec argument!(atom, String.t(), term) :: no_return
  def argument!(name, expected, got),
    do: OptionError.raise!(kind: :argument, option: name, expected: expected, value: got)

  @doc """
  The spawn spec for the helper program (docs/protocol.md). A pipeline's first stage is
  the spec's program, the others its `pipeline` key.
  """
  @spec spawn_spec(Sluice.command(), map) :: map
  def spawn_spec(%Sluice.Pipeline{stages: [{argv, first} | rest]} = pipeline, opts) do
    command!(pipeline, opts)

    stages =
      Enum.map(rest, fn {argv, stage} ->
        o = stage_opts(opts, stage)
        %{argv: argv, env: environment(o), cd: o.cd, stderr: stage_stderr(o)}
      end)

    argv |> spawn_spec(stage_opts(opts, first)) |> Map.put(:pipeline, stages)
  end

  def spawn_spec(argv, opts) do
    {:ok, signum} = Sluice.Signal.to_number(opts.kill_signal)

    Map.merge(Control.spec(opts), %{
      argv: argv,
      env: environment(opts),
      cd: opts.cd,
      stderr: helper_stderr(opts.stderr),
      use_stdio: opts.use_stdio,
      pipe_size: opts.pipe_size,
      kill_signal: signum,
      kill_grace: opts.kill_grace,
      pty: opts.pty
    })
  end

  @doc """
  Checks that checked options fit the command: a pipeline's ends are pipes (no `:pty`,
  no `use_stdio: false`). Raises `ArgumentError` naming the option.
  """
  @spec command!(Sluice.command(), map) :: :ok
  def command!(%Sluice.Pipeline{}, opts) do
    if opts.pty != nil, do: bad!(:pty, "nil for a pipeline", opts.pty)

    if opts.use_stdio == false,
      do: bad!(:use_stdio, "true for a pipeline", false)

    :ok
  end

  def command!(_argv, _opts), do: :ok

  @doc "The spec of a `manage` request for the helper program (docs/protocol.md)."
  @spec manage_spec(pos_integer, map) :: map
  def manage_spec(os_pid, opts) do
    {:ok, signum} = Sluice.Signal.to_number(opts.kill_signal)

    %{
      os_pid: os_pid,
      kill_signal: signum,
      kill_grace: opts.kill_grace,
      stop_on_owner_exit: opts.stop_on_owner_exit,
      group: opts.group
    }
  end

  # A stage's cd replaces the pipeline's, its env adds to it, its stderr replaces it (for
  # that stage alone: the helper program makes the BEAM's stderr pipe when any stage
  # writes to it, the first or a later one).
  defp stage_opts(opts, stage) do
    Enum.reduce(stage, opts, fn
      {:env, env}, opts -> %{opts | env: opts.env ++ env}
      {key, value}, opts when key in [:cd, :stderr] -> %{opts | key => value}
    end)
  end

  defp stage_stderr(opts), do: helper_stderr(opts.stderr)

  defp helper_stderr(:consume), do: :pipe
  defp helper_stderr(:capture), do: :pipe
  defp helper_stderr(:stdout), do: :stdout
  defp helper_stderr(:null), do: :null
  defp helper_stderr(:console), do: :inherit
  defp helper_stderr(:log), do: :pipe
  defp helper_stderr({:file, _, _} = file), do: Control.output(file)

  # The program's complete environment: a base, then the overrides (a nil value unsets).
  # The base is the VM's current environment (so System.put_env is seen), nothing with
  # clear_env, and with a user: what a login keeps of it (the helper program adds the
  # user's HOME, USER, LOGNAME, SHELL and PATH: Control.spec/1), or with inherit_env the
  # VM's less RELEASE_COOKIE, the key to the node. Without options it is `:default`,
  # resolved at the spawn (Sluice.Helper.Env).
  defp environment(%{env: [], clear_env: false, user: nil}), do: :default

  defp environment(%{env: overrides} = opts) do
    overrides
    |> Enum.reduce(base_environment(opts), fn
      {name, nil}, acc -> Map.delete(acc, name)
      {name, value}, acc -> Map.put(acc, name, value)
    end)
    |> Enum.map(fn {name, value} -> name <> "=" <> value end)
  end

  defp base_environment(%{clear_env: true}), do: %{}
  defp base_environment(%{user: nil}), do: System.get_env()
  defp base_environment(%{inherit_env: true}), do: Map.delete(System.get_env(), "RELEASE_COOKIE")

  defp base_environment(_login) do
    Map.filter(System.get_env(), fn {name, _} ->
      name in ["LANG", "LANGUAGE", "TERM"] or String.starts_with?(name, "LC_")
    end)
  end

  # Per-option checks. Each returns the normalised value or raises naming the option.

  defp check!(:cd, nil, _), do: nil
  defp check!(:cd, cd, _) when is_binary(cd) and cd != "", do: no_nul!(:cd, cd)
  defp check!(:cd, cd, _), do: bad!(:cd, "a non-empty path string", cd)

  defp check!(:env, env, _) when is_map(env) or is_list(env) do
    unless is_map(env) or proper_list?(env), do: bad!(:env, "a map or a proper list", env)

    Enum.map(env, fn
      {name, value} -> {env_name!(name), env_value!(name, value)}
      other -> bad!(:env, "{name, value} pairs", other)
    end)
  end

  defp check!(:env, env, _), do: bad!(:env, "a map or a list of {name, value} pairs", env)

  defp check!(key, value, _)
       when key in [:clear_env, :inherit_env, :lines, :use_stdio, :pipefail] and
              is_boolean(value),
       do: value

  defp check!(key, value, _)
       when key in [:clear_env, :inherit_env, :lines, :use_stdio, :pipefail],
       do: bad!(key, "a boolean", value)

  defp check!(key, value, entry) when key in @control, do: Control.check!(key, value, entry)

  defp check!(:framing, value, _) do
    case Sluice.Framing.check(value) do
      {:ok, framing} -> framing
      :error -> bad!(:framing, ":raw, {:packet, 1 | 2 | 4} or {:line, max_bytes}", value)
    end
  end

  defp check!(:ready, nil, _), do: nil
  defp check!(:ready, %Regex{} = re, _), do: re
  defp check!(:ready, fun, _) when is_function(fun, 1), do: fun
  defp check!(:ready, value, _), do: bad!(:ready, "a Regex or a 1-arity function", value)

  defp check!(:stop_on_owner_exit, value, _) do
    if is_boolean(value), do: value, else: bad!(:stop_on_owner_exit, "a boolean", value)
  end

  defp check!(:stderr, {:file, _, _} = file, _), do: Control.stderr_file!(file)
  defp check!(:stderr, {:file, _} = file, _), do: Control.stderr_file!(file)

  defp check!(:stderr, value, entry) do
    allowed = Map.fetch!(@stderr, entry)

    if value in allowed,
      do: value,
      else: bad!(:stderr, "one of #{Enum.map_join(allowed, ", ", &inspect/1)} or a file", value)
  end

  defp check!(key, value, _)
       when key in [:kill_grace, :start_timeout, :ready_timeout, :timeout, :exit_timeout] or
              key == :idle_timeout do
    case ms(value, key in [:timeout, :exit_timeout, :idle_timeout]) do
      {:ok, ms} -> ms
      {:error, expected} -> bad!(key, expected, value)
    end
  end

  defp check!(:kill_signal, value, _) do
    case Sluice.Signal.to_number(value) do
      {:ok, _} -> value
      :error -> bad!(:kill_signal, "a signal name like :sigterm or a number 1..64", value)
    end
  end

  defp check!(:pty, value, _), do: Sluice.Pty.check!(value)

  defp check!(:node, node, _) when is_atom(node) and not is_boolean(node), do: node
  defp check!(:node, node, _), do: bad!(:node, "a node name (an atom) or nil", node)

  defp check!(:pipe_size, nil, _), do: nil
  defp check!(:pipe_size, n, _) when is_integer(n) and n >= 4096 and n <= 1_073_741_824, do: n
  defp check!(:pipe_size, n, _), do: bad!(:pipe_size, "nil or an integer of bytes >= 4096", n)

  defp check!(key, n, _) when key in [:chunk_size, :max_line_length, :max_frame] do
    if is_integer(n) and n > 0 and n <= 1_073_741_824,
      do: n,
      else: bad!(key, "a positive integer of bytes up to 1 GiB", n)
  end

  defp check!(:max_output, n, _) do
    if n == :infinity or (is_integer(n) and n > 0),
      do: n,
      else: bad!(:max_output, "a positive integer or :infinity", n)
  end

  defp check!(:success_exit_codes, codes, _) do
    if proper_list?(codes) and codes != [] and
         Enum.all?(codes, &(is_integer(&1) and &1 in 0..255)),
       do: codes,
       else: bad!(:success_exit_codes, "a non-empty list of integers 0..255", codes)
  end

  defp check!(:input, input, _), do: Sluice.Input.check!(input)

  defp check!(:log, level, _) do
    if level == false or level in @log_levels,
      do: level,
      else: bad!(:log, "a Logger level or false", level)
  end

  defp check!(key, value, _) when key in [:name, :id], do: value

  defp env_name!(name) when is_atom(name) and not is_nil(name) and not is_boolean(name),
    do: env_name!(Atom.to_string(name))

  defp env_name!(name) when is_binary(name) and name != "" do
    cond do
      String.contains?(name, "=") -> bad!(:env, "variable names without \"=\"", name)
      String.contains?(name, <<0>>) -> bad!(:env, "variable names without NUL bytes", name)
      true -> name
    end
  end

  defp env_name!(name), do: bad!(:env, "non-empty string variable names", name)

  defp env_value!(_name, nil), do: nil
  defp env_value!(_name, value) when is_binary(value), do: no_nul!(:env, value)
  defp env_value!(name, value), do: bad!(:env, "string or nil values (for #{name})", value)

  defp no_nul!(key, value) do
    if String.contains?(value, <<0>>), do: bad!(key, "a string without NUL bytes", value)
    value
  end

  @doc false
  @spec bad!(atom, String.t(), term) :: no_return
  def bad!(key, expected, got),
    do: OptionError.raise!(kind: :invalid, option: key, expected: expected, value: got)
end
