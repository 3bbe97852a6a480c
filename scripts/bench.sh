#!/usr/bin/env bash
# The benchmark: `npm run bench`. Sets up whatever is missing, builds
# the release worker (scripts/build.sh) and the Rust pass-through
# (bench/passthrough-rs), installs the load generator (wrk) and the SVG to PNG
# converter (rsvg-convert) from Debian if missing, then runs bench/run.mjs:
# everything on 127.0.0.1. Results: bench/results/latest.{json,md,svg,png}.
#
#   BENCH_SKIP_BUILD=1         use build/ as it is (no scripts/build.sh)
#   BENCH_RUST_PASSTHROUGH=0   leave out the Rust pass-through (saves its ~1 min build)
#   BENCH_DURATION=5 BENCH_WARMUP=2 BENCH_CONNECTIONS=1,16,64 BENCH_TTFB_N=150
#   BENCH_LOADGEN=wrk|autocannon  BENCH_ONLY=direct,pt-js,switchyard,...
#   BENCH_LONG=0               skip the long streams (1,000 events: back to back,
#                              paced 1 ms, Anthropic upstream; pt-js, pt-rs, switchyard)
#   BENCH_LONG_STREAMS=20 BENCH_LONG_EVENTS=1000 BENCH_LONG_PACE_MS=1
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf 'bench: %-24s %s\n' "$1" "$2"; }
mkdir -p bench/results/tmp

# Processes bench/run.mjs started (the fake upstream, workerd, wrk) are listed
# in bench/results/tmp/pids while they run; run.mjs ends them itself, and this
# ends any that survive it (a crash, a kill -9), by id, after checking the id
# still names one of them.
cleanup() {
  local f=bench/results/tmp/pids pid cmd
  [[ -f "$f" ]] || return 0
  while read -r pid; do
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    case "$cmd" in
      *workerd*|*bench/upstream.mjs*|wrk*|*autocannon*)
        step "cleanup" "ending $pid (${cmd:0:60})"
        kill "$pid" 2>/dev/null || true ;;
    esac
  done <"$f"
  rm -f "$f"
}
trap cleanup EXIT

apt_install() { # apt_install PACKAGE: install from Debian, updating the lists if needed
  local pkg="$1" sudo=""
  [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "$pkg" >/dev/null 2>&1 && return 0
  $sudo apt-get update -q >/dev/null 2>&1 || true
  $sudo apt-get install -y -q "$pkg" >/dev/null 2>&1
}

# 1. Toolchain, npm packages and the release build.
if [[ "${BENCH_SKIP_BUILD:-0}" == 1 ]]; then
  bash scripts/setup.sh
  step "build" "skipped (BENCH_SKIP_BUILD=1)"
  [[ -f build/worker/shim.mjs ]] || { echo "bench: build/worker/shim.mjs is missing" >&2; exit 1; }
else
  bash scripts/build.sh
fi

# 2. The load generator: wrk from Debian, else autocannon from npm (npx).
loadgen="${BENCH_LOADGEN:-}"
if [[ -z "$loadgen" ]]; then
  if command -v wrk >/dev/null 2>&1; then
    step "wrk" "installed"
    loadgen=wrk
  else
    step "wrk" "installing (apt-get install wrk)"
    if apt_install wrk && command -v wrk >/dev/null 2>&1; then
      loadgen=wrk
    else
      step "wrk" "could not be installed: falling back to autocannon (npx)"
      loadgen=autocannon
    fi
  fi
fi
export BENCH_LOADGEN="$loadgen"

# 3. rsvg-convert for the PNG chart (the SVG is written either way).
if command -v rsvg-convert >/dev/null 2>&1; then
  step "rsvg-convert" "installed"
else
  step "rsvg-convert" "installing (apt-get install librsvg2-bin)"
  apt_install librsvg2-bin || step "rsvg-convert" "could not be installed: the chart stays SVG only"
fi

# 4. The Rust pass-through worker (its own crate, target and build dirs).
if [[ "${BENCH_RUST_PASSTHROUGH:-1}" == 0 ]]; then
  step "rust pass-through" "skipped (BENCH_RUST_PASSTHROUGH=0)"
else
  pt=bench/passthrough-rs
  if [[ -f $pt/build/worker/shim.mjs && -f $pt/build/index_bg.wasm \
        && ! $pt/src/lib.rs -nt $pt/build/index_bg.wasm && ! $pt/Cargo.toml -nt $pt/build/index_bg.wasm ]]; then
    step "rust pass-through" "built"
  else
    step "rust pass-through" "building (worker-build --release, about 1 min)"
    root="$PWD"
    if ! (cd $pt && WASM_BINDGEN_BIN=wasm-bindgen \
          ESBUILD_BIN="$root/node_modules/.bin/esbuild" \
          WASM_OPT_BIN="$root/node_modules/.bin/wasm-opt" \
          worker-build --release >"$root/bench/results/tmp/passthrough-rs-build.log" 2>&1); then
      step "rust pass-through" "build failed (bench/results/tmp/passthrough-rs-build.log): measured without it"
      rm -rf $pt/build
    fi
  fi
fi

# 5. The run.
node bench/run.mjs
