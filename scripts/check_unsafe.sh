#!/usr/bin/env bash
# `unsafe` Rust only at the NIF and syscall boundary: fails if a file outside the fenced
# list uses it, or if an unsafe block in a fenced file has no `// SAFETY:` line above it.
set -euo pipefail
cd "$(dirname "$0")/../native"
fenced='^(sluice_bench/src/main\.rs|sluice_nif/src/(fd_resource|channel|io|terminal)\.rs|sluice_helper/src/(sys|seqpacket|spawn/child|spawn/clone|spawn/sandbox/(init|mounts)|signals|socket)\.rs)$'
status=0
for f in $(grep -rlE '\bunsafe\b' --include='*.rs' sluice_*/src); do
  if ! [[ "$f" =~ $fenced ]]; then
    echo "unsafe outside the fence: $f" >&2
    status=1
  fi
  # Every `unsafe {` / `unsafe extern` / `unsafe fn` needs a SAFETY comment within 3 lines above.
  awk -v f="$f" '
    { line[NR] = $0 }
    /unsafe[ ]*\{/ {
      ok = 0
      for (i = NR; i >= NR - 4 && i > 0; i--) if (line[i] ~ /SAFETY:/) ok = 1
      if (!ok) { printf "%s:%d: unsafe block without a // SAFETY: line\n", f, NR; bad = 1 }
    }
    END { exit bad }
  ' "$f" >&2 || status=1
done
exit $status
