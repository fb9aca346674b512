#!/usr/bin/env bash
# A real browser for the dashboard's page tests (tests/e2e/dashboard.test.mjs): Debian's
# `chromium` (/usr/bin/chromium), driven by npm `playwright-core` (pinned in package.json,
# installed by scripts/setup-node.sh). Idempotent: a second run only checks and exits.
# Playwright never downloads a browser of its own here (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup-browser] %s\n' "$*" >&2; }

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

if ! command -v chromium >/dev/null 2>&1; then
  log "installing Debian chromium (apt)"
  sudo_=()
  [ "$(id -u)" = 0 ] || sudo_=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_[@]}" apt-get update -qq
  "${sudo_[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi

# playwright-core is a devDependency: scripts/setup-node.sh installs it with the others.
if [ ! -f node_modules/playwright-core/package.json ] && [ -x scripts/setup-node.sh ]; then
  FORCE=1 scripts/setup-node.sh
fi
[ -f node_modules/playwright-core/package.json ] ||
  { log "node_modules/playwright-core is missing (npm install)"; exit 1; }
