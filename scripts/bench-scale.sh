#!/usr/bin/env bash
# Heartbeat latency (p50/p99) and 8-client throughput of the native forge as the peer table
# grows, and the sustained-load check (10,000 nodes at a 5 s heartbeat = 2,000 heartbeats/s).
# Prints a markdown table. Arguments pass through to the example:
#   scripts/bench-scale.sh [--peers 10,100,1000,10000] [--secs N]
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=(cargo run --release -p forge-worker --example bench_scale -- "$@")
echo "+ ${cmd[*]}" >&2
exec "${cmd[@]}"
