#!/usr/bin/env bash
# Builds `forge` and `brh-agent` as static Linux binaries (x86_64-unknown-linux-musl), checks
# that they are static, and prints where they are and how big.
#
#   scripts/build-static.sh                    release build (the workspace release profile:
#                                              opt-level "s", LTO, one codegen unit; slow)
#   BRH_STATIC_PROFILE=dev scripts/build-static.sh
#                                              unoptimized, for CI smoke tests (much faster)
#
# Idempotent: adds the Rust target and Debian's musl-tools only when they are missing.
# musl-tools provides musl-gcc, the C compiler for the one dependency with C and assembly in
# it: `ring` (rustls' crypto provider, used by reqwest's rustls-tls in the agent and by the
# forge's TLS). Everything else is Rust.
#
# The binaries are stripped of symbols (panic messages stay). Output:
#   ${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/{release,debug}/{forge,brh-agent}
# The last line printed is that directory, for scripts (build-images.sh reads it).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-musl
PROFILE=${BRH_STATIC_PROFILE:-release}
log() { printf '[static] %s\n' "$*" >&2; }

case "$PROFILE" in
  release) OUT_PROFILE=release ;;
  dev) OUT_PROFILE=debug ;;
  *) log "BRH_STATIC_PROFILE must be release or dev, not $PROFILE"; exit 2 ;;
esac

if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  log "adding Rust target $TARGET"
  rustup target add "$TARGET"
fi
if ! command -v musl-gcc >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { log "musl-gcc is missing: install Debian's musl-tools (needs root)"; exit 1; }
  log "installing musl-tools with apt (musl-gcc, for ring's C code)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null
fi

# Only the musl target's artifacts see these (cargo applies target.<triple>.* to that target
# alone), so host build scripts and proc macros in target/{debug,release} are shared with the
# ordinary builds and not rebuilt.
export CC_x86_64_unknown_linux_musl=musl-gcc
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="${CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS:--C strip=symbols}"

log "building forge and brh-agent for $TARGET ($PROFILE profile)"
t0=$(date +%s)
cargo build --locked --profile "$PROFILE" --target "$TARGET" -p forge-worker --bin forge -p brh-cli --bin brh-agent
t1=$(date +%s)
log "cargo build took $((t1 - t0)) s"

target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
dir="$target_dir/$TARGET/$OUT_PROFILE"

# Static means: no program interpreter (PT_INTERP) and no shared-library dependency (NEEDED).
# `file` calls these "static-pie linked" or "statically linked"; `ldd` "not a dynamic
# executable" / "statically linked".
for b in forge brh-agent; do
  f="$dir/$b"
  [ -x "$f" ] || { log "$f was not built"; exit 1; }
  if command -v readelf >/dev/null 2>&1; then
    if LC_ALL=C readelf -lW "$f" | grep -q 'INTERP' || LC_ALL=C readelf -dW "$f" | grep -q '(NEEDED)'; then
      log "$f is NOT static:"; readelf -dW "$f" | grep NEEDED >&2 || true; exit 1
    fi
  fi
  desc=$(file -b "$f" 2>/dev/null || echo "?")
  case "$desc" in
    *static*|"?") ;;
    *) log "file(1) does not call $f static: $desc"; exit 1 ;;
  esac
  case "$(ldd "$f" 2>&1 || true)" in
    *"not a dynamic executable"*|*"statically linked"*) ;;
    *) log "ldd finds shared libraries in $f:"; ldd "$f" >&2 || true; exit 1 ;;
  esac
  size=$(stat -c %s "$f")
  printf '%-10s %9s bytes (%s KiB)  %s\n' "$b" "$size" "$((size / 1024))" "$f"
  printf '           file: %s\n' "$desc"
  printf '           ldd: %s\n' "$(ldd "$f" 2>&1 | head -1 | sed 's/^[[:space:]]*//')"
  "$f" --version >/dev/null
done
echo "$dir"
