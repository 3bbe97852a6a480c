#!/usr/bin/env bash
# Idempotent set-up for the browser tests (tests/browser/): Debian's Chromium
# at /usr/bin/chromium, driven by playwright-core (`npx playwright install`
# does not work on this machine: its downloads are not reachable).
#
# Installs the `chromium` package with apt-get when /usr/bin/chromium is
# missing (needs root). Exits 0 when Chromium is usable afterwards (it prints
# its version), non-zero with the reason otherwise.
set -uo pipefail

CHROMIUM=/usr/bin/chromium

say() { printf 'browser-setup: %s\n' "$*"; }
fail() {
  say "$*" >&2
  exit 1
}

if [[ ! -x "$CHROMIUM" ]]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    fail "$CHROMIUM is missing and there is no apt-get to install it"
  fi
  if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      SUDO=(sudo -n)
    else
      fail "$CHROMIUM is missing; installing it needs root (apt-get install chromium)"
    fi
  else
    SUDO=()
  fi
  say "installing chromium (apt-get; about a minute)"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq >/dev/null ||
    fail "apt-get update failed"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
    fail "apt-get install chromium failed"
  [[ -x "$CHROMIUM" ]] || fail "apt-get installed chromium but $CHROMIUM is still missing"
fi

# Usable: it starts and prints its version.
version="$(timeout 30 "$CHROMIUM" --headless --no-sandbox --disable-gpu --version 2>&1)" ||
  fail "$CHROMIUM does not run: ${version:-no output}"
# (Debian's launcher script may print shell warnings before the version line.)
say "chromium ready: $(grep -m1 -i 'chromium [0-9]' <<<"$version" || echo "$version")"
exit 0
