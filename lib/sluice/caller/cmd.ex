defmodule Sluice.Caller.Cmd do
  @moduledoc false
  # Sluice.cmd/3: System.cmd/3's call and answer, run by Sluice.Caller.Run. The command is
  # resolved as System.cmd/3 resolves it (an absolute path as it is, anything else
  # through :os.find_executable/1, `:enoent` raised as it raises it), System.cmd's options
  # become run's (`stderr_to_stdout:` is `stderr: :stdout`, `lines:` a collectable of
  # lines, `use_stdio: false` the program's stdout on the console), and run's answer
  # becomes `{collectable, exit_status}`, a signal being 128 + its number as a Port says.

  alias Sluice.{Error, OptionError, Options, Result}
  alias Sluice.Caller.{Into, Run}
  alias Sluice.Options.Check

  @who "Sluice.cmd/3"

  # System.cmd/3's own options, turned into run's here (`:into`, `:cd`, `:env` and `:arg0`
  # are run's too).
  @system [:lines, :stderr_to_stdout, :parallelism, :use_stdio]

  # run's options that cmd does not take, and why.
  @refused [
    stderr:
      "System.cmd leaves stderr to the VM's stderr; use stderr_to_stdout: true, or Sluice.run/2",
    stdout: "stdout goes into the collectable (into:); use Sluice.run/2",
    stdin: "stdin gets EOF unless input: is given; use Sluice.run/2",
    success_exit_codes: "cmd returns every exit status; use Sluice.run!/2",
    pipefail: "cmd runs one program; use Sluice.run/2 with Sluice.pipeline/1",
    node: "the command is resolved in this node's PATH; use Sluice.run/2 with node:"
  ]

  @doc "See `Sluice.cmd/3`."
  @spec cmd(String.t(), [String.t()], keyword) :: {Collectable.t(), non_neg_integer}
  def cmd(command, args, opts) do
    command!(command, args)
    args!(args)
    run_opts = options!(opts)
    path = resolve(command, args, opts)

    case Run.run([path | args], run_opts) do
      # No `into:` is System.cmd's `into: ""`: a binary, empty when nothing was collected
      # (`use_stdio: false`).
      {:ok, %Result{status: status, stdout: out}} ->
        {out || "", exit_status(status)}

      # As Port.open/2 raises it (System.cmd's :eacces, :enoent, ...).
      {:error, %Error{stage: :exec, reason: reason}} ->
        :erlang.error(reason, [command, args, opts])

      {:error, error} ->
        raise error
    end
  end

  # As System.cmd/3: an absolute path as it is, anything else looked up in the VM's PATH
  # (a name with a slash too, under each directory of PATH), `:enoent` when not found.
  defp resolve(command, args, opts) do
    if Path.type(command) == :absolute do
      command
    else
      case :os.find_executable(String.to_charlist(command)) do
        false -> :erlang.error(:enoent, [command, args, opts])
        path -> List.to_string(path)
      end
    end
  end

  # A Port's exit status: a signal is 128 + its number.
  defp exit_status({:signal, name}) do
    {:ok, number} = Sluice.Signal.to_number(name)
    128 + number
  end

  defp exit_status(code), do: code

  defp command!(command, _args) when is_binary(command) do
    if String.contains?(command, <<0>>),
      do: Check.argument!(:command, "a string without NUL bytes", command)
  end

  defp command!([program | rest] = command, args) when is_binary(program) do
    args = if is_list(args) and args == [], do: rest, else: rest ++ List.wrap(args)

    Check.argument!(
      :command,
      "a string, the program, its arguments apart: Sluice.cmd(#{inspect(program)}, " <>
        "#{inspect(args)})",
      command
    )
  end

  defp command!(command, _args),
    do: Check.argument!(:command, "a string (a path, or a name looked up in PATH)", command)

  defp args!(args) do
    unless Options.proper_list?(args) and Enum.all?(args, &is_binary/1),
      do: Check.argument!(:args, "a list of strings, one per argument", args)
  end

  # cmd's options checked (unknown, twice, refused, System.cmd's values), as run's.
  defp options!(opts) do
    unless is_list(opts) and Keyword.keyword?(opts),
      do: OptionError.raise!(kind: :options, option: :options, value: opts, who: @who)

    run = Options.accepted(:run)

    Enum.reduce(opts, [], fn {key, value}, seen ->
      cond do
        Keyword.has_key?(@refused, key) ->
          OptionError.raise!(kind: :refused, option: key, who: @who, expected: @refused[key])

        key not in @system and key not in run ->
          known = [:into | @system] ++ (run -- [:into | Keyword.keys(@refused)])

          OptionError.raise!(
            kind: :unknown,
            option: key,
            value: value,
            who: @who,
            expected: known
          )

        key in seen ->
          values = Keyword.get_values(opts, key)
          OptionError.raise!(kind: :duplicate, option: key, value: values, who: @who)

        true ->
          [key | seen]
      end
    end)

    {system, sluice} = Keyword.split(opts, @system)
    # System.cmd's booleans: given or not (nil).
    stdio? = boolean!(system, :use_stdio) != false
    merge? = boolean!(system, :stderr_to_stdout) == true
    _ = boolean!(system, :parallelism)

    if merge? and not stdio? do
      Check.bad!(:stderr_to_stdout, "false with use_stdio: false (stdout is not collected)", true)
    end

    [stderr: if(merge?, do: :stdout, else: :console)] ++
      if(stdio?, do: [], else: [stdin: :null, stdout: :console]) ++ lines!(system, sluice)
  end

  defp boolean!(opts, key) do
    case Keyword.fetch(opts, key) do
      {:ok, value} when is_boolean(value) -> value
      {:ok, value} -> Check.bad!(key, "a boolean", value)
      :error -> nil
    end
  end

  # `lines:` wraps the collectable (`into: nil`, run's binary, included).
  defp lines!(system, sluice) do
    case Keyword.fetch(system, :lines) do
      :error ->
        sluice

      {:ok, n} when is_integer(n) and n > 0 ->
        into = Check.check!(:into, sluice[:into], :run)
        Keyword.put(sluice, :into, Into.lines(into))

      {:ok, n} ->
        Check.bad!(:lines, "a positive integer (bytes, as System.cmd's; lines come whole)", n)
    end
  end
end
