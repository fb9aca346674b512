#!/usr/bin/env bash
# The project's one test command: installs what it needs (idempotently), then runs every
# check and every test. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "setup"
scripts/setup.sh

step "format"
cargo fmt --all -- --check

step "clippy (host)"
cargo clippy --workspace --all-targets -- -D warnings

step "no_std check: brh-shared for thumbv7em-none-eabi and wasm32-unknown-unknown"
cargo build -p brh-shared --target thumbv7em-none-eabi
cargo build -p brh-shared --target wasm32-unknown-unknown

step "clippy (forge-worker for wasm32)"
cargo clippy -p forge-worker --lib --target wasm32-unknown-unknown -- -D warnings

step "unit, property and process tests"
cargo build --workspace --bins
cargo test --workspace

step "shipping: static binaries, FROM-scratch images, the forge image answers a signed heartbeat"
cargo test -p brh-tests --test shipping

step "Prometheus alerting rules: promtool check rules, promtool test rules"
scripts/check-prometheus-rules.sh

if [ -x scripts/test-e2e.sh ]; then
  step "end-to-end: native forge and the Worker in workerd (kv, durable-object)"
  scripts/test-e2e.sh
fi

# After the end-to-end step: it runs the Worker bundle that step built, in workerd.
step "fault drill on the Worker in workerd (Durable Object mode): kill -9, SIGSTOP, partitions, workerd restarts"
cargo test -p brh-tests --test drill_workerd

step "the stolen-host attack list on the Worker in workerd (Durable Object mode)"
cargo test -p brh-tests --test stolen_host_workerd

step "revocation on the Worker in workerd (Durable Object mode): refused, durable across a restart, re-enrolled"
cargo test -p brh-tests --test revocation_workerd

step "rotating the root secret on the Worker in workerd: no leader change, no agent restart"
cargo test -p brh-tests --test rotation_workerd -- --nocapture

step "schemathesis: the OpenAPI documents against the native forge and the agent API"
scripts/schemathesis.sh

# Bounded here (BRH_FUZZ_SECONDS per target, default 30); long runs: scripts/fuzz.sh 1800.
step "fuzz: every target ${BRH_FUZZ_SECONDS:-30} s, regressions replayed"
scripts/fuzz.sh "${BRH_FUZZ_SECONDS:-30}"
