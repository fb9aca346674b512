// The hostile matrix against every forge (native, workerd kv, workerd durable-object): bad
// JSON, bad framing, bad headers, bad signatures, timestamps and nonces, replays, odd ids,
// wrong methods, path and query tricks, key generations (x-brh-key-gen), operator
// revocations (POST /federation/revoke) that must not pass, and slow clients. Requests go over raw sockets
// (raw.mjs) so the bytes on the wire are exactly the ones written here.
//
// Every refused case asserts: a 4xx status, a JSON body {"error":{"code","message"}} served as
// application/json, and the state before and after identical — the read endpoints (leader,
// peers, history, envs) with only clock-derived fields removed, and for the native forge its
// data directory byte for byte.
//
// Run: FORGE_BIN=target/debug/forge node --test --test-concurrency=1 tests/e2e/hostile.test.mjs
// (E2E_TARGETS=native,kv,durable-object selects targets; kv/durable-object need build/).
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Agent, envOf, get, sleep, uniqueEnv } from "./client.mjs";
import { rawExchange, rawRequest, buildRequest, stallConnections } from "./raw.mjs";
import { assertConnectionCap, assertRefused, assertStalledHeadsDropped, describeRes } from "./refusal.mjs";
import { canonicalAgentRequest, canonicalRequest, edSignHex, hmacHex, issueCredential, nodeKey, nodeKeyGen, operatorKey, signOperatorForge, verifyBasis, verifyView } from "./sign.mjs";
import { FORGE, KINDS, OPERATOR, SEAL, startTarget } from "./targets.mjs";

const only = process.env.E2E_TARGETS ? process.env.E2E_TARGETS.split(",") : KINDS;
// A lease that cannot run out during the suite, so nothing but the requests can change state.
const TTL = 600_000;
const HB = 200_000;
const HB_PATH = "/federation/heartbeat";

// ---------------------------------------------------------------------------------------------
// Signing and sending

/**
 * x-brh-* headers, signed with the key of the node named (default: its own key in the env the
 * body names, as the forge derives it); `key` signs with another key; `sign` overrides what the
 * signature is computed over (tampering).
 */
function authHeaders({ method = "POST", path, node, ts = Date.now(), nonce, body = "", key, sign = {} }) {
  const s = { method, path, node, ts, nonce, body, ...sign };
  const k = key ?? nodeKey(SEAL, envOf(body), node);
  const sig = hmacHex(k, canonicalRequest(s.method, s.path, s.node, String(s.ts), s.nonce, s.body));
  return [
    ["x-brh-node", node],
    ["x-brh-ts", String(ts)],
    ["x-brh-nonce", nonce],
    ["x-brh-sig", sig],
  ];
}

const hbBody = (env, extra = {}) =>
  JSON.stringify({ env, priority: 0, draining: false, uptime_s: 1, version: "e2e", ...extra });

/**
 * A signed POST by `node` (default the witness n2 with a nonce far ahead, so a wrongly accepted
 * refused case shows up as a changed peer row). `headers` replaces the x-brh-* headers given
 * `(h) => newHeaders`; `extra` adds headers.
 */
function signedPost(ctx, { path = HB_PATH, body, wireBody, node = "n2", nonce, ts = Date.now(), key, sign, headers, extra = [], ...req }) {
  const b = body ?? hbBody(ctx.env);
  let h = authHeaders({ path: sign?.path ?? path, node, ts, nonce: nonce ?? ctx.far(), body: b, key, sign });
  // The signature is over `sign.path` when given; the request goes to `path`.
  if (headers) h = headers(h);
  return rawRequest(ctx.t.url, {
    method: "POST",
    path,
    headers: [...h, ["content-type", "application/json"], ...extra],
    // `wireBody` is sent instead of the signed body (null: none, for hand-made framing).
    body: wireBody === undefined ? b : wireBody,
    ...req,
  });
}

/** The x-brh-* headers with `name` replaced by `value` (or removed when `value` is undefined). */
const withHeader = (name, value) => (h) =>
  value === undefined ? h.filter(([k]) => k !== name) : h.map(([k, v]) => (k === name ? [k, value] : [k, v]));

// ---------------------------------------------------------------------------------------------
// State

function listFiles(dir, base = dir, out = {}) {
  let entries = [];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) listFiles(p, base, out);
    else out[path.relative(base, p)] = readFileSync(p);
  }
  return out;
}

/** Everything a refused request must not change, minus clock-derived fields. */
async function forgeState(t, env) {
  const read = async (p) => {
    const r = await get(t, p);
    return { status: r.status, body: r.json ?? r.text };
  };
  const leader = await read(`/federation/leader?env=${env}`);
  if (leader.body && typeof leader.body === "object") {
    delete leader.body.issued_at_ms;
    delete leader.body.epoch;
    delete leader.body.sig;
  }
  const state = {
    leader,
    peers: await read(`/federation/peers?env=${env}`),
    history: await read(`/federation/history?env=${env}&limit=500`),
    envs: await read("/federation/envs"),
  };
  if (t.kind === "native") state.files = listFiles(t.dir);
  return state;
}

/** Waits until two reads 300 ms apart agree (the durable-object mode mirrors to KV later). */
async function settledState(t, env) {
  let prev = await forgeState(t, env);
  for (let i = 0; i < 30; i++) {
    await sleep(300);
    const cur = await forgeState(t, env);
    try {
      assert.deepEqual(cur, prev);
      if (cur.envs.body?.envs?.includes?.(env) || cur.envs.body?.envs?.some?.((e) => e === env || e?.env === env)) return cur;
    } catch {
      // still moving
    }
    prev = cur;
  }
  return prev;
}

// ---------------------------------------------------------------------------------------------
// Assertions

const AUTH = { status: [400, 401] };
const BAD = { status: 400, code: "bad_request" };

// ---------------------------------------------------------------------------------------------
// The refused cases. Each: [name, expectation, (ctx) => response]. `ctx.env` has a leader n1
// (term 1) and a witness n2.

const cases = [];
const refuse = (name, expect, send) => cases.push({ name, expect, send });

