// The hostile matrix against the agent's local API: a native forge and two `brh-agent`
// processes of one env (A leads, B is a witness), no manifest (so no container layer), each
// enrolled like a real host (`brh-agent enroll`: its node key and the forge's and the top
// operator's public keys, no DOMINION_SEAL). Mutating endpoints take operator requests:
// Ed25519 over a string naming the receiving agent (sign.mjs), by the top operator (seed
// HMAC(seal, "brh-v1-operator-key")) or by a scoped operator whose certificate rides in
// `x-brh-operator`; an unsigned or wrongly signed request is 401, an operator without the
// route's scope 403 `forbidden`. `POST /federation/nudge` is an unauthenticated hint (202).
//
// Every refused case asserts: a 4xx status, a JSON body {"error":{"code","message"}} served as
// application/json, and both agents' state unchanged: `/status` without its clock fields, and
// `/events`.
//
// Run: cargo build --workspace --bins, then
//   FORGE_BIN=target/debug/forge node --test --test-concurrency=1 tests/e2e/hostile-agent.test.mjs
// (AGENT_BIN overrides target/debug/brh-agent.)
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { sleep, uniqueEnv } from "./client.mjs";
import { buildRequest, rawExchange, rawRequest, stallConnections } from "./raw.mjs";
import { assertConnectionCap, assertRefused, assertStalledHeadsDropped, describeRes } from "./refusal.mjs";
import {
  canonicalAgentRequest,
  canonicalRequest,
  ed25519FromSeed,
  edSignHex,
  enrolment,
  forgeKey,
  hmacHex,
  issueCredential,
  nodeKey,
  operatorKey,
  parseCredential,
  signAgentRequest,
} from "./sign.mjs";
import { FORGE, OPERATOR, SEAL, agentBin, dominionRoot, enroll, startAgent, startTarget } from "./targets.mjs";

const HB_MS = 5000;
const TTL_MS = 15000;

// ---------------------------------------------------------------------------------------------
// Context: the forge, agents A (leader) and B (witness), the operators' credentials, a caller
// nonce.

const ctx = {};
let seq = 0;
const nonce = () => `${ctx.boot}:${++seq}`;

/**
 * The x-brh-* headers for `to`, Ed25519-signed by `signer` (default the top operator; a scoped
 * credential adds `x-brh-operator`); `sig(msg)` replaces the signer (any other scheme); `sign`
 * overrides what the signature covers.
 */
function agentAuth({ to, method = "POST", path, caller = "ops", ts = Date.now(), nonce: n = nonce(), body = "", signer = OPERATOR, sig, sign = {} }) {
  const s = { to, method, path, caller, ts, nonce: n, body, ...sign };
  const h = sig
    ? { "x-brh-sig": sig(canonicalAgentRequest(s.to, s.method, s.path, s.caller, String(s.ts), s.nonce, s.body)) }
    : signAgentRequest(signer, s.to, s.method, s.path, s.caller, String(s.ts), s.nonce, s.body);
  return [
    ["x-brh-node", caller],
    ["x-brh-ts", String(ts)],
    ["x-brh-nonce", n],
    ["x-brh-sig", h["x-brh-sig"]],
    ...(h["x-brh-operator"] ? [["x-brh-operator", h["x-brh-operator"]]] : []),
  ];
}

/**
 * A signed POST to agent `at` (default A). `to` is whom the signature names (default the
 * receiver). `headers` rewrites the x-brh-* headers; `wireBody` replaces the body on the wire.
 */
function post(path, { at = ctx.a, to, body = "", wireBody, headers, extra = [], ...rest } = {}) {
  const { caller, ts, nonce: n, signer, sig, sign, ...req } = rest;
  let h = agentAuth({ to: to ?? at.node, path: sign?.path ?? path, caller, ts, nonce: n, body, signer, sig, sign });
  if (headers) h = headers(h);
  return rawRequest(at.url, {
    method: "POST",
    path,
    headers: [...h, ["content-type", "application/json"], ...extra],
    body: wireBody === undefined ? body : wireBody,
    ...req,
  });
}

// The authentication cases differ in one thing from a correctly signed `/deploy` of a valid
// body at the leader A, which passes authentication and the scope check and is then refused
// for what it asks (409 `not_configured`: A has no manifest), changing nothing.
const DEPLOY = "/deploy";
const DEPLOY_BODY = '{"image":"nginx:1.25"}';
const probe = (opts = {}) => post(DEPLOY, { body: DEPLOY_BODY, ...opts });
const scoped = (name) => ({ caller: ctx.creds[name].name, signer: ctx.creds[name] });

const withHeader = (name, value) => (h) =>
  value === undefined ? h.filter(([k]) => k !== name) : h.map(([k, v]) => (k === name ? [k, value] : [k, v]));

// ---------------------------------------------------------------------------------------------
// State

const CLOCK_FIELDS = ["uptime_s", "lease_remaining_ms", "leader_lease_remaining_ms"];

async function agentState(agent) {
  const s = await fetch(`${agent.url}/status`);
  const status = await s.json();
  for (const f of CLOCK_FIELDS) delete status[f];
  if (status.forge) delete status.forge.last_ok_ms;
  const e = await fetch(`${agent.url}/events`);
  return { status, events: await e.json() };
}

const bothStates = async () => ({ a: await agentState(ctx.a), b: await agentState(ctx.b) });

