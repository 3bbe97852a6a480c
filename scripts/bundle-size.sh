#!/usr/bin/env bash
# The bundle size budget: prints the raw and gzipped (gzip -9) sizes
# of build/index_bg.wasm and build/index.js, and exits non-zero when their
# gzipped total exceeds BUDGET_KB (KiB, default 250). Needs a build first
# (npm run build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

budget_kb="${BUDGET_KB:-250}"
if ! [[ "$budget_kb" =~ ^[0-9]+$ ]]; then
  echo "bundle-size: BUDGET_KB must be a whole number of KiB, not '$budget_kb'" >&2
  exit 2
fi

kib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1024 }'; }

total_raw=0
total_gz=0
for f in build/index_bg.wasm build/index.js; do
  if [[ ! -f "$f" ]]; then
    echo "bundle-size: $f is missing: build the worker first (npm run build)" >&2
    exit 2
  fi
  raw=$(wc -c <"$f")
  gz=$(gzip -9 -c "$f" | wc -c)
  total_raw=$((total_raw + raw))
  total_gz=$((total_gz + gz))
  printf 'bundle-size: %-22s %9d bytes (%7s KiB) raw, %9d bytes (%7s KiB) gzipped\n' \
    "$f" "$raw" "$(kib "$raw")" "$gz" "$(kib "$gz")"
done
printf 'bundle-size: %-22s %9d bytes (%7s KiB) raw, %9d bytes (%7s KiB) gzipped\n' \
  "total" "$total_raw" "$(kib "$total_raw")" "$total_gz" "$(kib "$total_gz")"

budget_bytes=$((budget_kb * 1024))
if ((total_gz > budget_bytes)); then
  echo "bundle-size: FAIL: ${total_gz} bytes gzipped is over the budget of ${budget_kb} KiB (${budget_bytes} bytes) by $((total_gz - budget_bytes)) bytes"
  exit 1
fi
echo "bundle-size: ok: ${total_gz} bytes gzipped is within the budget of ${budget_kb} KiB (${budget_bytes} bytes)"
