#!/usr/bin/env bash
# Property-based API testing of the native forge and the agent API with Schemathesis, driven
# by docs/openapi-forge.yaml and docs/openapi-agent.yaml.
#
#   scripts/schemathesis.sh            (after `cargo build --workspace --bins`)
#
# - Installs schemathesis (pinned) from PyPI into .brh/venv-schemathesis (gitignored), once.
# - Starts a native forge and one agent (target/debug/forge, target/debug/brh-agent; override
#   with FORGE_BIN / AGENT_BIN) on free loopback ports with a fresh random seal.
# - Signs requests: a Schemathesis `before_call` hook (written to the scratch dir) attaches a
#   requests auth that computes x-brh-ts/x-brh-nonce/x-brh-sig over the final bytes (the
#   forge's scheme with the seal; the agent's, naming the receiving agent, with the env's API
#   key) whenever the generated x-brh-node is a valid id, so generated bodies get past the
#   signature check; generated requests with an invalid node id or a left-out x-brh-* header
#   stay as generated (they must be refused).
# - Checks: no 5xx, documented status codes, documented content types, response schemas.
# - Bounded: ST_MAX_EXAMPLES (default 200) examples per operation, phases examples, coverage
#   and fuzzing, fixed seed (ST_SEED, default 1) so a failure reproduces; one worker (with
#   several, CPython 3.11's ast.parse is not thread-safe under Hypothesis: "AST constructor
#   recursion depth mismatch"). About a minute.
# Prints a summary; exits non-zero if any check failed against either server.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

VERSION=4.32.5
VENV="$ROOT/.brh/venv-schemathesis"
ST="$VENV/bin/schemathesis"
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-200}
SEED=${ST_SEED:-1}
CHECKS=${ST_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance}

log() { printf '[schemathesis] %s\n' "$*" >&2; }

# --- install (idempotent) ----------------------------------------------------------------------
if [ "$("$ST" --version 2>/dev/null || true)" != "schemathesis, version $VERSION" ]; then
  command -v python3 >/dev/null || { log "python3 is required"; exit 1; }
  log "installing schemathesis $VERSION into ${VENV#"$ROOT"/}"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi
PY="$VENV/bin/python"

