#!/usr/bin/env bash
# Installs what the build and the tests need, idempotently: a machine that already has
# everything spends a few seconds here. Safe to run again at any time.
#   - Rust targets for the no_std check and the Worker (wasm32, thumbv7em)
#   - worker-build and wasm-bindgen-cli at the versions pinned below (the wasm-bindgen CLI must be
#     exactly the wasm-bindgen of Cargo.lock)
#   - npm packages (wrangler, miniflare, Node 22, binaryen, esbuild) via scripts/setup-node.sh
#   - Debian packages and a private dockerd for container tests, via scripts/dockerd.sh (if present)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

WORKER_BUILD_VERSION=0.8.7
WASM_BINDGEN_VERSION=0.2.130

have_targets=$(rustup target list --installed 2>/dev/null || true)
for t in wasm32-unknown-unknown thumbv7em-none-eabi; do
  if ! grep -qx "$t" <<<"$have_targets"; then
    log "adding Rust target $t"
    rustup target add "$t"
  fi
done
for c in clippy rustfmt; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$c"; then
    log "adding Rust component $c"
    rustup component add "$c"
  fi
done

version_of() { "$1" --version 2>/dev/null | awk '{print $NF}' || true; }
if [ "$(version_of worker-build)" != "$WORKER_BUILD_VERSION" ]; then
  log "installing worker-build $WORKER_BUILD_VERSION (takes several minutes once)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked
fi
if [ "$(version_of wasm-bindgen)" != "$WASM_BINDGEN_VERSION" ]; then
  # Without --locked on purpose: its lock file wants a crate version the registry lacks.
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (takes several minutes once)"
  cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION"
fi

# worker-build runs `cargo metadata` for every platform: fetch everything once so later
# builds work offline.
cargo fetch --quiet

# etcd for `forge serve --store etcd` and its process tests (tests/tests/forge_etcd.rs):
# Debian's etcd-server (3.4). The test starts its own etcd; the packaged service is not used.
if ! command -v etcd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    log "installing etcd-server with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
  else
    log "etcd is missing and this is not root: apt-get install etcd-server etcd-client"
    exit 1
  fi
fi

if [ -x scripts/setup-node.sh ]; then
  scripts/setup-node.sh
fi
if [ -x scripts/setup-browser.sh ]; then scripts/setup-browser.sh; fi
if [ -x scripts/dockerd.sh ]; then
  scripts/dockerd.sh start
fi
log "ok"
