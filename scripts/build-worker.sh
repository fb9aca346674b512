#!/usr/bin/env bash
# Builds the forge Worker (Rust -> Wasm) into build/ at the repository root, where
# wrangler.toml's `main = "build/index.js"` expects it, fully offline:
#   build/index.js, build/index_bg.wasm, build/worker/shim.mjs, build/assets/index.html (the
#   dashboard, a static asset: wrangler.toml [assets])
#
# worker-build would otherwise download wasm-bindgen, wasm-opt and esbuild; this points it at
# the pinned local copies (~/.cargo/bin/wasm-bindgen, npm binaryen and esbuild).
#
# Skips the build when nothing that goes into the Wasm changed since the last successful build
# (shared/, forge-worker/, Cargo.toml, Cargo.lock, rust-toolchain): the inputs' hash is kept in
# build/.inputs.sha256. FORCE=1 rebuilds anyway; NO_OPT=1 skips wasm-opt (fast dev builds).
# Respects an externally set CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '[build-worker] %s\n' "$*" >&2; }

OUT="$ROOT/build"
# The Wasm's size budget, gzip -9 bytes (200 KiB): well inside Cloudflare's upload limits; the
# module is fetched and compiled on every cold start, so its size is latency.
BUDGET=${WASM_GZIP_BUDGET:-204800}
STAMP="$OUT/.inputs.sha256"

inputs_hash() {
  {
    printf 'opt=%s opt-level=z\n' "${NO_OPT:-0}"
    git ls-files -co --exclude-standard -- shared forge-worker Cargo.toml Cargo.lock \
      rust-toolchain rust-toolchain.toml 2>/dev/null | LC_ALL=C sort | while read -r f; do
      [ -f "$f" ] && printf '%s %s\n' "$f" "$(sha256sum <"$f" | cut -d' ' -f1)"
    done
  } | sha256sum | cut -d' ' -f1
}

want=$(inputs_hash)
if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] &&
  [ -f "$OUT/index.js" ] && [ -f "$OUT/index_bg.wasm" ] && [ -f "$OUT/worker/shim.mjs" ] &&
  [ -f "$OUT/assets/index.html" ]; then
  log "up to date (build/index_bg.wasm)"
  exit 0
fi

# The tools, at the pinned versions (scripts/setup.sh and scripts/setup-node.sh install them).
WASM_BINDGEN_BIN=${WASM_BINDGEN_BIN:-$HOME/.cargo/bin/wasm-bindgen}
WASM_OPT_BIN=${WASM_OPT_BIN:-$ROOT/node_modules/.bin/wasm-opt}
ESBUILD_BIN=${ESBUILD_BIN:-$ROOT/node_modules/.bin/esbuild}
if [ ! -x "$WASM_OPT_BIN" ] || [ ! -x "$ESBUILD_BIN" ]; then
  scripts/setup-node.sh
fi
for t in "$WASM_BINDGEN_BIN" "$WASM_OPT_BIN" "$ESBUILD_BIN"; do
  [ -x "$t" ] || { log "missing tool $t (run scripts/setup.sh)"; exit 1; }
done
command -v worker-build >/dev/null || { log "worker-build is not installed (run scripts/setup.sh)"; exit 1; }
export WASM_BINDGEN_BIN WASM_OPT_BIN ESBUILD_BIN
# The npm binaryen wasm-opt is a Node script; make sure Node 22 from node_modules runs it.
export PATH="$ROOT/node_modules/.bin:$PATH"

# worker-build runs `cargo metadata` for every platform: have everything fetched (offline-safe
# once fetched; a no-op when up to date).
cargo fetch --quiet

# The Worker is built for size (`opt-level = "z"`), the native binaries keep the workspace's
# release profile: −13 KB gzipped for ~15 % more CPU on crypto (Ed25519, HMAC), measured in
# BENCHMARKS.md — microseconds against a 10 ms CPU limit per request. The Wasm has its own
# target directory, so this never rebuilds the native artifacts.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=z
opt=()
[ "${NO_OPT:-0}" = 1 ] && opt=(--no-opt)
log "building the Worker (release${opt:+, no wasm-opt})"
start=$(date +%s)
rm -f "$STAMP"
(cd forge-worker && worker-build --release "${opt[@]}" --out-dir "$OUT")
for f in index.js index_bg.wasm worker/shim.mjs; do
  [ -f "$OUT/$f" ] || { log "worker-build did not produce build/$f"; exit 1; }
done
# The dashboard is a static asset of the Worker (wrangler.toml [assets]), not part of the Wasm.
mkdir -p "$OUT/assets"
cp forge-worker/src/dashboard.html "$OUT/assets/index.html"
# Ship no name section or producers section: symbol names are ~160 KB of the raw module and
# serve only stack traces (which the forge never puts in an answer).
if [ "${NO_OPT:-0}" != 1 ]; then
  "$WASM_OPT_BIN" "$OUT/index_bg.wasm" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types \
    --strip-debug --strip-producers -o "$OUT/index_bg.wasm.stripped"
  mv "$OUT/index_bg.wasm.stripped" "$OUT/index_bg.wasm"
fi
printf '%s\n' "$want" >"$STAMP"
raw=$(stat -c %s "$OUT/index_bg.wasm")
gz=$(gzip -9 -c "$OUT/index_bg.wasm" | wc -c)
log "built in $(($(date +%s) - start)) s: build/index_bg.wasm $raw bytes raw, $gz bytes gzip -9 ($((gz / 1024)) KiB; budget < $((BUDGET / 1024)) KiB)"
# The size is a goal the project keeps (ARCHITECTURE.md, "Size rule"): a change that grows the
# optimized module past it fails the build here rather than drifting unnoticed. NO_OPT builds
# are dev builds and are not held to it.
if [ "${NO_OPT:-0}" != 1 ] && [ "$gz" -ge "$BUDGET" ]; then
  rm -f "$STAMP"
  log "build/index_bg.wasm is $gz bytes gzip -9, over the budget of $BUDGET (WASM_GZIP_BUDGET): see ARCHITECTURE.md's size rule; twiggy top on target/wasm32-unknown-unknown/release/forge_worker.wasm tells what grew"
  exit 1
fi