# --- binaries -------------------------------------------------------------------------------------
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
FORGE_BIN=${FORGE_BIN:-$TARGET_DIR/debug/forge}
AGENT_BIN=${AGENT_BIN:-$TARGET_DIR/debug/brh-agent}
for b in "$FORGE_BIN" "$AGENT_BIN"; do
  [ -x "$b" ] || { log "missing $b: run cargo build --workspace --bins"; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/brh-schemathesis.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

SEAL=$("$PY" -c 'import secrets; print(secrets.token_hex(24))')
ENV_NAME=st
AGENT_NODE=st-agent

# Waits for `pattern` (an ERE with one http://… URL) in a log file and prints the URL.
wait_url() {
  local file=$1 pattern=$2 url=""
  for _ in $(seq 1 200); do
    url=$(sed 's/\x1b\[[0-9;]*m//g' "$file" 2>/dev/null | grep -Eo "$pattern" | grep -Eo 'http://[0-9.:]+' | head -n1 || true)
    [ -n "$url" ] && { printf '%s\n' "$url"; return 0; }
    sleep 0.1
  done
  log "timed out waiting for: $pattern"; sed -n '1,40p' "$file" >&2; return 1
}

# --- servers --------------------------------------------------------------------------------------
DOMINION_SEAL="$SEAL" RUST_LOG=warn "$FORGE_BIN" serve --listen 127.0.0.1:0 --data "$WORK/forge" \
  >"$WORK/forge.log" 2>&1 &
PIDS+=($!)
FORGE_URL=$(wait_url "$WORK/forge.log" 'forge listening on http://[0-9.:]+')
log "forge at $FORGE_URL"

ROOT_URI=$(SEAL="$SEAL" AUTH="${FORGE_URL#http://}" ENV_NAME="$ENV_NAME" "$PY" -c '
import hashlib, hmac, os, time
seal, auth, env, epoch = os.environ["SEAL"], os.environ["AUTH"], os.environ["ENV_NAME"], int(time.time())
sig = hmac.new(seal.encode(), f"dominion+http://{auth}|{env}|{epoch}".encode(), hashlib.sha256).hexdigest()
print(f"dominion+http://{auth}?env={env}&epoch={epoch}&sig={sig}")')
DOMINION_SEAL="$SEAL" FORGE_DOMINION_ROOT="$ROOT_URI" BRH_RUNTIME=api BRH_LOG=info NO_COLOR=1 \
  "$AGENT_BIN" run --node-id "$AGENT_NODE" --env "$ENV_NAME" --listen 127.0.0.1:0 \
  --consensus-enabled false >"$WORK/agent.log" 2>&1 &
PIDS+=($!)
AGENT_URL=$(wait_url "$WORK/agent.log" "\\[API\\] $AGENT_NODE listening on http://[0-9.:]+")
log "agent at $AGENT_URL"

# --- request signing hook -------------------------------------------------------------------------
cat >"$WORK/brh_st_hooks.py" <<'PY'
"""Signs the requests Schemathesis generates (BRH wire protocol v1), over the final bytes."""
import hashlib
import hmac
import itertools
import os
import re
import threading
import time
from urllib.parse import urlsplit

import requests
import schemathesis

SEAL = os.environ["BRH_ST_SEAL"].encode()
KIND = os.environ["BRH_ST_KIND"]  # "forge" or "agent"
TO = os.environ.get("BRH_ST_AGENT_NODE", "")
API_KEY = hmac.new(SEAL, f"brh-v1-agent-api\n{os.environ['BRH_ST_ENV']}".encode(), hashlib.sha256).digest()
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
BOOT = "st" + os.urandom(4).hex()
SEQ = itertools.count(1)
LOCK = threading.Lock()


class Signer(requests.auth.AuthBase):
    def __call__(self, r):
        node = r.headers.get("x-brh-node", "")
        if not isinstance(node, str) or not ID.fullmatch(node):
            return r  # a generated invalid id: sent unsigned, to be refused
        if not all(h in r.headers for h in ("x-brh-ts", "x-brh-nonce", "x-brh-sig")):
            return r  # a case with a header left out on purpose: must be refused
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        path = urlsplit(r.url).path
        with LOCK:
            ts = str(int(time.time() * 1000))
            nonce = f"{BOOT}:{next(SEQ)}"
        digest = hashlib.sha256(body).hexdigest()
        if KIND == "forge":
            key, head = SEAL, "brh-v1"
        else:
            key, head = API_KEY, f"brh-v1-agent\n{TO}"
        msg = f"{head}\n{r.method}\n{path}\n{node}\n{ts}\n{nonce}\n{digest}"
        r.headers["x-brh-ts"] = ts
        r.headers["x-brh-nonce"] = nonce
        r.headers["x-brh-sig"] = hmac.new(key, msg.encode(), hashlib.sha256).hexdigest()
        return r


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.method.upper() == "POST":
        kwargs["auth"] = Signer()


@schemathesis.hook
def after_call(context, case, response):
    # One line per response, for the summary's status histogram.
    with LOCK, open(os.environ["BRH_ST_LOG"], "a") as f:
        f.write(f"{case.method.upper()} {case.operation.path} {response.status_code}\n")
PY

# --- runs -----------------------------------------------------------------------------------------
declare -A RESULT
run() {
  local name=$1 doc=$2 url=$3 kind=$4
  log "running against the $name ($doc): $MAX_EXAMPLES examples per operation, seed $SEED"
  local rc=0
  # Run from the scratch dir: Schemathesis and Hypothesis keep caches in the working directory.
  (cd "$WORK" && PYTHONPATH="$WORK" SCHEMATHESIS_HOOKS=brh_st_hooks \
    BRH_ST_SEAL="$SEAL" BRH_ST_KIND="$kind" BRH_ST_AGENT_NODE="$AGENT_NODE" BRH_ST_ENV="$ENV_NAME" \
    BRH_ST_LOG="$WORK/$name.calls" \
    "$ST" run "$ROOT/$doc" --url "$url" \
      --checks "$CHECKS" \
      --phases examples,coverage,fuzzing \
      --max-examples "$MAX_EXAMPLES" --seed "$SEED" \
      --workers 1 --request-timeout 15 \
      --suppress-health-check all \
      --warnings off) \
      2>&1 | tee "$WORK/$name.out" || rc=$? # pipefail: schemathesis's exit code
  RESULT[$name]=$rc
}
set +e
run forge docs/openapi-forge.yaml "$FORGE_URL" forge
run agent docs/openapi-agent.yaml "$AGENT_URL" agent
set -e

# --- summary --------------------------------------------------------------------------------------
# Evidence that generated requests got past the signature check (not only refusals).
fetch() { "$PY" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }
accepted=$(fetch "$FORGE_URL/metrics" 2>/dev/null |
  awk '/^brh_forge_heartbeats_total\{/ { n += $2 } END { print n + 0 }')
envs=$(fetch "$FORGE_URL/federation/envs" 2>/dev/null | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["envs"]))' || echo "?")
echo
echo "== schemathesis $VERSION summary (checks: $CHECKS) =="
status=0
for name in forge agent; do
  cases=$(grep -A1 '^Test cases:' "$WORK/$name.out" | tail -n1 | sed 's/^ *//' || true)
  verdict=$(grep -E '^=+ .* =+$' "$WORK/$name.out" | tail -n1 | sed 's/^=* //; s/ =*$//' || true)
  if [ "${RESULT[$name]}" -eq 0 ]; then
    echo "  $name: PASS — $cases — $verdict"
  else
    echo "  $name: FAIL — $cases — $verdict"
    status=1
  fi
  if [ -s "$WORK/$name.calls" ]; then
    echo "    responses by operation and status (undocumented-method probes counted apart):"
    sort "$WORK/$name.calls" | uniq -c |
      awk '$4 == 405 || $2 == "OPTIONS" { probes += $1; next }
           { printf "      %5d  %s %s %s\n", $1, $2, $3, $4 }
           END { printf "      %5d  other methods (405, or CORS preflight 2xx)\n", probes }'
  fi
done
echo "  signed requests accepted: forge $accepted heartbeats in $envs envs"
# A server that died during the run is a failure too.
for pid in "${PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "  a server process ($pid) exited during the run"; status=1; }
done
exit "$status"
