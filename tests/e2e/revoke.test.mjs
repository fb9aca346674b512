// Revoking a node's credential (`POST /federation/revoke`) and node key generations
// (`x-brh-key-gen`, the stream's `key_gen`), against every forge the harness runs (native,
// workerd kv, workerd durable-object), written from the wire contract (docs/openapi-forge.yaml,
// docs/stream.md) with this suite's own signing (sign.mjs: node:crypto, never the Rust code).
//
//   - A revocation is an operator's request: the four x-brh-* headers and the node request's
//     canonical string, Ed25519-signed (128 hex) by the top operator, or by a scoped operator
//     whose certificate (x-brh-operator) has the `nodes` scope for the env. Anything else is
//     refused — 401 bad_signature / stale_timestamp / unauthorized, 403 forbidden, 400, 413,
//     405 — and a refused request changes nothing (leader, term, lease, peers, history, envs).
//   - Accepted: 200 {env, node, accepted_from: generation + 1, by}; idempotent. The node leaves
//     the peer table; its heartbeats, resigns and consensus reports signed with a revoked
//     generation are 401 `revoked`; generation accepted_from (x-brh-key-gen) is accepted and
//     answered under that generation's key. A revoked leader keeps its lease to its deadline
//     (never two leaders), then the next node is elected.
//   - Durable: after a restart of the forge (native: the same --data directory; workerd: the
//     same persisted KV and Durable Object storage) every revocation still holds.
//   - Rotation overlap (DOMINION_SEAL_PREVIOUS): nodes enrolled under the previous seal keep
//     working, answered under their own key (lease token by the previous forge key); the
//     previous seal's top operator may revoke.
//
// Run: FORGE_BIN=target/debug/forge node --test --test-concurrency=1 tests/e2e/revoke.test.mjs
// (E2E_TARGETS=native,kv,durable-object selects targets; kv/durable-object need build/).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Agent, Stream, envOf, get, sleep, uniqueEnv } from "./client.mjs";
import { rawRequest } from "./raw.mjs";
import { assertRefused, describeRes } from "./refusal.mjs";
import {
  canonicalAgentRequest,
  canonicalCertificate,
  canonicalRequest,
  edSignHex,
  forgeKey,
  hmacHex,
  issueCredential,
  nodeKey,
  nodeKeyGen,
  operatorKey,
  signOperatorForge,
  signRequest,
  verifyBasis,
  verifyLeaseToken,
  verifyPublicView,
  verifyView,
} from "./sign.mjs";
import { FORGE, KINDS, OPERATOR, SEAL, startTarget } from "./targets.mjs";

const only = process.env.E2E_TARGETS ? process.env.E2E_TARGETS.split(",") : KINDS;
const REVOKE = "/federation/revoke";
const HB = "/federation/heartbeat";
const RESIGN = "/federation/resign";
const CONSENSUS = "/federation/consensus";
// A lease that cannot run out during a describe (the expiry test has its own short forge).
const TTL = 600_000;
const HB_MS = 200_000;
const OTHER_SEAL = "another-federation-seal-0123";
const nowS = () => Math.floor(Date.now() / 1000);

// ---------------------------------------------------------------------------------------------
// Requests

let opSeq = 0;
const OP_BOOT = `op${Date.now().toString(36)}`;
const opNonce = () => `${OP_BOOT}:${++opSeq}`;

/**
 * A revocation, Ed25519-signed by `signer` (default the top operator) over exactly `body`.
 * `sign` overrides what the signature covers (tampering); `headers` rewrites the header list;
 * `sig` replaces x-brh-sig.
 */
function revoke(t, body, { signer = OPERATOR, caller = "ops", ts = Date.now(), nonce = opNonce(), sign = {}, headers, sig, method = "POST", ...req } = {}) {
  const raw = typeof body === "string" ? body : JSON.stringify(body);
  const s = { method: "POST", path: REVOKE, caller, ts, nonce, body: raw, ...sign };
  const h = signOperatorForge(signer, s);
  if (sig !== undefined) h["x-brh-sig"] = typeof sig === "function" ? sig(s) : sig;
  // The signed values go out as signed (`sign` only changes what the signature covers).
  Object.assign(h, { "x-brh-node": caller, "x-brh-ts": String(ts), "x-brh-nonce": nonce });
  let list = Object.entries(h);
  if (headers) list = headers(list);
  return rawRequest(t.url, { method, path: REVOKE, headers: [...list, ["content-type", "application/json"]], body: raw, ...req });
}

/** Expects a revocation's 200 answer, exactly `{env, node, accepted_from, by}`. */
function assertRevoked(res, { env, node, acceptedFrom, by = "ops" }) {
  assert.equal(res.status, 200, describeRes(res));
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  assert.deepEqual(res.json, { env, node, accepted_from: acceptedFrom, by });
}

/**
 * A node's signed request, over raw HTTP so the x-brh-key-gen header is exactly as given:
 * signed with generation `gen` of the node's key (of `seal`; `key` overrides), and the header
 * `keyGen` (default: `gen` when ≥ 1, none for 0; `null` sends none; an array sends it twice).
 */
function nodePost(t, agent, path, body, { gen = 0, keyGen, seal = SEAL, key, ts = Date.now(), nonce = agent.nextNonce(), extra = [] } = {}) {
  const raw = typeof body === "string" ? body : JSON.stringify(body);
  const k = key ?? nodeKeyGen(seal, envOf(raw), agent.node, gen);
  const h = Object.entries(signRequest(k, { method: "POST", path, node: agent.node, ts, nonce, body: raw }));
  const kg = keyGen === undefined ? (gen ? String(gen) : null) : keyGen;
  for (const v of kg === null ? [] : [kg].flat()) h.push(["x-brh-key-gen", v]);
  return rawRequest(t.url, { method: "POST", path, headers: [...h, ["content-type", "application/json"], ...extra], body: raw }).then((res) => ({ ...res, nonce }));
}