// JSON bodies: signed correctly over the hostile bytes, so only the body is at fault.
const B = (...parts) => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p, "utf8"))));
const jsonCases = {
  "malformed": () => "{not json",
  "truncated": (e) => `{"env":"${e}","priority":1`,
  "empty body": () => "",
  "whitespace only": () => "  \n ",
  "non-UTF-8 byte in a string": (e) => B(`{"env":"${e}","version":"`, Buffer.from([0xff, 0xfe]), `"}`),
  "non-UTF-8 byte in a key": (e) => B(`{"env":"${e}","`, Buffer.from([0xc3]), `":1}`),
  "overlong UTF-8 encoding": (e) => B(`{"env":"${e}","version":"`, Buffer.from([0xc0, 0xaf]), `"}`),
  "lone surrogate escape": (e) => `{"env":"${e}","version":"\\ud800"}`,
  "UTF-8 BOM": (e) => B(Buffer.from([0xef, 0xbb, 0xbf]), hbBody(e)),
  "trailing garbage": (e) => `${hbBody(e)} x`,
  "two documents": (e) => `${hbBody(e)}${hbBody(e)}`,
  "NaN": (e) => `{"env":"${e}","priority":NaN}`,
  "comment": (e) => `{"env":"${e}" /* hi */}`,
  "single quotes": (e) => `{'env':'${e}'}`,
  "duplicate key": (e) => `{"env":"${e}","env":"other"}`,
  "60,000 unclosed [": () => "[".repeat(60_000),
  "60,000 unclosed [ in an unknown field": (e) => `{"env":"${e}","deep":${"[".repeat(60_000)}`,
  "10,000 nested objects in a known field": (e) => `{"env":"${e}","api":${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)}}`,
};
for (const [name, body] of Object.entries(jsonCases)) {
  refuse(`json: ${name}`, BAD, (c) => signedPost(c, { body: body(c.env) }));
}
// Over the 64 KiB cap as well as deeply nested: either refusal is right.
refuse("json: 100,000 [", { status: [400, 413] }, (c) => signedPost(c, { body: "[".repeat(100_000) }));

// Wrong types and values.
const typeCases = {
  "top-level array": () => "[]",
  "top-level array in field order": (e) => `["${e}",0,false,1,"e2e"]`,
  "null": () => "null",
  "string": (e) => `"${e}"`,
  "number": () => "42",
  "env: number": () => `{"env":1}`,
  "env: null": () => `{"env":null}`,
  "env: array": (e) => `{"env":["${e}"]}`,
  "env: object": (e) => `{"env":{"name":"${e}"}}`,
  "priority: string": (e) => `{"env":"${e}","priority":"1"}`,
  "priority: fraction": (e) => `{"env":"${e}","priority":1.5}`,
  "priority: over i32": (e) => `{"env":"${e}","priority":2147483648}`,
  "priority: under i32": (e) => `{"env":"${e}","priority":-2147483649}`,
  "priority: 1e400": (e) => `{"env":"${e}","priority":1e400}`,
  "draining: string": (e) => `{"env":"${e}","draining":"false"}`,
  "draining: number": (e) => `{"env":"${e}","draining":0}`,
  "uptime_s: negative": (e) => `{"env":"${e}","uptime_s":-1}`,
  "uptime_s: over u64": (e) => `{"env":"${e}","uptime_s":18446744073709551616}`,
  "version: number": (e) => `{"env":"${e}","version":1}`,
  "version: 65 characters": (e) => hbBody(e, { version: "v".repeat(65) }),
  "api: number": (e) => `{"env":"${e}","api":5}`,
  "api: 257 characters": (e) => hbBody(e, { api: `http://${"a".repeat(250)}` }),
  "api: control character": (e) => hbBody(e, { api: "http://a\u0007b" }),
  "api: CRLF injection": (e) => hbBody(e, { api: "http://a\r\nset-cookie: x=1" }),
  "missing env": () => `{"priority":1}`,
  "empty object": () => "{}",
};
for (const [name, body] of Object.entries(typeCases)) {
  refuse(`heartbeat: ${name}`, BAD, (c) => signedPost(c, { body: body(c.env) }));
}
const resignCases = {
  "term: string": (e) => `{"env":"${e}","term":"1"}`,
  "term: negative": (e) => `{"env":"${e}","term":-1}`,
  "term: fraction": (e) => `{"env":"${e}","term":1.5}`,
  "term: over u64": (e) => `{"env":"${e}","term":18446744073709551616}`,
  "missing term": (e) => `{"env":"${e}"}`,
  "missing env": () => `{"term":1}`,
  "env: path": () => `{"env":"../x","term":1}`,
};
for (const [name, body] of Object.entries(resignCases)) {
  refuse(`resign: ${name}`, BAD, (c) => signedPost(c, { path: "/federation/resign", body: body(c.env) }));
}
// A well-formed resign by the witness, with unknown fields: refused because n2 holds no lease.
refuse("resign: by a non-holder, with unknown fields", { status: 409, code: "not_holder" }, (c) =>
  signedPost(c, { path: "/federation/resign", body: `{"env":"${c.env}","term":1,"force":true,"leader":"n2"}` }),
);
const consensusCases = {
  "leader: number": (e) => `{"env":"${e}","leader":5}`,
  "leader: bad id": (e) => `{"env":"${e}","leader":"bad id!"}`,
  "leader: CRLF": (e) => `{"env":"${e}","leader":"n1\\r\\nx-evil: 1"}`,
  "peers: string": (e) => `{"env":"${e}","leader":"n1","peers":"n1"}`,
  "peers: numbers": (e) => `{"env":"${e}","leader":"n1","peers":[1]}`,
  "peers: path": (e) => `{"env":"${e}","leader":"n1","peers":["../x"]}`,
  "peers: 257 entries": (e) => JSON.stringify({ env: e, leader: "n1", peers: Array.from({ length: 257 }, (_, i) => `p${i}`) }),
  "term: string": (e) => `{"env":"${e}","leader":"n1","term":"2"}`,
  "missing env": () => `{"leader":"n1"}`,
};
for (const [name, body] of Object.entries(consensusCases)) {
  refuse(`consensus: ${name}`, BAD, (c) => signedPost(c, { path: "/federation/consensus", body: body(c.env) }));
}

