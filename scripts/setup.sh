#!/usr/bin/env bash
# Installs what Sluice needs to build on Debian 12 (run as root): Erlang/Elixir from Debian's
# packages when mix is missing (edoc builds the Erlang module's docs chunk), and checks for a
# Rust toolchain with clippy and rustfmt.
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
# (the README's examples, test/sluice/docs_examples_test.exs).
missing=()
for tool in rebar3 ffmpeg; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: Sluice needs Rust >= 1.91 (rustup), with clippy and rustfmt" >&2
  exit 1
fi

# Elixir's own build tools, without hex.
mix local.rebar --force --if-missing >/dev/null 2>&1 || true
