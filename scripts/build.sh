#!/usr/bin/env bash
# Builds the worker: build/worker/shim.mjs + build/index_bg.wasm.
# worker-build would download wasm-bindgen, wasm-opt and esbuild, which fails
# without internet; the *_BIN variables point it at the local copies.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

echo "build: worker-build --release"
# worker-build bundles the glue unminified here: prune-exports.mjs (below)
# edits it, then minifies it with the same esbuild flags worker-build uses.
NO_MINIFY=1 \
WASM_BINDGEN_BIN=wasm-bindgen \
ESBUILD_BIN="$PWD/node_modules/.bin/esbuild" \
WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt" \
  worker-build --release

if [[ ! -f build/worker/shim.mjs ]]; then
  echo "build: build/worker/shim.mjs was not produced" >&2
  exit 1
fi
wasm="$(ls build/*.wasm 2>/dev/null | head -n1 || true)"
if [[ -n "$wasm" ]]; then
  # The wasm-bindgen classes workers-rs and wasm-streams declare and the
  # gateway never uses go from the glue (and from the Worker's exports), and
  # the wasm functions only they called go with them; every step is checked.
  node scripts/prune-exports.mjs "$wasm" build/index.js
  # worker-build keeps the wasm name section (function names in JS stack
  # traces) whatever wasm-opt is told; it is 15% of the module. Panic messages
  # keep their text and source location without it, so it goes
  # (KEEP_WASM_NAMES=1 keeps it, for profiling: bench/profile.mjs). The same
  # pass runs -Oz once more, with a whole-program type flow pass (--gufa)
  # between: about 1% smaller than worker-build's own pass. The producers and
  # target_features sections (tool versions and feature flags, for linkers)
  # go too.
  if [[ "${KEEP_WASM_NAMES:-0}" != 1 ]]; then
    node_modules/.bin/wasm-opt "$wasm" --strip-debug --strip-producers --strip-target-features -Oz --gufa -Oz -o "$wasm.stripped" \
      --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-bulk-memory \
      --enable-multivalue --enable-reference-types --enable-exception-handling
    mv "$wasm.stripped" "$wasm"
    # Short import names in the module and the JS glue alike (wasm-bindgen's
    # are `__wbg_<what>_<16 hex digits>`, in both files): 4.6 KiB gzipped.
    # The script checks every name it renames; profiling builds keep them.
    node scripts/minify-imports.mjs "$wasm" build/index.js
  fi
  raw=$(wc -c <"$wasm")
  gz=$(gzip -9 -c "$wasm" | wc -c)
  echo "build: $wasm $((raw / 1024)) KiB, $((gz / 1024)) KiB gzipped (Free plan limit: 3 MiB compressed)"
fi
