#!/usr/bin/env bash
# Builds Sluice once and lays it out as OTP libraries for Erlang projects that do not use
# Mix: DEST/sluice-VSN, DEST/elixir-VSN and DEST/logger-VSN (the Elixir runtime Sluice
# needs), with the NIF and the helper program in sluice's priv/. Then:
#
#   ERL_LIBS=DEST erl -eval 'application:ensure_all_started(sluice)'
#
# Usage: bash scripts/erlang_lib.sh DEST   (see docs/erlang.md)
set -euo pipefail
dest="${1:?usage: scripts/erlang_lib.sh DEST}"
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

MIX_ENV=prod mix compile >&2
version=$(MIX_ENV=prod mix run --no-start --no-compile -e 'IO.write(Mix.Project.config()[:version])')
mkdir -p "$dest"
rm -rf "$dest/sluice-$version"
mkdir -p "$dest/sluice-$version"
cp -r _build/prod/lib/sluice/ebin "$dest/sluice-$version/"
# priv is a symlink into the project under _build: copy what it points to.
cp -rL _build/prod/lib/sluice/priv "$dest/sluice-$version/"
# doc/chunks/sluice.chunk: h(sluice) in erl (mix/tasks/compile.sluice_erlang_docs.ex).
cp -r _build/prod/lib/sluice/doc "$dest/sluice-$version/"

for app in elixir logger; do
  dir=$(elixir -e "IO.write(:code.lib_dir(:$app))")
  vsn=$(elixir -e "Application.load(:$app); IO.write(Application.spec(:$app, :vsn))")
  rm -rf "$dest/$app-$vsn"
  mkdir -p "$dest/$app-$vsn"
  cp -rL "$dir/ebin" "$dest/$app-$vsn/"
done
echo "$dest"
