#!/usr/bin/env bash
# BRH next to etcd's election API on the same machine in the same run, at the same lease ttl:
# unplanned failover (kill -9 of the leader → next PROMOTE, and lease expiry → PROMOTE) and
# planned handover (SIGTERM → next PROMOTE), RUNS runs per cell (default 10), at ttl 3 s and
# 15 s, plus a 1 s lease renewed every 200 ms. Prints one markdown table, also written to
# target/bench-etcd.md. Nothing is asserted. Takes ~25 minutes with 10 runs.
#   scripts/bench-etcd.sh [RUNS] [--ttls 3,15] [--only brh|etcd] [--no-1s]
# Installs etcd first when missing (scripts/setup-etcd.sh, Debian's etcd-server 3.4).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-etcd.sh
# One build of the binaries and the example together (building them separately would
# rebuild each side with a different feature set every time), then the example itself.
cargo build --release -p forge-worker -p brh-cli -p brh-tests --bins --examples
cmd=("${CARGO_TARGET_DIR:-target}/release/examples/bench_etcd" "$@")
echo "+ ${cmd[*]}" >&2
exec "${cmd[@]}"
