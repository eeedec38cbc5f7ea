#!/usr/bin/env bash
# Installs what Sluice needs to build on Debian 12 (run as root): Erlang/Elixir from Debian's
# packages when mix is missing (edoc builds the Erlang module's docs chunk), and Rust with
# rustup when there is neither rustup nor a cargo as recent as native/Cargo.toml's
# rust-version (with clippy and rustfmt).
set -euo pipefail

[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v mix >/dev/null 2>&1 || ! [ -d /usr/lib/erlang/usr/include ] ||
  ! command -v dialyzer >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1 ||
  ! ls -d /usr/lib/erlang/lib/eunit-*/ebin >/dev/null 2>&1 ||
  ! ls -d /usr/lib/erlang/lib/edoc-*/ebin >/dev/null 2>&1; then
  echo "==> installing Erlang, Elixir, EUnit and Dialyzer from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq elixir erlang-dev erlang-xmerl erlang-dialyzer erlang-eunit erlang-edoc python3 >/dev/null
fi

# Programs the tests of the docs run: rebar3 (docs/erlang.md's rebar3 project) and ffmpeg
# (the README's examples, test/sluice/docs_examples_test.exs); ImageMagick, curl and
# procps (test/sluice/sandbox_test.exs) and bubblewrap (bench section 14).
missing=()
for tool in rebar3 ffmpeg convert:imagemagick curl ps:procps bwrap:bubblewrap; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Rust: at least native/Cargo.toml's rust-version, with clippy and rustfmt (scripts/test.sh).
# Debian's own cargo package is too old (1.65): without rustup, install it.
rust_min=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$(dirname "$0")/../native/Cargo.toml")
cargo_version() { { cargo --version 2>/dev/null || true; } | sed -n 's/^cargo \([0-9.]*\).*/\1/p'; }
new_enough() { [ -n "$1" ] && [ "$(printf '%s\n%s\n' "$rust_min" "$1" | sort -V | head -1)" = "$rust_min" ]; }
if ! new_enough "$(cargo_version)"; then
  found=$(cargo_version)
  if command -v rustup >/dev/null 2>&1; then
    echo "Sluice needs Rust >= $rust_min, found ${found:-no cargo}: run \`rustup update stable\`" >&2
    exit 1
  fi
  echo "==> installing Rust (stable, with clippy and rustfmt) with rustup: found ${found:-no cargo}, Sluice needs >= $rust_min"
  if ! command -v curl >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq curl ca-certificates >/dev/null
  fi
  if ! curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
    sh -s -- -y --profile minimal --component clippy,rustfmt >/dev/null; then
    echo "installing Rust with rustup failed: install Rust >= $rust_min (https://rustup.rs)" >&2
    exit 1
  fi
  export PATH="$HOME/.cargo/bin:$PATH"
  new_enough "$(cargo_version)" || { echo "rustup did not give Rust >= $rust_min" >&2; exit 1; }
fi
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
  if command -v rustup >/dev/null 2>&1; then
    rustup component add clippy rustfmt
  else
    echo "cargo clippy and cargo fmt are needed (scripts/test.sh): install Rust with rustup" >&2
    exit 1
  fi
fi

# Elixir's own build tools, without hex.
mix local.rebar --force --if-missing >/dev/null 2>&1 || true