async function waitFor(pred, what, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Runs `brh-agent args` to completion; `{ status, out }` (stdout + stderr). */
function agentCli(args, env, timeoutMs = 20_000) {
  const r = spawnSync(agentBin(), args, { env: { PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: "1", ...env }, encoding: "utf8", timeout: timeoutMs });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** Starts `brh-agent run` with exactly `env` and waits for it to exit: `{ code, out }`. */
function runToExit(env, ms = 15_000) {
  return new Promise((resolve) => {
    const child = spawn(agentBin(), ["run", "--listen", "127.0.0.1:0", "--consensus-enabled", "false"], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: "1", BRH_RUNTIME: "api", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), ms);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal, out });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Assertions

const AUTH = { status: [400, 401] };
const UNAUTH = { status: 401, code: "unauthorized" };
const FORBIDDEN = { status: 403, code: "forbidden" };
const BAD = { status: 400, code: "bad_request" };
const TOO_LARGE = { status: 413, code: "too_large" };
const NOT_FOUND = { status: 404, code: "not_found" };
const METHOD_NOT_ALLOWED = { status: 405, code: "method_not_allowed" };

// ---------------------------------------------------------------------------------------------
// Cases: [name, expectation, () => response]

const cases = [];
const refuse = (name, expect, send, prepare) => cases.push({ name, expect, send, prepare });

// No authentication at all (nudge needs none: see the accepted tests).
for (const p of ["/deploy", "/restart/x", "/drain/x", "/switchover"]) {
  refuse(`unsigned POST ${p}`, UNAUTH, () => rawRequest(ctx.a.url, { method: "POST", path: p, body: '{"image":"nginx:1"}' }));
}
refuse("unsigned POST /deploy announcing 60,000 bytes: 401 before the body is read", UNAUTH, async () => {
  const res = await rawExchange(ctx.a.url, buildRequest({ method: "POST", path: "/deploy", contentLength: 60_000 }), { timeoutMs: 8000 });
  assert.ok(res.ms < 2000, `answered after ${res.ms} ms: it waited for the body`);
  return res;
});
refuse("unsigned POST /deploy announcing 70,000 bytes: refused at once", { status: [401, 413] }, async () => {
  const res = await rawExchange(ctx.a.url, buildRequest({ method: "POST", path: "/deploy", contentLength: 70_000 }), { timeoutMs: 8000 });
  assert.ok(res.ms < 2000, `answered after ${res.ms} ms`);
  return res;
});

// Keys and signed strings. A host holds its own node key: it signs nothing an agent's API
// accepts, and neither does any HMAC (the old env API key included: 403, a host's kind of
// credential never authorises an operator request) or the forge's key (401).
refuse("sig: the seal as an HMAC key", FORBIDDEN, () => probe({ sig: (m) => hmacHex(SEAL, m) }));
refuse("sig: the env's old API key, HMAC(seal, brh-v1-agent-api\\n{env})", FORBIDDEN, () =>
  probe({ sig: (m) => hmacHex(Buffer.from(hmacHex(SEAL, `brh-v1-agent-api\n${ctx.env}`), "hex"), m) }),
);
refuse("sig: the receiver's own node key (what a stolen host holds)", FORBIDDEN, () =>
  probe({ caller: ctx.a.node, sig: (m) => hmacHex(nodeKey(SEAL, ctx.env, ctx.a.node), m) }),
);
refuse("sig: a witness's node key on a switchover at the leader (a stolen host takes no lease)", FORBIDDEN, () =>
  post("/switchover", { body: `{"to":"${ctx.b.node}"}`, caller: ctx.b.node, sig: (m) => hmacHex(nodeKey(SEAL, ctx.env, ctx.b.node), m) }),
);
refuse("sig: the forge key (Ed25519) instead of the operator's", UNAUTH, () => probe({ signer: FORGE }));
refuse("sig: the top operator key of another seal", UNAUTH, () => probe({ signer: operatorKey("another-seal") }));
refuse("sig: Ed25519 with the node key as the seed", UNAUTH, () => probe({ signer: ed25519FromSeed(nodeKey(SEAL, ctx.env, ctx.a.node)) }));
refuse("sig: the forge's string (brh-v1, no receiver) with the operator key", UNAUTH, () => {
  const ts = Date.now();
  const n = nonce();
  const sig = edSignHex(OPERATOR, canonicalRequest("POST", DEPLOY, "ops", ts, n, DEPLOY_BODY));
  return probe({ ts, nonce: n, headers: withHeader("x-brh-sig", sig) });
});
refuse("sig: signed for agent B, sent to agent A", UNAUTH, () => probe({ to: ctx.b.node }));
refuse("sig: signed for no agent (empty receiver)", UNAUTH, () => probe({ to: "" }));
refuse("sig: signed for the receiver's name in uppercase", UNAUTH, () => probe({ to: ctx.a.node.toUpperCase() }));
refuse("sig: over another path", UNAUTH, () => probe({ sign: { path: "/restart/x" } }));
refuse("sig: over the path with a query", UNAUTH, () => probe({ sign: { path: `${DEPLOY}?x=1` } }));
refuse("sig: over another body", UNAUTH, () => probe({ sign: { body: '{"image":"nginx:1.26"}' } }));
refuse("sig: over another caller", UNAUTH, () => probe({ sign: { caller: "root" } }));
refuse("sig: over another method", UNAUTH, () => probe({ sign: { method: "GET" } }));
const mutateSig = {
  "uppercase hex": (s) => s.toUpperCase(),
  "127 hex digits": (s) => s.slice(1),
  "129 hex digits": (s) => `${s}0`,
  "64 hex digits (the first half)": (s) => s.slice(0, 64),
  "non-hex digit": (s) => `g${s.slice(1)}`,
  "one bit flipped": (s) => `${s.slice(0, 127)}${(parseInt(s[127], 16) ^ 1).toString(16)}`,
  "R and S swapped": (s) => `${s.slice(64)}${s.slice(0, 64)}`,
  "base64 of the signature": (s) => Buffer.from(s, "hex").toString("base64"),
};
for (const [name, f] of Object.entries(mutateSig)) {
  // 64 hex digits is the form of an HMAC, a host's kind of credential: 403 whatever it signs.
  const expect = name.startsWith("64 hex") ? FORBIDDEN : AUTH;
  refuse(`sig: ${name}`, expect, () => probe({ headers: (h) => h.map(([k, v]) => [k, k === "x-brh-sig" ? f(v) : v]) }));
}
for (const h of ["x-brh-node", "x-brh-ts", "x-brh-nonce", "x-brh-sig"]) {
  refuse(`auth: missing ${h}`, AUTH, () => probe({ headers: withHeader(h, undefined) }));
  refuse(`auth: empty ${h}`, AUTH, () => probe({ headers: withHeader(h, "") }));
  refuse(`duplicate ${h}, both copies equal`, AUTH, () => probe({ headers: (hs) => [...hs, hs.find(([k]) => k === h)] }));
  refuse(`duplicate ${h}, the second one different`, AUTH, () =>
    probe({
      headers: (hs) => {
        const v = hs.find(([k]) => k === h)[1];
        const other = { "x-brh-node": "root", "x-brh-ts": String(Number(v) + 1), "x-brh-nonce": `${ctx.boot}:999999`, "x-brh-sig": "0".repeat(128) }[h];
        return [...hs, [h, other]];
      },
    }),
  );
}
refuse("duplicate x-brh-sig under two spellings of the name", AUTH, () =>
  probe({ headers: (hs) => [...hs, ["X-Brh-Sig", hs.find(([k]) => k === "x-brh-sig")[1]]] }),
);

// Scoped operators: a certificate the top operator signed (env, scopes, expiry, the holder's
// public key) in x-brh-operator, and the holder's own signature. Authenticated without the
// route's scope: 403 `forbidden`; a certificate that does not check out: 401.
refuse("scope: a switchover-only credential (brh-agent operator issue) on /deploy", FORBIDDEN, () => probe(scoped("switchover")));
refuse("scope: a switchover-only credential on /restart/x", FORBIDDEN, () => post("/restart/x", scoped("switchover")));
refuse("scope: a switchover-only credential on /drain/x", FORBIDDEN, () => post("/drain/x", scoped("switchover")));
refuse("scope: a containers-only credential on /switchover at the leader", FORBIDDEN, () =>
  post("/switchover", { body: `{"to":"${ctx.b.node}"}`, ...scoped("containers") }),
);
refuse("scope: a read-only credential on /deploy", FORBIDDEN, () => probe(scoped("read")));
refuse("scope: a credential with every scope, for another env", FORBIDDEN, () => probe(scoped("otherEnv")));
refuse("cert: expired", UNAUTH, () => probe(scoped("expired")));
refuse("cert: signed by another federation's top operator", UNAUTH, () => probe(scoped("foreign")));
refuse("cert: the request names another caller than the certificate", UNAUTH, () => probe({ ...scoped("containers"), caller: "ops" }));
refuse("cert: scopes widened after issue (switchover → switchover+containers)", UNAUTH, () => {
  const c = ctx.creds.switchover;
  return probe({ caller: c.name, signer: { ...c, cert: c.cert.replace(":switchover:", ":switchover+containers:") } });
});
refuse("cert: env changed after issue", UNAUTH, () => {
  const c = ctx.creds.otherEnv;
  return probe({ caller: c.name, signer: { ...c, cert: c.cert.replace(`:${c.env}:`, `:${ctx.env}:`) } });
});
refuse("cert: the holder's signature without its certificate", UNAUTH, () => probe({ caller: ctx.creds.containers.name, signer: ctx.creds.containers.pair }));
refuse("cert: the top operator's signature under a holder's certificate", UNAUTH, () =>
  probe({ caller: ctx.creds.containers.name, signer: { pair: OPERATOR, cert: ctx.creds.containers.cert } }),
);
refuse("cert: one holder's certificate, another holder's key", UNAUTH, () =>
  probe({ caller: ctx.creds.containers.name, signer: { pair: ctx.creds.switchover.pair, cert: ctx.creds.containers.cert } }),
);
for (const [name, f] of Object.entries({
  "not brhop1": (c) => c.replace(/^brhop1:/, "brhop2:"),
  "a field missing": (c) => c.split(":").slice(0, 6).join(":"),
  "an extra field": (c) => `${c}:x`,
  "scopes joined by a comma": (c) => c.replace(":switchover+containers:", ":switchover,containers:"),
  "expiry with a leading zero": (c) => c.replace(/:(\d+):([0-9a-f]{64}):/, ":0$1:$2:"),
  "empty": () => "",
})) {
  refuse(`cert: malformed x-brh-operator (${name})`, { status: [400, 401] }, () => {
    const c = ctx.creds.both;
    return probe({ caller: c.name, signer: c, headers: (h) => h.map(([k, v]) => [k, k === "x-brh-operator" ? f(v) : v]) });
  });
}

// Timestamps.
const tsSpellings = {
  "leading zeros": (n) => `000${n}`,
  "plus sign": (n) => `+${n}`,
  "decimal point": (n) => `${n}.0`,
  "exponent": (n) => `${n / 1000}e3`,
  "hex": (n) => `0x${n.toString(16)}`,
};
for (const [name, f] of Object.entries(tsSpellings)) {
  refuse(`ts: ${name}, signed over the number`, AUTH, () => {
    const now = Date.now();
    return probe({ ts: now, headers: withHeader("x-brh-ts", f(now)) });
  });
  refuse(`ts: ${name}, signed over the text`, AUTH, () => probe({ ts: f(Date.now()) }));
}
for (const [name, ts] of Object.entries({
  "two minutes old": () => Date.now() - 120_000,
  "two minutes ahead": () => Date.now() + 120_000,
  "0": () => 0,
  "negative": () => "-1",
  "2^64": () => "18446744073709551616",
})) {
  refuse(`ts: ${name}`, AUTH, () => probe({ ts: ts() }));
}

// Nonces.
refuse("nonce: boot:000278 signed as boot:278", AUTH, () => {
  const n = `${ctx.boot}:2000278`;
  return probe({ nonce: n, headers: withHeader("x-brh-nonce", `${ctx.boot}:0002000278`) });
});
for (const [name, f] of Object.entries({
  "seq with leading zeros": (b) => `${b}:000278`,
  "negative seq": (b) => `${b}:-278`,
  "empty seq": (b) => `${b}:`,
  "empty boot": () => ":278",
  "no colon": (b) => `${b}278`,
  "seq over u64": (b) => `${b}:18446744073709551616`,
  "boot of 65 characters": () => `${"b".repeat(65)}:278`,
  "boot with a slash": () => "b/x:278",
  "10 KiB": (b) => `${b}${"x".repeat(10 * 1024)}:278`,
})) {
  refuse(`nonce: ${name}`, AUTH, () => probe({ nonce: f(ctx.boot) }));
}

// Odd caller names.
for (const [name, caller] of Object.entries({
  "unicode": "öps",
  "dot-dot-slash": "../ops",
  "percent-encoded dots": "%2e%2e",
  "65 characters": "o".repeat(65),
  "1000 characters": "o".repeat(1000),
  "inner space": "o ps",
  "leading dash": "-ops",
  "percent-encoded CRLF": "ops%0d%0ax-evil: 1",
})) {
  refuse(`caller: ${name}`, AUTH, async () => {
    const res = await probe({ caller });
    assert.equal(res.headers.get("x-evil"), null, "no header injected");
    return res;
  });
}
refuse("caller: control byte", { ...AUTH, httpLayer: true }, () => probe({ headers: withHeader("x-brh-node", "o\u0001ps") }));

// Replays.
refuse(
  "replay: the same signed request twice at one agent",
  UNAUTH,
  (p) => post(DEPLOY, { at: ctx.b, body: DEPLOY_BODY, ts: p.ts, nonce: p.nonce }),
  async () => {
    const ts = Date.now();
    const n = nonce();
    const first = await post(DEPLOY, { at: ctx.b, body: DEPLOY_BODY, ts, nonce: n });
    assert.equal(first.status, 200, describeRes(first));
    assert.deepEqual(first.json, { status: "ignored", reason: "not-leader" });
    return { ts, nonce: n };
  },
);
refuse(
  "replay across agents: a request accepted by A, replayed at B",
  UNAUTH,
  (p) => probe({ at: ctx.b, to: ctx.a.node, ts: p.ts, nonce: p.nonce }),
  async () => {
    const ts = Date.now();
    const n = nonce();
    const first = await probe({ ts, nonce: n });
    assert.equal(first.status, 409, `passed authentication at A: ${describeRes(first)}`);
    return { ts, nonce: n };
  },
);
refuse("replay across agents: a request for A sent to B first", UNAUTH, () => probe({ at: ctx.b, to: ctx.a.node }));
refuse(
  "replay across agents: a /deploy accepted by witness B, replayed at leader A",
  UNAUTH,
  (p) => post("/deploy", { at: ctx.a, to: ctx.b.node, body: p.body, ts: p.ts, nonce: p.nonce }),
  async () => {
    const ts = Date.now();
    const n = nonce();
    const body = '{"image":"nginx:1.25"}';
    const first = await post("/deploy", { at: ctx.b, body, ts, nonce: n });
    assert.equal(first.status, 200, describeRes(first));
    assert.deepEqual(first.json, { status: "ignored", reason: "not-leader" });
    return { ts, nonce: n, body };
  },
);
refuse(
  "replay: a scoped operator's request replayed at the same agent",
  UNAUTH,
  (p) => post("/switchover", { at: ctx.b, body: "{}", ts: p.ts, nonce: p.nonce, ...scoped("switchover") }),
  async () => {
    const ts = Date.now();
    const n = nonce();
    const first = await post("/switchover", { at: ctx.b, body: "{}", ts, nonce: n, ...scoped("switchover") });
    assert.equal(first.status, 409, describeRes(first));
    assert.equal(first.json.error.code, "not_leader");
    return { ts, nonce: n };
  },
);

// Bodies.
const PAD_PREFIX = '{"image":"nginx:1.25","pad":"';
const padded = (n) => `${PAD_PREFIX}${"x".repeat(n - PAD_PREFIX.length - 2)}"}`;
refuse("body: 70,000 bytes with content-length", TOO_LARGE, () => post("/deploy", { body: padded(70_000) }));
refuse("body: 65,537 bytes (one over the cap)", TOO_LARGE, () => post("/deploy", { body: padded(65_537) }));
refuse("body: chunked, 10 chunks of 8 KiB", TOO_LARGE, () => {
  const body = padded(80 * 1024);
  return post("/deploy", { body, chunked: Array.from({ length: 10 }, (_, i) => body.slice(i * 8192, (i + 1) * 8192)) });
});
refuse("body: content-length 70,000 announced with valid headers, nothing sent: answered at once", TOO_LARGE, async () => {
  const body = padded(70_000);
  const h = agentAuth({ to: ctx.a.node, path: "/deploy", body });
  const res = await rawExchange(ctx.a.url, buildRequest({ method: "POST", path: "/deploy", headers: h, contentLength: 70_000 }), { timeoutMs: 8000 });
  assert.ok(res.ms < 2000, `answered after ${res.ms} ms`);
  return res;
});
for (const [name, framing] of Object.entries({
  "chunk size not hex": "zz\r\nabc\r\n0\r\n\r\n",
  "chunk size overflows": "ffffffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
  "negative chunk size": "-5\r\nabcde\r\n0\r\n\r\n",
  "no CRLF after the chunk data": "5\r\nabcdeXY0\r\n\r\n",
  "chunk data longer than its size": "2\r\nabcdef\r\n0\r\n\r\n",
  "empty chunk size line": "\r\nabc\r\n0\r\n\r\n",
})) {
  refuse(`chunked: ${name}`, BAD, () =>
    post("/deploy", { body: '{"image":"nginx:1.25"}', wireBody: null, contentLength: null, extra: [["transfer-encoding", "chunked"]], rawBody: framing }),
  );
}
refuse("chunked: connection half-closed in the middle of a chunk", { status: 400 }, () => {
  const body = '{"image":"nginx:1.25"}';
  const h = agentAuth({ to: ctx.a.node, path: "/deploy", body });
  const head = buildRequest({ method: "POST", path: "/deploy", headers: [...h, ["transfer-encoding", "chunked"]], contentLength: null });
  return rawExchange(ctx.a.url, async (sock) => {
    sock.write(head);
    sock.write('40\r\n{"image":');
    await sleep(100);
    sock.end();
  });
});

// JSON bodies of /deploy at the leader (signed correctly over the hostile bytes).
const B = (...parts) => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p, "utf8"))));
for (const [name, body] of Object.entries({
  "malformed": "{not json",
  "truncated": '{"image":"nginx:1.25"',
  "empty body": "",
  "non-UTF-8 byte in a string": B('{"image":"nginx', Buffer.from([0xff]), '"}'),
  "lone surrogate escape": '{"image":"\\ud800"}',
  "UTF-8 BOM": B(Buffer.from([0xef, 0xbb, 0xbf]), '{"image":"nginx:1.25"}'),
  "trailing garbage": '{"image":"nginx:1.25"} x',
  "duplicate key": '{"image":"nginx:1.25","image":"evil:1"}',
  "60,000 unclosed [": "[".repeat(60_000),
  "60,000 unclosed [ in an unknown field": `{"image":"nginx:1.25","deep":${"[".repeat(60_000)}`,
  "top-level array": "[]",
  "string": '"nginx:1.25"',
  "null": "null",
  "image: number": '{"image":5}',
  "image: null": '{"image":null}',
  "image: object": '{"image":{"name":"nginx"}}',
  "missing image": '{"service":"api"}',
  "empty object": "{}",
  "pull: unknown policy": '{"image":"nginx:1.25","pull":"sometimes"}',
  "pull: number": '{"image":"nginx:1.25","pull":1}',
  "service: number": '{"image":"nginx:1.25","service":5}',
  "branch: array": '{"image":"nginx:1.25","branch":["main"]}',
  "image: uppercase repository": '{"image":"UPPER/case:1"}',
  "image: path traversal": '{"image":"../../etc/passwd"}',
  "image: empty": '{"image":""}',
  "image: space in tag": '{"image":"nginx:1 2"}',
  "image: bad digest": '{"image":"nginx@sha256:zz"}',
  "image: CRLF": '{"image":"nginx:1\\r\\nx"}',
  "image: 300 characters": `{"image":"${"a".repeat(300)}"}`,
})) {
  refuse(`deploy json: ${name}`, BAD, () => post("/deploy", { body }));
}

