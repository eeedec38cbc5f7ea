#!/usr/bin/env bash
# Runs every check and test of Sluice: formatting, clippy, the unsafe fence, cargo test,
# Dialyzer, mix test, the Erlang suites (EUnit, in a plain erl), and the benchmark suite
# in --quick mode (a smoke test of the suite, never a timing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
export MIX_ENV=test

echo "==> mix format --check-formatted"
mix format --check-formatted
echo "==> cargo fmt --check"
(cd native && cargo fmt --all --check)
echo "==> cargo clippy -- -D warnings"
(cd native && cargo clippy --locked --workspace --all-targets --quiet -- -D warnings)
echo "==> unsafe only at the NIF and syscall boundary"
bash scripts/check_unsafe.sh
echo "==> cargo test"
(cd native && cargo test --locked --workspace --quiet 2>&1)
echo "==> mix compile, dialyzer"
mix compile --warnings-as-errors
MIX_ENV=dev mix compile --warnings-as-errors
echo "==> no module cycles (dependencies point one way, docs/architecture.md)"
cycles=$(mix xref graph --format cycles)
if ! grep -q '^No cycles found' <<<"$cycles"; then
  echo "$cycles"
  exit 1
fi
bash scripts/dialyzer.sh
echo "==> mix test"
mix test --include external_vm
echo "==> the Erlang API, in a plain erl with no Mix (EUnit)"
bash scripts/erlang_test.sh
echo "==> benchmark suite, --quick (a smoke test of the suite, never a timing)"
MIX_ENV=prod mix run bench/run.exs --quick > /dev/null
