defmodule Sluice.OptionError do
  @moduledoc """
  A programming mistake in an option or an argument, as data: which option or argument
  it is about (`:option`), the value given (`:value`), what was expected (`:expected`),
  the function called when the message names it (`:who`), and its `:kind`:

    * `:invalid`: a bad value of an option (`expected` says what it takes);
    * `:unknown`: an option `who` does not take (`expected` is the list of those it does);
    * `:duplicate`: an option given twice (`value` is every value given);
    * `:refused`: an option `who` never takes (`expected` says why);
    * `:missing`: an option `who` needs;
    * `:options`: options that are not a keyword list;
    * `:argument`: a bad argument of a function, named by `option` (`:argv`, `:timeout`,
      `:max`, `:os_pid`, ...);
    * `:config`: a bad key of `config :sluice`.

  Sluice raises every such mistake as an `ArgumentError` whose message is this error's
  (derived from the fields by `message/1`), so `rescue ArgumentError` and
  `assert_raise ArgumentError` see what they always saw. The fields travel with it as the
  `cause` of OTP's `error_info` in the stacktrace: `from_stacktrace/1` finds them. The
  Erlang face (`sluice`) raises `error:{badarg, Option, Message}` from them, in its own
  words.

      iex> try do
      ...>   Sluice.run(["true"], nice: 42)
      ...> rescue
      ...>   e in ArgumentError ->
      ...>     {:ok, error} = Sluice.OptionError.from_stacktrace(__STACKTRACE__)
      ...>     {e.message == Exception.message(error), error.option, error.value}
      ...> end
      {true, :nice, 42}
  """

  @type kind ::
          :invalid | :unknown | :duplicate | :refused | :missing | :options | :argument | :config

  @type t :: %__MODULE__{
          option: atom,
          value: term,
          expected: String.t() | [atom] | nil,
          who: String.t() | nil,
          kind: kind
        }

  defexception [:option, :value, :expected, :who, kind: :invalid]

  @doc "The message, in the Elixir API's words, derived from the fields."
  @impl true
  @spec message(t) :: String.t()
  def message(%{kind: :invalid, option: option, expected: expected, value: value}),
    do: "invalid value for option #{inspect(option)}: expected #{expected}, got: #{show(value)}"

  def message(%{kind: :unknown, option: option, who: who, expected: known}) do
    hint =
      case suggestion(option, known) do
        nil -> ""
        near -> " did you mean #{inspect(near)}?"
      end

    "unknown option #{inspect(option)} for #{who};#{hint} known options: " <>
      Enum.map_join(known, ", ", &inspect/1)
  end

  def message(%{kind: :duplicate, option: option, who: who}),
    do: "option #{inspect(option)} given more than once to #{who}"

  def message(%{kind: :refused, option: option, who: who, expected: why}),
    do: "#{who} does not take the option #{inspect(option)}: #{why}"

  def message(%{kind: :missing, option: option, who: who, value: value}),
    do: "#{who} needs the option #{inspect(option)}, got: #{show(value)}"

  def message(%{kind: :options, who: who, value: value}),
    do: "#{who} expects a keyword list of options, got: #{show(value)}"

  def message(%{kind: :argument, option: argument, expected: expected, value: value}),
    do: "#{argument} must be #{expected}, got: #{show(value)}"

  def message(%{kind: :config, option: key, expected: expected, value: value}),
    do:
      "invalid value for config :sluice, #{inspect(key)}: expected #{expected}, got: #{show(value)}"

  defp show(value), do: inspect(value, limit: 10, printable_limit: 100)

  # As Elixir's own "did you mean" (UndefinedFunctionError): the nearest name by Jaro
  # distance, if it is near enough.
  @threshold 0.77

  @doc """
  The known option nearest to an unknown one, by `String.jaro_distance/2` as Elixir's
  own suggestions, or `nil` when none is near enough.

      iex> Sluice.OptionError.suggestion(:timout, [:cd, :timeout, :idle_timeout])
      :timeout
      iex> Sluice.OptionError.suggestion(:bogus, [:cd, :timeout])
      nil
  """
  @spec suggestion(term, [atom]) :: atom | nil
  def suggestion(option, known) when is_atom(option) and is_list(known) do
    name = Atom.to_string(option)

    known
    |> Enum.map(&{String.jaro_distance(name, Atom.to_string(&1)), &1})
    |> Enum.filter(fn {distance, _} -> distance >= @threshold end)
    |> Enum.max_by(&elem(&1, 0), fn -> {nil, nil} end)
    |> elem(1)
  end

  def suggestion(_option, _known), do: nil

  @doc """
  Raises the mistake described by `fields` (those of `t:t/0`) as an `ArgumentError` with
  its message, the error itself as the `cause` of the stacktrace's `error_info`.
  """
  @spec raise!(keyword) :: no_return
  def raise!(fields) do
    error = struct!(__MODULE__, fields)

    :erlang.error(ArgumentError.exception(message(error)), :none,
      error_info: %{module: __MODULE__, cause: error}
    )
  end

  @doc """
  The option error an `ArgumentError` of Sluice carries, from the stacktrace it was
  raised with (`__STACKTRACE__` in a `rescue`); `:error` for any other exception.
  """
  @spec from_stacktrace(Exception.stacktrace()) :: {:ok, t} | :error
  def from_stacktrace([{_module, _function, _args, location} | _]) do
    case Keyword.get(location, :error_info) do
      %{cause: %__MODULE__{} = error} -> {:ok, error}
      _ -> :error
    end
  end

  def from_stacktrace(_stacktrace), do: :error

  @doc """
  OTP's `error_info` convention: the message of an `ArgumentError` raised by `raise!/1`,
  for the Erlang shell and `erl_error`.
  """
  @spec format_error(term, Exception.stacktrace()) :: %{general: charlist}
  def format_error(%ArgumentError{message: message}, _stacktrace),
    do: %{general: String.to_charlist(message)}

  def format_error(_reason, _stacktrace), do: %{}
end
