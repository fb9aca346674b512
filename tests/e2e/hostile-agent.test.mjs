// The hostile matrix against the agent's local API: a native forge and two `brh-agent`
// processes of one env (A leads, B is a witness), no manifest (so no container layer).
// Mutating endpoints are signed with the env's API key HMAC-SHA256(seal,
// "brh-v1-agent-api\n{env}") over a string naming the receiving agent (sign.mjs).
//
// Every refused case asserts: a 4xx status, a JSON body {"error":{"code","message"}} served as
// application/json, and both agents' state unchanged: `/status` without its clock fields, and
// `/events`.
//
// Run: cargo build --workspace --bins, then
//   FORGE_BIN=target/debug/forge node --test --test-concurrency=1 tests/e2e/hostile-agent.test.mjs
// (AGENT_BIN overrides target/debug/brh-agent.)
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sleep, uniqueEnv } from "./client.mjs";
import { buildRequest, rawExchange, rawRequest, stallConnections } from "./raw.mjs";
import { assertConnectionCap, assertRefused, assertStalledHeadsDropped, describeRes } from "./refusal.mjs";
import { agentApiKey, canonicalRequest, hmacHex, signAgentRequest } from "./sign.mjs";
import { SEAL, startAgent, startTarget } from "./targets.mjs";

const HB_MS = 5000;
const TTL_MS = 15000;

// ---------------------------------------------------------------------------------------------
// Context: the forge, agents A (leader) and B (witness), the env's API key, a caller nonce.

const ctx = {};
let seq = 0;
const nonce = () => `${ctx.boot}:${++seq}`;

/** The x-brh-* headers for `to`; `sign` overrides what the signature covers. */
function agentAuth({ to, method = "POST", path, caller = "ops", ts = Date.now(), nonce: n = nonce(), body = "", key = ctx.key, sign = {} }) {
  const s = { to, method, path, caller, ts, nonce: n, body, ...sign };
  const h = signAgentRequest(key, s.to, s.method, s.path, s.caller, String(s.ts), s.nonce, s.body);
  return [
    ["x-brh-node", caller],
    ["x-brh-ts", String(ts)],
    ["x-brh-nonce", n],
    ["x-brh-sig", h["x-brh-sig"]],
  ];
}

/**
 * A signed POST to agent `at` (default A). `to` is whom the signature names (default the
 * receiver). `headers` rewrites the x-brh-* headers; `wireBody` replaces the body on the wire.
 */
function post(path, { at = ctx.a, to, body = "", wireBody, headers, extra = [], ...rest } = {}) {
  const { caller, ts, nonce: n, key, sign, ...req } = rest;
  let h = agentAuth({ to: to ?? at.node, path: sign?.path ?? path, caller, ts, nonce: n, body, key, sign });
  if (headers) h = headers(h);
  return rawRequest(at.url, {
    method: "POST",
    path,
    headers: [...h, ["content-type", "application/json"], ...extra],
    body: wireBody === undefined ? body : wireBody,
    ...req,
  });
}

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

// ---------------------------------------------------------------------------------------------
// Assertions

const AUTH = { status: [400, 401] };
const UNAUTH = { status: 401 };
const BAD = { status: 400, code: "bad_request" };
const TOO_LARGE = { status: 413, code: "too_large" };
const NOT_FOUND = { status: 404, code: "not_found" };
const METHOD_NOT_ALLOWED = { status: 405, code: "method_not_allowed" };

// ---------------------------------------------------------------------------------------------
// Cases: [name, expectation, () => response]

const cases = [];
const refuse = (name, expect, send, prepare) => cases.push({ name, expect, send, prepare });