const hbBody = (env, priority = 0) => ({ env, priority, draining: false, uptime_s: 1, version: "e2e" });
const beat = (t, agent, env, opts = {}) => nodePost(t, agent, HB, hbBody(env, agent.priority), opts);

/** A 2xx view answered to `agent` under generation `gen` of its key (of `seal`), bound to its request. */
function assertAnsweredUnder(res, agent, env, gen, { status = 200, seal = SEAL } = {}) {
  assert.equal(res.status, status, describeRes(res));
  const key = nodeKeyGen(seal, env, agent.node, gen);
  assert.equal(res.json.you?.node, agent.node);
  assert.ok(verifyView(key, res.json), `the view is HMAC'd under generation ${gen} of ${agent.node}'s key`);
  assert.ok(verifyBasis(key, agent.node, res.nonce, res.json, res.headers.get("x-brh-basis-sig")), "x-brh-basis-sig under that key");
  for (const g of [0, 1, 2, 3].filter((g) => g !== gen)) {
    assert.ok(!verifyView(nodeKeyGen(seal, env, agent.node, g), res.json), `not under generation ${g}`);
  }
  return res.json;
}

function assertError(res, status, code) {
  assertRefused(res, { status, code });
  return res.json.error;
}

// ---------------------------------------------------------------------------------------------
// State

/** Everything a refused request must leave alone: the lease, term, peers, history and envs. */
async function state(t, env) {
  const read = async (p) => {
    const r = await get(t, p);
    return { status: r.status, body: r.json ?? r.text };
  };
  const leader = await read(`/federation/leader?env=${env}`);
  const { leader: l, term, lease } = leader.body ?? {};
  const peers = await read(`/federation/peers?env=${env}`);
  if (peers.status === 200) peers.body.peers = peers.body.peers.map(({ alive, ...p }) => p);
  const envs = await read("/federation/envs");
  if (envs.status === 200) envs.body.envs.sort();
  return { leader: { status: leader.status, leader: l, term, lease }, peers, history: await read(`/federation/history?env=${env}&limit=500`), envs };
}

/** Waits until two reads 300 ms apart agree (durable-object mode mirrors the env list to KV later). */
async function settled(t, env) {
  let prev = await state(t, env);
  for (let i = 0; i < 20; i++) {
    await sleep(300);
    const cur = await state(t, env);
    if (JSON.stringify(cur) === JSON.stringify(prev)) return cur;
    prev = cur;
  }
  return prev;
}

const peerNames = async (t, env) => (await get(t, `/federation/peers?env=${env}`)).json.peers.map((p) => p.node).sort();

// ---------------------------------------------------------------------------------------------
// Credentials

const HOUR = 3600;
const scoped = (name, env, scopes, { expiresS = nowS() + HOUR, top = OPERATOR, seed = 11 } = {}) =>
  issueCredential(top, { name, env, scopes, expiresS, seed: Buffer.alloc(32, seed) });

/** A certificate as written (no sorting), signed by `top`: for spellings issueCredential will not make. */
function rawCredential(top, { name, env, scopesText, expiresS, seed }) {
  const base = scoped(name, env, ["nodes"], { seed });
  const sig = edSignHex(top, canonicalCertificate(name, env, scopesText, expiresS, base.pair.publicHex));
  return { name, pair: base.pair, cert: `brhop1:${name}:${env}:${scopesText}:${expiresS}:${base.pair.publicHex}:${sig}` };
}

// ---------------------------------------------------------------------------------------------
// The refused revocations. Each: [name, expect, (ctx) => response]; ctx.env has the leader n1
// (term 1) and the witnesses n2, n3. Every case names n2 (or another env) and must change nothing.

const refusals = [];
const refuse = (name, expect, send) => refusals.push({ name, expect, send });
const BAD_SIG = { status: 401, code: "bad_signature" };
const BAD = { status: 400, code: "bad_request" };
const UNAUTHORIZED = { status: 401, code: "unauthorized" };
const FORBIDDEN = { status: 403, code: "forbidden" };
const target = (c, extra = {}) => ({ env: c.env, node: "n2", ...extra });

