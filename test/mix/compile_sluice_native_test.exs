defmodule Mix.Tasks.Compile.SluiceNativeTest do
  # The Mix compiler step that builds native/, run against a small stand-in workspace and
  # fake cargo and rustc scripts (never the real crates): what a user sees with no Rust,
  # an old Rust, a failing build, a fresh or stale priv/native, and on another system.
  # Mix.shell is global: not async.
  use ExUnit.Case, async: false

  alias Mix.Tasks.Compile.SluiceNative

  setup do
    dir = Path.join(System.tmp_dir!(), "sluice-compile-#{System.unique_integer([:positive])}")
    native = Path.join(dir, "native")
    File.mkdir_p!(Path.join(native, "sluice_nif/src"))
    File.mkdir_p!(Path.join(native, "sluice_nif/tests"))

    File.write!(Path.join(native, "Cargo.toml"), """
    [workspace]
    members = ["sluice_nif"]

    [workspace.package]
    edition = "2021"
    rust-version = "1.91"
    """)

    File.write!(Path.join(native, "Cargo.lock"), "version = 4\n")
    File.write!(Path.join(native, "sluice_nif/src/lib.rs"), "pub fn f() {}\n")
    File.write!(Path.join(native, "sluice_nif/tests/t.rs"), "#[test] fn t() {}\n")

    for sub <- ["bin", "home", "empty"], do: File.mkdir_p!(Path.join(dir, sub))
    shell = Mix.shell()
    Mix.shell(Mix.Shell.Process)

    on_exit(fn ->
      Mix.shell(shell)
      File.rm_rf!(dir)
    end)

    %{
      dir: dir,
      native: native,
      priv: Path.join(dir, "priv/native"),
      log: Path.join(dir, "calls.log"),
      bin: Path.join(dir, "bin")
    }
  end

  # A cargo that logs its arguments, tells `version`, and for a build needs rustc on its
  # PATH (as the real one runs `rustc -vV`), then prints a line per crate and writes the
  # two artifacts, or fails with `fail:`'s message.
  defp fake_cargo(dir, ctx, opts \\ []) do
    version = Keyword.get(opts, :version, "1.95.0")

    build =
      case Keyword.get(opts, :fail) do
        nil ->
          """
          case " $* " in *" --release "*) out=target/release ;; *) out=target/debug ;; esac
          echo "   Compiling sluice_protocol v0.1.0" >&2
          echo "   Compiling sluice_nif v0.1.0" >&2
          /bin/mkdir -p "$out"
          echo nif > "$out/libsluice_nif.so"
          echo helper > "$out/sluice_helper"
          echo "    Finished \\`release\\` profile [optimized] target(s) in 0.01s" >&2
          """

        message ->
          "echo '#{message}' >&2\necho 'error: could not compile `sluice_nif`' >&2\nexit 101\n"
      end

    script(Path.join(dir, "cargo"), """
    #!/bin/sh
    echo "$*" >> '#{ctx.log}'
    if [ "$1" = --version ]; then echo "cargo #{version} (f2d3ce0bd 2026-03-21)"; exit 0; fi
    if ! command -v rustc >/dev/null 2>&1; then
      echo 'error: could not execute process `rustc -vV` (never executed)' >&2; exit 101
    fi
    #{build}
    """)

    script(Path.join(dir, "rustc"), """
    #!/bin/sh
    echo "rustc #{Keyword.get(opts, :rustc, version)} (254b59607 2026-03-20)"
    """)
  end

  defp script(file, text) do
    File.mkdir_p!(Path.dirname(file))
    File.write!(file, text)
    File.chmod!(file, 0o755)
  end

  defp build(ctx, env \\ %{}, opts \\ []) do
    defaults = %{
      "PATH" => ctx.bin,
      "HOME" => Path.join(ctx.dir, "home"),
      "CARGO_TERM_COLOR" => "never"
    }

    env = Map.merge(defaults, env)

    # The options given come first, and win.
    SluiceNative.build(
      opts ++ [native: ctx.native, priv: ctx.priv, env: env, os: {:unix, :linux}, arch: "x86_64"]
    )
  end

  defp calls(ctx) do
    case File.read(ctx.log) do
      {:ok, text} -> String.split(text, "\n", trim: true)
      {:error, :enoent} -> []
    end
  end

  defp shell_lines do
    receive do
      {:mix_shell, :info, [line]} -> [line | shell_lines()]
    after
      0 -> []
    end
  end

  test "a first build says what it builds and why it takes a while, streams cargo's lines, installs and stamps",
       ctx do
    fake_cargo(ctx.bin, ctx)

    assert SluiceNative.build(
             [native: ctx.native, priv: ctx.priv, os: {:unix, :linux}] ++
               [env: %{"PATH" => ctx.bin, "HOME" => ctx.dir, "CARGO_TERM_COLOR" => "never"}]
           ) == :built

    assert [header | cargo_lines] = shell_lines()

    assert header ==
             "==> sluice: building the native helper and NIF with cargo 1.95.0 " <>
               "(release, first build takes about a minute)"

    assert cargo_lines == [
             "   Compiling sluice_protocol v0.1.0",
             "   Compiling sluice_nif v0.1.0",
             "    Finished `release` profile [optimized] target(s) in 0.01s"
           ]

    assert ["--version", build] = calls(ctx)
    assert build =~ ~r/^build --locked -p sluice_nif -p sluice_helper --release/
    assert File.read!(Path.join(ctx.priv, "libsluice_nif.so")) == "nif\n"
    assert File.read!(Path.join(ctx.priv, "sluice_helper")) == "helper\n"
    stamp = File.read!(Path.join(ctx.priv, "build.stamp"))
    assert stamp =~ "sources sha256:#{SluiceNative.sources_hash(ctx.native)}\n"
    assert stamp =~ "profile release\n"
  end

  test "up to date: no cargo call at all, and no cargo needed", ctx do
    fake_cargo(ctx.bin, ctx)
    assert build(ctx) == :built
    File.rm!(ctx.log)
    _ = shell_lines()

    assert build(ctx) == :up_to_date
    # A machine without Rust, with the artifacts vendored or cached.
    assert build(ctx, %{"PATH" => Path.join(ctx.dir, "empty")}) == :up_to_date
    # Files that are no sources: tests, cargo's output, hidden files.
    File.write!(Path.join(ctx.native, "sluice_nif/tests/t.rs"), "// changed\n")
    File.write!(Path.join(ctx.native, "sluice_nif/src/.lib.rs.swp"), "x")
    File.mkdir_p!(Path.join(ctx.native, "target/release"))
    File.write!(Path.join(ctx.native, "target/release/junk"), "x")
    assert build(ctx) == :up_to_date
    assert calls(ctx) == []
    assert shell_lines() == []
  end

  test "a changed source, manifest or lockfile rebuilds", ctx do
    fake_cargo(ctx.bin, ctx)
    assert build(ctx) == :built

    for file <- ["sluice_nif/src/lib.rs", "Cargo.lock", "Cargo.toml", "sluice_nif/build.rs"] do
      File.rm!(ctx.log)
      _ = shell_lines()
      path = Path.join(ctx.native, file)
      comment = if String.ends_with?(file, ".rs"), do: "//", else: "#"
      File.write!(path, "#{comment} changed\n", [:append])
      assert build(ctx) == :built, file
      assert [_version, "build " <> _] = calls(ctx)

      assert hd(shell_lines()) =~
               ~r/cargo 1.95.0 \(release\): the native sources changed since .* was built$/
    end
  end

  test "artifacts from another build are rebuilt when cargo exists, a clear error when not",
       ctx do
    File.mkdir_p!(ctx.priv)
    File.write!(Path.join(ctx.priv, "libsluice_nif.so"), "old")
    File.write!(Path.join(ctx.priv, "sluice_helper"), "old")
    File.write!(Path.join(ctx.priv, "build.stamp"), "sources sha256:0123\nprofile release\n")

    message =
      assert_raise Mix.Error, fn ->
        build(ctx, %{"PATH" => Path.join(ctx.dir, "empty")})
      end

    assert message.message =~
             "Sluice's NIF and helper program need a rebuild (the native sources changed " <>
               "since #{ctx.priv} was built), and cargo is not found (on PATH, nor in "

    assert message.message =~ "Rust >= 1.91"
    assert message.message =~ "https://sh.rustup.rs"

    fake_cargo(ctx.bin, ctx)
    assert build(ctx) == :built
    assert File.read!(Path.join(ctx.priv, "sluice_helper")) == "helper\n"

    # Another profile, another architecture, a missing artifact: rebuilt too.
    assert build(ctx, %{"SLUICE_CARGO_PROFILE" => "debug"}) == :built
    assert List.last(calls(ctx)) == "build --locked -p sluice_nif -p sluice_helper"
    assert build(ctx, %{}, arch: "aarch64") == :built
    File.rm!(Path.join(ctx.priv, "sluice_helper"))
    assert build(ctx, %{}, arch: "aarch64") == :built
    assert build(ctx, %{}, arch: "aarch64") == :up_to_date
  end

  test "no cargo at all: one message, with how to get Rust", ctx do
    error = assert_raise Mix.Error, fn -> build(ctx, %{"PATH" => Path.join(ctx.dir, "empty")}) end

    assert error.message ==
             """
             cargo not found (on PATH, nor in #{ctx.dir}/home/.cargo/bin).
             Sluice builds its NIF and helper program with Rust >= 1.91. Install it with rustup (https://rustup.rs):

                 curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh

             or copy a priv/native/ built for this architecture from the same Sluice sources, build.stamp included.\
             """

    assert shell_lines() == []
  end

  test "an old cargo: the version found, the version needed, rustup; before any build", ctx do
    fake_cargo(ctx.bin, ctx, version: "1.65.0")
    error = assert_raise Mix.Error, fn -> build(ctx) end

    assert error.message =~
             "Sluice needs Rust >= 1.91 to build its NIF and helper program " <>
               "(rust-version in its native/Cargo.toml), and found:\n" <>
               "    cargo 1.65.0 (#{ctx.bin}/cargo)\n"

    assert error.message =~ "rustup update stable"
    assert calls(ctx) == ["--version"]
    assert shell_lines() == []

    # An old rustc beside a new cargo is named too.
    fake_cargo(ctx.bin, ctx, rustc: "1.90.0")
    error = assert_raise Mix.Error, fn -> build(ctx) end
    assert error.message =~ "found:\n    rustc 1.90.0 (#{ctx.bin}/rustc)\n"
  end

  test "only ~/.cargo/bin (rustup's place, not on PATH): its whole toolchain is used", ctx do
    home_bin = Path.join(ctx.dir, "home/.cargo/bin")
    fake_cargo(home_bin, ctx)
    # PATH has neither cargo nor rustc: without ~/.cargo/bin first on the build's PATH,
    # cargo would fail to run rustc.
    assert build(ctx, %{"PATH" => Path.join(ctx.dir, "empty")}) == :built
    assert ["--version", "build " <> _] = calls(ctx)

    # CARGO_HOME is where rustup put it when set.
    File.rm_rf!(ctx.priv)
    cargo_home = Path.join(ctx.dir, "cargo_home")
    File.rename!(Path.join(ctx.dir, "home/.cargo"), cargo_home)
    assert build(ctx, %{"CARGO_HOME" => cargo_home, "PATH" => "/nonexistent"}) == :built
  end

  test "an old cargo on PATH and a current one in ~/.cargo/bin: the current one", ctx do
    fake_cargo(ctx.bin, ctx, version: "1.65.0")
    fake_cargo(Path.join(ctx.dir, "home/.cargo/bin"), ctx)
    assert build(ctx) == :built
    assert hd(shell_lines()) =~ "with cargo 1.95.0"
  end

  test "a failing build shows cargo's whole error as it comes, then says it failed", ctx do
    fake_cargo(ctx.bin, ctx, fail: "error[E0425]: cannot find value `x` in this scope")
    error = assert_raise Mix.Error, fn -> build(ctx) end
    assert error.message =~ ~r/^cargo build failed \(exit status 101\), its output is above/
    assert error.message =~ "cargo build --locked -p sluice_nif -p sluice_helper --release"

    assert [_header, "error[E0425]: cannot find value `x` in this scope", "error: could not" <> _] =
             shell_lines()

    refute File.exists?(ctx.priv)
  end

  test "on anything but Linux: one message naming what Sluice needs, no cargo call", ctx do
    fake_cargo(ctx.bin, ctx)

    for {os, name} <- [{{:unix, :darwin}, "macOS"}, {{:win32, :nt}, "Windows"}] do
      error = assert_raise Mix.Error, fn -> build(ctx, %{}, os: os) end

      assert error.message =~
               "Sluice runs on Linux only (kernel >= 5.3, for pidfd; cgroup v2 optional), " <>
                 "and this is #{name}."
    end

    assert calls(ctx) == []
  end

  test "the real workspace's hash skips target/ (thousands of files): fast on every compile" do
    native = Path.expand("../../native", __DIR__)
    {micros, hash} = :timer.tc(fn -> SluiceNative.sources_hash(native) end)
    assert hash =~ ~r/^[0-9a-f]{64}$/
    assert micros < 1_000_000
  end
end
