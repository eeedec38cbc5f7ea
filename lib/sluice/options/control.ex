defmodule Sluice.Options.Control do
  @moduledoc false
  # The options that say where a program's stdio goes when not to the BEAM (files,
  # /dev/null, the console), what it runs as and with (user, group, nice, rlimits, umask,
  # arg0) and how it is stopped (kill_command): their checks, how they combine with the
  # others, and their keys in the spawn spec (docs/protocol.md). Sluice.Options holds the
  # schema and calls in here.

  @resources [:as, :core, :cpu, :data, :fsize, :memlock, :nofile, :nproc, :stack]
  # uid_t and gid_t are 32 bits, and (uid_t)-1 (2^32 - 1) means "no change" to setuid and
  # setgid: the largest id is one less.
  @max_id 4_294_967_294
  # rlim_t is 64 bits, and 2^64 - 1 is RLIM_INFINITY (:infinity says it).
  @max_limit 18_446_744_073_709_551_614
  # What a login sets from the user's passwd entry (PATH: login.defs' default), unless
  # env: sets it; with inherit_env the VM's PATH stays.
  @login_vars ~w(HOME USER LOGNAME SHELL PATH)

  @doc "The option keys checked here."
  @spec keys() :: [atom]
  def keys, do: [:stdin, :stdout, :user, :group, :nice, :rlimits, :umask, :arg0, :kill_command]

  @doc "Checks one option (see Sluice.Options) and returns its normalised value."
  @spec check!(atom, term, atom) :: term
  def check!(:stdin, value, _) when value in [:pipe, :null], do: value
  def check!(:stdin, {:file, path}, _), do: {:file, path!(:stdin, path)}
  def check!(:stdin, value, _), do: bad!(:stdin, ":pipe, :null or {:file, path}", value)

  def check!(:stdout, value, _) when value in [nil, :pipe, :null, :console, :log], do: value
  def check!(:stdout, {:file, _, _} = file, _), do: file!(:stdout, file)
  def check!(:stdout, {:file, path}, _), do: file!(:stdout, {:file, path, []})

  def check!(:stdout, value, _),
    do: bad!(:stdout, ":pipe, :null, :console, :log or {:file, path, opts}", value)

  def check!(:group, value, :manage) do
    if is_boolean(value), do: value, else: bad!(:group, "a boolean", value)
  end

  def check!(key, nil, _) when key in [:user, :group], do: nil

  def check!(key, id, _) when key in [:user, :group] and is_integer(id) and id in 0..@max_id,
    do: id

  def check!(key, name, _) when key in [:user, :group] and (is_binary(name) or is_list(name)),
    do: name!(key, name)

  def check!(key, value, _) when key in [:user, :group],
    do: bad!(key, "a name or an integer id 0..#{@max_id} (#{@max_id + 1} means no change)", value)

  def check!(:nice, nil, _), do: nil
  def check!(:nice, n, _) when is_integer(n) and n in -20..19, do: n
  def check!(:nice, n, _), do: bad!(:nice, "an integer -20..19", n)

  def check!(:umask, nil, _), do: nil
  def check!(:umask, n, _) when is_integer(n) and n in 0..0o777, do: n
  def check!(:umask, n, _), do: bad!(:umask, "an integer 0..0o777", n)

  def check!(:arg0, nil, _), do: nil

  def check!(:arg0, name, _) when is_binary(name) or is_list(name) do
    case chars(name) do
      {:ok, name} when name != "" ->
        if String.contains?(name, <<0>>), do: bad_arg0(name), else: name

      _ ->
        bad_arg0(name)
    end
  end

  def check!(:arg0, name, _), do: bad_arg0(name)

  def check!(:kill_command, nil, _), do: nil

  def check!(:kill_command, argv, _) do
    Sluice.Options.argv!(argv)
  rescue
    ArgumentError -> bad!(:kill_command, "nil or an argv (a non-empty list of strings)", argv)
  else
    %Sluice.Pipeline{} -> bad!(:kill_command, "an argv, not a pipeline", argv)
    argv -> argv
  end

  def check!(:rlimits, limits, _) when is_list(limits) do
    unless Keyword.keyword?(limits), do: bad_rlimits(limits)

    Enum.map(limits, fn
      {resource, value} when resource in @resources -> {resource, limit!(value)}
      other -> bad_rlimits(other)
    end)
  end

  def check!(:rlimits, limits, _), do: bad_rlimits(limits)

  @doc "`{:file, path, opts}` of `:stderr`, checked like stdout's."
  @spec stderr_file!(tuple) :: tuple
  def stderr_file!({:file, path}), do: file!(:stderr, {:file, path, []})
  def stderr_file!(file), do: file!(:stderr, file)

  @doc """
  How these options combine with the others: stdout's default is the data pipe (or the
  console with `use_stdio: false`), a terminal needs stdin and stdout piped, and `run`'s
  input needs stdin piped.
  """
  @spec combined!(map) :: map
  def combined!(opts) do
    %{use_stdio: stdio?, stdout: stdout, stdin: stdin} = opts

    cond do
      stdio? and stdout == :log ->
        bad!(:stdout, ":pipe, :null, :console or a file unless use_stdio: false", :log)

      not stdio? and stdout == :pipe ->
        bad!(:stdout, "one of :console, :null, :log or a file with use_stdio: false", :pipe)

      not stdio? and stdin != :pipe ->
        bad!(:stdin, ":pipe with use_stdio: false (the program's stdin is /dev/null)", stdin)

      opts.pty != nil and (stdin != :pipe or stdout not in [nil, :pipe]) ->
        bad!(:pty, "nil when stdin or stdout is redirected (a terminal is both)", opts.pty)

      stdin != :pipe and opts.input != nil ->
        bad!(:input, "nil when stdin is not :pipe", opts.input)

      # nil is the data pipe with stdio.
      not stdio? and stdout == nil ->
        %{opts | stdout: :console}

      true ->
        opts
    end
  end

  @doc "Whether the program's stdout comes to the BEAM."
  @spec stdout_piped?(map) :: boolean
  def stdout_piped?(opts), do: opts.stdout in [:pipe, :log, nil]

  @doc "The spec keys of these options (docs/protocol.md)."
  @spec spec(map) :: map
  def spec(opts) do
    user = opts.user

    %{
      stdin: stdin(opts.stdin),
      stdout: stdout(opts.stdout),
      user: user,
      group: opts.group,
      login_env: if(user, do: login_env(opts), else: []),
      allowed_users: if(user, do: Sluice.Helper.Config.allowed_users!()),
      nice: opts.nice,
      rlimits: for({r, {soft, hard}} <- opts.rlimits, do: {r, soft, hard}),
      umask: opts.umask,
      arg0: opts.arg0,
      kill_command: opts.kill_command
    }
  end

  @doc "A stdout or stderr value as the spec carries it."
  @spec output(term) :: atom | tuple
  def output({:file, path, opts}), do: {:file, path, opts[:append], opts[:mode]}
  def output(value), do: value

  defp stdin({:file, path}), do: {:file, path}
  defp stdin(mode), do: mode

  # The program's own stdout: the data pipe, or (use_stdio: false) a pipe to be logged.
  defp stdout(nil), do: :pipe
  defp stdout(:log), do: :pipe
  defp stdout(:console), do: :inherit
  defp stdout(value), do: output(value)

  defp login_env(opts) do
    vars = if opts.inherit_env, do: @login_vars -- ["PATH"], else: @login_vars
    Enum.reject(vars, &List.keymember?(opts.env, &1, 0))
  end

  defp file!(key, {:file, path, opts}) do
    unless is_list(opts) and Keyword.keyword?(opts),
      do: bad!(key, "{:file, path, opts} with a keyword list of :append and :mode", opts)

    Enum.each(opts, fn
      {:append, b} when is_boolean(b) -> :ok
      {:mode, m} when is_integer(m) and m in 0..0o7777 -> :ok
      other -> bad!(key, "file options append: boolean, mode: 0..0o7777", other)
    end)

    {:file, path!(key, path),
     [append: Keyword.get(opts, :append, false), mode: Keyword.get(opts, :mode, 0o644)]}
  end

  defp file!(key, other), do: bad!(key, "{:file, path, opts}", other)

  defp path!(key, path) do
    case text(path) do
      {:ok, path} -> path
      :error -> bad!(key, "{:file, path} with a non-empty path without NUL bytes", path)
    end
  end

  defp name!(key, name) do
    case text(name) do
      {:ok, name} ->
        name

      :error ->
        bad!(key, "a non-empty name without NUL bytes or an integer id 0..#{@max_id}", name)
    end
  end

  @doc """
  A name or a path as the helper takes it: non-empty, without NUL bytes, given as a binary
  or (by Erlang callers and `sys.config`) a charlist.
  """
  @spec text(term) :: {:ok, String.t()} | :error
  def text(value) do
    case chars(value) do
      {:ok, text} when text != "" ->
        if String.contains?(text, <<0>>), do: :error, else: {:ok, text}

      _ ->
        :error
    end
  end

  defp chars(value) when is_binary(value), do: {:ok, value}

  defp chars(value) when is_list(value) do
    case :unicode.characters_to_binary(value) do
      binary when is_binary(binary) -> {:ok, binary}
      _ -> :error
    end
  rescue
    ArgumentError -> :error
  end

  defp chars(_value), do: :error

  defp limit!(n) when is_integer(n) and n in 0..@max_limit, do: {n, n}
  defp limit!(:infinity), do: {:infinity, :infinity}

  defp limit!({soft, hard} = value) do
    valid? = fn v -> v == :infinity or (is_integer(v) and v in 0..@max_limit) end

    cond do
      not (valid?.(soft) and valid?.(hard)) -> bad_rlimits(value)
      hard != :infinity and (soft == :infinity or soft > hard) -> bad_rlimits(value)
      true -> {soft, hard}
    end
  end

  defp limit!(value), do: bad_rlimits(value)

  @spec bad_rlimits(term) :: no_return
  defp bad_rlimits(got) do
    bad!(
      :rlimits,
      "a keyword list of #{Enum.map_join(@resources, ", ", &inspect/1)} to a number " <>
        "0..#{@max_limit}, :infinity or {soft, hard} (soft <= hard)",
      got
    )
  end

  @spec bad!(atom, String.t(), term) :: no_return
  defp bad!(key, expected, got), do: Sluice.Options.bad!(key, expected, got)

  @spec bad_arg0(term) :: no_return
  defp bad_arg0(got), do: bad!(:arg0, "a non-empty string without NUL bytes", got)
end