// Signatures: only the top operator's Ed25519 key (or a certificate's) over this exact request.
refuse("signed with the node's own key (HMAC, 64 hex)", BAD_SIG, (c) =>
  revoke(c.t, target(c), { caller: "n2", sig: (s) => hmacHex(nodeKey(SEAL, c.env, "n2"), canonicalRequest("POST", REVOKE, "n2", s.ts, s.nonce, s.body)) }),
);
refuse("signed with the leader's node key, naming the leader", BAD_SIG, (c) =>
  revoke(c.t, target(c), { caller: "n1", sig: (s) => hmacHex(nodeKey(SEAL, c.env, "n1"), canonicalRequest("POST", REVOKE, "n1", s.ts, s.nonce, s.body)) }),
);
refuse("an HMAC under the seal itself", BAD_SIG, (c) => revoke(c.t, target(c), { sig: (s) => hmacHex(SEAL, canonicalRequest("POST", REVOKE, "ops", s.ts, s.nonce, s.body)) }));
refuse("Ed25519 by the forge key", BAD_SIG, (c) => revoke(c.t, target(c), { signer: FORGE }));
refuse("Ed25519 by another federation's top operator", BAD_SIG, (c) => revoke(c.t, target(c), { signer: operatorKey(OTHER_SEAL) }));
refuse("the top operator's signature of the agent-API string (brh-v1-agent)", BAD_SIG, (c) =>
  revoke(c.t, target(c), { sig: (s) => edSignHex(OPERATOR, canonicalAgentRequest("forge", "POST", REVOKE, "ops", s.ts, s.nonce, s.body)) }),
);
refuse("signed over another body (generation 5)", BAD_SIG, (c) => revoke(c.t, target(c), { sign: { body: JSON.stringify(target(c, { generation: 5 })) } }));
refuse("signed over another node (n3), sent naming n2", BAD_SIG, (c) => revoke(c.t, target(c), { sign: { body: JSON.stringify(target(c, { node: "n3" })) } }));
refuse("signed over another path (/federation/heartbeat)", BAD_SIG, (c) => revoke(c.t, target(c), { sign: { path: HB } }));
refuse("signed over another method (GET)", BAD_SIG, (c) => revoke(c.t, target(c), { sign: { method: "GET" } }));
refuse("signed over another caller", BAD_SIG, (c) => revoke(c.t, target(c), { sign: { caller: "someone" } }));
refuse("signed over another timestamp", BAD_SIG, (c) => revoke(c.t, target(c), { sign: { ts: Date.now() - 1 } }));
refuse("signed over another nonce", BAD_SIG, (c) => revoke(c.t, target(c), { sign: { nonce: "other:1" } }));
refuse("the signature in uppercase hex", BAD_SIG, (c) => revoke(c.t, target(c), { sig: (s) => edSignHex(OPERATOR, canonicalRequest("POST", REVOKE, "ops", s.ts, s.nonce, s.body)).toUpperCase() }));
refuse("the signature with one bit flipped", BAD_SIG, (c) =>
  revoke(c.t, target(c), {
    sig: (s) => {
      const v = edSignHex(OPERATOR, canonicalRequest("POST", REVOKE, "ops", s.ts, s.nonce, s.body));
      return `${v.slice(0, 127)}${(parseInt(v[127], 16) ^ 1).toString(16)}`;
    },
  }),
);
refuse("the signature cut to 64 hex", BAD_SIG, (c) => revoke(c.t, target(c), { sig: (s) => edSignHex(OPERATOR, canonicalRequest("POST", REVOKE, "ops", s.ts, s.nonce, s.body)).slice(0, 64) }));
refuse("a key-generation header does not make a node key an operator's", BAD_SIG, (c) =>
  revoke(c.t, target(c), {
    caller: "n2",
    sig: (s) => hmacHex(nodeKeyGen(SEAL, c.env, "n2", 1), canonicalRequest("POST", REVOKE, "n2", s.ts, s.nonce, s.body)),
    headers: (h) => [...h, ["x-brh-key-gen", "1"]],
  }),
);
// Timestamps and header forms.
refuse("a timestamp two minutes old", { status: 401, code: "stale_timestamp" }, (c) => revoke(c.t, target(c), { ts: Date.now() - 120_000 }));
refuse("a timestamp two minutes ahead", { status: 401, code: "stale_timestamp" }, (c) => revoke(c.t, target(c), { ts: Date.now() + 120_000 }));
refuse("x-brh-ts with a leading zero", BAD, (c) => revoke(c.t, target(c), { headers: (h) => h.map(([k, v]) => [k, k === "x-brh-ts" ? `0${v}` : v]) }));
refuse("x-brh-nonce without a sequence", BAD, (c) => revoke(c.t, target(c), { nonce: "nosequence" }));
refuse("x-brh-node not an id", BAD, (c) => revoke(c.t, target(c), { caller: "bad id!" }));
// A missing header is 401 `unauthorized`, as on every signed route.
const MISSING = { status: 401, code: "unauthorized" };
refuse("no x-brh-* headers at all", MISSING, (c) => rawRequest(c.t.url, { method: "POST", path: REVOKE, body: JSON.stringify(target(c)) }));
for (const h of ["x-brh-node", "x-brh-ts", "x-brh-nonce", "x-brh-sig"]) {
  refuse(`missing ${h}`, MISSING, (c) => revoke(c.t, target(c), { headers: (l) => l.filter(([k]) => k !== h) }));
}
refuse("x-brh-sig sent twice", { status: [400, 401] }, (c) => revoke(c.t, target(c), { headers: (l) => [...l, l.find(([k]) => k === "x-brh-sig")] }));

