defmodule Sluice.Options do
  @moduledoc false
  # Validation and normalisation of argv and options, shared by every public entry point.
  # Programming mistakes raise ArgumentError naming the option; nothing reaches the helper
  # unless it is well formed.

  @process_defaults [
    cd: nil,
    env: [],
    clear_env: false,
    stderr: :console,
    kill_grace: 5_000,
    kill_signal: :sigterm,
    pipe_size: nil
  ]

  @doc """
  Checks `opts` against `defaults` (a keyword list of every allowed key with its default)
  and returns a map with every key. `who` names the function in error messages.
  """
  def validate!(opts, defaults, who) do
    unless Keyword.keyword?(opts) do
      raise ArgumentError, "#{who} expects a keyword list of options, got: #{inspect(opts)}"
    end

    Enum.each(opts, fn {key, _} ->
      unless Keyword.has_key?(defaults, key) do
        known = defaults |> Keyword.keys() |> Enum.map_join(", ", &inspect/1)
        raise ArgumentError, "unknown option #{inspect(key)} for #{who}; known options: #{known}"
      end
    end)

    defaults
    |> Keyword.merge(opts)
    |> Map.new(fn {key, value} -> {key, check!(key, value)} end)
  end

  @doc "Process defaults merged with `extra` defaults, for `validate!/3`."
  def with_process_defaults(extra, overrides \\ []) do
    @process_defaults |> Keyword.merge(overrides) |> Keyword.merge(extra)
  end

  @doc "Validates argv: a non-empty list of binaries without NUL bytes."
  def argv!(argv) do
    unless is_list(argv) and argv != [] do
      raise ArgumentError, "argv must be a non-empty list of strings, got: #{inspect(argv)}"
    end

    Enum.each(argv, fn arg ->
      unless is_binary(arg) do
        raise ArgumentError, "argv elements must be strings, got: #{inspect(arg)}"
      end

      if String.contains?(arg, <<0>>) do
        raise ArgumentError, "argv elements must not contain NUL bytes, got: #{inspect(arg)}"
      end
    end)

    if hd(argv) == "", do: raise(ArgumentError, "argv[0] (the program) must not be empty")
    argv
  end

  @doc "Validates a timeout argument: a non-negative integer (ms) or `:infinity`."
  def timeout!(t, name \\ "timeout")
  def timeout!(:infinity, _name), do: :infinity
  def timeout!(t, _name) when is_integer(t) and t >= 0, do: t

  def timeout!(t, name) do
    raise ArgumentError,
          "#{name} must be a non-negative integer (ms) or :infinity, got: #{inspect(t)}"
  end

  @doc "The spawn spec for the helper (see docs/architecture.md)."
  def spawn_spec(argv, opts) do
    %{
      argv: argv,
      env: environment(opts.env, opts.clear_env),
      cd: opts.cd,
      stderr: helper_stderr(opts.stderr),
      pipe_size: opts.pipe_size
    }
  end

  defp helper_stderr(:consume), do: :pipe
  defp helper_stderr(:capture), do: :pipe
  defp helper_stderr(:stdout), do: :stdout
  defp helper_stderr(:null), do: :null
  defp helper_stderr(:console), do: :inherit

  # The program's complete environment: the VM's current one (so System.put_env is seen),
  # or nothing with clear_env, then the overrides; a nil value unsets. Without options it
  # is `:default`, which Sluice.Helper resolves: copying the environment here would grow
  # every caller's heap.
  defp environment([], false), do: :default

  defp environment(overrides, clear?) do
    base = if clear?, do: %{}, else: System.get_env()

    overrides
    |> Enum.reduce(base, fn
      {name, nil}, acc -> Map.delete(acc, name)
      {name, value}, acc -> Map.put(acc, name, value)
    end)
    |> env_list()
  end

  @doc "An environment map as the helper's list of `NAME=value` binaries."
  def env_list(env), do: Enum.map(env, fn {name, value} -> name <> "=" <> value end)

  # Per-option checks. Each returns the normalised value or raises naming the option.

  defp check!(:cd, nil), do: nil
  defp check!(:cd, cd) when is_binary(cd) and cd != "", do: no_nul!(:cd, cd)
  defp check!(:cd, cd), do: bad!(:cd, "a non-empty path string", cd)

  defp check!(:env, env) when is_map(env) or is_list(env) do
    Enum.map(env, fn
      {name, value} -> {env_name!(name), env_value!(name, value)}
      other -> bad!(:env, "{name, value} pairs", other)
    end)
  end

  defp check!(:env, env), do: bad!(:env, "a map or a list of {name, value} pairs", env)

  defp check!(key, value) when key in [:clear_env, :lines] and is_boolean(value), do: value
  defp check!(key, value) when key in [:clear_env, :lines], do: bad!(key, "a boolean", value)

  defp check!(:stderr, value) when value in [:console, :null, :stdout, :consume, :capture],
    do: value

  defp check!(:stderr, value),
    do: bad!(:stderr, ":console, :null, :stdout, :consume or :capture", value)

  defp check!(:kill_grace = key, value) do
    if is_integer(value) and value >= 0,
      do: value,
      else: bad!(key, "a non-negative integer (ms)", value)
  end

  defp check!(key, value) when key in [:timeout, :exit_timeout], do: timeout_opt!(key, value)

  defp check!(:kill_signal, value) do
    case Sluice.Signal.to_number(value) do
      {:ok, _} -> value
      :error -> bad!(:kill_signal, "a signal name like :sigterm or a number 1..64", value)
    end
  end

  defp check!(:pipe_size, nil), do: nil
  defp check!(:pipe_size, n) when is_integer(n) and n >= 4096 and n <= 1_073_741_824, do: n
  defp check!(:pipe_size, n), do: bad!(:pipe_size, "nil or an integer of bytes >= 4096", n)

  defp check!(key, n) when key in [:chunk_size, :max_output] do
    cond do
      key == :max_output and n == :infinity -> n
      is_integer(n) and n > 0 -> n
      true -> bad!(key, "a positive integer", n)
    end
  end

  defp check!(:success_exit_codes, codes) do
    if is_list(codes) and codes != [] and Enum.all?(codes, &(is_integer(&1) and &1 in 0..255)),
      do: codes,
      else: bad!(:success_exit_codes, "a non-empty list of integers 0..255", codes)
  end

  # Options whose checks live with their feature (input, log, name, ...).
  defp check!(_key, value), do: value

  defp timeout_opt!(_key, :infinity), do: :infinity
  defp timeout_opt!(_key, t) when is_integer(t) and t >= 0, do: t
  defp timeout_opt!(key, t), do: bad!(key, "a non-negative integer (ms) or :infinity", t)

  defp env_name!(name) when is_atom(name) and not is_nil(name) and not is_boolean(name),
    do: env_name!(Atom.to_string(name))

  defp env_name!(name) when is_binary(name) and name != "" do
    cond do
      String.contains?(name, "=") ->
        bad!(:env, "variable names without \"=\"", name)

      String.contains?(name, <<0>>) ->
        bad!(:env, "variable names without NUL bytes", name)

      true ->
        name
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
  def bad!(key, expected, got) do
    raise ArgumentError,
          "invalid value for option #{inspect(key)}: expected #{expected}, got: #{inspect(got)}"
  end
end
