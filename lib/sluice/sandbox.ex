defmodule Sluice.Sandbox do
  @moduledoc """
  The `sandbox:` option: run a program in namespaces of its own, seeing a read-only view
  of the host, without privileges, under a seccomp filter. Accepted wherever a program
  starts (`Sluice.run/2`, streams, `Sluice.Process`, `Sluice.Daemon`, `Sluice.Worker`,
  pipelines, where every stage gets a sandbox of its own, and `node:` programs).

  `sandbox: true` is the strict default; a keyword list loosens or narrows it, each
  setting defaulting to the strict value:

  | setting | default | |
  |---|---|---|
  | `:network` | `:none` | `:none`: a network namespace of its own with only loopback (up); `:host`: the host's network |
  | `:read_only` | `:host` | `:host`: the whole host, read-only; a list of absolute paths (and `:system`: `/usr`, `/bin`, `/sbin`, `/lib*`, `/etc`): only those, read-only, everything else absent |
  | `:writable` | `[]` | absolute paths (which must exist) bound read-write into the view |
  | `:tmp` | `:private` | `:private`: an empty tmpfs on `/tmp`; `:host`: the host's `/tmp`, writable |
  | `:processes` | `:private` | `:private`: a pid namespace of its own (the program is pid 2 under a tiny init; `/proc` and `ps` show only the sandbox); `:host`: the host's |
  | `:seccomp` | `true` | the filter refusing the system calls such programs never need, with `EPERM` (listed in `docs/guarantees.md`) |

  Always: a mount, UTS (hostname `sandbox`) and IPC namespace of its own, a new `/proc`,
  a minimal `/dev` (`null`, `zero`, `full`, `random`, `urandom`, `tty`, and `pts` on a
  terminal), no capabilities (bounding set emptied too) and `no_new_privs`. A sandboxed
  program without `cd:` starts in the VM's directory where the view shows it, else in `/`.

  Where the kernel or the node refuses a part (no namespaces, a helper program not
  running as root, a writable path that does not exist), the spawn fails with
  `{:error, %Sluice.Error{stage: :sandbox}}` naming what was refused: nothing runs
  unsandboxed.
  """

  alias Sluice.Control.Protocol
  alias Sluice.OptionError

  @settings [:network, :read_only, :writable, :tmp, :processes, :seccomp]
  @system ~w(/usr /bin /sbin /lib /lib32 /lib64 /libx32 /etc)

  @typedoc "A checked sandbox, as the spawn spec carries it (docs/protocol.md)."
  @type t :: %{
          network: :none | :host,
          read_only: :host | [String.t()],
          writable: [String.t()],
          tmp: :private | :host,
          processes: :private | :host,
          seccomp: boolean
        }

  @doc """
  Checks the `sandbox:` option: `nil`/`false` (none), `true` or a keyword list of
  settings. Raises `ArgumentError` naming the setting.

      iex> Sluice.Sandbox.check!(network: :host).network
      :host

      iex> Sluice.Sandbox.check!(network: :lan)
      ** (ArgumentError) invalid value for option :sandbox: expected network: :none or :host, got: :lan
  """
  @spec check!(term) :: t | nil
  def check!(value) when value in [nil, false], do: nil
  def check!(true), do: check!([])

  def check!(opts) when is_list(opts) do
    unless Keyword.keyword?(opts), do: bad!("true, false or a keyword list of settings", opts)

    Enum.each(opts, fn {key, _} ->
      unless key in @settings do
        bad!(
          "a keyword list of #{Enum.map_join(@settings, ", ", &inspect/1)} " <>
            "(unknown setting #{inspect(key)})",
          opts
        )
      end

      if Keyword.get_values(opts, key) |> length() > 1,
        do: bad!("each setting once (#{inspect(key)} is given twice)", opts)
    end)

    %{
      network: one_of!(opts, :network, [:none, :host]),
      read_only: read_only!(Keyword.get(opts, :read_only, :host)),
      writable: paths!(:writable, Keyword.get(opts, :writable, [])),
      tmp: one_of!(opts, :tmp, [:private, :host]),
      processes: one_of!(opts, :processes, [:private, :host]),
      seccomp: one_of!(opts, :seccomp, [true, false])
    }
  end

  def check!(other), do: bad!("true, false or a keyword list of settings", other)

  @doc false
  # The spec's `sandbox` key: `default_cd` says the spawn's cd is the VM's directory.
  @spec spec(t | nil, String.t() | nil) :: map | nil
  def spec(nil, _cd), do: nil
  def spec(sandbox, cd), do: Map.put(sandbox, :default_cd, cd == nil)

  defp one_of!(opts, key, [default | _] = values) do
    value = Keyword.get(opts, key, default)

    if value in values,
      do: value,
      else: bad!("#{key}: #{Enum.map_join(values, " or ", &inspect/1)}", value)
  end

  defp read_only!(:host), do: :host

  defp read_only!(list) when is_list(list) do
    unless proper_list?(list),
      do: bad!("read_only: :host or a list of absolute paths and :system", list)

    list
    |> Enum.flat_map(fn
      :system -> @system
      path -> [path]
    end)
    |> then(&paths!(:read_only, &1))
  end

  defp read_only!(other),
    do: bad!("read_only: :host or a list of absolute paths and :system", other)

  defp paths!(key, list) when is_list(list) do
    unless proper_list?(list),
      do: bad!("#{key}: a list of absolute paths", list)

    paths = Enum.map(list, &path!(key, &1))

    if length(paths) > 64,
      do: bad!("#{key}: at most 64 paths in all", list),
      else: Enum.uniq(paths)
  end

  defp paths!(key, other), do: bad!("#{key}: a list of absolute paths", other)

  defp path!(key, path) do
    case Protocol.text(path) do
      {:ok, "/" <> _ = text} -> Path.expand(text)
      _ -> bad!("#{key}: absolute paths (strings starting with /, without NUL bytes)", path)
    end
  end

  defp proper_list?([]), do: true
  defp proper_list?([_ | tail]), do: proper_list?(tail)
  defp proper_list?(_), do: false

  @spec bad!(String.t(), term) :: no_return
  defp bad!(expected, got),
    do: OptionError.raise!(kind: :invalid, option: :sandbox, expected: expected, value: got)
end
