#!/usr/bin/env bash
# Load test of the native forge: N simulated nodes (default 1,000), each sending a signed
# heartbeat every second for D seconds (default 60) over its own keep-alive connection; every
# answer's signature is verified. Prints a markdown table (also written to target/bench-load.md):
# requests, errors, leader changes, p50/p99/max latency, achieved rate, forge CPU per heartbeat
# and RSS. Nothing is asserted. Arguments pass through to the example:
#   scripts/bench-load.sh [--nodes 1000] [--secs 60] [--tasks 8] [--store file|etcd]
# (`--store etcd`: the forge as a replica over a one-member etcd it starts; adds etcd writes per
# node per day)
# The Worker in workerd (100 nodes): node_modules/.bin/node scripts/bench-load-worker.mjs
set -euo pipefail
cd "$(dirname "$0")/.."
# The open connections: one per node on each side, plus a margin.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# One build of the binaries and the example together (building them separately would
# rebuild each side with a different feature set every time), then the example itself.
cargo build --release -p forge-worker -p brh-cli -p brh-tests --bins --examples
cmd=("${CARGO_TARGET_DIR:-target}/release/examples/bench_load" "$@")
echo "+ ${cmd[*]}" >&2
exec "${cmd[@]}"
