#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers and signature checks with cargo-fuzz (libFuzzer).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      default 60: a bounded run (CI, before a merge)
#   scripts/fuzz.sh 3600                      a long run: the same script, a large number
#   FUZZ_TARGETS="root_parse token" scripts/fuzz.sh 30     only some targets
#
# Steps: installs cargo-fuzz if it is missing (a machine that has it spends seconds here),
# builds every target of fuzz/ once, replays fuzz/regressions/<target>/* (inputs that once
# crashed), then fuzzes each target for SECONDS_PER_TARGET on a temporary copy of the
# committed seeds in fuzz/corpus/<target>/ (the committed corpus never grows from a run), and
# prints a table: target, executions, exec/s, new corpus units, crashes. Exits non-zero if any
# target crashed (panic, failed assertion, timeout, out of memory), after printing the crash
# file (kept in fuzz/artifacts/<target>/, git-ignored) and the command that reproduces it.
#
# Needs the nightly toolchain (libFuzzer's coverage instrumentation is a nightly rustc flag).
#
# Sanitizer: none by default (FUZZ_SANITIZER=address to override). The code under test is
# safe Rust (brh-shared is #![forbid(unsafe_code)]; the agent's manifest and reference parsers
# have no unsafe either), so AddressSanitizer would only watch the dependencies' unsafe code,
# at about half the executions per second and a slower build of the whole brh-agent
# dependency tree on this 2-core machine. Panics, failed assertions, overflow checks and
# debug assertions (on by default in cargo-fuzz builds), stack overflows, timeouts and the
# RSS limit are all caught without it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ=$ROOT/fuzz

SECS=${1:-60}
case $SECS in
'' | *[!0-9]*)
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]" >&2
  exit 2
  ;;
esac
SANITIZER=${FUZZ_SANITIZER:-none}
TIMEOUT_S=${FUZZ_TIMEOUT_S:-10}  # one input slower than this is a crash (a hang)
RSS_MB=${FUZZ_RSS_MB:-2048}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}  # crash reports with a backtrace

step() { printf '\n==> %s\n' "$*" >&2; }

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz.sh needs the nightly toolchain: rustup toolchain install nightly --profile minimal" >&2
  exit 2
fi

step "cargo-fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
cargo fuzz --version >&2

step "build (nightly, sanitizer: $SANITIZER)"
start=$(date +%s)
cargo +nightly fuzz build --fuzz-dir "$FUZZ" --sanitizer "$SANITIZER"
echo "build: $(($(date +%s) - start)) s" >&2

HOST=$(rustc +nightly -vV | sed -n 's/^host: //p')
BIN=$FUZZ/target/$HOST/release
TARGETS=${FUZZ_TARGETS:-$(cargo +nightly fuzz list --fuzz-dir "$FUZZ")}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/brh-fuzz.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

rows=()
failed=()
for t in $TARGETS; do
  exe=$BIN/$t
  [ -x "$exe" ] || {
    echo "no fuzz target binary $exe" >&2
    exit 2
  }
  artifacts=$FUZZ/artifacts/$t
  mkdir -p "$artifacts"
  log=$WORK/$t.log
  repro="cargo +nightly fuzz run --fuzz-dir fuzz --sanitizer $SANITIZER $t"

  # Inputs that crashed once must not crash again.
  if [ -d "$FUZZ/regressions/$t" ] && [ -n "$(ls -A "$FUZZ/regressions/$t")" ]; then
    step "$t: regressions"
    if ! "$exe" -timeout="$TIMEOUT_S" -rss_limit_mb="$RSS_MB" \
      "$FUZZ/regressions/$t"/* >"$log.regressions" 2>&1; then
      tail -n 40 "$log.regressions" >&2
      again=$(sed -n 's/^Running: //p' "$log.regressions" | tail -n 1)
      echo "REGRESSION in $t: ${again:-one of fuzz/regressions/$t/*} crashes again" >&2
      echo "reproduce: $repro ${again:-fuzz/regressions/$t/<file>}" >&2
      rows+=("$t|-|-|-|regression")
      failed+=("$t")
      continue
    fi
  fi

  step "$t: fuzzing for $SECS s"
  corpus=$WORK/corpus/$t
  mkdir -p "$corpus"
  if [ -d "$FUZZ/corpus/$t" ]; then
    cp -R "$FUZZ/corpus/$t/." "$corpus/"
  fi
  before=$(find "$artifacts" -maxdepth 1 -type f | wc -l)
  rc=0
  "$exe" "$corpus" \
    -max_total_time="$SECS" \
    -timeout="$TIMEOUT_S" \
    -rss_limit_mb="$RSS_MB" \
    -artifact_prefix="$artifacts/" \
    -print_final_stats=1 \
    >"$log" 2>&1 || rc=$?

  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  added=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -n 1)
  if [ -z "$execs" ]; then
    # A crash ends the run before the final stats: take the last status line (#N … exec/s: R).
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    execs=$(printf '%s' "$last" | sed -n 's/^#\([0-9]*\).*/\1/p')
    rate=$(printf '%s' "$last" | sed -n 's/.*exec\/s: \([0-9]*\).*/\1/p')
  fi
  crashes=$(($(find "$artifacts" -maxdepth 1 -type f | wc -l) - before))
  if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes=1  # died without writing an input (e.g. killed): still a failure
  fi
  rows+=("$t|${execs:-?}|${rate:-?}|${added:-?}|$crashes")

  if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    failed+=("$t")
    echo "---- $t: fuzzer exit code $rc; end of its log:" >&2
    grep -v '^#[0-9]' "$log" | tail -n 60 >&2
    crash_file=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    echo "CRASH in $t: ${crash_file:-see the log above}" >&2
    if [ -n "$crash_file" ]; then
      echo "reproduce: $repro $crash_file" >&2
      echo "      (or: $exe $crash_file)" >&2
      echo "keep it:   cp $crash_file fuzz/regressions/$t/   (see fuzz/README.md)" >&2
    fi
    cp "$log" "$artifacts/last-crash.log" 2>/dev/null || true
  fi
done

printf '\n%-18s %14s %9s %9s %8s\n' target executions exec/s new-units crashes
for r in "${rows[@]}"; do
  IFS='|' read -r t e s a c <<<"$r"
  printf '%-18s %14s %9s %9s %8s\n' "$t" "$e" "$s" "$a" "$c"
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: no crashes (${SECS} s per target)"
