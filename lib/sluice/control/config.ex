defmodule Sluice.Control.Config do
  @moduledoc false
  # The application environment of :sluice, checked once when the helper server starts:
  # a bad value stops the application start with an error that names the key and value.

  require Logger

  @type t :: %{cgroup: :auto | false | String.t(), shutdown_grace: non_neg_integer}

  @typedoc "The users `user:` may name: `nil` for any, else names and uids."
  @type allowed_users :: [String.t() | non_neg_integer] | nil

  @doc "Reads and checks the configuration; raises ArgumentError naming a bad key."
  @spec load!() :: t
  def load! do
    # Only checked here: each spawn with `user:` reads it afresh (allowed_users!/0).
    _ = allowed_users!()

    %{
      cgroup: check!(:cgroup, Application.get_env(:sluice, :cgroup, :auto)),
      shutdown_grace:
        check!(:shutdown_grace, Application.get_env(:sluice, :shutdown_grace, 1_000))
    }
  end

  @doc """
  `allowed_users`, checked: at start (in `load!/0`) and again at each spawn with `user:`,
  which reads it afresh (it may be changed while the node runs).
  """
  @spec allowed_users!() :: allowed_users
  def allowed_users! do
    check!(:allowed_users, Application.get_env(:sluice, :allowed_users, :any))
  end

  defp check!(:cgroup, value) when value in [:auto, false], do: value

  # sys.config writes paths as strings (charlists).
  defp check!(:cgroup, path) when is_list(path) do
    case :unicode.characters_to_binary(path) do
      binary when is_binary(binary) -> check!(:cgroup, binary)
      _ -> bad!(:cgroup, path, "an absolute path")
    end
  end

  defp check!(:cgroup, path) when is_binary(path) do
    if Path.type(path) == :absolute and not String.contains?(path, <<0>>),
      do: path,
      else: bad!(:cgroup, path, "an absolute path")
  end

  defp check!(:cgroup, value), do: bad!(:cgroup, value, ":auto, false or a cgroup v2 directory")

  defp check!(:shutdown_grace, ms) when is_integer(ms) and ms >= 0 and ms <= 3_600_000, do: ms

  defp check!(:shutdown_grace, ms),
    do: bad!(:shutdown_grace, ms, "a non-negative integer of ms (at most one hour)")

  defp check!(:allowed_users, :any), do: nil

  defp check!(:allowed_users, users) when is_list(users) do
    if List.improper?(users), do: bad_allowed_users!(users)

    Enum.map(users, fn user ->
      case allowed_user(user) do
        {:ok, user} -> user
        :error -> bad_allowed_users!(users)
      end
    end)
  end

  defp check!(:allowed_users, users), do: bad_allowed_users!(users)

  defp allowed_user(uid) when is_integer(uid) and uid >= 0, do: {:ok, uid}

  defp allowed_user(name) when is_binary(name) or is_list(name),
    do: Sluice.Control.Protocol.text(name)

  defp allowed_user(_other), do: :error

  @spec bad_allowed_users!(term) :: no_return
  defp bad_allowed_users!(users) do
    bad!(:allowed_users, users, ":any or a list of user names and non-negative uids")
  end

  @spec bad!(atom, term, String.t()) :: no_return
  defp bad!(key, value, expected),
    do: Sluice.OptionError.raise!(kind: :config, option: key, expected: expected, value: value)

  @doc "The helper program's command-line arguments."
  @spec helper_args(t) :: [String.t()]
  def helper_args(config) do
    cgroup =
      case config.cgroup do
        :auto -> "auto"
        false -> "off"
        path -> path
      end

    ms = to_string(config.shutdown_grace)
    ["--beam-pid", System.pid(), "--cgroup", cgroup, "--shutdown-grace-ms", ms]
  end

  @doc """
  Compares the cgroup root the helper found with what was asked for: an explicit path it
  could not use is an error; `:auto` without cgroups is a warning (once per VM).
  """
  @spec check_cgroup(t, String.t() | nil) :: :ok | {:error, term}
  def check_cgroup(%{cgroup: path}, nil) when is_binary(path) do
    {:error,
     {:invalid_config, :cgroup, path,
      "the helper cannot use it as a cgroup v2 directory (see its stderr)"}}
  end

  def check_cgroup(%{cgroup: :auto}, nil) do
    unless :persistent_term.get({__MODULE__, :warned}, false) do
      :persistent_term.put({__MODULE__, :warned}, true)

      Logger.warning(
        "Sluice: no writable cgroup v2 hierarchy found; programs run without cgroups, so " <>
          "programs that leave their process group (setsid, double fork) can outlive their " <>
          "owner, and grandchildren survive a SIGKILL of the helper (docs/guarantees.md)"
      )
    end

    :ok
  end

  def check_cgroup(_config, _root), do: :ok
end
