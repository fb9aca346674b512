#!/usr/bin/env bash
# Installs the npm dev dependencies (wrangler, miniflare, Node 22, binaryen, esbuild) at the
# versions pinned in package.json / package-lock.json — only when node_modules is missing or the lock file changed
# since the last install (its hash is kept in node_modules/.brh-lock.sha256). Quiet and fast
# when up to date. FORCE=1 reinstalls.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup-node] %s\n' "$*" >&2; }

STAMP=node_modules/.brh-lock.sha256
want=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] &&
  [ -x node_modules/.bin/node ] && [ -x node_modules/.bin/wrangler ]; then
  exit 0
fi

command -v npm >/dev/null || { log "npm is not installed (apt-get install npm)"; exit 1; }
log "installing npm dev dependencies from package-lock.json"
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
# `npm install --no-save` rather than `npm ci`: both install exactly the locked versions, but
# `npm ci` also insists on lock entries for every platform's optional workerd binary, and the
# registry mirror this project builds against lacks the darwin/windows ones, so no lock
# written here can satisfy it. --no-save leaves package.json and the lock untouched.
npm install --no-save --no-audit --no-fund --loglevel=error
printf '%s\n' "$want" >"$STAMP"
log "node $(node_modules/.bin/node --version), wrangler $(node_modules/.bin/node -p 'require("wrangler/package.json").version')"
