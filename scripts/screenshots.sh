#!/usr/bin/env bash
# Regenerates the dashboard screenshots in docs/ with a real browser (the dashboard page test,
# tests/e2e/dashboard.test.mjs, with BRH_SCREENSHOTS=1): docs/dashboard.png (desktop 1280×800
# after a failover and a handover), docs/dashboard-unreachable.png (the forge stopped) and
# docs/dashboard-phone.png (390×844). Against the Worker in workerd with the Durable Object by
# default; E2E_TARGETS=native to use the native forge instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false CI=true NO_COLOR=1
export PATH="$PWD/node_modules/.bin:$PATH"
scripts/setup-node.sh
scripts/setup-browser.sh
cargo build --quiet -p forge-worker --bin forge
scripts/build-worker.sh
BRH_SCREENSHOTS=1 E2E_TARGETS="${E2E_TARGETS:-durable-object}" \
  node --test --test-concurrency=1 tests/e2e/dashboard.test.mjs
ls -l docs/dashboard*.png
