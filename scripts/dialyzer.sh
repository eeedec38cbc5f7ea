#!/usr/bin/env bash
# Type-checks Sluice's compiled modules with OTP's own Dialyzer (no hex packages): builds a
# PLT of OTP and Elixir once (cached under _build/), then checks _build/$MIX_ENV/lib/sluice.
set -euo pipefail
cd "$(dirname "$0")/.."
# The library only (test support code is not shipped).
env="${DIALYZER_ENV:-dev}"
# (Named for what it holds: a PLT built before Mix was in it must not be reused.)
plt="_build/sluice_otp_elixir_mix.plt"
elixir_lib=$(elixir -e 'IO.write(:code.lib_dir(:elixir))')
logger_lib=$(elixir -e 'IO.write(:code.lib_dir(:logger))')
# mix sluice.ps is a Mix task.
mix_lib=$(elixir -e 'IO.write(:code.lib_dir(:mix))')
# Dialyzer reads Elixir's debug info through Elixir's own modules.
export ERL_LIBS="$(dirname "$elixir_lib")"

if [ ! -f "$plt" ]; then
  echo "==> building the PLT (once)"
  dialyzer --build_plt --output_plt "$plt.tmp" --apps erts kernel stdlib >/dev/null || true
  dialyzer --add_to_plt --plt "$plt.tmp" -r "$elixir_lib/ebin" "$logger_lib/ebin" "$mix_lib/ebin" >/dev/null || true
  mv "$plt.tmp" "$plt"
fi

dialyzer --no_check_plt --plt "$plt" -Wno_opaque -Wunmatched_returns \
  "_build/$env/lib/sluice/ebin"