// Certificates: the top operator's signature over a certificate naming the caller, unexpired,
// with `nodes` for the env the body names.
refuse("a certificate without the nodes scope (read+switchover+containers)", FORBIDDEN, (c) =>
  revoke(c.t, target(c), { signer: scoped("alice", c.env, ["read", "switchover", "containers"]), caller: "alice" }),
);
refuse("a certificate with nodes for another env", FORBIDDEN, (c) => revoke(c.t, target(c), { signer: scoped("alice", `${c.env}-other`, ["nodes"]), caller: "alice" }));
refuse("a certificate with nodes for another env, naming a new env (not created)", FORBIDDEN, (c) =>
  revoke(c.t, target(c, { env: `${c.env}-new` }), { signer: scoped("alice", c.env, ["nodes"]), caller: "alice" }),
);
refuse("an expired certificate", UNAUTHORIZED, (c) => revoke(c.t, target(c), { signer: scoped("alice", c.env, ["nodes"], { expiresS: nowS() - 10 }), caller: "alice" }));
refuse("a certificate signed by another federation's top operator", UNAUTHORIZED, (c) =>
  revoke(c.t, target(c), { signer: scoped("alice", c.env, ["nodes"], { top: operatorKey(OTHER_SEAL) }), caller: "alice" }),
);
refuse("a certificate signed by the forge key", UNAUTHORIZED, (c) => revoke(c.t, target(c), { signer: scoped("alice", c.env, ["nodes"], { top: FORGE }), caller: "alice" }));
refuse("a certificate of another name than x-brh-node", UNAUTHORIZED, (c) => revoke(c.t, target(c), { signer: scoped("alice", c.env, ["nodes"]), caller: "mallory" }));
refuse("a certificate whose scopes are not in order (nodes+read)", UNAUTHORIZED, (c) =>
  revoke(c.t, target(c), { signer: rawCredential(OPERATOR, { name: "alice", env: c.env, scopesText: "nodes+read", expiresS: nowS() + HOUR, seed: 12 }), caller: "alice" }),
);
refuse("a certificate naming an unknown scope (nodes+admin)", UNAUTHORIZED, (c) =>
  revoke(c.t, target(c), { signer: rawCredential(OPERATOR, { name: "alice", env: c.env, scopesText: "nodes+admin", expiresS: nowS() + HOUR, seed: 12 }), caller: "alice" }),
);
refuse("a malformed certificate", UNAUTHORIZED, (c) => revoke(c.t, target(c), { headers: (h) => [...h, ["x-brh-operator", "brhop1:alice:garbage"]] }));
refuse("a valid nodes certificate, the request signed by the top operator's key instead of the certificate's", BAD_SIG, (c) => {
  const cred = scoped("alice", c.env, ["nodes"]);
  return revoke(c.t, target(c), { signer: { pair: OPERATOR, cert: cred.cert }, caller: "alice" });
});
refuse("the certificate's key without its certificate (checked as the top operator)", BAD_SIG, (c) =>
  revoke(c.t, target(c), { signer: scoped("alice", c.env, ["nodes"]).pair, caller: "alice" }),
);

// Bodies, under a valid top-operator signature: exactly {env, node, generation?}.
const bodies = {
  "malformed JSON": () => "{not json",
  "empty body": () => "",
  "an array": (e) => `["${e}","n2"]`,
  "null": () => "null",
  "missing node": (e) => `{"env":"${e}"}`,
  "missing env": () => `{"node":"n2"}`,
  "an unknown field": (e) => `{"env":"${e}","node":"n2","reason":"stolen"}`,
  "a duplicate key": (e) => `{"env":"${e}","node":"n2","node":"n3"}`,
  "generation: -1": (e) => `{"env":"${e}","node":"n2","generation":-1}`,
  "generation: 1.5": (e) => `{"env":"${e}","node":"n2","generation":1.5}`,
  "generation: a string": (e) => `{"env":"${e}","node":"n2","generation":"1"}`,
  "generation: null": (e) => `{"env":"${e}","node":"n2","generation":null}`,
  "generation: 2^32 (over u32)": (e) => `{"env":"${e}","node":"n2","generation":4294967296}`,
  "generation: 4294967295 (nothing after it to accept)": (e) => `{"env":"${e}","node":"n2","generation":4294967295}`,
  "node: not an id": (e) => `{"env":"${e}","node":"bad id!"}`,
  "node: a path": (e) => `{"env":"${e}","node":"../n2"}`,
  "node: a number": (e) => `{"env":"${e}","node":2}`,
  "env: a path": () => `{"env":"../x","node":"n2"}`,
  "env: 64 characters": () => `{"env":"${"e".repeat(64)}","node":"n2"}`,
};
for (const [name, body] of Object.entries(bodies)) refuse(`body: ${name}`, BAD, (c) => revoke(c.t, body(c.env)));
refuse("body: over 64 KiB", { status: 413, code: "too_large" }, (c) => revoke(c.t, `{"env":"${c.env}","node":"n2","pad":"${"x".repeat(70_000)}"}`));
refuse("a bad body under a bad signature is refused for the signature (checked first)", BAD_SIG, (c) => revoke(c.t, "{not json", { signer: FORGE }));
for (const method of ["GET", "PUT", "DELETE"]) {
  refuse(`method: ${method} /federation/revoke`, { status: 405, code: "method_not_allowed" }, async (c) => {
    const res = await rawRequest(c.t.url, { method, path: REVOKE, body: method === "GET" ? undefined : JSON.stringify(target(c)) });
    assert.ok(res.headers.get("allow"), "405 names the allowed method");
    return res;
  });
}
refuse("path: /federation/revoke/ (signed over that path)", { status: [401, 404] }, (c) => revoke(c.t, target(c), { path: `${REVOKE}/`, sign: { path: `${REVOKE}/` } }));

// ---------------------------------------------------------------------------------------------