// Valid requests the agent cannot carry out: 4xx, never 501.
refuse("deploy at a leader without a manifest (unknown fields ignored): 4xx, not 501", { status: [409, 422] }, () =>
  post("/deploy", { body: `{"image":"nginx:1.25","service":"api","zzz":{"a":[1,2]},"deep":${"[".repeat(5000)}${"]".repeat(5000)}}` }),
);
for (const action of ["restart", "drain"]) {
  refuse(`${action} at a leader without a manifest: 4xx, not 501`, { status: [404, 409] }, () => post(`/${action}/x`));
  refuse(`${action} at a witness: 409 not_leader`, { status: 409 }, () => post(`/${action}/x`, { at: ctx.b }));
}

// Names in /restart/{name}, signed over the path as sent.
for (const [name, seg] of Object.entries({
  "percent-encoded dots": "%2e%2e",
  "encoded slashes": "..%2f..%2fetc",
  "invalid UTF-8": "%FF",
  "NUL": "%00",
  "CRLF": "a%0d%0ab",
  "unicode": "%C3%BC",
  "space": "x%20y",
  "64 characters": "c".repeat(64),
  "1000 characters": "c".repeat(1000),
})) {
  refuse(`restart name: ${name}`, { status: [400, 404] }, () => post(`/restart/${seg}`));
}
refuse("restart name: invalid UTF-8, unsigned", { status: [400, 401, 404] }, () => rawRequest(ctx.a.url, { method: "POST", path: "/restart/%FF" }));