// Odd env names in a signed body.
const oddIds = {
  "dot-dot-slash": "../x",
  "percent-encoded dots": "%2e%2e",
  "slash": "a/b",
  "unicode": "ümlaut",
  "fullwidth": "ｅｎｖ",
  "NUL": "a\u0000b",
  "CRLF": "a\r\nb",
  "line separator": "a\u2028b",
  "64 characters": "e".repeat(64),
  "1000 characters": "e".repeat(1000),
  "empty": "",
  "space": " ",
  "leading dot": ".x",
  "leading dash": "-x",
  "inner space": "x y",
};
for (const [name, env] of Object.entries(oddIds)) {
  refuse(`env in body: ${name}`, BAD, (c) => signedPost(c, { body: hbBody(env) }));
}
// Odd env names in the read endpoints' query (they must not create the env either).
const oddQueries = {
  "dot-dot-slash": "../x",
  "encoded slash": "..%2Fx",
  "percent-encoded dots": "%2e%2e",
  "invalid UTF-8": "%FF",
  "NUL": "%00",
  "unicode": "%C3%BC",
  "CRLF header injection": "a%0d%0aset-cookie:%20x=1",
  "empty": "",
  "64 characters": "e".repeat(64),
};
for (const endpoint of ["leader", "peers", "history"]) {
  for (const [name, q] of Object.entries(oddQueries)) {
    refuse(`GET /federation/${endpoint}?env=: ${name}`, BAD, async (c) => {
      const res = await rawRequest(c.t.url, { path: `/federation/${endpoint}?env=${q}` });
      assert.equal(res.headers.get("set-cookie"), null, "no header injected");
      return res;
    });
  }
}
refuse("GET /federation/peers of an env nobody joined", { status: 404, code: "not_found" }, (c) =>
  rawRequest(c.t.url, { path: `/federation/peers?env=${c.env}-nobody` }),
);
refuse("GET /federation/history of an env nobody joined", { status: 404, code: "not_found" }, (c) =>
  rawRequest(c.t.url, { path: `/federation/history?env=${c.env}-nobody` }),
);
for (const [name, q] of Object.entries({
  "cursor=abc": "cursor=abc",
  "cursor=%FF": "cursor=%FF",
  "limit=0": "limit=0",
  "limit=501": "limit=501",
  "limit=-1": "limit=-1",
  "limit=1e2": "limit=1e2",
  "limit=%FF": "limit=%FF",
  "limit=99999999999999999999999": "limit=99999999999999999999999",
})) {
  refuse(`GET /federation/history?${name}`, BAD, (c) => rawRequest(c.t.url, { path: `/federation/history?env=${c.env}&${q}` }));
}
refuse("GET /manifest/resolve?target=../x", BAD, (c) => rawRequest(c.t.url, { path: "/manifest/resolve?target=../x" }));

// Odd node ids in x-brh-node, each signed correctly for that id.
const oddNodes = {
  "unicode (UTF-8 bytes)": "nöde",
  "dot-dot-slash": "../n1",
  "percent-encoded dots": "%2e%2e",
  "path": "n1/../n2",
  "dot": ".",
  "dot-dot": "..",
  "leading dash": "-n",
  "leading underscore": "_n",
  "inner space": "n 1",
  "64 characters": "n".repeat(64),
  "65 characters": "n".repeat(65),
  "1000 characters": "n".repeat(1000),
  "comma list": "n1, n2",
  "semicolon": "n1;",
  "percent-encoded CRLF": "n1%0d%0ax-evil: 1",
  "NBSP (latin-1 byte)": Buffer.from([0x6e, 0x31, 0xa0]),
  "fullwidth": "Ｎ１",
};
for (const [name, node] of Object.entries(oddNodes)) {
  refuse(`x-brh-node: ${name}`, AUTH, async (c) => {
    const body = hbBody(c.env);
    const nodeStr = Buffer.isBuffer(node) ? node.toString("latin1") : node;
    const h = authHeaders({ path: HB_PATH, node: nodeStr, nonce: c.far(), body });
    const headers = h.map(([k, v]) => [k, k === "x-brh-node" ? node : v]);
    const res = await rawRequest(c.t.url, { method: "POST", path: HB_PATH, headers, body });
    assert.equal(res.headers.get("x-evil"), null, "no header injected");
    return res;
  });
}

// Signatures.
refuse("auth: no x-brh-* headers", { status: 401 }, (c) =>
  rawRequest(c.t.url, { method: "POST", path: HB_PATH, body: hbBody(c.env) }),
);
for (const h of ["x-brh-node", "x-brh-ts", "x-brh-nonce", "x-brh-sig"]) {
  refuse(`auth: missing ${h}`, AUTH, (c) => signedPost(c, { headers: withHeader(h, undefined) }));
  refuse(`auth: empty ${h}`, AUTH, (c) => signedPost(c, { headers: withHeader(h, "") }));
}
// Keys: the forge opens a request only with the key of the node it names, in the env its body
// names (HMAC(seal, "brh-v1-node-key\n{env}\n{node}")). Anything else is 401 bad_signature.
const BAD_SIG = { status: 401, code: "bad_signature" };
refuse("sig: the node key another seal gives", BAD_SIG, (c) => signedPost(c, { key: nodeKey("not-the-seal", c.env, "n2") }));
refuse("sig: the seal itself instead of the node's key", BAD_SIG, (c) => signedPost(c, { key: SEAL }));
refuse("sig: another node's key (n1's, on a request naming n2)", BAD_SIG, (c) => signedPost(c, { key: nodeKey(SEAL, c.env, "n1") }));
refuse("sig: the witness's key on a request naming the leader (n2 speaking for n1)", BAD_SIG, (c) =>
  // Had it been accepted, n1's new boot would show as a membership change.
  signedPost(c, { node: "n1", nonce: `w${c.boot2}:1`, key: nodeKey(SEAL, c.env, "n2") }),
);
refuse("sig: the node's own key of another env", BAD_SIG, (c) => signedPost(c, { key: nodeKey(SEAL, `${c.env}-other`, "n2") }));
refuse("sig: the node's key of the env the body names, for a body naming another env", BAD_SIG, (c) =>
  signedPost(c, { body: hbBody(`${c.env}-other`), key: nodeKey(SEAL, c.env, "n2") }),
);
refuse("sig: the key of the node's name in uppercase", BAD_SIG, (c) => signedPost(c, { key: nodeKey(SEAL, c.env, "N2") }));
refuse("sig: the forge key's seed as an HMAC key", BAD_SIG, (c) => signedPost(c, { key: FORGE.seed }));
refuse("sig: the top operator's Ed25519 signature of the request (128 hex)", AUTH, (c) => {
  const body = hbBody(c.env);
  const ts = Date.now();
  const nonce = c.far();
  const sig = edSignHex(OPERATOR, canonicalRequest("POST", HB_PATH, "n2", ts, nonce, body));
  return signedPost(c, { body, ts, nonce, headers: withHeader("x-brh-sig", sig) });
});
refuse("sig: agent-API string (brh-v1-agent) with the node's key", { status: 401 }, (c) => {
  const body = hbBody(c.env);
  const ts = Date.now();
  const nonce = c.far();
  const sig = hmacHex(nodeKey(SEAL, c.env, "n2"), canonicalAgentRequest("forge", "POST", HB_PATH, "n2", ts, nonce, body));
  return signedPost(c, { body, ts, nonce, headers: withHeader("x-brh-sig", sig) });
});
// Order: the headers' presence, then their form, then the body (it names the key's env), then
// the signature.
refuse("order: a malformed body under a wrong signature is 400 bad_request (the body is read first)", BAD, (c) =>
  signedPost(c, { body: "{not json", key: SEAL }),
);
refuse("order: a body without env under a wrong signature is 400 bad_request", BAD, (c) =>
  signedPost(c, { body: '{"priority":1}', key: SEAL }),
);
refuse("order: a malformed body without authentication headers is 401 unauthorized", { status: 401, code: "unauthorized" }, (c) =>
  rawRequest(c.t.url, { method: "POST", path: HB_PATH, body: "{not json" }),
);
refuse("order: a malformed body with a malformed x-brh-ts is refused for the header (its form first)", BAD, async (c) => {
  const res = await signedPost(c, { body: "{not json", headers: withHeader("x-brh-ts", "+1") });
  assert.match(res.json?.error?.message ?? "", /x-brh-ts/, describeRes(res));
  return res;
});
const mutateSig = {
  "uppercase hex": (s) => s.toUpperCase(),
  "63 hex digits": (s) => s.slice(1),
  "65 hex digits": (s) => `${s}0`,
  "non-hex digit": (s) => `g${s.slice(1)}`,
  "0x prefix": (s) => `0x${s.slice(2)}`,
  "base64 of the MAC": (s) => Buffer.from(s, "hex").toString("base64"),
  "one bit flipped": (s) => `${s.slice(0, 63)}${(parseInt(s[63], 16) ^ 1).toString(16)}`,
  "128 hex digits": (s) => s + s,
};
for (const [name, f] of Object.entries(mutateSig)) {
  refuse(`sig: ${name}`, AUTH, (c) => signedPost(c, { headers: (h) => h.map(([k, v]) => [k, k === "x-brh-sig" ? f(v) : v]) }));
}
refuse("sig: over another path (resign)", { status: 401 }, (c) => signedPost(c, { sign: { path: "/federation/resign" } }));
refuse("sig: over the path with a query", { status: 401 }, (c) => signedPost(c, { sign: { path: `${HB_PATH}?x=1` } }));
refuse("sig: over another body", { status: 401 }, (c) => signedPost(c, { sign: { body: hbBody(c.env, { priority: 9 }) } }));
refuse("sig: over another node", { status: 401 }, (c) => signedPost(c, { sign: { node: "n1" } }));
refuse("sig: over another method", { status: 401 }, (c) => signedPost(c, { sign: { method: "GET" } }));
refuse("sig: over lowercase method", { status: 401 }, (c) => signedPost(c, { sign: { method: "post" } }));

