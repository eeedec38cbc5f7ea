defmodule Mix.Tasks.Compile.SluiceNative do
  @moduledoc """
  Builds Sluice's native code, the NIF library and the helper program, from the Rust
  workspace in `native/` with cargo, and places them in `priv/native/`, where
  `:code.priv_dir(:sluice)` finds them (also inside a `mix release`).

  Cargo runs only when the artifacts are out of date. `priv/native/build.stamp` records
  what they were built from: a SHA-256 of the native sources (every file under `native/`
  but `target/`, `tests/`, `benches/`, `examples/` and hidden files, `.cargo/` excepted:
  the `.rs` files, build scripts, manifests, `Cargo.lock`), the cargo profile and the
  architecture. When it matches and the artifacts are there, nothing runs and cargo need
  not be installed: a `deps/` cached by CI, or a `priv/native/` copied from a machine of
  the same architecture (with its `build.stamp`), compiles without Rust. Delete
  `priv/native/build.stamp` to force a build.

  Before a build it checks, in this order, that the system is Linux and that cargo and
  rustc are at least the `rust-version` of `native/Cargo.toml`; cargo is looked for on
  `PATH`, then in `$CARGO_HOME/bin` (`~/.cargo/bin`), where rustup puts it, and the
  toolchain found there is put first on the build's `PATH`. Cargo's output is shown as it
  runs.

  `SLUICE_CARGO_PROFILE=debug` builds without optimisations (default `release`);
  `CARGO_TARGET_DIR` is honoured.
  """
  use Mix.Task.Compiler
  import Bitwise, only: [&&&: 2]

  @shortdoc "Builds the Sluice NIF and helper program with cargo"
  @artifacts ["libsluice_nif.so", "sluice_helper"]
  @stamp "build.stamp"
  # Directories under native/ that never hold sources of the NIF or the helper program.
  @skip_dirs ["target", "tests", "benches", "examples"]
  @rustup "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"

  @impl true
  def run(_args) do
    root = Path.dirname(Mix.Project.project_file())

    case build(native: Path.join(root, "native"), priv: Path.join([root, "priv", "native"])) do
      :built ->
        # Links priv/ into _build, in case it did not exist when Mix built the structure.
        Mix.Project.build_structure()
        {:ok, []}

      :up_to_date ->
        {:noop, []}
    end
  end

  @doc false
  # Builds `native` into `priv` if needed; returns `:built` or `:up_to_date`, raises
  # `Mix.Error` with what the user should do. Everything it looks at can be given, for
  # tests: `:os` (as `:os.type/0`), `:env` (a map, as `System.get_env/0`: `PATH`, `HOME`,
  # `CARGO_HOME`, `RUSTC`, `CARGO_TARGET_DIR`, `SLUICE_CARGO_PROFILE`), `:arch`.
  @spec build(keyword) :: :built | :up_to_date
  def build(opts) do
    native = Keyword.fetch!(opts, :native)
    priv = Keyword.fetch!(opts, :priv)
    env = Keyword.get_lazy(opts, :env, &System.get_env/0)
    check_platform!(Keyword.get_lazy(opts, :os, &:os.type/0))

    profile = Map.get(env, "SLUICE_CARGO_PROFILE", "release")
    target = Path.expand(Map.get(env, "CARGO_TARGET_DIR", "target"), native)

    stamp = %{
      "sources" => "sha256:" <> sources_hash(native, target),
      "profile" => profile,
      "arch" => Keyword.get_lazy(opts, :arch, &arch/0)
    }

    case staleness(priv, stamp) do
      nil -> :up_to_date
      why -> rebuild(native, priv, target, profile, stamp, env, why)
    end
  end

  defp rebuild(native, priv, target, profile, stamp, env, why) do
    {cargo, path, version} = toolchain!(native, env, priv, why)
    {flags, out_dir} = profile_flags(profile)
    first? = not File.dir?(Path.join(target, out_dir))

    Mix.shell().info(
      "==> sluice: building the native helper and NIF with cargo #{version} (#{profile}" <>
        if(first?, do: ", first build takes about a minute)", else: "): #{why}")
    )

    color = if IO.ANSI.enabled?() and not Map.has_key?(env, "CARGO_TERM_COLOR"), do: "always"
    color_flags = if color, do: ["--color", color], else: []

    args =
      ["build", "--locked", "-p", "sluice_nif", "-p", "sluice_helper"] ++ flags ++ color_flags

    case stream(cargo, args, native, [{"PATH", path}]) do
      0 ->
        install(Path.join(target, out_dir), priv, stamp)
        :built

      status ->
        Mix.raise(
          "cargo build failed (exit status #{status}), its output is above. " <>
            "The command was, in #{native}: cargo #{Enum.join(args, " ")}"
        )
    end
  end

  defp profile_flags("release"), do: {["--release"], "release"}
  defp profile_flags(dev) when dev in ["debug", "dev"], do: {[], "debug"}
  defp profile_flags(other), do: {["--profile", other], other}

  ## Platform

  defp check_platform!({:unix, :linux}), do: :ok

  defp check_platform!(os) do
    Mix.raise("""
    Sluice runs on Linux only (kernel >= 5.3, for pidfd; cgroup v2 optional), and this is \
    #{os_name(os)}.
    Its helper program is built on Linux system calls (signalfd, pidfd, a child subreaper, \
    cgroup v2) that #{os_name(os)} does not have. Build and run your application in a Linux \
    virtual machine or container (Docker, Podman, WSL 2, ...).\
    """)
  end

  defp os_name({:unix, :darwin}), do: "macOS"
  defp os_name({:win32, _}), do: "Windows"
  defp os_name({:unix, :freebsd}), do: "FreeBSD"
  defp os_name({:unix, :openbsd}), do: "OpenBSD"
  defp os_name({:unix, :netbsd}), do: "NetBSD"
  defp os_name({family, name}), do: "#{name} (#{family})"

  defp arch do
    :erlang.system_info(:system_architecture) |> to_string() |> String.split("-") |> hd()
  end

  ## Whether priv/native is up to date

  # nil when the artifacts in `priv` were built from `stamp`, else why not.
  defp staleness(priv, stamp) do
    missing = Enum.reject(@artifacts, &File.regular?(Path.join(priv, &1)))

    case read_stamp(priv) do
      ^stamp when missing == [] ->
        nil

      ^stamp ->
        "#{Enum.join(missing, " and ")} missing from #{priv}"

      nil when missing == @artifacts ->
        "#{priv} is not built yet"

      nil ->
        "#{priv} has no #{@stamp} telling what it was built from"

      old ->
        cond do
          old["sources"] != stamp["sources"] ->
            "the native sources changed since #{priv} was built"

          old["profile"] != stamp["profile"] ->
            "#{priv} holds a #{old["profile"]} build"

          true ->
            "#{priv} was built for #{old["arch"]}"
        end
    end
  end

  defp read_stamp(priv) do
    case File.read(Path.join(priv, @stamp)) do
      {:ok, text} ->
        for line <- String.split(text, "\n"),
            not String.starts_with?(line, "#"),
            [key, value] <- [String.split(line, " ", parts: 2)],
            into: %{},
            do: {key, value}

      {:error, _} ->
        nil
    end
  end

  defp write_stamp(priv, stamp) do
    lines = for key <- ["sources", "profile", "arch"], do: "#{key} #{stamp[key]}\n"
    header = "# What mix compile.sluice_native built the files here from (see its @moduledoc).\n"
    write_atomically(Path.join(priv, @stamp), [header | lines])
  end

  @doc false
  # The SHA-256 (hex) of the native sources under `native`: relative paths, sizes and
  # contents, in path order. `target` (cargo's output) is never walked.
  @spec sources_hash(Path.t(), Path.t()) :: String.t()
  def sources_hash(native, target \\ nil) do
    target = target || Path.join(native, "target")

    native
    |> source_files(target, "")
    |> Enum.sort()
    |> Enum.reduce(:crypto.hash_init(:sha256), fn rel, acc ->
      content = File.read!(Path.join(native, rel))
      :crypto.hash_update(acc, [rel, 0, Integer.to_string(byte_size(content)), 0, content])
    end)
    |> :crypto.hash_final()
    |> Base.encode16(case: :lower)
  end

  defp source_files(dir, target, rel) do
    for name <- File.ls!(dir), source_name?(name, rel), reduce: [] do
      acc ->
        path = Path.join(dir, name)
        rel_path = if rel == "", do: name, else: rel <> "/" <> name

        cond do
          File.dir?(path) and name not in @skip_dirs and path != target ->
            source_files(path, target, rel_path) ++ acc

          File.regular?(path) ->
            [rel_path | acc]

          true ->
            acc
        end
    end
  end

  # Hidden files and editor backups are not sources; cargo's config (`.cargo/`) is.
  defp source_name?(".cargo", ""), do: true
  defp source_name?("." <> _, _rel), do: false
  defp source_name?(name, _rel), do: not String.ends_with?(name, "~")

  ## The Rust toolchain

  # The cargo to build with, the PATH to give it and its version, or a Mix.Error saying
  # what to install.
  defp toolchain!(native, env, priv, why) do
    minimum = rust_version(native)
    path = Map.get(env, "PATH", "")
    home_bin = cargo_home_bin(env)

    found =
      [
        {find_executable("cargo", path), path},
        {find_executable("cargo", home_bin), home_bin <> ":" <> path}
      ]
      |> Enum.reject(&match?({nil, _}, &1))
      |> Enum.uniq_by(fn {cargo, _} -> cargo end)
      |> Enum.map(fn {cargo, path} -> {cargo, path, version_of(cargo, native, path)} end)

    case Enum.find(found, fn {_, _, version} -> new_enough?(version, minimum) end) do
      nil when found == [] ->
        Mix.raise(no_cargo(priv, why, minimum, home_bin))

      nil ->
        Mix.raise(too_old(found, minimum))

      {cargo, path, {:ok, version}} ->
        check_rustc!(cargo, native, env, path, minimum)
        {cargo, path, version}
    end
  end

  defp check_rustc!(cargo, native, env, path, minimum) do
    rustc = Map.get(env, "RUSTC") || find_executable("rustc", path)

    cond do
      rustc == nil ->
        Mix.raise("""
        Found #{cargo} but no rustc beside it (PATH: #{path}).
        Sluice needs Rust >= #{minimum}, cargo and rustc: install or repair it with rustup \
        (https://rustup.rs): #{@rustup}\
        """)

      not new_enough?(version = version_of(rustc, native, path), minimum) ->
        Mix.raise(too_old([{rustc, path, version}], minimum))

      true ->
        :ok
    end
  end

  defp no_cargo(priv, why, minimum, home_bin) do
    situation =
      if why == "#{priv} is not built yet" do
        "cargo not found (on PATH, nor in #{home_bin})"
      else
        "Sluice's NIF and helper program need a rebuild (#{why}), and cargo is not found " <>
          "(on PATH, nor in #{home_bin})"
      end

    """
    #{situation}.
    Sluice builds its NIF and helper program with Rust >= #{minimum}. Install it with rustup \
    (https://rustup.rs):

        #{@rustup}

    or copy a priv/native/ built for this architecture from the same Sluice sources, \
    build.stamp included.\
    """
  end

  defp too_old(found, minimum) do
    lines =
      Enum.map(found, fn
        {exe, _path, {:ok, version}} ->
          "    #{Path.basename(exe)} #{version} (#{exe})"

        {exe, _path, {:error, output}} ->
          "    #{exe}, which did not tell its version: #{String.trim(output)}"
      end)

    """
    Sluice needs Rust >= #{minimum} to build its NIF and helper program (rust-version in \
    its native/Cargo.toml), and found:
    #{Enum.join(lines, "\n")}
    Install a current Rust with rustup (https://rustup.rs), or update it with \
    `rustup update stable`; Linux distributions' cargo packages are often older:

        #{@rustup}

    mix compile also finds cargo in ~/.cargo/bin when it is not on PATH.\
    """
  end

  # native/Cargo.toml's `rust-version` (in [workspace.package]).
  defp rust_version(native) do
    text = File.read!(Path.join(native, "Cargo.toml"))

    case Regex.run(~r/^\s*rust-version\s*=\s*"([0-9.]+)"/m, text) do
      [_, version] -> version
      nil -> nil
    end
  end

  defp version_of(exe, native, path) do
    case System.cmd(exe, ["--version"], cd: native, env: [{"PATH", path}], stderr_to_stdout: true) do
      {out, 0} ->
        case Regex.run(~r/\b(\d+\.\d+(\.\d+)?)/, out) do
          [_, version | _] -> {:ok, version}
          nil -> {:error, out}
        end

      {out, _} ->
        {:error, out}
    end
  rescue
    e in ErlangError -> {:error, Exception.message(e)}
  end

  defp new_enough?({:ok, _}, nil), do: true
  defp new_enough?({:ok, version}, minimum), do: parse(version) >= parse(minimum)
  defp new_enough?({:error, _}, _), do: false

  defp parse(version) do
    version |> String.split(".") |> Enum.map(&String.to_integer/1) |> pad()
  end

  defp pad(parts) when length(parts) < 3, do: pad(parts ++ [0])
  defp pad(parts), do: parts

  defp cargo_home_bin(env) do
    case env do
      %{"CARGO_HOME" => home} when home != "" -> Path.join(home, "bin")
      %{"HOME" => home} when home != "" -> Path.join([home, ".cargo", "bin"])
      _ -> Path.expand("~/.cargo/bin")
    end
  end

  # System.find_executable/1, in a given PATH rather than the VM's.
  defp find_executable(name, path) do
    path
    |> String.split(":", trim: true)
    |> Enum.map(&Path.join(&1, name))
    |> Enum.find(fn file ->
      match?(
        {:ok, %File.Stat{type: :regular, mode: mode}} when (mode &&& 0o111) != 0,
        File.stat(file)
      )
    end)
  end

  ## Running cargo, installing its artifacts

  # Runs `cmd`, each line of its output (stdout and stderr) shown as it comes; returns its
  # exit status.
  defp stream(cmd, args, cd, env) do
    port =
      Port.open({:spawn_executable, cmd}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        :hide,
        {:line, 65_536},
        args: args,
        cd: cd,
        env: for({k, v} <- env, do: {String.to_charlist(k), String.to_charlist(v)})
      ])

    collect(port, "")
  end

  defp collect(port, partial) do
    receive do
      {^port, {:data, {:eol, line}}} ->
        Mix.shell().info(partial <> line)
        collect(port, "")

      {^port, {:data, {:noeol, part}}} ->
        collect(port, partial <> part)

      {^port, {:exit_status, status}} ->
        if partial != "", do: Mix.shell().info(partial)
        status
    end
  end

  # Each file is copied to a temporary one and renamed, so a running VM that has the old
  # library mapped never sees a half-written file; the stamp comes last.
  defp install(from_dir, priv, stamp) do
    File.mkdir_p!(priv)

    for name <- @artifacts do
      to = Path.join(priv, name)
      tmp = to <> ".tmp"
      File.cp!(Path.join(from_dir, name), tmp)
      File.rename!(tmp, to)
    end

    write_stamp(priv, stamp)
  end

  defp write_atomically(file, content) do
    tmp = file <> ".tmp"
    File.write!(tmp, content)
    File.rename!(tmp, file)
  end
end
