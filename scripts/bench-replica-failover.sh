#!/usr/bin/env bash
# Forge replica failover over a 3-member etcd cluster: N rounds (default 10) of kill -9 /
# SIGSTOP of the active replica; prints the time to another replica serving (min / median /
# max), the BRH leader changes, demotions and leaderless time over the run. Nothing is
# asserted (the overlap checker still runs). Needs etcd (scripts/setup-etcd.sh).
#   scripts/bench-replica-failover.sh [--rounds 10] [--etcd-ttl 2]      (~20 s per round)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p brh-cli -p forge-worker -p brh-tests --bins --examples
cmd=("${CARGO_TARGET_DIR:-target}/release/examples/bench_replica_failover" "$@")
echo "+ ${cmd[*]}" >&2
exec "${cmd[@]}"
