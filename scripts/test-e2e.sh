#!/usr/bin/env bash
# End-to-end suite: the same scenarios against the native forge, the Worker in workerd over KV,
# and the Worker in workerd with the LeaseRegister Durable Object (tests/e2e/forge.test.mjs),
# the hostile-input matrix against those three and the agent API (hostile*.test.mjs), node
# credential revocation and key generations, across restarts, on those three (revoke.test.mjs), the
# OpenAPI documents checked against the code and live answers (openapi.test.mjs), the dashboard
# in headless Chromium (dashboard.test.mjs), every README command (readme.test.mjs),
# then proof that the bundle deploys (`wrangler deploy --dry-run`). Builds what is missing:
# the npm tools (scripts/setup-node.sh), the native forge binary, the Worker bundle
# (scripts/build-worker.sh, skipped when its inputs did not change). Offline; loopback only.
# Respects CARGO_TARGET_DIR; E2E_TARGETS=native,kv,durable-object selects targets.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

step() { printf '\n--> %s\n' "$*" >&2; }

export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false CLOUDFLARE_CF_FETCH_ENABLED=false
export CI=true XDG_CONFIG_HOME="$ROOT/.config" NO_COLOR=1
export PATH="$ROOT/node_modules/.bin:$PATH"

step "npm tools and the browser"
scripts/setup-node.sh
scripts/setup-browser.sh

step "native forge and agent binaries"
cargo build --quiet -p forge-worker --bin forge -p brh-cli --bin brh-agent
FORGE_BIN="$(cargo metadata --format-version 1 --no-deps | node -e \
  'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')/debug/forge"
export FORGE_BIN
[ -x "$FORGE_BIN" ] || { echo "no forge binary at $FORGE_BIN" >&2; exit 1; }

step "Worker bundle"
scripts/build-worker.sh

step "scenarios: native, kv, durable-object"
node --version >&2
node --test --test-reporter=spec --test-concurrency=1 tests/e2e/*.test.mjs

step "wrangler deploy --dry-run"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
wrangler deploy --dry-run --outdir "$out" 2>&1 | tail -n 25
# wrangler names the module by its content hash: <sha1>-index_bg.wasm.
[ -s "$out/index.js" ] && compgen -G "$out/*index_bg.wasm" >/dev/null ||
  { echo "the dry-run bundle lacks index.js or the wasm module" >&2; ls -la "$out" >&2; exit 1; }
echo "dry-run bundle: $(ls "$out" | tr '\n' ' ')" >&2
