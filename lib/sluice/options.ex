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
  | `:kill_signal` | `:sigterm` (`Sluice.stop/2`: the program's own) | all, manage, stop |
  | `:kill_grace` | `5_000` ms (`Sluice.stop/2`: the program's own) | all, manage, stop |
  | `:pipe_size` | `nil`: stdout 256 KiB for up to 64 running programs, else the system's 64 KiB | all |
  | `:pty` | `false`; `true` or `[rows:, cols:, echo:, modes:]` runs on a terminal (`Sluice.Pty`) | all |
  | `:sandbox` | `nil` (or `false`); `true` or `[network:, read_only:, writable:, tmp:, processes:, seccomp:]` runs in a sandbox (`Sluice.Sandbox`; a pipeline's every stage in one of its own) | all |
  | `:node` | `nil` (this node); another node's name runs the program there (`:sluice` must run on it) | all |
  | `:start_timeout` | `10_000` ms | process, stream, daemon, manage |
  | `:stop_on_owner_exit` | `true` | manage |
  | `:framing` | `:raw`; `{:packet, 1 \\| 2 \\| 4}` or `{:line, max_bytes}`: read and write in frames | process, stream |
  | `:max_frame` | `67_108_864` (64 MiB): a larger announced packet is `:frame_too_large` | process, stream |
  | `:use_stdio` | `true`; `false`: the data goes through fds 3 (input) and 4 (output) | process |
  | `:input` | `nil` | run, stream |
  | `:input_in` | `:caller`: `:input` is enumerated in the calling process; `:process`: in a linked process of its own | run, stream |
  | `:timeout` | `:infinity` | run |
  | `:idle_timeout` | `:infinity`: ms without any output before the program is stopped | run, stream |
  | `:max_output` | `:infinity` | run |
  | `:into` | `nil`: stdout into `result.stdout` as a binary; any `Collectable` (`[]`, `IO.stream()`, `File.stream!/1`) gets it chunk by chunk, and `result.stdout` is its final value | run |
  | `:success_exit_codes` | `[0]` | run, stream |
  | `:chunk_size` | `65_536` | stream |
  | `:exit_timeout` | `:infinity` | stream |
  | `:lines` | `false` | stream |
  | `:max_line_length` | `1_048_576` | stream, daemon |
  | `:log` | `:info`; a Logger level for both streams, `false`, or `[stdout: level, stderr: level]` (a stream left out, or `false`, is not logged) | daemon |
  | `:log_prefix` | `""`: text put before each logged line | daemon |
  | `:log_metadata` | `[]`: Logger metadata added to each logged line's `os_pid` and `stream` | daemon |
  | `:log_transform` | `nil`; `fn line -> text \\| nil \\| false end` (or `fn line, stream -> ... end`): the text logged, `nil`/`false` drops the line | daemon |
  | `:exit_reason` | `nil`: exit 0 stops the daemon `:normal`, any other status `{:program_exited, status}`; or `fn status -> reason end` | daemon |
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
  "stop" is `Sluice.stop/2`;
  "stage" is a stage of `Sluice.pipeline/1` (with `:cd` and `:env`).
  """

  @all [:process, :worker, :run, :stream, :daemon]
  @spawning [:process, :worker, :stream, :daemon]

  # option => {default, accepted by}; a default may depend on the entry point.
  @schema [
    cd: {nil, [:stage | @all]},
    env: {[], [:stage | @all]},
    clear_env: {false, @all},
    inherit_env: {false, @all},
    stderr: {%{run: :capture, default: :console}, [:stage, :process, :worker, :run, :stream]},
    kill_signal: {:sigterm, [:manage, :stop | @all]},
    kill_grace: {5_000, [:manage, :stop | @all]},
    pipe_size: {nil, @all},
    pty: {nil, @all},
    sandbox: {nil, @all},
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
    input_in: {:caller, [:run, :stream]},
    timeout: {:infinity, [:run]},
    idle_timeout: {:infinity, [:run, :stream]},
    max_output: {:infinity, [:run]},
    into: {nil, [:run]},
    success_exit_codes: {[0], [:run, :stream]},
    pipefail: {true, [:run, :stream]},
    chunk_size: {65_536, [:stream]},
    exit_timeout: {:infinity, [:stream]},
    lines: {false, [:stream]},
    max_line_length: {1_048_576, [:stream, :daemon]},
    log: {:info, [:daemon]},
    log_prefix: {"", [:daemon]},
    log_metadata: {[], [:daemon]},
    log_transform: {nil, [:daemon]},
    exit_reason: {nil, [:daemon]},
    ready: {nil, [:daemon]},
    ready_timeout: {30_000, [:daemon]},
    name: {nil, [:daemon]},
    id: {nil, [:daemon]}
  ]

  alias Sluice.OptionError
  alias Sluice.Options.{Check, Rules, Spec}

  @typedoc "An entry point: the functions that take the same options."
  @type entry :: :process | :worker | :run | :stream | :daemon | :manage | :stage | :stop

  @entries [:manage, :stage, :stop | @all]

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
          pty: Sluice.Pty.spec() | nil,
          sandbox: Sluice.Sandbox.t() | nil,
          node: node | nil,
          start_timeout: non_neg_integer,
          framing: Sluice.Program.Framing.framing(),
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
          input_in: :caller | :process,
          timeout: timeout,
          idle_timeout: timeout,
          max_output: pos_integer | :infinity,
          into: Collectable.t() | nil,
          success_exit_codes: [0..255],
          pipefail: boolean,
          chunk_size: pos_integer,
          exit_timeout: timeout,
          lines: boolean,
          max_line_length: pos_integer,
          log: atom | false | [stdout: atom | false, stderr: atom | false],
          log_prefix: String.t(),
          log_metadata: keyword,
          log_transform: (String.t() -> term) | (String.t(), :stdout | :stderr -> term) | nil,
          exit_reason: (Sluice.Process.status() -> term) | nil,
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
      ** (ArgumentError) unknown option :lines for Sluice.run/2; known options: :cd, :env, :clear_env, :inherit_env, :stderr, :kill_signal, :kill_grace, :pipe_size, :pty, :sandbox, :node, :stdin, :stdout, :user, :group, :nice, :rlimits, :umask, :arg0, :kill_command, :input, :input_in, :timeout, :idle_timeout, :max_output, :into, :success_exit_codes, :pipefail
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
        {:ok, value} -> %{checked | key => Check.check!(key, value, entry)}
        :error -> checked
      end
    end)
    |> Rules.apply!(Keyword.has_key?(opts, :stderr) or :stderr not in accepted)
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

  @doc """
  Validates argv: a non-empty proper list of strings without NUL bytes. A command that
  may also be a `Sluice.Pipeline` is checked by `Sluice.Options.Command.argv!/1`.
  """
  @spec argv!(term) :: [String.t()]
  defdelegate argv!(argv), to: Check

  @doc false
  @spec proper_list?(term) :: boolean
  defdelegate proper_list?(term), to: Check

  @doc """
  Validates a timeout argument: `:infinity` or an integer of ms from 0 to 2^32 - 1 (the
  longest wait of the VM's timers); with `infinity: false`, an integer only. Raises
  `ArgumentError` naming the argument.
  """
  @spec timeout!(term, atom, infinity: boolean) :: timeout
  def timeout!(t, name \\ :timeout, opts \\ [])

  # The common case of every call, first.
  def timeout!(:infinity, _name, []), do: :infinity

  def timeout!(t, name, opts) do
    case Check.ms(t, Keyword.get(opts, :infinity, true)) do
      {:ok, t} -> t
      {:error, expected} -> argument!(name, expected, t)
    end
  end

  @doc "Validates a byte count argument such as `max` of a read: 1 byte to 1 GiB."
  @spec max_bytes!(term, atom) :: pos_integer
  def max_bytes!(n, _name) when is_integer(n) and n > 0 and n <= 1_073_741_824, do: n

  def max_bytes!(n, name), do: argument!(name, "a positive integer of bytes up to 1 GiB", n)

  @doc false
  # A bad argument (not an option) of a public function, named by `name`: an
  # ArgumentError carrying a Sluice.OptionError.
  @spec argument!(atom, String.t(), term) :: no_return
  defdelegate argument!(name, expected, got), to: Check

  @doc "The spec of a `manage` request for the helper program (docs/protocol.md)."
  @spec manage_spec(pos_integer, t) :: map
  defdelegate manage_spec(os_pid, opts), to: Spec, as: :manage

  @doc false
  @spec bad!(atom, String.t(), term) :: no_return
  defdelegate bad!(key, expected, got), to: Check
end