// No authentication at all.
for (const p of ["/deploy", "/federation/nudge", "/restart/x", "/drain/x", "/switchover"]) {
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

// Keys and signed strings.
const NUDGE = "/federation/nudge";
refuse("sig: the seal instead of the API key", UNAUTH, () => post(NUDGE, { key: Buffer.from(SEAL) }));
refuse("sig: the API key of another env", UNAUTH, () => post(NUDGE, { key: agentApiKey(SEAL, `${ctx.env}-other`) }));
refuse("sig: the forge's string (brh-v1, no receiver) with the API key", UNAUTH, () => {
  const ts = Date.now();
  const n = nonce();
  const sig = hmacHex(ctx.key, canonicalRequest("POST", NUDGE, "ops", ts, n, ""));
  return post(NUDGE, { ts, nonce: n, headers: withHeader("x-brh-sig", sig) });
});
refuse("sig: signed for agent B, sent to agent A", UNAUTH, () => post(NUDGE, { to: ctx.b.node }));
refuse("sig: signed for no agent (empty receiver)", UNAUTH, () => post(NUDGE, { to: "" }));
refuse("sig: signed for the receiver's name in uppercase", UNAUTH, () => post(NUDGE, { to: ctx.a.node.toUpperCase() }));
refuse("sig: over another path", UNAUTH, () => post(NUDGE, { sign: { path: "/deploy" } }));
refuse("sig: over the path with a query", UNAUTH, () => post(NUDGE, { sign: { path: `${NUDGE}?x=1` } }));
refuse("sig: over another body", UNAUTH, () => post(NUDGE, { body: "", sign: { body: "{}" } }));
refuse("sig: over another caller", UNAUTH, () => post(NUDGE, { sign: { caller: "root" } }));
refuse("sig: over another method", UNAUTH, () => post(NUDGE, { sign: { method: "GET" } }));
const mutateSig = {
  "uppercase hex": (s) => s.toUpperCase(),
  "63 hex digits": (s) => s.slice(1),
  "65 hex digits": (s) => `${s}0`,
  "non-hex digit": (s) => `g${s.slice(1)}`,
  "one bit flipped": (s) => `${s.slice(0, 63)}${(parseInt(s[63], 16) ^ 1).toString(16)}`,
  "base64 of the MAC": (s) => Buffer.from(s, "hex").toString("base64"),
};
for (const [name, f] of Object.entries(mutateSig)) {
  refuse(`sig: ${name}`, AUTH, () => post(NUDGE, { headers: (h) => h.map(([k, v]) => [k, k === "x-brh-sig" ? f(v) : v]) }));
}
for (const h of ["x-brh-node", "x-brh-ts", "x-brh-nonce", "x-brh-sig"]) {
  refuse(`auth: missing ${h}`, AUTH, () => post(NUDGE, { headers: withHeader(h, undefined) }));
  refuse(`auth: empty ${h}`, AUTH, () => post(NUDGE, { headers: withHeader(h, "") }));
  refuse(`duplicate ${h}, both copies equal`, AUTH, () => post(NUDGE, { headers: (hs) => [...hs, hs.find(([k]) => k === h)] }));
  refuse(`duplicate ${h}, the second one different`, AUTH, () =>
    post(NUDGE, {
      headers: (hs) => {
        const v = hs.find(([k]) => k === h)[1];
        const other = { "x-brh-node": "root", "x-brh-ts": String(Number(v) + 1), "x-brh-nonce": `${ctx.boot}:999999`, "x-brh-sig": "0".repeat(64) }[h];
        return [...hs, [h, other]];
      },
    }),
  );
}
refuse("duplicate x-brh-sig under two spellings of the name", AUTH, () =>
  post(NUDGE, { headers: (hs) => [...hs, ["X-Brh-Sig", hs.find(([k]) => k === "x-brh-sig")[1]]] }),
);

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
    return post(NUDGE, { ts: now, headers: withHeader("x-brh-ts", f(now)) });
  });
  refuse(`ts: ${name}, signed over the text`, AUTH, () => post(NUDGE, { ts: f(Date.now()) }));
}
for (const [name, ts] of Object.entries({
  "two minutes old": () => Date.now() - 120_000,
  "two minutes ahead": () => Date.now() + 120_000,
  "0": () => 0,
  "negative": () => "-1",
  "2^64": () => "18446744073709551616",
})) {
  refuse(`ts: ${name}`, AUTH, () => post(NUDGE, { ts: ts() }));
}

// Nonces.
refuse("nonce: boot:000278 signed as boot:278", AUTH, () => {
  const n = `${ctx.boot}:2000278`;
  return post(NUDGE, { nonce: n, headers: withHeader("x-brh-nonce", `${ctx.boot}:0002000278`) });
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
  refuse(`nonce: ${name}`, AUTH, () => post(NUDGE, { nonce: f(ctx.boot) }));
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
    const res = await post(NUDGE, { caller });
    assert.equal(res.headers.get("x-evil"), null, "no header injected");
    return res;
  });
}
refuse("caller: control byte", { ...AUTH, httpLayer: true }, () => post(NUDGE, { headers: withHeader("x-brh-node", "o\u0001ps") }));

// Replays.
refuse(
  "replay: the same signed request twice at one agent",
  { status: [401, 409] },
  (p) => post(NUDGE, { ts: p.ts, nonce: p.nonce }),
  async () => {
    const ts = Date.now();
    const n = nonce();
    const first = await post(NUDGE, { ts, nonce: n });
    assert.equal(first.status, 202, describeRes(first));
    return { ts, nonce: n };
  },
);
refuse(
  "replay across agents: a request accepted by A, replayed at B",
  UNAUTH,
  (p) => post(NUDGE, { at: ctx.b, to: ctx.a.node, ts: p.ts, nonce: p.nonce }),
  async () => {
    const ts = Date.now();
    const n = nonce();
    const first = await post(NUDGE, { ts, nonce: n });
    assert.equal(first.status, 202, describeRes(first));
    return { ts, nonce: n };
  },
);
refuse("replay across agents: a request for A sent to B first", UNAUTH, () => post(NUDGE, { at: ctx.b, to: ctx.a.node }));
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
  ["GET", NUDGE],
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
    ctx.key = agentApiKey(SEAL, ctx.env);
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
    // Both have beaten at least once more (peers_alive settles), then the state is stable.
    await sleep(500);
  });
  after(async () => {
    await ctx.a?.stop();
    await ctx.b?.stop();
    await ctx.forge?.stop();
  });

  test("a correctly signed nudge is accepted (the cases below differ from it in one thing)", async () => {
    const res = await post(NUDGE);
    assert.equal(res.status, 202, describeRes(res));
    const atB = await post(NUDGE, { at: ctx.b });
    assert.equal(atB.status, 202, describeRes(atB));
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
    const res = await post(NUDGE, { headers: (h) => h.map(([k, v]) => [k.toUpperCase(), v]) });
    assert.equal(res.status, 202, describeRes(res));
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

  test("slow clients: 300 connections holding half a request head; /health and a signed nudge are still served", async () => {
    const stalled = await stallConnections(ctx.a.url, 300, "POST /deploy HTTP/1.1\r\nHost: 127.0.0.1\r\nx-brh-");
    try {
      assert.ok(stalled.opened >= 290, `opened ${stalled.opened} of 300`);
      let t0 = Date.now();
      const health = await rawRequest(ctx.a.url, { path: "/health" }, { timeoutMs: 5000 });
      assert.equal(health.status, 200, describeRes(health));
      assert.ok(Date.now() - t0 < 3000, `/health took ${Date.now() - t0} ms`);
      t0 = Date.now();
      const nudge = await post(NUDGE);
      assert.equal(nudge.status, 202, describeRes(nudge));
      assert.ok(Date.now() - t0 < 3000, `the nudge took ${Date.now() - t0} ms`);
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