// Methods and paths.
for (const [method, p] of [
  ["GET", "/deploy"],
  ["GET", "/federation/nudge"],
  ["GET", "/restart/x"],
  ["PUT", "/status"],
  ["DELETE", "/restart/x"],
  ["POST", "/status"],
  ["POST", "/health"],
  ["PATCH", "/events"],
  ["TRACE", "/health"],
  ["post", "/deploy"],
  ["FOO", "/deploy"],
]) {
  refuse(`method: ${method} ${p}`, METHOD_NOT_ALLOWED, () => rawRequest(ctx.a.url, { method, path: p }));
}
for (const p of ["//status", "/status/", "/STATUS", "/%FF", "/restart/", "/restart/a/b", "/federation//state", `/${"s".repeat(10_000)}`]) {
  refuse(`path: GET ${p.length > 40 ? `${p.slice(0, 20)}… (${p.length})` : p}`, NOT_FOUND, () => rawRequest(ctx.a.url, { path: p }));
}
refuse("path: POST /deploy/ signed over that path", { status: [401, 404] }, () => post("/deploy/"));
refuse("path: POST //deploy signed over that path", { status: [401, 404] }, () => post("//deploy"));
refuse("path: POST /restart/x/../../deploy signed over that path", { status: [400, 401, 404] }, () => post("/restart/x/../../deploy"));

