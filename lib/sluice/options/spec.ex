defmodule Sluice.Options.Spec do
  @moduledoc false
  # Checked options (a %Sluice.Options{}) as the helper program's requests carry them:
  # the spec of a spawn and of a manage (docs/protocol.md), the program's environment,
  # and what the options say of where its output goes.

  # What a login sets from the user's passwd entry (PATH: login.defs' default), unless
  # env: sets it; with inherit_env the VM's PATH stays.
  @login_vars ~w(HOME USER LOGNAME SHELL PATH)

  @doc """
  The spawn spec of a pipeline's stages for the helper program (docs/protocol.md): the
  first stage is the spec's program, the others its `pipeline` key. See
  Sluice.Options.Command.spawn_spec/2, which applies the pipeline's rules first.
  """
  @spec stages([{[String.t()], map}, ...], Sluice.Options.t()) :: map
  def stages([{argv, first} | rest], opts) do
    stages =
      Enum.map(rest, fn {argv, stage} ->
        o = stage_opts(opts, stage)
        %{argv: argv, env: environment(o), cd: o.cd, stderr: stage_stderr(o)}
      end)

    argv |> spawn(stage_opts(opts, first)) |> Map.put(:pipeline, stages)
  end

  @doc "The spawn spec of one program (an argv) for the helper program (docs/protocol.md)."
  @spec spawn([String.t()], Sluice.Options.t()) :: map
  def spawn(argv, opts) do
    {:ok, signum} = Sluice.Signal.to_number(opts.kill_signal)
    user = opts.user

    # One map, its keys a literal: a spawn builds no partial ones to merge.
    %{
      argv: argv,
      env: environment(opts),
      cd: opts.cd,
      stdin: stdin(opts.stdin),
      stdout: stdout(opts.stdout),
      stderr: helper_stderr(opts.stderr),
      use_stdio: opts.use_stdio,
      pipe_size: opts.pipe_size,
      pty: opts.pty,
      # What the program runs as and with, and how it is stopped.
      user: user,
      group: opts.group,
      login_env: if(user, do: login_env(opts), else: []),
      allowed_users: if(user, do: Sluice.Control.Config.allowed_users!()),
      nice: opts.nice,
      rlimits: for({r, {soft, hard}} <- opts.rlimits, do: {r, soft, hard}),
      umask: opts.umask,
      arg0: opts.arg0,
      kill_command: opts.kill_command,
      kill_signal: signum,
      kill_grace: opts.kill_grace,
      sandbox: Sluice.Sandbox.spec(opts.sandbox, opts.cd)
    }
  end

  @doc "The spec of a `manage` request for the helper program (docs/protocol.md)."
  @spec manage(pos_integer, Sluice.Options.t()) :: map
  def manage(os_pid, opts) do
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
  defp helper_stderr({:file, _, _} = file), do: output(file)

  # The program's complete environment: a base, then the overrides (a nil value unsets).
  # The base is the VM's current environment (so System.put_env is seen), nothing with
  # clear_env, and with a user: what a login keeps of it (the helper program adds the
  # user's HOME, USER, LOGNAME, SHELL and PATH: `login_env`), or with inherit_env the
  # VM's less RELEASE_COOKIE, the key to the node. Without options it is `:default`,
  # resolved at the spawn (Sluice.Control.Env).
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

  @doc "Whether the program's stdout comes to the BEAM."
  @spec stdout_piped?(Sluice.Options.t()) :: boolean
  def stdout_piped?(opts), do: opts.stdout in [:pipe, :log, nil]

  # A stdout or stderr value as the spec carries it.
  defp output({:file, path, opts}), do: {:file, path, opts[:append], opts[:mode]}
  defp output(value), do: value

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
end
