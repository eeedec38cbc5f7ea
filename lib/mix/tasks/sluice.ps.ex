defmodule Mix.Tasks.Sluice.Ps do
  @shortdoc "Lists the programs a running Sluice node runs"
  @moduledoc """
  Prints `Sluice.list/0` of a running node as a table (`Sluice.Ps.table/0`): every
  program it runs, who owns it, since when, whether it was adopted, and its cgroup.

      mix sluice.ps --node my_app@127.0.0.1 --cookie SECRET

  The node is reached over Erlang distribution: this task starts distribution for itself
  (on the loopback interface, under a name of its own), connects with the cookie and calls
  `Sluice.Ps.table/0` there. The node must be distributed (started with `--name` or
  `--sname`, as releases are by default) and reachable through the local `epmd`.

  A node without distribution cannot be reached from outside; in a shell on it (a
  release's `bin/my_app remote`, or the `iex -S mix` session itself) call
  `IO.puts(Sluice.Ps.table())`, or `Sluice.list()` for the data.

  ## Options

    * `--node` - the node's name, `name@host` (long names when the host has a dot);
    * `--cookie` - its cookie (default: this VM's, from `~/.erlang.cookie`);
    * `--timeout` - ms to wait for the answer (default 10000).
  """
  use Mix.Task

  @switches [node: :string, cookie: :string, timeout: :integer]

  @impl Mix.Task
  def run(args) do
    case OptionParser.parse(args, strict: @switches) do
      {opts, [], []} ->
        if opts[:node], do: print(opts), else: Mix.shell().info(@moduledoc)

      {_opts, rest, invalid} ->
        Mix.raise(
          "mix sluice.ps: unexpected arguments #{inspect(rest ++ invalid)}; see mix help sluice.ps"
        )
    end
  end

  defp print(opts) do
    target = String.to_atom(opts[:node])
    start_distribution(target)
    if cookie = opts[:cookie], do: Node.set_cookie(target, String.to_atom(cookie))

    unless Node.connect(target) == true do
      Mix.raise("""
      cannot connect to #{target}: it is not running, not distributed, or its cookie is \
      not #{if opts[:cookie], do: "the one given", else: "this VM's"}. A node without \
      distribution cannot be reached from outside: in a shell on it, call \
      IO.puts(Sluice.Ps.table()) or Sluice.list().\
      """)
    end

    case :rpc.call(target, Sluice.Ps, :table, [], Keyword.get(opts, :timeout, 10_000)) do
      table when is_binary(table) -> Mix.shell().info(String.trim_trailing(table))
      {:badrpc, reason} -> Mix.raise("#{target} did not answer: #{inspect(reason)}")
    end
  end

  # A name of our own, long or short like the target's, listening on loopback only.
  defp start_distribution(target) do
    [_name, host] =
      case String.split(Atom.to_string(target), "@", parts: 2) do
        [_, _] = parts -> parts
        _ -> Mix.raise("--node must be name@host, got: #{target}")
      end

    Application.put_env(:kernel, :inet_dist_use_interface, {127, 0, 0, 1})
    me = "sluice_ps_#{System.unique_integer([:positive])}"

    started =
      if String.contains?(host, "."),
        do: Node.start(String.to_atom(me <> "@127.0.0.1"), :longnames),
        else: Node.start(String.to_atom(me), :shortnames)

    case started do
      {:ok, _} ->
        :ok

      {:error, {:already_started, _}} ->
        :ok

      {:error, reason} ->
        Mix.raise("cannot start distribution (is epmd running?): #{inspect(reason)}")
    end
  end
end