// Headers.
refuse("headers: one header of 100 KiB", { status: [400, 401, 413, 431] }, () =>
  rawRequest(ctx.a.url, { method: "POST", path: "/deploy", headers: [["x-junk", "a".repeat(100 * 1024)]], body: "{}" }),
);
refuse("headers: 500 headers", { status: [400, 401, 431] }, () =>
  rawRequest(ctx.a.url, { method: "POST", path: "/deploy", headers: Array.from({ length: 500 }, (_, i) => [`x-junk-${i}`, "v"]), body: "{}" }),
);
refuse("headers: control byte in a header value", { status: [400, 401], httpLayer: true }, () =>
  rawRequest(ctx.a.url, { method: "POST", path: "/deploy", headers: [["x-junk", "a\u0001b"]], body: "{}" }),
);

// ---------------------------------------------------------------------------------------------

describe("hostile agent API", () => {
  before(async () => {
    ctx.forge = await startTarget("native", { ttl: TTL_MS, hb: HB_MS });
    ctx.env = uniqueEnv("hostile-agent");
    ctx.boot = `c${Date.now().toString(36)}`;
    ctx.a = await startAgent({ forgeUrl: ctx.forge.url, node: "agent-a", env: ctx.env, hbMs: HB_MS, ttlMs: TTL_MS });
    await waitFor(async () => (await (await fetch(`${ctx.a.url}/status`)).json()).role === "leader", "agent-a to lead");
    ctx.b = await startAgent({ forgeUrl: ctx.forge.url, node: "agent-b", env: ctx.env, hbMs: HB_MS, ttlMs: TTL_MS });
    await waitFor(async () => {
      const s = await (await fetch(`${ctx.b.url}/status`)).json();
      return s.role === "witness" && s.leader === "agent-a";
    }, "agent-b to follow agent-a");
    // The receiver's name, as a client learns it.
    for (const agent of [ctx.a, ctx.b]) {
      const h = await (await fetch(`${agent.url}/health`)).json();
      assert.equal(h.node, agent.node);
      assert.equal(h.env, ctx.env);
    }
    // Scoped operators. One credential from the CLI, the way an operator hands one out; the
    // others made here (sign.mjs issueCredential, the same format). (`--ttl 60m`: the agent's
    // duration parser takes ms, s and m only, so `1h` — and the default `24h` — are refused.)
    const issued = agentCli(["operator", "issue", "--name", "sw-op", "--scopes", "switchover", "--env", ctx.env, "--ttl", "60m"], { DOMINION_SEAL: SEAL });
    assert.equal(issued.status, 0, issued.out);
    const m = /^BRH_OPERATOR_CREDENTIAL='([^']+)'$/m.exec(issued.out);
    assert.ok(m, issued.out);
    ctx.cliCredential = m[1];
    const soon = Math.floor(Date.now() / 1000) + 3600;
    const seed = (i) => Buffer.alloc(32, i);
    const mint = (name, scopes, { env = ctx.env, expiresS = soon, top = OPERATOR, i }) => issueCredential(top, { name, env, scopes, expiresS, seed: seed(i) });
    ctx.creds = {
      switchover: parseCredential(ctx.cliCredential),
      containers: mint("ct-op", ["containers"], { i: 1 }),
      read: mint("rd-op", ["read"], { i: 2 }),
      both: mint("all-op", ["switchover", "containers"], { i: 3 }),
      otherEnv: mint("far-op", ["read", "switchover", "containers"], { env: `${ctx.env}-other`, i: 4 }),
      expired: mint("old-op", ["containers"], { expiresS: Math.floor(Date.now() / 1000) - 60, i: 5 }),
      foreign: mint("alien-op", ["containers"], { top: operatorKey("another-federation"), i: 6 }),
    };
    // Both beat once more (a nudge brings the beat forward), so peers_alive settles at 2;
    // then the state is stable.
    for (const agent of [ctx.a, ctx.b]) await rawRequest(agent.url, { method: "POST", path: "/federation/nudge" });
    for (const agent of [ctx.a, ctx.b]) {
      await waitFor(async () => (await (await fetch(`${agent.url}/status`)).json()).forge.peers_alive === 2, `${agent.node} to see 2 peers alive`);
    }
    await sleep(500);
  });
  after(async () => {
    await ctx.a?.stop();
    await ctx.b?.stop();
    await ctx.forge?.stop();
  });

  test("a correctly signed request passes authentication (the cases below differ from it in one thing)", async () => {
    const res = await probe();
    assert.equal(res.status, 409, describeRes(res));
    assert.equal(res.json.error.code, "not_configured", "refused for what it asks, after authentication");
    const atB = await probe({ at: ctx.b });
    assert.equal(atB.status, 200, describeRes(atB));
    assert.deepEqual(atB.json, { status: "ignored", reason: "not-leader" });
    // Scoped operators with the route's scope pass too.
    for (const name of ["containers", "both"]) {
      const r = await probe(scoped(name));
      assert.equal(r.status, 409, `${name}: ${describeRes(r)}`);
      assert.equal(r.json.error.code, "not_configured");
    }
    const sw = await post("/switchover", { at: ctx.b, body: "{}", ...scoped("switchover") });
    assert.equal(sw.status, 409, describeRes(sw));
    assert.equal(sw.json.error.code, "not_leader", "a switchover credential passes at a witness, which does not lead");
  });

  test("enrolment: the agents run on `brh-agent enroll` output only — no seal on the host", () => {
    for (const agent of [ctx.a, ctx.b]) {
      assert.deepEqual(
        Object.keys(agent.vars).sort(),
        ["BRH_ENV", "BRH_FEDERATION", "BRH_FORGE_KEY", "BRH_NODE_ID", "BRH_NODE_KEY", "BRH_OPERATOR_KEY", "FORGE_DOMINION_ROOT"],
      );
      const want = enrolment(SEAL, ctx.env, agent.node);
      for (const k of Object.keys(want)) assert.equal(agent.vars[k], want[k], k);
      assert.ok(!JSON.stringify(agent.vars).includes(SEAL), "the seal is not in a host's environment");
      assert.equal(agent.vars.BRH_FORGE_KEY, forgeKey(SEAL).publicHex);
    }
    assert.notEqual(ctx.a.vars.BRH_NODE_KEY, ctx.b.vars.BRH_NODE_KEY, "each host its own key");
  });

  test("an agent given DOMINION_SEAL refuses to start: without BRH_NODE_KEY (unless --legacy-seal), and next to it", async () => {
    const root = dominionRoot(SEAL, ctx.forge.url, ctx.env);
    const base = { BRH_NODE_ID: "agent-s", BRH_ENV: ctx.env, FORGE_DOMINION_ROOT: root };
    const sealOnly = await runToExit({ ...base, DOMINION_SEAL: SEAL });
    assert.notEqual(sealOnly.code, 0, sealOnly.out);
    assert.match(sealOnly.out, /BRH_NODE_KEY/, sealOnly.out);
    assert.match(sealOnly.out, /--legacy-seal/, sealOnly.out);
    const enrolled = enroll({ node: "agent-s", root });
    const both = await runToExit({ ...enrolled, DOMINION_SEAL: SEAL });
    assert.notEqual(both.code, 0, both.out);
    assert.match(both.out, /DOMINION_SEAL/, both.out);
    // An enrolled host whose keys are not this federation's: the root does not verify.
    const wrong = await runToExit({ ...enrolled, BRH_FORGE_KEY: forgeKey("another-seal").publicHex });
    assert.notEqual(wrong.code, 0, wrong.out);
    assert.match(wrong.out, /FORGE_DOMINION_ROOT/, wrong.out);
  });

  test("--legacy-seal: an agent may still run with DOMINION_SEAL, warned, and leads", async () => {
    // In an env of its own, so the agents of the matrix below keep their peer count.
    const legacy = await startAgent({
      forgeUrl: ctx.forge.url,
      node: "agent-l",
      env: `${ctx.env}-legacy`,
      hbMs: HB_MS,
      ttlMs: TTL_MS,
      legacySeal: true,
    });
    try {
      await waitFor(async () => {
        const s = await (await fetch(`${legacy.url}/status`)).json();
        return s.role === "leader" && s.leader === "agent-l";
      }, "agent-l to lead its env");
      assert.match(legacy.log(), /--legacy-seal/);
    } finally {
      await legacy.stop();
    }
  });

  for (const c of cases) {
    test(c.name, async () => {
      const prepared = c.prepare ? await c.prepare() : undefined;
      const beforeState = await bothStates();
      const res = await c.send(prepared);
      assertRefused(res, c.expect);
      const afterState = await bothStates();
      assert.deepEqual(afterState, beforeState, "a refused request changed an agent's state");
    });
  }

  test("accepted: /deploy at a witness answers the original's ignored/not-leader", async () => {
    const res = await post("/deploy", { at: ctx.b, body: '{"image":"nginx:1.25"}' });
    assert.equal(res.status, 200, describeRes(res));
    assert.deepEqual(res.json, { status: "ignored", reason: "not-leader" });
  });

  test("accepted: header names in any case", async () => {
    const res = await probe({ headers: (h) => h.map(([k, v]) => [k.toUpperCase(), v]) });
    assert.equal(res.status, 409, describeRes(res));
    assert.equal(res.json.error.code, "not_configured");
  });

  test("accepted: a nudge needs no authentication — any POST is 202, its body and headers ignored", async () => {
    for (const req of [
      { body: "" },
      { body: "{not json" },
      { body: '{"image":"nginx:1"}', headers: [["x-brh-node", "../evil"], ["x-brh-sig", "zz"]] },
      { body: "x".repeat(1000), headers: [["x-brh-ts", "0"]] },
    ]) {
      for (const agent of [ctx.a, ctx.b]) {
        const res = await rawRequest(agent.url, { method: "POST", path: "/federation/nudge", ...req });
        assert.equal(res.status, 202, describeRes(res));
        assert.deepEqual(res.json, { status: "nudged" });
      }
    }
    // A signed one (as an older agent sends it) is a nudge too.
    const signed = await post("/federation/nudge");
    assert.equal(signed.status, 202, describeRes(signed));
  });

  test("nudges only bring heartbeats forward, at most one per 250 ms", async () => {
    const beats = async () => {
      const m = await (await fetch(`${ctx.forge.url}/metrics`)).text();
      return Number(new RegExp(`^brh_forge_heartbeats_total\\{env="${ctx.env}"\\} (\\d+)`, "m").exec(m)?.[1] ?? 0);
    };
    await sleep(300);
    const before = await beats();
    const t0 = Date.now();
    let sent = 0;
    while (Date.now() - t0 < 1000) {
      const res = await rawRequest(ctx.a.url, { method: "POST", path: "/federation/nudge" });
      assert.equal(res.status, 202, describeRes(res));
      sent += 1;
      await sleep(10);
    }
    await sleep(400);
    const n = (await beats()) - before;
    // ~1.4 s: at most 1 + 1400/250 nudged beats of A, plus one regular beat each of A and B.
    assert.ok(sent >= 30, `sent ${sent} nudges`);
    assert.ok(n >= 2, `${sent} nudges brought ${n} heartbeats: none forward`);
    assert.ok(n <= 9, `${sent} nudges in 1 s brought ${n} heartbeats: not spaced 250 ms`);
  });

  test("accepted: reads ignore odd queries, and the receiver's name comes from /health", async () => {
    for (const p of ["/status?x=%FF", "/health?env=../x", "/events?limit=-1"]) {
      const res = await rawRequest(ctx.a.url, { path: p });
      assert.equal(res.status, 200, `${p}: ${describeRes(res)}`);
    }
  });

  test("roles did not change through all of it", async () => {
    const a = await (await fetch(`${ctx.a.url}/status`)).json();
    const b = await (await fetch(`${ctx.b.url}/status`)).json();
    assert.deepEqual([a.role, a.leader, a.term], ["leader", "agent-a", 1]);
    assert.deepEqual([b.role, b.leader, b.term], ["witness", "agent-a", 1]);
  });

  test("a scoped operator switches over with the CLI (BRH_OPERATOR_CREDENTIAL, no seal), and the top operator back", async () => {
    const env = {
      FORGE_DOMINION_ROOT: ctx.a.vars.FORGE_DOMINION_ROOT,
      BRH_FORGE_KEY: ctx.a.vars.BRH_FORGE_KEY,
      BRH_OPERATOR_CREDENTIAL: ctx.cliCredential,
    };
    const out = agentCli(["switchover", "--to", "agent-b"], env);
    assert.equal(out.status, 0, out.out);
    assert.match(out.out, /switchover: agent-a → agent-b \(term 2\)/);
    await waitFor(async () => (await (await fetch(`${ctx.b.url}/status`)).json()).role === "leader", "agent-b to lead");
    const events = await (await fetch(`${ctx.a.url}/events`)).json();
    assert.ok(events.some((e) => /sw-op/.test(e.message)), `the events name the operator: ${JSON.stringify(events.slice(0, 5))}`);
    // The same credential cannot deploy: the CLI says forbidden.
    const deploy = agentCli(["deploy", "--image", "nginx:1.25", "--agent", ctx.b.url], { ...env, BRH_ENV: ctx.env });
    assert.notEqual(deploy.status, 0, deploy.out);
    assert.match(deploy.out, /403 forbidden/, deploy.out);
    // The top operator (from the seal) hands it back.
    const back = agentCli(["switchover", "--to", "agent-a"], { FORGE_DOMINION_ROOT: env.FORGE_DOMINION_ROOT, DOMINION_SEAL: SEAL });
    assert.equal(back.status, 0, back.out);
    assert.match(back.out, /switchover: agent-b → agent-a \(term 3\)/);
    await waitFor(async () => (await (await fetch(`${ctx.a.url}/status`)).json()).role === "leader", "agent-a to lead again");
    await waitFor(async () => (await (await fetch(`${ctx.b.url}/status`)).json()).leader === "agent-a", "agent-b to follow agent-a again");
  });

  test("slow clients: 300 connections holding half a request head; /health and a signed request are still served", async () => {
    const stalled = await stallConnections(ctx.a.url, 300, "POST /deploy HTTP/1.1\r\nHost: 127.0.0.1\r\nx-brh-");
    try {
      assert.ok(stalled.opened >= 290, `opened ${stalled.opened} of 300`);
      let t0 = Date.now();
      const health = await rawRequest(ctx.a.url, { path: "/health" }, { timeoutMs: 5000 });
      assert.equal(health.status, 200, describeRes(health));
      assert.ok(Date.now() - t0 < 3000, `/health took ${Date.now() - t0} ms`);
      t0 = Date.now();
      const signed = await probe();
      assert.equal(signed.status, 409, describeRes(signed));
      assert.ok(Date.now() - t0 < 3000, `the signed request took ${Date.now() - t0} ms`);
    } finally {
      stalled.release();
    }
  });

  test("slow clients: a half-sent request head is dropped within the header read timeout (≤ 10 s)", async () => {
    await assertStalledHeadsDropped(ctx.a.url);
  });

  test("slow clients: a signed body that never arrives is dropped within the body read timeout", async () => {
    const body = '{"image":"nginx:1.25"}';
    const h = agentAuth({ to: ctx.a.node, path: "/deploy", body });
    const res = await rawExchange(
      ctx.a.url,
      async (sock) => {
        sock.write(buildRequest({ method: "POST", path: "/deploy", headers: h, contentLength: body.length }));
        sock.write(body.slice(0, 5));
      },
      { timeoutMs: 15_000 },
    );
    assert.ok(res.ms < 12_000, `held for ${res.ms} ms`);
    if (res.status !== 0) assertRefused(res, { status: [400, 408] });
  });

  test("connection cap: beyond it, connections are refused or closed at once, not queued", async () => {
    const small = await startAgent({
      forgeUrl: ctx.forge.url,
      node: "agent-c",
      env: ctx.env,
      hbMs: HB_MS,
      ttlMs: TTL_MS,
      nofile: 256,
    });
    try {
      await assertConnectionCap(small.url);
    } finally {
      await small.stop();
    }
  });
});
