#!/usr/bin/env bash
# Idempotent set-up: installs only what is missing, one line per step.
# Everything comes from crates.io and the npm registry:
# the wasm target, worker-build, the wasm-bindgen CLI matching Cargo.lock,
# and node_modules (wrangler, miniflare, esbuild, wasm-opt, openai).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WORKER_BUILD_VERSION=0.8.7

step() { printf 'setup: %-28s %s\n' "$1" "$2"; }

# 1. The wasm32 target.
if rustup target list --installed 2>/dev/null | grep -qx 'wasm32-unknown-unknown'; then
  step "wasm32-unknown-unknown" "installed"
else
  step "wasm32-unknown-unknown" "adding (rustup target add)"
  rustup target add wasm32-unknown-unknown
fi

# 2. worker-build.
have_wb=""
if command -v worker-build >/dev/null 2>&1; then
  have_wb="$(worker-build --version 2>/dev/null | grep -Eo '[0-9]+\.[0-9]+\.[0-9]+' | head -n1 || true)"
fi
if [[ "$have_wb" == "$WORKER_BUILD_VERSION" ]]; then
  step "worker-build" "$have_wb installed"
else
  step "worker-build" "installing $WORKER_BUILD_VERSION (found: ${have_wb:-none}; about 5 min)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION"
fi

# 3. Cargo.lock (the wasm-bindgen CLI must match the crate version in it).
if [[ -f Cargo.lock ]]; then
  step "Cargo.lock" "present"
else
  step "Cargo.lock" "generating (cargo generate-lockfile)"
  cargo generate-lockfile
fi

# 4. wasm-bindgen CLI at the version Cargo.lock resolved.
want_wbg="$(awk '
  /^\[\[package\]\]/ { name = "" }
  /^name = / { gsub(/"/, "", $3); name = $3 }
  /^version = / && name == "wasm-bindgen" { gsub(/"/, "", $3); print $3; exit }
' Cargo.lock)"
if [[ -z "$want_wbg" ]]; then
  echo "setup: Cargo.lock has no wasm-bindgen package: is the worker dependency in Cargo.toml?" >&2
  exit 1
fi
have_wbg=""
if command -v wasm-bindgen >/dev/null 2>&1; then
  have_wbg="$(wasm-bindgen --version 2>/dev/null | grep -Eo '[0-9]+\.[0-9]+\.[0-9]+' | head -n1 || true)"
fi
if [[ "$have_wbg" == "$want_wbg" ]]; then
  step "wasm-bindgen-cli" "$have_wbg installed"
else
  # No --locked: it fails for 0.2.130 (seen on these machines); a plain install works.
  step "wasm-bindgen-cli" "installing $want_wbg (found: ${have_wbg:-none}; about 6 min)"
  cargo install wasm-bindgen-cli --version "$want_wbg"
fi

# 5. node_modules.
if [[ ! -d node_modules || ! -f node_modules/.package-lock.json ]]; then
  step "node_modules" "missing: npm ci"
  npm ci --no-audit --no-fund
elif [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  step "node_modules" "package-lock.json changed: npm ci"
  npm ci --no-audit --no-fund
else
  step "node_modules" "up to date"
fi
for bin in esbuild wasm-opt wrangler; do
  if [[ ! -x node_modules/.bin/$bin ]]; then
    echo "setup: node_modules/.bin/$bin is missing after npm ci" >&2
    exit 1
  fi
done
