#!/usr/bin/env bash
# Measures failover (kill -9, SIGTERM) over N runs per timing profile, plus an idle agent's
# RSS and CPU, and prints a table. Usage: scripts/bench-failover.sh [RUNS]   (default 10)
# Takes ~5 minutes with 10 runs (the default profile's kill -9 runs wait out a 15 s lease).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p brh-cli -p forge-worker --bins
exec cargo run --release -p brh-tests --example bench_failover -- "${1:-10}"
