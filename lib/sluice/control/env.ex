defmodule Sluice.Control.Env do
  @moduledoc false
  # What a spawn request says about the environment and the working directory, resolved
  # in the calling process at the moment of the spawn, as Port.open does.

  alias Sluice.{Error, Native}
  alias Sluice.Control.EnvServer

  @doc """
  `:default` (no environment options) becomes `:inherit` while the VM's environment still
  equals the one the helper program inherited (nothing to build or send), else the whole
  list, so `System.put_env/2` is seen by the next spawn.
  """
  @spec resolve(:default | [binary], [{charlist, charlist}]) :: :inherit | [binary]
  def resolve(:default, inherited), do: EnvServer.resolve(inherited)
  def resolve(list, _inherited) when is_list(list), do: list

  @doc """
  The program's working directory as an absolute path: the VM's current directory, or
  `cd` resolved against it. Read through the NIF (`getcwd` on the caller's scheduler):
  `:prim_file.get_cwd/0` runs on a dirty I/O scheduler, and every spawn paid the trip
  there and back.
  """
  @spec cwd(String.t() | nil) :: {:ok, String.t()} | {:error, Error.t()}
  def cwd(cd) do
    case Native.cwd() do
      {:ok, dir} ->
        {:ok, if(cd, do: Path.expand(cd, dir), else: dir)}

      {:error, reason} ->
        {:error,
         Error.new(reason, "the VM's current directory is gone (#{reason})", stage: :chdir)}
    end
  end
end