// Timestamps: non-canonical spellings (signed over the canonical number, and over the text).
const tsSpellings = {
  "leading zeros": (n) => `000${n}`,
  "one leading zero": (n) => `0${n}`,
  "plus sign": (n) => `+${n}`,
  "decimal point": (n) => `${n}.0`,
  "exponent": (n) => `${n / 1000}e3`,
  "hex": (n) => `0x${n.toString(16)}`,
  "underscore": (n) => `${String(n).slice(0, 4)}_${String(n).slice(4)}`,
  "Arabic-Indic digits": (n) => String(n).replace(/[0-9]/g, (d) => String.fromCharCode(0x660 + Number(d))),
};
for (const [name, f] of Object.entries(tsSpellings)) {
  refuse(`ts: ${name}, signed over the number`, AUTH, (c) => {
    const now = Date.now();
    return signedPost(c, { ts: now, headers: withHeader("x-brh-ts", f(now)) });
  });
  refuse(`ts: ${name}, signed over the text`, AUTH, (c) => signedPost(c, { ts: f(Date.now()) }));
}
for (const [name, ts] of Object.entries({
  "negative": () => "-1",
  "2^64": () => "18446744073709551616",
  "30 digits": () => "9".repeat(30),
  "0 (1970)": () => "0",
  "two minutes old": () => String(Date.now() - 120_000),
  "two minutes ahead": () => String(Date.now() + 120_000),
  "a year ahead": () => String(Date.now() + 365 * 86_400_000),
  "u64 max": () => "18446744073709551615",
})) {
  refuse(`ts: ${name}`, AUTH, (c) => signedPost(c, { ts: ts() }));
}
refuse("ts: stale is 401 stale_timestamp", { status: 401, code: "stale_timestamp" }, (c) =>
  signedPost(c, { ts: Date.now() - 120_000 }),
);

// Nonces.
const nonceSpellings = {
  "seq with leading zeros": (b) => `${b}:000278`,
  "seq with plus sign": (b) => `${b}:+278`,
  "negative seq": (b) => `${b}:-278`,
  "fractional seq": (b) => `${b}:278.0`,
  "empty seq": (b) => `${b}:`,
  "empty boot": () => ":278",
  "no colon": (b) => `${b}278`,
  "two colons": (b) => `${b}:1:278`,
  "seq over u64": (b) => `${b}:18446744073709551616`,
  "boot of 65 characters": () => `${"b".repeat(65)}:278`,
  "boot with a slash": () => "b/x:278",
  "boot with unicode": () => "bö:278",
  "space after colon": (b) => `${b}: 278`,
  "10 KiB": (b) => `${b}${"x".repeat(10 * 1024)}:278`,
};
for (const [name, f] of Object.entries(nonceSpellings)) {
  refuse(`nonce: ${name}`, AUTH, (c) => signedPost(c, { nonce: f(c.boot2) }));
}
refuse("nonce: boot:000278 signed as boot:278", AUTH, (c) => {
  const nonce = `${c.boot2}:2000278`;
  return signedPost(c, { nonce, headers: withHeader("x-brh-nonce", `${c.boot2}:0002000278`) });
});

// Repeated x-brh-* headers (fetch would merge them: raw only).
for (const h of ["x-brh-node", "x-brh-ts", "x-brh-nonce", "x-brh-sig"]) {
  refuse(`duplicate ${h}, both copies equal`, AUTH, (c) =>
    signedPost(c, { headers: (hs) => [...hs, hs.find(([k]) => k === h)] }),
  );
  refuse(`duplicate ${h}, the second one different`, AUTH, (c) =>
    signedPost(c, {
      headers: (hs) => {
        const v = hs.find(([k]) => k === h)[1];
        return [...hs, [h, h === "x-brh-node" ? "n1" : h === "x-brh-sig" ? "0".repeat(64) : h === "x-brh-ts" ? String(Number(v) + 1) : `${c.boot2}:1`]];
      },
    }),
  );
}
refuse("duplicate x-brh-sig, the first one wrong, the second right", AUTH, (c) =>
  signedPost(c, { headers: (hs) => [["x-brh-sig", "0".repeat(64)], ...hs] }),
);
refuse("duplicate x-brh-sig under two spellings of the name", AUTH, (c) =>
  signedPost(c, { headers: (hs) => [...hs, ["X-BRH-SIG", hs.find(([k]) => k === "x-brh-sig")[1]]] }),
);

