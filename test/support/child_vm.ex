defmodule Sluice.ChildVM do
  @moduledoc """
  A second VM for tests that need a node of their own: `elixir` on this project's built
  ebin, run as a program of this node, so its own stdout and stderr (the console of its
  programs) are captured apart, and, with `as: :nobody`, run as an unprivileged user
  (`setpriv`), so that its helper program meets the refusals (EPERM) that root never does.
  """

  # nobody/nogroup: the unprivileged user of every Linux system.
  @nobody 65_534

  @doc """
  The argv of `elixir` with this project's ebin, `args` (a script and its arguments, or
  `["-e", code]`) after it; `elixir_opts` (as `--erl`, `--name`) before it.
  """
  @spec argv([String.t()], [String.t()]) :: [String.t()]
  def argv(args, elixir_opts \\ []) do
    ebin = Path.join(Mix.Project.build_path(), "lib/sluice/ebin")
    ["elixir"] ++ elixir_opts ++ ["-pa", ebin] ++ args
  end

  @doc """
  Runs `args` (see `argv/2`) in a VM to its end and returns `Sluice.run/2`'s result, the
  VM's stdout and stderr apart (`stderr: :capture`).

  Options: `as: :nobody` runs it as nobody with no supplementary groups and needs `:dir`,
  a directory nobody may write (made mode 0777 here), its HOME and working directory;
  `:env` adds variables; `:timeout` (default 60 s).
  """
  @spec run([String.t()], keyword) :: Sluice.Result.t()
  def run(args, opts \\ []) do
    env = Map.new(Keyword.get(opts, :env, %{}))

    {argv, env, cd} =
      case Keyword.get(opts, :as) do
        nil ->
          {argv(args), env, nil}

        :nobody ->
          dir = Keyword.fetch!(opts, :dir)
          File.chmod!(dir, 0o777)
          ids = ["--reuid=#{@nobody}", "--regid=#{@nobody}", "--clear-groups"]
          {["setpriv" | ids] ++ argv(args), Map.put(env, "HOME", dir), dir}
      end

    {:ok, result} =
      Sluice.run(argv,
        env: env,
        cd: cd,
        stderr: :capture,
        timeout: Keyword.get(opts, :timeout, 60_000)
      )

    result
  end

  @doc """
  Elixir code that starts `:sluice` without cgroups (an unprivileged VM can use none, and
  this one's programs need none), to put before a test's own code given to `-e`.
  """
  @spec start_sluice() :: String.t()
  def start_sluice do
    """
    Application.put_env(:sluice, :cgroup, false)
    {:ok, _} = Application.ensure_all_started(:sluice)
    """
  end

  @doc """
  Elixir code that defines `report`, a function of a tag and a term that prints the term
  on one stdout line for `reports/1` to read back (exactly: as its external format).
  """
  @spec reporter() :: String.t()
  def reporter do
    ~S"""
    report = fn tag, term ->
      IO.puts("sluice-report #{tag} " <> Base.encode64(:erlang.term_to_binary(term)))
    end
    """
  end

  @doc "The terms the VM reported (`reporter/0`), by tag."
  @spec reports(Sluice.Result.t()) :: %{String.t() => term}
  def reports(%Sluice.Result{stdout: out}) do
    for [tag, term] <- Regex.scan(~r/^sluice-report (\S+) (\S+)$/m, out, capture: :all_but_first),
        into: %{},
        do: {tag, term |> Base.decode64!() |> :erlang.binary_to_term()}
  end
end
