defmodule Mix.Tasks.Compile.SluiceNative do
  @moduledoc """
  Builds Sluice's Rust workspace (`native/`) with cargo in the release profile and places the
  NIF library and the helper binary in `priv/native/`, where `:code.priv_dir(:sluice)` finds
  them (also inside a `mix release`).

  Cargo's own change tracking decides what to rebuild, so a no-op build costs a fraction of
  a second. Set `SLUICE_CARGO_PROFILE=debug` to build without optimisations.
  """
  use Mix.Task.Compiler

  @shortdoc "Builds the Sluice NIF and helper with cargo"
  @artifacts [{"libsluice_nif.so", "libsluice_nif.so"}, {"sluice_helper", "sluice_helper"}]

  @impl true
  def run(_args) do
    root = Path.dirname(Mix.Project.project_file())
    native = Path.join(root, "native")
    profile = System.get_env("SLUICE_CARGO_PROFILE", "release")

    cargo =
      System.find_executable("cargo") || Path.expand("~/.cargo/bin/cargo") |> existing() ||
        Mix.raise("cargo not found: install Rust (https://rustup.rs) to build Sluice")

    args =
      ["build", "--quiet", "--locked", "-p", "sluice_nif", "-p", "sluice_helper"] ++
        if(profile == "release", do: ["--release"], else: [])

    case System.cmd(cargo, args, cd: native, stderr_to_stdout: true) do
      {out, 0} ->
        IO.write(out)
        install(Path.join([native, "target", profile]), Path.join([root, "priv", "native"]))
        # Links priv/ into _build, in case it did not exist when Mix built the structure.
        Mix.Project.build_structure()
        {:ok, []}

      {out, status} ->
        IO.write(out)
        Mix.raise("cargo build failed with status #{status}")
    end
  end

  defp existing(path), do: if(File.exists?(path), do: path)

  # Copy through a temporary file and rename, so a running VM that has the old library
  # mapped never sees a half-written file.
  defp install(from_dir, to_dir) do
    File.mkdir_p!(to_dir)

    for {src, dst} <- @artifacts do
      from = Path.join(from_dir, src)
      to = Path.join(to_dir, dst)

      unless same_file?(from, to) do
        tmp = to <> ".tmp"
        File.cp!(from, tmp)
        File.rename!(tmp, to)
      end
    end
  end

  defp same_file?(a, b) do
    case {File.stat(a), File.stat(b)} do
      {{:ok, sa}, {:ok, sb}} -> sa.size == sb.size and sa.mtime <= sb.mtime
      _ -> false
    end
  end
end