// Key generations (x-brh-key-gen: canonical decimal ≥ 1, absent = 0; not signed, it selects
// the key). n2 was never revoked, so only the header's form or the signature can refuse these.
for (const [name, v] of Object.entries({ "0": "0", "leading zero": "01", "not a number": "x", "empty": "", "negative": "-1", "over u32": "4294967296", "fraction": "1.5" })) {
  refuse(`x-brh-key-gen: ${name}`, BAD, (c) => signedPost(c, { key: nodeKeyGen(SEAL, c.env, "n2", 1), extra: [["x-brh-key-gen", v]] }));
}
refuse("x-brh-key-gen sent twice", BAD, (c) => signedPost(c, { key: nodeKeyGen(SEAL, c.env, "n2", 1), extra: [["x-brh-key-gen", "1"], ["x-brh-key-gen", "1"]] }));
refuse("x-brh-key-gen: 1 on a request signed with generation 0", BAD_SIG, (c) => signedPost(c, { extra: [["x-brh-key-gen", "1"]] }));
refuse("x-brh-key-gen: 2 on a request signed with generation 1", BAD_SIG, (c) => signedPost(c, { key: nodeKeyGen(SEAL, c.env, "n2", 1), extra: [["x-brh-key-gen", "2"]] }));
refuse("generation 1's key without x-brh-key-gen", BAD_SIG, (c) => signedPost(c, { key: nodeKeyGen(SEAL, c.env, "n2", 1) }));
refuse("x-brh-key-gen: 1 with another seal's generation-1 key", BAD_SIG, (c) => signedPost(c, { key: nodeKeyGen("not-the-seal", c.env, "n2", 1), extra: [["x-brh-key-gen", "1"]] }));

// Revocations (POST /federation/revoke): Ed25519 by the top operator or a certificate with the
// `nodes` scope for the env, over the node request's string. Each names the witness n2.
const REVOKE_PATH = "/federation/revoke";
function revokePost(ctx, { body, signer = OPERATOR, caller = "ops", ts = Date.now(), nonce = ctx.far(), sig, headers, ...req } = {}) {
  const b = body ?? JSON.stringify({ env: ctx.env, node: "n2" });
  let h = Object.entries(signOperatorForge(signer, { path: REVOKE_PATH, caller, ts, nonce, body: b }));
  if (sig) h = withHeader("x-brh-sig", sig(b, ts, nonce))(h);
  if (headers) h = headers(h);
  return rawRequest(ctx.t.url, { method: "POST", path: REVOKE_PATH, headers: [...h, ["content-type", "application/json"]], body: b, ...req });
}
const cert = (c, scopes, { env = c.env, expiresS = Math.floor(Date.now() / 1000) + 3600, top = OPERATOR } = {}) =>
  issueCredential(top, { name: "alice", env, scopes, expiresS, seed: Buffer.alloc(32, 3) });
refuse("revoke: signed with the node's own key (HMAC)", BAD_SIG, (c) =>
  revokePost(c, { caller: "n2", sig: (b, ts, nonce) => hmacHex(nodeKey(SEAL, c.env, "n2"), canonicalRequest("POST", REVOKE_PATH, "n2", ts, nonce, b)) }),
);
refuse("revoke: an HMAC under the seal", BAD_SIG, (c) => revokePost(c, { sig: (b, ts, nonce) => hmacHex(SEAL, canonicalRequest("POST", REVOKE_PATH, "ops", ts, nonce, b)) }));
refuse("revoke: Ed25519 by the forge key", BAD_SIG, (c) => revokePost(c, { signer: FORGE }));
refuse("revoke: Ed25519 by another seal's top operator", BAD_SIG, (c) => revokePost(c, { signer: operatorKey("not-the-seal") }));
refuse("revoke: the top operator's signature over the heartbeat path", BAD_SIG, (c) =>
  revokePost(c, { sig: (b, ts, nonce) => edSignHex(OPERATOR, canonicalRequest("POST", HB_PATH, "ops", ts, nonce, b)) }),
);
refuse("revoke: the top operator's signature over another node's revocation", BAD_SIG, (c) =>
  revokePost(c, { sig: (b, ts, nonce) => edSignHex(OPERATOR, canonicalRequest("POST", REVOKE_PATH, "ops", ts, nonce, JSON.stringify({ env: c.env, node: "n1" }))) }),
);
refuse("revoke: stale timestamp", { status: 401, code: "stale_timestamp" }, (c) => revokePost(c, { ts: Date.now() - 120_000 }));
refuse("revoke: no authentication headers", AUTH, (c) => rawRequest(c.t.url, { method: "POST", path: REVOKE_PATH, body: JSON.stringify({ env: c.env, node: "n2" }) }));
refuse("revoke: duplicate x-brh-sig", AUTH, (c) => revokePost(c, { headers: (h) => [...h, h.find(([k]) => k === "x-brh-sig")] }));
refuse("revoke: a certificate without the nodes scope", { status: 403, code: "forbidden" }, (c) => revokePost(c, { signer: cert(c, ["read", "switchover", "containers"]), caller: "alice" }));
refuse("revoke: a nodes certificate for another env", { status: 403, code: "forbidden" }, (c) => revokePost(c, { signer: cert(c, ["nodes"], { env: `${c.env}-x` }), caller: "alice" }));
refuse("revoke: an expired nodes certificate", { status: 401, code: "unauthorized" }, (c) => revokePost(c, { signer: cert(c, ["nodes"], { expiresS: 1 }), caller: "alice" }));
refuse("revoke: a nodes certificate not the top operator's", { status: 401, code: "unauthorized" }, (c) =>
  revokePost(c, { signer: cert(c, ["nodes"], { top: operatorKey("not-the-seal") }), caller: "alice" }),
);
refuse("revoke: a nodes certificate of another name", { status: 401, code: "unauthorized" }, (c) => revokePost(c, { signer: cert(c, ["nodes"]), caller: "mallory" }));
for (const [name, body] of Object.entries({
  "malformed JSON": () => "{not json",
  "unknown field": (e) => `{"env":"${e}","node":"n2","force":true}`,
  "missing node": (e) => `{"env":"${e}"}`,
  "generation: -1": (e) => `{"env":"${e}","node":"n2","generation":-1}`,
  "generation: over u32": (e) => `{"env":"${e}","node":"n2","generation":4294967296}`,
  "generation: 4294967295": (e) => `{"env":"${e}","node":"n2","generation":4294967295}`,
  "generation: string": (e) => `{"env":"${e}","node":"n2","generation":"0"}`,
  "node: path": (e) => `{"env":"${e}","node":"../n2"}`,
  "env: path": () => `{"env":"../x","node":"n2"}`,
})) {
  refuse(`revoke: body ${name}`, BAD, (c) => revokePost(c, { body: body(c.env) }));
}
refuse("revoke: 70,000 bytes", { status: 413, code: "too_large" }, (c) => revokePost(c, { body: `{"env":"${c.env}","node":"n2","pad":"${"x".repeat(70_000)}"}` }));

