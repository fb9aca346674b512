#!/usr/bin/env bash
# Checks the shipped Prometheus alerting rules (deploy/prometheus/brh-rules.yml): syntax and
# expressions (`promtool check rules`), then their unit tests (`promtool test rules`
# brh-rules.test.yml: each alert firing and not firing). Installs promtool from Debian's
# `prometheus` package when it is not on PATH (idempotent). Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[prometheus-rules] %s\n' "$*" >&2; }

if ! command -v promtool >/dev/null 2>&1; then
  SUDO=()
  [ "$(id -u)" = 0 ] || SUDO=(sudo)
  log "installing promtool (Debian package prometheus)"
  export DEBIAN_FRONTEND=noninteractive
  # Only promtool is wanted: keep the package from starting a system-wide Prometheus on :9090.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod +x /usr/sbin/policy-rc.d
    trap '"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
log "$(promtool --version 2>&1 | head -n 1)"

promtool check rules deploy/prometheus/brh-rules.yml
# Rule files in the test are resolved from the test file's directory.
promtool test rules deploy/prometheus/brh-rules.test.yml