for (const kind of only) {
  describe(`revoke ${kind}`, () => {
    const ctx = {};
    // node -> the first generation the forge accepts, as established by the tests below, and
    // checked again after the restart.
    const accepted = {};
    before(async () => {
      const t = await startTarget(kind, { ttl: TTL, hb: HB_MS });
      const env = uniqueEnv("revoke");
      const n1 = new Agent(t, "n1", { priority: 10 });
      const n2 = new Agent(t, "n2");
      const n3 = new Agent(t, "n3");
      Object.assign(ctx, { t, env, n1, n2, n3 });
      assert.equal((await beat(t, n1, env)).json?.leader, "n1");
      for (const a of [n2, n3]) assert.equal((await beat(t, a, env)).status, 200);
      await settled(t, env);
    });
    after(async () => {
      await ctx.t?.stop();
    });

    for (const c of refusals) {
      test(`refused: ${c.name}`, async () => {
        const beforeState = await state(ctx.t, ctx.env);
        const res = await c.send(ctx);
        assertRefused(res, c.expect, kind);
        assert.deepEqual(await state(ctx.t, ctx.env), beforeState, "a refused revocation changed the state");
      });
    }

    test("after every refusal, n2 is still a peer and its first key is still accepted", async () => {
      assert.deepEqual(await peerNames(ctx.t, ctx.env), ["n1", "n2", "n3"]);
      const v = assertAnsweredUnder(await beat(ctx.t, ctx.n2, ctx.env), ctx.n2, ctx.env, 0);
      assert.deepEqual([v.leader, v.term, v.you.role], ["n1", 1, "witness"]);
    });

    test("the top operator revokes the witness n2: 200 {env, node, accepted_from, by}; it leaves the peer table; leader and term unchanged", async () => {
      const { t, env } = ctx;
      const beforeLeader = (await get(t, `/federation/leader?env=${env}`)).json;
      assertRevoked(await revoke(t, { env, node: "n2" }), { env, node: "n2", acceptedFrom: 1 });
      accepted.n2 = 1;
      assert.deepEqual(await peerNames(t, env), ["n1", "n3"]);
      const l = (await get(t, `/federation/leader?env=${env}`)).json;
      assert.deepEqual([l.leader, l.term, l.lease.expires_at_ms], [beforeLeader.leader, beforeLeader.term, beforeLeader.lease.expires_at_ms]);
      assert.ok(verifyPublicView(FORGE.publicHex, l));
      const hist = (await get(t, `/federation/history?env=${env}`)).json.history;
      assert.deepEqual(hist.map((h) => [h.term, h.leader, h.reason]), [[1, "n1", "elected"]]);
    });

    test("the revoked generation is refused: heartbeat, resign in its name and consensus are 401 revoked, and change nothing", async () => {
      const { t, env, n2 } = ctx;
      const s = await state(t, env);
      const err = assertError(await beat(t, n2, env), 401, "revoked");
      assert.match(err.message, /generation 0/);
      // A new boot, or a resign naming the leader's term, is no way back.
      const reboot = new Agent(t, "n2");
      assertError(await beat(t, reboot, env), 401, "revoked");
      assertError(await nodePost(t, n2, RESIGN, { env, term: 1 }), 401, "revoked");
      assertError(await nodePost(t, n2, RESIGN, { env, term: 1, leaving: true }), 401, "revoked");
      assertError(await nodePost(t, n2, CONSENSUS, { env, leader: "n2", term: 2, peers: ["n2"], epoch: 1 }), 401, "revoked");
      // Even a nonce it already used is refused as revoked (the key is checked first).
      assertError(await beat(t, n2, env, { nonce: `${n2.boot}:1` }), 401, "revoked");
      assert.deepEqual(await state(t, env), s, "a revoked node's request changed the state");
      // The other witness is not affected.
      assertAnsweredUnder(await beat(t, ctx.n3, env), ctx.n3, env, 0);
    });

    test("generation accepted_from (x-brh-key-gen: 1) is accepted and answered under its own key; the node is back", async () => {
      const { t, env, n2 } = ctx;
      // The header names the generation; the signature must be that generation's.
      assertError(await beat(t, n2, env, { gen: 0, keyGen: "1" }), 401, "bad_signature");
      assertError(await beat(t, n2, env, { gen: 1, keyGen: null }), 401, "bad_signature");
      assertError(await beat(t, n2, env, { gen: 1, keyGen: "2" }), 401, "bad_signature");
      assertError(await beat(t, n2, env, { gen: 1, seal: OTHER_SEAL }), 401, "bad_signature");
      const v = assertAnsweredUnder(await beat(t, n2, env, { gen: 1 }), n2, env, 1);
      assert.deepEqual([v.leader, v.term, v.you.role], ["n1", 1, "witness"]);
      assert.deepEqual(await peerNames(t, env), ["n1", "n2", "n3"]);
      assertAnsweredUnder(await nodePost(t, n2, CONSENSUS, { env, leader: "n1", term: 1, peers: ["n1", "n2"], epoch: 1 }, { gen: 1 }), n2, env, 1, { status: 202 });
      // Resign by the re-enrolled witness: refused for what it is (not the holder), not revoked.
      assertError(await nodePost(t, n2, RESIGN, { env, term: 1 }, { gen: 1 }), 409, "not_holder");
      // Generation 0 stays revoked.
      assertError(await beat(t, n2, env), 401, "revoked");
    });

    test("x-brh-key-gen is a canonical decimal ≥ 1: 0, 01, x, empty, signs, fractions, over u32 and two copies are 400 bad_request", async () => {
      const { t, env, n2 } = ctx;
      const s = await state(t, env);
      for (const v of ["0", "01", "001", "x", "", "-1", "+1", "1.0", "1e0", "0x1", "4294967296", "18446744073709551616", "99999999999999999999999"]) {
        const res = await beat(t, n2, env, { gen: 1, keyGen: v });
        assertRefused(res, BAD, kind);
        if (v !== "") assert.match(res.json.error.message, /x-brh-key-gen/, `${JSON.stringify(v)}: ${describeRes(res)}`);
      }
      // Not visible ASCII: workerd reads the value and refuses it (400); the native server
      // treats a header that is not text as absent (generation 0), so the generation-1
      // signature fails (401). Refused either way, nothing changes.
      assertRefused(await beat(t, n2, env, { gen: 1, keyGen: "١" }), { status: [400, 401] }, kind);
      assertRefused(await beat(t, n2, env, { gen: 1, keyGen: ["1", "1"] }), BAD, kind);
      assertRefused(await beat(t, n2, env, { gen: 1, keyGen: ["1", "2"] }), { status: [400, 401] }, kind);
      assert.deepEqual(await state(t, env), s, "a refused key generation changed the state");
      // Generation 0 has no number: "0" is refused even with generation 0's signature.
      assertRefused(await beat(t, n2, env, { gen: 0, keyGen: "0" }), BAD, kind);
      assert.deepEqual(await state(t, env), s);
    });

    test("a later generation than accepted_from is accepted too; revoking an older one leaves it alone", async () => {
      const { t, env, n2 } = ctx;
      assertAnsweredUnder(await beat(t, n2, env, { gen: 2 }), n2, env, 2);
      assertRevoked(await revoke(t, { env, node: "n2", generation: 1 }), { env, node: "n2", acceptedFrom: 2 });
      accepted.n2 = 2;
      assertError(await beat(t, n2, env, { gen: 1 }), 401, "revoked");
      assert.deepEqual(await peerNames(t, env), ["n1", "n3"], "a revocation removes the node whatever key it last used");
      assertAnsweredUnder(await beat(t, n2, env, { gen: 2 }), n2, env, 2);
      assert.deepEqual(await peerNames(t, env), ["n1", "n2", "n3"]);
    });

    test("idempotent: the same generation again, an older one, and the very same request replayed all answer 200 with the same accepted_from", async () => {
      const { t, env, n3 } = ctx;
      assertRevoked(await revoke(t, { env, node: "n3", generation: 2 }), { env, node: "n3", acceptedFrom: 3 });
      accepted.n3 = 3;
      assertRevoked(await revoke(t, { env, node: "n3", generation: 2 }), { env, node: "n3", acceptedFrom: 3 });
      assertRevoked(await revoke(t, { env, node: "n3", generation: 0 }), { env, node: "n3", acceptedFrom: 3 });
      assertRevoked(await revoke(t, { env, node: "n3" }), { env, node: "n3", acceptedFrom: 3 });
      const ts = Date.now();
      const nonce = opNonce();
      const s = await state(t, env);
      for (let i = 0; i < 2; i++) assertRevoked(await revoke(t, { env, node: "n3", generation: 1 }, { ts, nonce }), { env, node: "n3", acceptedFrom: 3 });
      assert.deepEqual(await state(t, env), s, "a revocation already in force changes nothing");
      for (const g of [0, 1, 2]) assertError(await beat(t, n3, env, { gen: g }), 401, "revoked");
      assertAnsweredUnder(await beat(t, n3, env, { gen: 3 }), n3, env, 3);
    });

    test("a scoped operator with the nodes scope for the env may revoke (by: its name)", async () => {
      const { t, env } = ctx;
      const bob = new Agent(t, "bob");
      assertAnsweredUnder(await beat(t, bob, env), bob, env, 0);
      assertRevoked(await revoke(t, { env, node: "bob" }, { signer: scoped("carol", env, ["nodes"]), caller: "carol" }), { env, node: "bob", acceptedFrom: 1, by: "carol" });
      const all = scoped("dave", env, ["read", "switchover", "containers", "nodes"], { seed: 13 });
      assert.equal(all.cert.split(":")[3], "read+switchover+containers+nodes");
      assertRevoked(await revoke(t, { env, node: "bob", generation: 4 }, { signer: all, caller: "dave" }), { env, node: "bob", acceptedFrom: 5, by: "dave" });
      accepted.bob = 5;
      assertError(await beat(t, bob, env, { gen: 4 }), 401, "revoked");
      assert.ok(!(await peerNames(t, env)).includes("bob"));
    });

    test("a node that never joined can be revoked ahead (its first key is refused), up to the last generation", async () => {
      const { t, env } = ctx;
      const eve = new Agent(t, "eve");
      assertRevoked(await revoke(t, { env, node: "eve" }), { env, node: "eve", acceptedFrom: 1 });
      assertError(await beat(t, eve, env), 401, "revoked");
      assert.ok(!(await peerNames(t, env)).includes("eve"));
      assertRevoked(await revoke(t, { env, node: "eve", generation: 4294967294 }), { env, node: "eve", acceptedFrom: 4294967295 });
      accepted.eve = 4294967295;
      assertError(await beat(t, eve, env, { gen: 4294967294 }), 401, "revoked");
      assertAnsweredUnder(await beat(t, eve, env, { gen: 4294967295 }), eve, env, 4294967295);
      assert.equal((await beat(t, eve, env, { gen: 4294967295 })).status, 200);
      // Idempotent: revoking what is already revoked leaves the re-enrolled node in the table.
      assertRevoked(await revoke(t, { env, node: "eve", generation: 4294967294 }), { env, node: "eve", acceptedFrom: 4294967295 });
      assert.ok((await peerNames(t, env)).includes("eve"));
      // And the last generation cannot be revoked: nothing would be left to accept.
      assertRefused(await revoke(t, { env, node: "eve", generation: 4294967295 }), BAD, kind);
    });

    test("revoking the leader: the lease is not cut short (one leader), its renewals and resign are 401 revoked", async () => {
      const { t, env, n1 } = ctx;
      const l0 = (await get(t, `/federation/leader?env=${env}`)).json;
      assertRevoked(await revoke(t, { env, node: "n1" }), { env, node: "n1", acceptedFrom: 1 });
      accepted.n1 = 1;
      const l1 = (await get(t, `/federation/leader?env=${env}`)).json;
      assert.deepEqual([l1.leader, l1.term, l1.lease.holder, l1.lease.expires_at_ms], ["n1", 1, "n1", l0.lease.expires_at_ms], "the lease runs to its deadline");
      assert.ok(!(await peerNames(t, env)).includes("n1"));
      assertError(await beat(t, n1, env), 401, "revoked");
      assertError(await nodePost(t, n1, RESIGN, { env, term: 1 }), 401, "revoked");
      assertError(await nodePost(t, n1, RESIGN, { env, term: 1, successor: "n3" }), 401, "revoked");
      // A witness's beat does not take the lease before its deadline.
      const w = await beat(t, ctx.n3, env, { gen: 3 });
      assert.deepEqual([w.json.leader, w.json.term], ["n1", 1]);
    });

    if (kind !== "kv") {
      test("on the stream: key_gen names the generation; a revoked one is refused; key_gen \"0\" is bad_request; revoke is not a stream path", async () => {
        const { t, env, n2 } = ctx;
        const s = await Stream.open(t, env);
        try {
          const body = JSON.stringify({ env, priority: 0, version: "e2e" });
          const frame = (opts) => {
            const ts = Date.now();
            const nonce = opts.nonce ?? n2.nextNonce();
            const path = opts.path ?? HB;
            const sig = hmacHex(nodeKeyGen(SEAL, env, "n2", opts.gen), canonicalRequest("WS", path, "n2", ts, nonce, opts.body ?? body));
            const f = { path, node: "n2", ts, nonce, sig, body: opts.body ?? body };
            if (opts.keyGen !== undefined) f.key_gen = opts.keyGen;
            s.ws.send(JSON.stringify(f));
            return opts.noReply ? s.next((m) => m.reply_to === undefined && m.error) : s.next((m) => m.reply_to === nonce).then((m) => ({ ...m, nonce }));
          };
          // n2 is at generation 2 now (generation 1 was revoked).
          const old = await frame({ gen: 1, keyGen: "1" });
          assert.equal(old.error?.code, "revoked", JSON.stringify(old));
          const zero = await frame({ gen: 0 });
          assert.equal(zero.error?.code, "revoked", JSON.stringify(zero));
          for (const v of ["0", "02", "x", ""]) {
            const m = await frame({ gen: 2, keyGen: v });
            assert.equal(m.error?.code, "bad_request", `${JSON.stringify(v)}: ${JSON.stringify(m)}`);
          }
          const numeric = await frame({ gen: 2, keyGen: 2, noReply: true });
          assert.equal(numeric.error?.code, "bad_request", "key_gen is a string");
          const wrongGen = await frame({ gen: 2, keyGen: "3" });
          assert.equal(wrongGen.error?.code, "bad_signature", JSON.stringify(wrongGen));
          const ok = await frame({ gen: 2, keyGen: "2" });
          assert.ok(ok.view, JSON.stringify(ok));
          const key = nodeKeyGen(SEAL, env, "n2", 2);
          assert.ok(verifyView(key, ok.view), "the answer is HMAC'd under generation 2");
          assert.ok(!verifyView(nodeKey(SEAL, env, "n2"), ok.view));
          assert.ok(verifyBasis(key, "n2", ok.nonce, ok.view, ok.basis_sig));
          const rev = await frame({ gen: 2, keyGen: "2", path: REVOKE, body: JSON.stringify({ env, node: "n3" }) });
          assert.equal(rev.error?.code, "not_found", `a revocation is not taken on the stream: ${JSON.stringify(rev)}`);
          assert.equal(accepted.n3, 3);
        } finally {
          s.close();
        }
      });
    }

    test("durable: after a restart every revocation holds, the revoked nodes are still out, and accepted_from is unchanged", async () => {
      const { t, env } = ctx;
      const beforeLeader = (await get(t, `/federation/leader?env=${env}`)).json;
      const peersBefore = await peerNames(t, env);
      assert.deepEqual(peersBefore, ["eve", "n2", "n3"], "n1 and bob are revoked and out; eve, n2, n3 are back at a later generation");
      await t.restart();
      const l = (await get(t, `/federation/leader?env=${env}`)).json;
      assert.deepEqual([l.leader, l.term], [beforeLeader.leader, beforeLeader.term], "the same lease after the restart");
      assert.deepEqual(await peerNames(t, env), peersBefore, "the revoked nodes did not come back");
      for (const [node, from] of Object.entries(accepted)) {
        const a = new Agent(t, node);
        assertError(await beat(t, a, env, { gen: from - 1 }), 401, "revoked");
        if (from > 1) assertError(await beat(t, a, env, { gen: 0 }), 401, "revoked");
        // Revoking generation 0 again is a read of what is in force.
        assertRevoked(await revoke(t, { env, node }), { env, node, acceptedFrom: from });
      }
      // The revoked leader's renewals stay refused; the re-enrolled nodes keep their keys.
      assertError(await beat(t, ctx.n1, env), 401, "revoked");
      assertAnsweredUnder(await beat(t, ctx.n2, env, { gen: 2 }), ctx.n2, env, 2);
      assertAnsweredUnder(await beat(t, ctx.n3, env, { gen: 3 }), ctx.n3, env, 3);
      assert.equal((await beat(t, new Agent(t, "eve"), env, { gen: 4294967295 })).status, 200);
      // A new revocation after the restart, and a second restart: both kept.
      assertRevoked(await revoke(t, { env, node: "n3", generation: 3 }), { env, node: "n3", acceptedFrom: 4 });
      await t.restart();
      assertError(await beat(t, ctx.n3, env, { gen: 3 }), 401, "revoked");
      assertRevoked(await revoke(t, { env, node: "n3" }), { env, node: "n3", acceptedFrom: 4 });
      assertRevoked(await revoke(t, { env, node: "n2" }), { env, node: "n2", acceptedFrom: 2 });
      assert.deepEqual(await peerNames(t, env), ["eve", "n2"]);
    });
  });

  describe(`revoke ${kind}: a revoked leader's lease runs out, then the next is elected`, () => {
    let t;
    before(async () => {
      t = await startTarget(kind, { ttl: 2000, hb: 500 });
    });
    after(async () => {
      await t?.stop();
    });

    test("no grant before the deadline; the witness after it, in the next term", async () => {
      const env = uniqueEnv("revoke-lead");
      const [a, b] = [new Agent(t, "a", { priority: 5 }), new Agent(t, "b")];
      assert.equal((await beat(t, a, env)).json.leader, "a");
      assert.equal((await beat(t, b, env)).json.you.role, "witness");
      assertAnsweredUnder(await beat(t, a, env), a, env, 0);
      const lease = (await get(t, `/federation/leader?env=${env}`)).json.lease;
      assertRevoked(await revoke(t, { env, node: "a" }), { env, node: "a", acceptedFrom: 1 });
      let granted = null;
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        assertError(await beat(t, a, env), 401, "revoked");
        const r = await beat(t, b, env);
        assert.equal(r.status, 200, describeRes(r));
        if (r.json.leader === "b") {
          granted = r.json;
          break;
        }
        assert.deepEqual([r.json.leader, r.json.term], ["a", 1], "until its deadline the revoked holder's lease stands");
        assert.ok(r.json.issued_at_ms < lease.expires_at_ms + 1000, "the lease did not outlive its deadline");
        await sleep(200);
      }
      assert.ok(granted, "b was elected after the revoked leader's lease ran out");
      assert.equal(granted.term, 2);
      assert.ok(granted.issued_at_ms >= lease.expires_at_ms, `granted at ${granted.issued_at_ms}, before the revoked lease's deadline ${lease.expires_at_ms}`);
      assertAnsweredUnder(await beat(t, b, env), b, env, 0);
      assert.deepEqual(await peerNames(t, env), ["b"]);
      const hist = (await get(t, `/federation/history?env=${env}`)).json.history.map((h) => [h.term, h.leader]);
      assert.deepEqual(hist[0], [2, "b"]);
      assert.ok(!hist.some(([term, leader]) => term === 2 && leader === "a"));
    });
  });

  describe(`revoke ${kind}: rotating the seal (DOMINION_SEAL_PREVIOUS)`, () => {
    const PREVIOUS = "e2e-previous-seal-fedcba9876543210";
    let t;
    before(async () => {
      t = await startTarget(kind, { ttl: TTL, hb: HB_MS, forgeEnv: { DOMINION_SEAL_PREVIOUS: PREVIOUS }, bindings: { DOMINION_SEAL_PREVIOUS: PREVIOUS } });
    });
    after(async () => {
      await t?.stop();
    });

    test("a host of the previous seal is accepted and answered under its own key (lease token by the previous forge key); public views by the current forge key", async () => {
      const env = uniqueEnv("rotate");
      const [a, b] = [new Agent(t, "a", { priority: 5 }), new Agent(t, "b")];
      const va = assertAnsweredUnder(await beat(t, a, env, { seal: PREVIOUS }), a, env, 0, { seal: PREVIOUS });
      assert.deepEqual([va.leader, va.you.role], ["a", "leader"]);
      assert.ok(!verifyView(nodeKey(SEAL, env, "a"), va), "not under the current seal's key");
      assert.ok(verifyLeaseToken(forgeKey(PREVIOUS).publicHex, va.lease_token), "the lease token checks with the previous forge key (what the host holds)");
      assert.ok(!verifyLeaseToken(FORGE.publicHex, va.lease_token));
      const vb = assertAnsweredUnder(await beat(t, b, env), b, env, 0);
      assert.equal(vb.you.role, "witness");
      const pub = (await get(t, `/federation/leader?env=${env}`)).json;
      assert.ok(verifyPublicView(FORGE.publicHex, pub), "public views: the current forge key");
      assert.ok(!verifyPublicView(forgeKey(PREVIOUS).publicHex, pub));
      assertError(await beat(t, b, env, { seal: OTHER_SEAL }), 401, "bad_signature");
      // The previous seal's top operator, and a certificate it issued, may revoke.
      assertRevoked(await revoke(t, { env, node: "b" }, { signer: operatorKey(PREVIOUS), caller: "old-top" }), { env, node: "b", acceptedFrom: 1, by: "old-top" });
      assertError(await beat(t, b, env), 401, "revoked");
      assertError(await beat(t, b, env, { seal: PREVIOUS }), 401, "revoked");
      assertRevoked(await revoke(t, { env, node: "a" }, { signer: scoped("olda", env, ["nodes"], { top: operatorKey(PREVIOUS) }), caller: "olda" }), { env, node: "a", acceptedFrom: 1, by: "olda" });
      assertError(await beat(t, a, env, { seal: PREVIOUS }), 401, "revoked");
      // Re-enrolled under the current seal, at the next generation.
      assertAnsweredUnder(await beat(t, a, env, { gen: 1 }), a, env, 1);
      assertRefused(await revoke(t, { env, node: "a" }, { signer: operatorKey(OTHER_SEAL) }), BAD_SIG, kind);
      assertRefused(await revoke(t, { env, node: "a" }, { signer: scoped("x", env, ["nodes"], { top: operatorKey(OTHER_SEAL) }), caller: "x" }), UNAUTHORIZED, kind);
    });

    test("without DOMINION_SEAL_PREVIOUS the previous seal's node keys and operator are strangers", async () => {
      const plain = await startTarget(kind, { ttl: TTL, hb: HB_MS });
      try {
        const env = uniqueEnv("norotate");
        const a = new Agent(plain, "a");
        assertError(await beat(plain, a, env, { seal: PREVIOUS }), 401, "bad_signature");
        assertRefused(await revoke(plain, { env, node: "a" }, { signer: operatorKey(PREVIOUS) }), BAD_SIG, kind);
        assertAnsweredUnder(await beat(plain, a, env), a, env, 0);
      } finally {
        await plain.stop();
      }
    });
  });
}