// Oversized bodies.
const pad = (env, n) => {
  const base = hbBody(env);
  return `${base.slice(0, -1)}${" ".repeat(n - base.length)}}`;
};
const TOO_LARGE = { status: 413, code: "too_large" };
refuse("body: 70,000 bytes with content-length", TOO_LARGE, (c) => signedPost(c, { body: pad(c.env, 70_000) }));
refuse("body: 65,537 bytes (one over the cap)", TOO_LARGE, (c) => signedPost(c, { body: pad(c.env, 65_537) }));
refuse("body: chunked, 10 chunks of 8 KiB", TOO_LARGE, (c) => {
  const body = pad(c.env, 80 * 1024);
  const chunks = Array.from({ length: 10 }, (_, i) => body.slice(i * 8192, (i + 1) * 8192));
  return signedPost(c, { body, chunked: chunks });
});
refuse("body: chunked, one chunk of 70,000 bytes", TOO_LARGE, (c) => signedPost(c, { body: pad(c.env, 70_000), chunked: true }));
refuse("body: content-length 70,000 announced, nothing sent: answered at once", TOO_LARGE, async (c) => {
  const body = pad(c.env, 70_000);
  const h = authHeaders({ path: HB_PATH, node: "n2", nonce: c.far(), body });
  const res = await rawExchange(c.t.url, buildRequest({ method: "POST", path: HB_PATH, headers: h, contentLength: 70_000 }), { timeoutMs: 5000 });
  assert.ok(res.ms < 3000, `answered after ${res.ms} ms, without waiting for the body`);
  return res;
});
const HTTP_LAYER_400 = { status: 400, httpLayer: true };
refuse("body: content-length 2^64", { status: [400, 413], httpLayer: true }, (c) =>
  rawRequest(c.t.url, { method: "POST", path: HB_PATH, contentLength: "18446744073709551616", body: null }),
);
refuse("body: negative content-length", HTTP_LAYER_400, (c) =>
  rawRequest(c.t.url, { method: "POST", path: HB_PATH, contentLength: "-1", body: null }),
);
refuse("body: two different content-lengths", HTTP_LAYER_400, (c) =>
  rawRequest(c.t.url, { method: "POST", path: HB_PATH, headers: [["content-length", "2"], ["content-length", "3"]], rawBody: "{}x", contentLength: null }),
);
refuse("body: content-length and transfer-encoding together", { httpLayer: true }, (c) =>
  rawRequest(c.t.url, {
    method: "POST",
    path: HB_PATH,
    headers: [["content-length", "5"], ["transfer-encoding", "chunked"]],
    contentLength: null,
    rawBody: "0\r\n\r\n",
  }),
);

// Malformed chunked encoding: 400, never 413. The x-brh-* headers are valid for the body the
// client meant to send, so the server has to read the body to refuse.
const badChunked = {
  "chunk size not hex": "zz\r\nabc\r\n0\r\n\r\n",
  "chunk size overflows": "ffffffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
  "negative chunk size": "-5\r\nabcde\r\n0\r\n\r\n",
  "no CRLF after the chunk data": "5\r\nabcdeXY0\r\n\r\n",
  "chunk data longer than its size": "2\r\nabcdef\r\n0\r\n\r\n",
  "empty chunk size line": "\r\nabc\r\n0\r\n\r\n",
};
for (const [name, framing] of Object.entries(badChunked)) {
  refuse(`chunked: ${name}`, BAD, (c) =>
    signedPost(c, { wireBody: null, contentLength: null, extra: [["transfer-encoding", "chunked"]], rawBody: framing }),
  );
}
refuse("chunked: connection half-closed in the middle of a chunk", { status: 400 }, async (c) => {
  const body = hbBody(c.env);
  const h = authHeaders({ path: HB_PATH, node: "n2", nonce: c.far(), body });
  const head = buildRequest({ method: "POST", path: HB_PATH, headers: [...h, ["transfer-encoding", "chunked"]], contentLength: null });
  return rawExchange(c.t.url, async (sock) => {
    sock.write(head);
    sock.write("40\r\n{\"env\":");
    await sleep(100);
    sock.end();
  });
});

// Headers.
refuse("headers: one header of 100 KiB", { status: [400, 401, 413, 431] }, (c) =>
  rawRequest(c.t.url, { method: "POST", path: HB_PATH, headers: [["x-junk", "a".repeat(100 * 1024)]], body: hbBody(c.env) }),
);
refuse("headers: 500 headers", { status: [400, 401, 431] }, (c) =>
  rawRequest(c.t.url, {
    method: "POST",
    path: HB_PATH,
    headers: Array.from({ length: 500 }, (_, i) => [`x-junk-${i}`, "v"]),
    body: hbBody(c.env),
  }),
);
refuse("headers: control byte in x-brh-node", { status: [400, 401], httpLayer: true }, (c) =>
  signedPost(c, { headers: withHeader("x-brh-node", "n\u00012") }),
);
refuse("headers: obs-fold continuation of x-brh-sig", { status: [400, 401], httpLayer: true }, (c) =>
  signedPost(c, { headers: (h) => h.map(([k, v]) => [k, k === "x-brh-sig" ? `${v.slice(0, 32)}\r\n ${v.slice(32)}` : v]) }),
);
refuse("headers: space before the colon", { status: [400, 401], httpLayer: true }, (c) =>
  signedPost(c, { headers: (h) => h.map(([k, v]) => [k === "x-brh-sig" ? "x-brh-sig " : k, v]) }),
);

// Methods.
const METHOD_NOT_ALLOWED = { status: 405, code: "method_not_allowed" };
for (const [method, p] of [
  ["GET", HB_PATH],
  ["PUT", HB_PATH],
  ["DELETE", "/federation/leader"],
  ["PATCH", "/federation/resign"],
  ["POST", "/federation/leader"],
  ["POST", "/health"],
  ["PUT", "/federation/consensus"],
  ["GET", "/federation/revoke"],
  ["DELETE", "/federation/revoke"],
  ["TRACE", "/"],
]) {
  refuse(`method: ${method} ${p}`, METHOD_NOT_ALLOWED, async (c) => {
    const res = await rawRequest(c.t.url, { method, path: p, body: method === "GET" || method === "TRACE" ? undefined : hbBody(c.env) });
    assert.ok(res.headers.get("allow"), "405 names the allowed method");
    return res;
  });
}
refuse("method: lowercase post, signed as POST", { ...METHOD_NOT_ALLOWED, runtime501: true }, (c) => signedPost(c, { method: "post" }));
refuse("method: unknown FOO", { ...METHOD_NOT_ALLOWED, runtime501: true }, (c) => rawRequest(c.t.url, { method: "FOO", path: HB_PATH }));

