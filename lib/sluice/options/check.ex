defmodule Sluice.Options.Check do
  @moduledoc false
  # The check of each option's value, one clause (or a few) per option: the value
  # normalised, or an ArgumentError naming the option (a Sluice.OptionError). Rules
  # between options are Sluice.Options.Rules'; the table of options and their defaults is
  # Sluice.Options'. Also the checks of values that are not options but share their
  # rules: argv, timeouts.

  alias Sluice.OptionError
  alias Sluice.Control.Protocol
  alias Sluice.Program.Deadline

  @log_levels [:emergency, :alert, :critical, :error, :warning, :warn, :notice, :info, :debug]
  # The stderr values each entry point takes (files: every one but a pipeline stage's).
  @stderr %{
    stage: [:console, :null, :stdout],
    process: [:console, :null, :stdout, :consume, :log],
    worker: [:console, :null, :stdout, :consume, :log],
    run: [:capture, :stdout, :null, :console],
    stream: [:console, :null, :stdout, :consume, :capture]
  }
  @resources [:as, :core, :cpu, :data, :fsize, :memlock, :nofile, :nproc, :stack]
  # uid_t and gid_t are 32 bits, and (uid_t)-1 (2^32 - 1) means "no change" to setuid and
  # setgid: the largest id is one less.
  @max_id 4_294_967_294
  # rlim_t is 64 bits, and 2^64 - 1 is RLIM_INFINITY (:infinity says it).
  @max_limit 18_446_744_073_709_551_614
  @doc "Checks one option's value for `entry` and returns it normalised."
  @spec check!(atom, term, Sluice.Options.entry()) :: term
  def check!(:cd, nil, _), do: nil
  def check!(:cd, cd, _) when is_binary(cd) and cd != "", do: no_nul!(:cd, cd)
  def check!(:cd, cd, _), do: bad!(:cd, "a non-empty path string", cd)

  def check!(:env, env, _) when is_map(env) or is_list(env) do
    unless is_map(env) or proper_list?(env), do: bad!(:env, "a map or a proper list", env)

    Enum.map(env, fn
      {name, value} -> {env_name!(name), env_value!(name, value)}
      other -> bad!(:env, "{name, value} pairs", other)
    end)
  end

  def check!(:env, env, _), do: bad!(:env, "a map or a list of {name, value} pairs", env)

  def check!(key, value, _)
      when key in [:clear_env, :inherit_env, :lines, :use_stdio, :pipefail] and
             is_boolean(value),
      do: value

  def check!(key, value, _)
      when key in [:clear_env, :inherit_env, :lines, :use_stdio, :pipefail],
      do: bad!(key, "a boolean", value)

  def check!(:framing, value, _) do
    case Sluice.Program.Framing.check(value) do
      {:ok, framing} -> framing
      :error -> bad!(:framing, ":raw, {:packet, 1 | 2 | 4} or {:line, max_bytes}", value)
    end
  end

  def check!(:ready, nil, _), do: nil
  def check!(:ready, %Regex{} = re, _), do: re
  def check!(:ready, fun, _) when is_function(fun, 1), do: fun
  def check!(:ready, value, _), do: bad!(:ready, "a Regex or a 1-arity function", value)

  def check!(:stop_on_owner_exit, value, _) do
    if is_boolean(value), do: value, else: bad!(:stop_on_owner_exit, "a boolean", value)
  end

  def check!(:stderr, {:file, _, _} = file, _), do: stderr_file!(file)
  def check!(:stderr, {:file, _} = file, _), do: stderr_file!(file)

  def check!(:stderr, value, entry) do
    allowed = Map.fetch!(@stderr, entry)

    if value in allowed,
      do: value,
      else: bad!(:stderr, "one of #{Enum.map_join(allowed, ", ", &inspect/1)} or a file", value)
  end

  def check!(key, value, _)
      when key in [:kill_grace, :start_timeout, :ready_timeout, :timeout, :exit_timeout] or
             key == :idle_timeout do
    case ms(value, key in [:timeout, :exit_timeout, :idle_timeout]) do
      {:ok, ms} -> ms
      {:error, expected} -> bad!(key, expected, value)
    end
  end

  def check!(:kill_signal, value, _) do
    case Sluice.Signal.to_number(value) do
      {:ok, _} -> value
      :error -> bad!(:kill_signal, "a signal name like :sigterm or a number 1..64", value)
    end
  end

  def check!(:pty, value, _), do: Sluice.Pty.check!(value)
  def check!(:sandbox, value, _), do: Sluice.Sandbox.check!(value)

  def check!(:node, node, _) when is_atom(node) and not is_boolean(node), do: node
  def check!(:node, node, _), do: bad!(:node, "a node name (an atom) or nil", node)

  def check!(:pipe_size, nil, _), do: nil
  def check!(:pipe_size, n, _) when is_integer(n) and n >= 4096 and n <= 1_073_741_824, do: n
  def check!(:pipe_size, n, _), do: bad!(:pipe_size, "nil or an integer of bytes >= 4096", n)

  def check!(key, n, _) when key in [:chunk_size, :max_line_length, :max_frame] do
    if is_integer(n) and n > 0 and n <= 1_073_741_824,
      do: n,
      else: bad!(key, "a positive integer of bytes up to 1 GiB", n)
  end

  def check!(:max_output, n, _) do
    if n == :infinity or (is_integer(n) and n > 0),
      do: n,
      else: bad!(:max_output, "a positive integer or :infinity", n)
  end

  def check!(:success_exit_codes, codes, _) do
    if proper_list?(codes) and codes != [] and
         Enum.all?(codes, &(is_integer(&1) and &1 in 0..255)),
       do: codes,
       else: bad!(:success_exit_codes, "a non-empty list of integers 0..255", codes)
  end

  def check!(:input, input, _), do: Sluice.Caller.Input.check!(input)
  def check!(:into, nil, _), do: nil

  def check!(:into, into, _) do
    if Collectable.impl_for(into), do: into, else: bad!(:into, "a Collectable or nil", into)
  end

  def check!(:input_in, where, _) when where in [:caller, :process], do: where
  def check!(:input_in, where, _), do: bad!(:input_in, ":caller or :process", where)

  # A level for both streams, or a keyword of the streams' (a stream left out: false);
  # `:warn` is Logger's old name of `:warning`.
  def check!(:log, streams, _) when is_list(streams) do
    unless Keyword.keyword?(streams), do: bad_log(streams)

    Enum.each(streams, fn {stream, _} ->
      unless stream in [:stdout, :stderr], do: bad_log(streams)
    end)

    for stream <- [:stdout, :stderr],
        do: {stream, log_level!(Keyword.get(streams, stream, false))}
  end

  def check!(:log, level, _), do: log_level!(level)

  def check!(:log_prefix, prefix, _) when is_binary(prefix), do: prefix
  def check!(:log_prefix, prefix, _), do: bad!(:log_prefix, "a string", prefix)

  def check!(:log_metadata, metadata, _) do
    if is_list(metadata) and Keyword.keyword?(metadata),
      do: metadata,
      else: bad!(:log_metadata, "a keyword list (Logger metadata)", metadata)
  end

  def check!(:log_transform, fun, _)
      when fun == nil or is_function(fun, 1) or is_function(fun, 2),
      do: fun

  def check!(:log_transform, fun, _),
    do: bad!(:log_transform, "nil or a function of a line (and its stream)", fun)

  def check!(:exit_reason, fun, _) when fun == nil or is_function(fun, 1), do: fun

  def check!(:exit_reason, fun, _),
    do: bad!(:exit_reason, "nil or a function of the exit status", fun)

  def check!(key, value, _) when key in [:name, :id], do: value

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

  def check!(:arg0, name, _) do
    case Protocol.text(name) do
      {:ok, name} -> name
      :error -> bad_arg0(name)
    end
  end

  def check!(:kill_command, nil, _), do: nil

  def check!(:kill_command, argv, _) do
    argv!(argv)
  rescue
    ArgumentError -> bad!(:kill_command, "nil or an argv (a non-empty list of strings)", argv)
  end

  def check!(:rlimits, limits, _) when is_list(limits) do
    unless Keyword.keyword?(limits), do: bad_rlimits(limits)

    Enum.map(limits, fn
      {resource, value} when resource in @resources -> {resource, limit!(value)}
      other -> bad_rlimits(other)
    end)
  end

  def check!(:rlimits, limits, _), do: bad_rlimits(limits)

  defp log_level!(false), do: false
  defp log_level!(:warn), do: :warning
  defp log_level!(level) when level in @log_levels, do: level

  defp log_level!(level),
    do: bad!(:log, "a Logger level, false, or [stdout: level, stderr: level]", level)

  @spec bad_log(term) :: no_return
  defp bad_log(streams),
    do: bad!(:log, "a Logger level, false, or [stdout: level, stderr: level]", streams)

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

  # `{:file, path, opts}` of `:stderr`, checked like stdout's.
  defp stderr_file!({:file, path}), do: file!(:stderr, {:file, path, []})
  defp stderr_file!(file), do: file!(:stderr, file)

  @doc """
  Checks argv: a non-empty proper list of strings without NUL bytes (a command that may
  be a pipeline: Sluice.Options.Command.argv!/1).
  """
  @spec argv!(term) :: [String.t()]
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

  @doc "Whether `term` is a proper list."
  @spec proper_list?(term) :: boolean
  def proper_list?([]), do: true
  def proper_list?([_ | tail]), do: proper_list?(tail)
  def proper_list?(_), do: false

  @doc """
  The one check of a timeout (an option or an argument): `{:ok, ms}`, or what was
  expected; `:infinity` only when `infinity?`.
  """
  @spec ms(term, boolean) :: {:ok, timeout} | {:error, String.t()}
  # The limit is the longest wait the VM's timers (and `receive ... after`) take: 2^32 - 1
  # ms, about 49.7 days (Deadline.max_ms/0, the one clock's range). Past it they raise
  # :timeout_value, so every timeout is checked against it before anything starts. Read
  # at run time, not into an attribute: this module then needs Deadline only at run time.
  def ms(:infinity, true), do: {:ok, :infinity}

  def ms(t, infinity?) when is_integer(t) and t >= 0,
    do: if(t <= Deadline.max_ms(), do: {:ok, t}, else: ms_error(infinity?))

  def ms(_t, infinity?), do: ms_error(infinity?)

  defp ms_error(true),
    do: {:error, "a non-negative integer (ms) up to #{Deadline.max_ms()} or :infinity"}

  defp ms_error(false), do: {:error, "a non-negative integer (ms) up to #{Deadline.max_ms()}"}

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

  defp path!(key, path) do
    case Protocol.text(path) do
      {:ok, path} -> path
      :error -> bad!(key, "{:file, path} with a non-empty path without NUL bytes", path)
    end
  end

  defp name!(key, name) do
    case Protocol.text(name) do
      {:ok, name} ->
        name

      :error ->
        bad!(key, "a non-empty name without NUL bytes or an integer id 0..#{@max_id}", name)
    end
  end

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

  @doc "A bad value of option `key`: an ArgumentError carrying a Sluice.OptionError."
  @spec bad!(atom, String.t(), term) :: no_return
  def bad!(key, expected, got),
    do: OptionError.raise!(kind: :invalid, option: key, expected: expected, value: got)

  @doc """
  A bad argument (not an option) of a public function, named by `name`: an
  ArgumentError carrying a Sluice.OptionError.
  """
  @spec argument!(atom, String.t(), term) :: no_return
  def argument!(name, expected, got),
    do: OptionError.raise!(kind: :argument, option: name, expected: expected, value: got)

  @spec bad_arg0(term) :: no_return
  defp bad_arg0(got), do: bad!(:arg0, "a non-empty string without NUL bytes", got)
end
