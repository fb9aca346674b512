#!/usr/bin/env bash
# Property-based API testing of the native forge and the agent API with Schemathesis, driven
# by docs/openapi-forge.yaml and docs/openapi-agent.yaml.
#
#   scripts/schemathesis.sh            (after `cargo build --workspace --bins`)
#
# - Installs schemathesis (pinned) from PyPI into .brh/venv-schemathesis (gitignored), once.
# - Starts a native forge and one agent (target/debug/forge, target/debug/brh-agent; override
#   with FORGE_BIN / AGENT_BIN) on free loopback ports with a fresh random seal.
# - The agent is enrolled like a real host: `brh-agent root generate` and `brh-agent enroll`
#   (run with the seal) give it its node key and the forge's and the top operator's public keys;
#   it never sees DOMINION_SEAL.
# - Signs requests: a Schemathesis `before_call` hook (written to the scratch dir) attaches a
#   requests auth that computes x-brh-ts/x-brh-nonce/x-brh-sig over the final bytes — to the
#   forge, HMAC-SHA256 under the node key of the generated x-brh-node in the env the body names
#   (HMAC(seal, "brh-v1-node-key\n{env}\n{node}"), or of the generation a generated
#   x-brh-key-gen names: HMAC(seal, "brh-v1-node-key\n{env}\n{node}\n{g}")); the forge's
#   POST /federation/revoke, the top operator's Ed25519 signature over the same string — except
#   for a body naming the agent's env (st), left HMAC-signed and so refused (401), so that a
#   generated revocation cannot lock the agent out of the forge; to the agent, the top operator's Ed25519
#   signature (seed HMAC(seal, "brh-v1-operator-key"); RFC 8032 in pure Python, checked at
#   start against RFC 8032 TEST 1 and the operator key `enroll` printed) over the string naming
#   the receiving agent — whenever the generated x-brh-node is a valid id, so generated bodies
#   get past the signature check; generated requests with an invalid node id or a left-out
#   x-brh-* header stay as generated (they must be refused), and so does a generated
#   x-brh-operator certificate (not the top operator's: 401). The nudge takes no signature.
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