// Paths.
const NOT_FOUND = { status: 404, code: "not_found" };
for (const p of [
  "//federation/leader",
  "/federation/leader/",
  "/federation//leader",
  "/FEDERATION/LEADER",
  "/federation/%6ceader",
  "/%FF",
  "/federation/leader%00",
  "/federation/leader;x",
  "/federation/leader%2F",
  `/${"a".repeat(10_000)}`,
]) {
  refuse(`path: GET ${p.length > 40 ? `${p.slice(0, 20)}… (${p.length})` : p}`, NOT_FOUND, (c) => rawRequest(c.t.url, { path: `${p}?env=${c.env}` }));
}
refuse("path: POST //federation/heartbeat signed over that path", { status: [401, 404] }, (c) =>
  signedPost(c, { path: `/${HB_PATH}` }),
);
refuse("path: POST /federation/heartbeat/ signed over that path", { status: [401, 404] }, (c) =>
  signedPost(c, { path: `${HB_PATH}/` }),
);
// workerd normalizes dot segments before the Worker sees the path, so the signature (over the
// path as sent) fails there; the native forge has no such route.
refuse("path: POST /federation/x/../heartbeat signed over that path", { status: [401, 404] }, (c) =>
  signedPost(c, { path: "/federation/x/../heartbeat" }),
);

// Replays (the first request of each pair is accepted and not compared).
cases.push({
  name: "replay: the same request twice",
  expect: { status: 409, code: "replay" },
  prepare: async (c) => {
    const nonce = c.n1.nextNonce();
    const ts = Date.now();
    const first = await signedPost(c, { node: "n1", nonce, ts });
    assert.equal(first.status, 200, describeRes(first));
    return { nonce, ts };
  },
  send: (c, { nonce, ts }) => signedPost(c, { node: "n1", nonce, ts }),
});
cases.push({
  name: "replay: an older sequence number",
  expect: { status: 409, code: "replay" },
  prepare: async (c) => {
    const older = c.n1.nextNonce();
    const first = await signedPost(c, { node: "n1", nonce: c.n1.nextNonce() });
    assert.equal(first.status, 200, describeRes(first));
    return { older };
  },
  send: (c, { older }) => signedPost(c, { node: "n1", nonce: older }),
});
cases.push({
  name: "replay: the same nonce with another body, re-signed",
  expect: { status: 409, code: "replay" },
  prepare: async (c) => {
    const nonce = c.n1.nextNonce();
    const first = await signedPost(c, { node: "n1", nonce });
    assert.equal(first.status, 200, describeRes(first));
    return { nonce };
  },
  send: (c, { nonce }) => signedPost(c, { node: "n1", nonce, body: hbBody(c.env, { uptime_s: 2 }) }),
});
cases.push({
  name: "replay: a retired boot after a new boot was accepted",
  expect: { status: 409, code: "replay" },
  prepare: async (c) => {
    const old = c.n1.boot;
    // A new boot: a membership change; let the durable-object mirror settle afterwards.
    c.n1.boot = `b${Date.now().toString(36)}`;
    c.n1.seq = 0;
    const first = await signedPost(c, { node: "n1", nonce: c.n1.nextNonce() });
    assert.equal(first.status, 200, describeRes(first));
    await settledState(c.t, c.env);
    return { old };
  },
  send: (c, { old }) => signedPost(c, { node: "n1", nonce: `${old}:999999` }),
});
cases.push({
  name: "replay: a new boot whose timestamp is older than one accepted",
  expect: { status: 409, code: "replay" },
  prepare: async () => ({}),
  send: (c) => signedPost(c, { node: "n1", nonce: `b${Date.now().toString(36)}x:1`, ts: Date.now() - 10_000 }),
});

// ---------------------------------------------------------------------------------------------

