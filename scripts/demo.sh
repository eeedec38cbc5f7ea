#!/usr/bin/env bash
# Builds Sluice and runs the demo in examples/ on real programs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
mix run examples/demo.exs