# The root, signed by the forge key, and the agent's enrolment: what the operator would hand the
# host. The agent runs on those lines only (no DOMINION_SEAL in its environment).
ROOT_URI=$(DOMINION_SEAL="$SEAL" "$AGENT_BIN" root generate --http --host "${FORGE_URL#http://}" --env "$ENV_NAME")
DOMINION_SEAL="$SEAL" FORGE_DOMINION_ROOT="$ROOT_URI" "$AGENT_BIN" enroll "$AGENT_NODE" >"$WORK/agent.env"
OPERATOR_KEY=$(sed -n "s/^BRH_OPERATOR_KEY='\([0-9a-f]*\)'$/\1/p" "$WORK/agent.env")
[ ${#OPERATOR_KEY} -eq 64 ] || { log "brh-agent enroll printed no BRH_OPERATOR_KEY"; cat "$WORK/agent.env" >&2; exit 1; }
(
  unset DOMINION_SEAL
  set -a; . "$WORK/agent.env"; set +a
  BRH_RUNTIME=api BRH_LOG=info NO_COLOR=1 exec "$AGENT_BIN" run --node-id "$AGENT_NODE" --env "$ENV_NAME" \
    --listen 127.0.0.1:0 --consensus-enabled false
) >"$WORK/agent.log" 2>&1 &
PIDS+=($!)
AGENT_URL=$(wait_url "$WORK/agent.log" "\\[API\\] $AGENT_NODE listening on http://[0-9.:]+")
log "agent at $AGENT_URL"

# --- request signing hook -------------------------------------------------------------------------
cat >"$WORK/brh_st_hooks.py" <<'PY'
"""Signs the requests Schemathesis generates (BRH wire protocol v1), over the final bytes."""
import hashlib
import hmac
import itertools
import json
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
# Revocations naming this env are not signed by an operator (the agent under test lives there).
PROTECTED_ENV = os.environ.get("BRH_ST_AGENT_ENV", "")
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
KEY_GEN = re.compile(r"[1-9][0-9]{0,9}")
BOOT = "st" + os.urandom(4).hex()
SEQ = itertools.count(1)
LOCK = threading.Lock()

# --- Ed25519 (RFC 8032 §5.1, pure Python: signing only) -----------------------------------------
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_I = pow(2, (_P - 1) // 4, _P)


def _recover_x(y, sign):
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _I % _P
    return _P - x if (x & 1) != sign else x


_BY = 4 * pow(5, _P - 2, _P) % _P
_BX = _recover_x(_BY, 0)
_B = (_BX, _BY, 1, _BX * _BY % _P)


def _add(p, q):
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s, p):
    q = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _compress(p):
    zi = pow(p[2], _P - 2, _P)
    x, y = p[0] * zi % _P, p[1] * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


class Ed25519:
    def __init__(self, seed):
        h = hashlib.sha512(seed).digest()
        a = int.from_bytes(h[:32], "little")
        self.a = (a & ((1 << 254) - 8)) | (1 << 254)
        self.prefix = h[32:]
        self.public = _compress(_mul(self.a, _B))

    def sign(self, msg):
        r = int.from_bytes(hashlib.sha512(self.prefix + msg).digest(), "little") % _L
        big_r = _compress(_mul(r, _B))
        k = int.from_bytes(hashlib.sha512(big_r + self.public + msg).digest(), "little") % _L
        return big_r + ((r + k * self.a) % _L).to_bytes(32, "little")


# RFC 8032 §7.1 TEST 1, and the key the agent checks operators with: a wrong signer would
# only show up as every signed request refused.
_T = Ed25519(bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
assert _T.public.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
assert _T.sign(b"").hex() == "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
OPERATOR = Ed25519(hmac.new(SEAL, b"brh-v1-operator-key", hashlib.sha256).digest())
assert OPERATOR.public.hex() == os.environ["BRH_ST_OPERATOR_KEY"], "operator key differs from brh-agent enroll's"


def body_env(body):
    """The env the body names (`dev` if none), as the forge reads it to derive the key."""
    try:
        env = json.loads(body).get("env")
    except Exception:
        env = None
    return env if isinstance(env, str) else "dev"


def node_key(body, node, generation=0):
    """Generation `generation` of the key of `node` in the env the body names (the forge derives the same)."""
    env = body_env(body)
    label = f"brh-v1-node-key\n{env}\n{node}" + (f"\n{generation}" if generation else "")
    return hmac.new(SEAL, label.encode(), hashlib.sha256).digest()


def key_generation(r):
    """The generation a generated x-brh-key-gen names (0 when absent or not a valid one: then
    the request is signed with generation 0 and the forge refuses the header's form, 400)."""
    g = r.headers.get("x-brh-key-gen")
    if isinstance(g, str) and KEY_GEN.fullmatch(g) and int(g) <= 0xFFFFFFFF:
        return int(g)
    return 0


class Signer(requests.auth.AuthBase):
    def __call__(self, r):
        node = r.headers.get("x-brh-node", "")
        if not isinstance(node, str) or not ID.fullmatch(node):
            return r  # a generated invalid id: sent unsigned, to be refused
        if not all(h in r.headers for h in ("x-brh-ts", "x-brh-nonce", "x-brh-sig")):
            return r  # a case with a header left out on purpose (or the nudge): sent as generated
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        path = urlsplit(r.url).path
        with LOCK:
            ts = str(int(time.time() * 1000))
            nonce = f"{BOOT}:{next(SEQ)}"
        digest = hashlib.sha256(body).hexdigest()
        if KIND == "forge" and path == "/federation/revoke" and body_env(body) != PROTECTED_ENV:
            msg = f"brh-v1\n{r.method}\n{path}\n{node}\n{ts}\n{nonce}\n{digest}"
            sig = OPERATOR.sign(msg.encode()).hex()
        elif KIND == "forge":
            msg = f"brh-v1\n{r.method}\n{path}\n{node}\n{ts}\n{nonce}\n{digest}"
            sig = hmac.new(node_key(body, node, key_generation(r)), msg.encode(), hashlib.sha256).hexdigest()
        else:
            msg = f"brh-v1-agent\n{TO}\n{r.method}\n{path}\n{node}\n{ts}\n{nonce}\n{digest}"
            sig = OPERATOR.sign(msg.encode()).hex()
        r.headers["x-brh-ts"] = ts
        r.headers["x-brh-nonce"] = nonce
        r.headers["x-brh-sig"] = sig
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
    BRH_ST_SEAL="$SEAL" BRH_ST_KIND="$kind" BRH_ST_AGENT_NODE="$AGENT_NODE" BRH_ST_AGENT_ENV="$ENV_NAME" BRH_ST_OPERATOR_KEY="$OPERATOR_KEY" \
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
revocations=$(grep -c '^POST /federation/revoke 200$' "$WORK/forge.calls" 2>/dev/null || true)
echo "  signed requests accepted: forge $accepted heartbeats in $envs envs, ${revocations:-0} revocations (operator-signed)"
# A server that died during the run is a failure too.
for pid in "${PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "  a server process ($pid) exited during the run"; status=1; }
done
exit "$status"