for (const kind of only) {
  describe(`hostile ${kind}`, () => {
    const ctx = {};
    before(async () => {
      const t = await startTarget(kind, { ttl: TTL, hb: HB });
      const env = uniqueEnv("hostile");
      const n1 = new Agent(t, "n1");
      const n2 = new Agent(t, "n2");
      let farSeq = 1_000_000;
      Object.assign(ctx, { t, kind, env, n1, n2, boot2: n2.boot, far: () => `${n2.boot}:${farSeq++}` });
      const a = await signedPost(ctx, { node: "n1", nonce: n1.nextNonce() });
      assert.equal(a.status, 200, describeRes(a));
      assert.equal(a.json.leader, "n1");
      const b = await signedPost(ctx, { node: "n2", nonce: n2.nextNonce() });
      assert.equal(b.status, 200, describeRes(b));
      await settledState(t, env);
    });
    after(async () => {
      await ctx.t?.stop();
    });

    for (const c of cases) {
      test(c.name, async () => {
        const prepared = c.prepare ? await c.prepare(ctx) : undefined;
        const beforeState = await forgeState(ctx.t, ctx.env);
        const res = await c.send(ctx, prepared);
        assertRefused(res, c.expect, kind);
        const afterState = await forgeState(ctx.t, ctx.env);
        assert.deepEqual(afterState, beforeState, "a refused request changed the state");
      });
    }

    // Accepted inputs: by contract these are fine, and they must not do more than a heartbeat.
    test("accepted: unknown fields are ignored (including leader/term/you/sig and deep nesting)", async () => {
      const extra = JSON.stringify({
        leader: "n2",
        term: 99,
        lease: { holder: "n2", term: 99, expires_at_ms: 1, ttl_ms: 1 },
        you: { node: "n2", role: "leader" },
        sig: "0".repeat(64),
        nested: { a: [1, { b: null }], "": "" },
      });
      const body = `${hbBody(ctx.env).slice(0, -1)},${extra.slice(1, -1)},"__proto__":{"polluted":true},"deep":${"[".repeat(5_000)}${"]".repeat(5_000)}}`;
      const res = await signedPost(ctx, { node: "n1", nonce: ctx.n1.nextNonce(), body });
      assert.equal(res.status, 200, describeRes(res));
      assert.equal(res.json.leader, "n1");
      assert.equal(res.json.term, 1);
      assert.deepEqual(res.json.you, { node: "n1", role: "leader" });
      const cons = await signedPost(ctx, {
        node: "n1",
        nonce: ctx.n1.nextNonce(),
        path: "/federation/consensus",
        body: JSON.stringify({ env: ctx.env, leader: "n1", term: 1, peers: ["n1", "n2"], epoch: 1, extra: { x: 1 } }),
      });
      assert.equal(cons.status, 202, describeRes(cons));
      assert.equal(cons.json.leader, "n1");
    });

    test("accepted: a 10,000-deep balanced array in an unknown field (no stack overflow)", async () => {
      const body = `${hbBody(ctx.env).slice(0, -1)},"deep":${"[".repeat(10_000)}${"]".repeat(10_000)}}`;
      const res = await signedPost(ctx, { node: "n1", nonce: ctx.n1.nextNonce(), body });
      assert.equal(res.status, 200, describeRes(res));
      assert.equal((await get(ctx.t, "/health")).status, 200);
    });

    test("accepted: a body of exactly 64 KiB", async () => {
      const res = await signedPost(ctx, { node: "n1", nonce: ctx.n1.nextNonce(), body: pad(ctx.env, 65_536) });
      assert.equal(res.status, 200, describeRes(res));
    });

    test("accepted or refused as a whole: 500 headers on a valid signed heartbeat", async () => {
      const res = await signedPost(ctx, {
        node: "n1",
        nonce: ctx.n1.nextNonce(),
        extra: Array.from({ length: 500 }, (_, i) => [`x-junk-${i}`, "v"]),
      });
      if (res.status === 200) assert.equal(res.json.leader, "n1");
      else assertRefused(res, { status: [400, 431] }, kind);
    });

    test("accepted: header names in any case", async () => {
      const res = await signedPost(ctx, {
        node: "n1",
        nonce: ctx.n1.nextNonce(),
        headers: (h) => h.map(([k, v]) => [k.toUpperCase(), v]),
      });
      assert.equal(res.status, 200, describeRes(res));
    });

    test("accepted: ?env=a&env=b reads one env (or is refused), never a mix", async () => {
      const res = await rawRequest(ctx.t.url, { path: `/federation/leader?env=${ctx.env}&env=other` });
      if (res.status === 200) assert.equal(res.json.env, ctx.env, "the first value");
      else assertRefused(res, BAD, kind);
    });

    test("accepted: CORS preflight and HEAD", async () => {
      const pre = await rawRequest(ctx.t.url, {
        method: "OPTIONS",
        path: HB_PATH,
        headers: [["origin", "https://dash.example"], ["access-control-request-method", "POST"]],
      });
      assert.ok(pre.status === 204 || pre.status === 200, describeRes(pre));
      const head = await rawRequest(ctx.t.url, { method: "HEAD", path: "/health" });
      assert.equal(head.status, 200);
    });

    test("answers over HTTP are bound to their request (x-brh-basis, x-brh-basis-sig)", async () => {
      // A captured answer replayed as the answer to a later request must be told apart: it is
      // bound to the old nonce. Heartbeat, resign and consensus answers carry the binding.
      const env = uniqueEnv("bound");
      const a = new Agent(ctx.t, "b1");
      const first = await a.heartbeat(env, { nonce: a.nextNonce() });
      const n1 = `${a.boot}:${a.seq}`;
      const second = await a.heartbeat(env);
      const n2 = `${a.boot}:${a.seq}`;
      // Under b1's own key: neither the seal nor another node's key makes or checks it.
      const k1 = nodeKey(SEAL, env, "b1");
      const k2 = nodeKey(SEAL, env, "b2");
      for (const [res, nonce] of [[first, n1], [second, n2]]) {
        assert.equal(res.status, 200, res.text);
        assert.equal(res.headers.get("x-brh-basis"), nonce);
        assert.ok(verifyView(k1, res.json), "the view is b1's");
        assert.ok(!verifyView(k2, res.json), "b2's key does not verify b1's view");
        assert.ok(verifyBasis(k1, "b1", nonce, res.json, res.headers.get("x-brh-basis-sig")), "binds the view to its request");
        assert.ok(!verifyBasis(k2, "b2", nonce, res.json, res.headers.get("x-brh-basis-sig")), "and to its node");
        assert.ok(!verifyBasis(k1, "b2", nonce, res.json, res.headers.get("x-brh-basis-sig")), "and names it");
        assert.ok(!verifyBasis(SEAL, "b1", nonce, res.json, res.headers.get("x-brh-basis-sig")), "not under the seal");
      }
      // The first answer, replayed as the answer to the second request, does not verify for it.
      assert.ok(!verifyBasis(k1, "b1", n2, first.json, first.headers.get("x-brh-basis-sig")));
      const report = await a.post("/federation/consensus", { env, leader: "b1", term: first.json.term, peers: [], epoch: 1 });
      assert.equal(report.status, 202, report.text);
      assert.ok(verifyBasis(k1, "b1", `${a.boot}:${a.seq}`, report.json, report.headers.get("x-brh-basis-sig")));
      const resigned = await a.resign(env, first.json.term);
      assert.equal(resigned.status, 200, resigned.text);
      assert.ok(verifyBasis(k1, "b1", `${a.boot}:${a.seq}`, resigned.json, resigned.headers.get("x-brh-basis-sig")));
    });

    test("after all that, the witness's replay mark did not move and the leader is unchanged", async () => {
      const res = await signedPost(ctx, { node: "n2", nonce: ctx.n2.nextNonce() });
      assert.equal(
        res.status,
        200,
        `n2's next small nonce was refused, so one of the refused cases (sent by n2 with nonces from 1,000,000 on) was accepted: ${describeRes(res)}`,
      );
      assert.equal(res.json.leader, "n1");
      assert.equal(res.json.term, 1);
      const hist = await get(ctx.t, `/federation/history?env=${ctx.env}`);
      assert.deepEqual(
        hist.json.history.map((h) => [h.term, h.leader, h.reason]),
        [[1, "n1", "elected"]],
      );
    });

    test("slow clients: 300 connections holding half a request head; /health and a signed heartbeat are still served", async () => {
      const stalled = await stallConnections(ctx.t.url, 300, `POST ${HB_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-brh-`);
      try {
        assert.ok(stalled.opened >= 290, `opened ${stalled.opened} of 300`);
        let t0 = Date.now();
        const health = await rawRequest(ctx.t.url, { path: "/health" }, { timeoutMs: 5000 });
        assert.equal(health.status, 200, describeRes(health));
        assert.ok(Date.now() - t0 < 3000, `/health took ${Date.now() - t0} ms`);
        t0 = Date.now();
        const hb = await signedPost(ctx, { node: "n1", nonce: ctx.n1.nextNonce() });
        assert.equal(hb.status, 200, describeRes(hb));
        assert.ok(Date.now() - t0 < 3000, `the heartbeat took ${Date.now() - t0} ms`);
      } finally {
        stalled.release();
      }
    });

    if (kind === "native") {
      // The Worker's connections belong to the runtime (workerd here, Cloudflare's edge in
      // production); these two are properties of the native server.
      test("slow clients: a half-sent request head is dropped within the header read timeout (≤ 10 s)", async () => {
        await assertStalledHeadsDropped(ctx.t.url);
      });

      test("connection cap: beyond it, connections are refused or closed at once, not queued", async () => {
        // ulimit -n 256 → the server's cap is half of it (128 connections).
        const small = await startTarget("native", { ttl: TTL, hb: HB, nofile: 256 });
        try {
          await assertConnectionCap(small.url);
        } finally {
          await small.stop();
        }
      });
    }
  });
}
