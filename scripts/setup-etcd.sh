#!/usr/bin/env bash
# Installs etcd (server + etcdctl) from Debian for scripts/bench-etcd.sh, idempotently:
# nothing happens when `etcd --version` already works. Needs root (or sudo) for apt-get.
set -euo pipefail

log() { printf '[setup-etcd] %s\n' "$*" >&2; }

if etcd --version >/dev/null 2>&1; then
  log "etcd present: $(etcd --version | head -n 1)"
  exit 0
fi
SUDO=()
[ "$(id -u)" = 0 ] || SUDO=(sudo)
log "installing etcd-server and etcd-client (Debian)"
export DEBIAN_FRONTEND=noninteractive
# Install without letting the package start a system-wide etcd on :2379 (the benchmark
# starts its own on free loopback ports).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
  "${SUDO[@]}" chmod +x /usr/sbin/policy-rc.d
  trap '"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
fi
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends etcd-server etcd-client >/dev/null
etcd --version | head -n 1 >&2
