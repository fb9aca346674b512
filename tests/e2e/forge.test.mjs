// One scenario suite, three forges: the native binary, the Worker in workerd over KV, and the
// Worker in workerd with the LeaseRegister Durable Object. Every scenario asserts status codes
// and bodies; refused requests must leave the lease, term and peer table unchanged.
//
// Run with scripts/test-e2e.sh (builds what is missing). Lease ttl 900 ms, heartbeat 300 ms.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Agent, get, sleep, snapshot, uniqueEnv } from "./client.mjs";
import { edVerifyHex, hmacHex, nodeKey, verifyBasis, verifyManifest, verifyPublicView, verifyView } from "./sign.mjs";
import { FORGE, KINDS, OPERATOR, SEAL, startTarget } from "./targets.mjs";

const only = process.env.E2E_TARGETS ? process.env.E2E_TARGETS.split(",") : KINDS;

function assertError(res, status, code) {
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status} ${res.text}`);
  assert.equal(res.json?.error?.code, code, res.text);
  assert.equal(typeof res.json.error.message, "string");
}

function assertView(t, res, { env, leader, term, you, role }) {
  assert.equal(res.status, 200, res.text);
  const v = res.json;
  assert.equal(v.env, env);
  assert.equal(v.leader, leader);
  assert.equal(v.term, term);
  assert.equal(v.mode, t.mode);
  if (leader === null) {
    assert.equal(v.lease, null);
  } else {
    assert.equal(v.lease.holder, leader);
    assert.equal(v.lease.term, term);
    assert.equal(v.lease.ttl_ms, t.ttl);
    assert.ok(v.lease.expires_at_ms > v.issued_at_ms, "a valid lease ends after the view was issued");
  }
  if (you) {
    // An answer to a node: the HMAC of that node's key (in this env), and no one else's.
    assert.deepEqual(v.you, { node: you, role });
    assert.match(v.sig, /^[0-9a-f]{64}$/);
    assert.ok(verifyView(nodeKey(SEAL, env, you), v), "the view's sig verifies with the node's own key");
    assert.ok(!verifyView(nodeKey(SEAL, env, `${you}-other`), v), "and not with another node's key");
    assert.ok(!verifyView(SEAL, v), "nor with the seal");
    const basis = res.headers.get("x-brh-basis");
    assert.ok(verifyBasis(nodeKey(SEAL, env, you), you, basis, v, res.headers.get("x-brh-basis-sig")), "bound to its request under the node's key");
  } else {
    // A public view: Ed25519 under the forge key, which anyone can check with its public key.
    assert.equal(v.you, undefined);
    assert.match(v.sig, /^[0-9a-f]{128}$/);
    assert.ok(verifyPublicView(FORGE.publicHex, v), "the view's sig verifies with the forge's public key");
    assert.ok(!verifyPublicView(OPERATOR.publicHex, v), "and not with another public key");
  }
  return v;
}

/** Waits for a ledger POST matching `pred`; checks the forge's Ed25519 signature of its body. */
async function ledgerEntry(t, pred) {
  for (let i = 0; i < 50; i++) {
    for (const { headers, body } of t.ledger) {
      const change = JSON.parse(body);
      if (pred(change)) {
        assert.ok(edVerifyHex(FORGE.publicHex, body, headers["x-brh-sig"]), "ledger POST carries the forge's signature of its body");
        assert.notEqual(headers["x-brh-sig"], hmacHex(SEAL, body), "the ledger signature is no HMAC under the seal");
        return change;
      }
    }
    await sleep(50);
  }
  assert.fail("the ledger did not receive the leader change");
}

for (const kind of only) {
  describe(`forge ${kind}`, () => {
    let t;
    before(async () => {
      t = await startTarget(kind);
    });
    after(async () => {
      await t?.stop();
    });

    test("grant: the first heartbeat leads with term 1, signed view verifies", async () => {
      const env = uniqueEnv("grant");
      const n1 = new Agent(t, "n1");
      const res = await n1.heartbeat(env);
      assertView(t, res, { env, leader: "n1", term: 1, you: "n1", role: "leader" });
      assert.equal(res.headers.get("cache-control"), "no-store");
      const read = await get(t, `/federation/leader?env=${env}`);
      assertView(t, read, { env, leader: "n1", term: 1 });
      assert.equal(read.headers.get("access-control-allow-origin"), "*");
      const peers = await get(t, `/federation/peers?env=${env}`);
      assert.equal(peers.status, 200);
      assert.deepEqual(
        peers.json.peers.map((p) => [p.node, p.alive, p.version]),
        [["n1", true, "e2e"]],
      );
      const hist = await get(t, `/federation/history?env=${env}`);
      assert.equal(hist.status, 200);
      assert.deepEqual(
        hist.json.history.map((h) => [h.term, h.leader, h.reason]),
        [[1, "n1", "elected"]],
      );
      if (t.ledger) {
        const c = await ledgerEntry(t, (c) => c.env === env && c.term === 1);
        assert.deepEqual([c.leader, c.reason], ["n1", "elected"]);
      }
    });

    test("renew: the term stays, the expiry moves forward", async () => {
      const env = uniqueEnv("renew");
      const n1 = new Agent(t, "n1");
      const first = assertView(t, await n1.heartbeat(env), { env, leader: "n1", term: 1, you: "n1", role: "leader" });
      await sleep(60);
      const second = assertView(t, await n1.heartbeat(env), { env, leader: "n1", term: 1, you: "n1", role: "leader" });
      assert.ok(
        second.lease.expires_at_ms > first.lease.expires_at_ms,
        `expiry moved: ${first.lease.expires_at_ms} -> ${second.lease.expires_at_ms}`,
      );
      const n2 = new Agent(t, "n2", { priority: 9 });
      assertView(t, await n2.heartbeat(env), { env, leader: "n1", term: 1, you: "n2", role: "witness" });
    });

    test("expiry and failover: a silent leader loses the lease, a live peer leads with term + 1", async () => {
      const env = uniqueEnv("failover");
      const n1 = new Agent(t, "n1");
      const n2 = new Agent(t, "n2");
      const v1 = assertView(t, await n1.heartbeat(env), { env, leader: "n1", term: 1, you: "n1", role: "leader" });
      const deadline = Date.now() + 10 * t.ttl;
      let last;
      for (;;) {
        last = await n2.heartbeat(env);
        assert.equal(last.status, 200, last.text);
        if (last.json.leader === "n2") break;
        // While n1's lease is valid, n2 stays a witness (the lease is sticky).
        if (last.json.issued_at_ms < v1.lease.expires_at_ms) {
          assertView(t, last, { env, leader: "n1", term: 1, you: "n2", role: "witness" });
        }
        assert.ok(Date.now() < deadline, "n2 never got the lease");
        await sleep(t.hb / 2);
      }
      assertView(t, last, { env, leader: "n2", term: 2, you: "n2", role: "leader" });
      assert.ok(last.json.issued_at_ms >= v1.lease.expires_at_ms, "no grant before the old lease ended");
      // The old leader is now a witness; it does not get the lease back.
      assertView(t, await n1.heartbeat(env), { env, leader: "n2", term: 2, you: "n1", role: "witness" });
      const hist = await get(t, `/federation/history?env=${env}`);
      assert.deepEqual(hist.json.history[0], { ...hist.json.history[0], term: 2, leader: "n2", reason: "expired" });
    });

    test("resign: immediate handover to the next best node, no bounce back", async () => {
      const env = uniqueEnv("resign");
      const n1 = new Agent(t, "n1", { priority: 0 });
      const n2 = new Agent(t, "n2", { priority: 5 });
      const n3 = new Agent(t, "n3", { priority: 1 });
      assertView(t, await n1.heartbeat(env), { env, leader: "n1", term: 1, you: "n1", role: "leader" });
      assertView(t, await n2.heartbeat(env), { env, leader: "n1", term: 1, you: "n2", role: "witness" });
      assertView(t, await n3.heartbeat(env), { env, leader: "n1", term: 1, you: "n3", role: "witness" });

      const before = await snapshot(t, env);
      assertError(await n2.resign(env, 1), 409, "not_holder");
      assertError(await n1.resign(env, 7), 409, "not_holder");
      assert.deepEqual(await snapshot(t, env), before, "a refused resign changes nothing");

      const res = await n1.resign(env, 1);
      assertView(t, res, { env, leader: "n2", term: 2, you: "n1", role: "witness" });
      assertView(t, await n1.heartbeat(env), { env, leader: "n2", term: 2, you: "n1", role: "witness" });
      assertView(t, await n2.heartbeat(env), { env, leader: "n2", term: 2, you: "n2", role: "leader" });
      assertError(await n1.resign(env, 2), 409, "not_holder");
      const hist = await get(t, `/federation/history?env=${env}`);
      assert.deepEqual(
        hist.json.history.map((h) => [h.term, h.leader, h.reason]),
        [
          [2, "n2", "resigned"],
          [1, null, "resigned"],
          [1, "n1", "elected"],
        ],
      );
    });

    test("concurrent first heartbeats: exactly one leader for term 1", async () => {
      const env = uniqueEnv("race");
      const agents = Array.from({ length: 16 }, (_, i) => new Agent(t, `r${i}`));
      // Open the connections first, so the heartbeats arrive together.
      await Promise.all(agents.map(() => get(t, "/health")));
      const answers = await Promise.all(agents.map((a) => a.heartbeat(env)));
      for (const a of answers) assert.equal(a.status, 200, a.text);
      const leaders = new Set(answers.map((a) => `${a.json.leader}@${a.json.term}`));
      assert.equal(leaders.size, 1, `all answers agree on one leader: ${[...leaders]}`);
      const [leader] = answers.map((a) => a.json.leader);
      assert.equal(answers.filter((a) => a.json.you.role === "leader").length, 1);
      assertView(t, await get(t, `/federation/leader?env=${env}`), { env, leader, term: 1 });
      const peers = await get(t, `/federation/peers?env=${env}`);
      assert.equal(peers.json.peers.length, 16, "no heartbeat was lost");
    });

    test("replay: a reused or older nonce is refused with 409 and changes nothing", async () => {
      const env = uniqueEnv("replay");
      const n1 = new Agent(t, "n1");
      assertView(t, await n1.heartbeat(env), { env, leader: "n1", term: 1, you: "n1", role: "leader" });
      const ts = Date.now();
      const nonce = n1.nextNonce();
      assert.equal((await n1.heartbeat(env, { ts, nonce })).status, 200);
      const before = await snapshot(t, env);
      assertError(await n1.heartbeat(env, { ts, nonce }), 409, "replay");
      assertError(await n1.heartbeat(env, { nonce: `${n1.boot}:1` }), 409, "replay");
      assert.deepEqual(await snapshot(t, env), before);
      assert.equal((await n1.heartbeat(env)).status, 200, "the next fresh nonce is accepted");
    });

    test("bad input: 401/413/400/404/405, each leaving the state unchanged", async () => {
      const env = uniqueEnv("refuse");
      const n1 = new Agent(t, "n1");
      assertView(t, await n1.heartbeat(env), { env, leader: "n1", term: 1, you: "n1", role: "leader" });
      const before = await snapshot(t, env);
      const hb = { env, priority: 100, draining: false, uptime_s: 1, version: "evil" };
      const far = `${n1.boot}:1000000`;

      assertError(await n1.post("/federation/heartbeat", hb, { seal: "wrong-seal", nonce: far }), 401, "bad_signature");
      // Only n1's own key in this env opens n1's requests: not the seal, not another node's
      // key, not n1's key in another env.
      assertError(await n1.post("/federation/heartbeat", hb, { key: SEAL, nonce: far }), 401, "bad_signature");
      assertError(await n1.post("/federation/heartbeat", hb, { key: nodeKey(SEAL, env, "n2"), nonce: far }), 401, "bad_signature");
      assertError(await n1.post("/federation/heartbeat", hb, { keyEnv: `${env}-other`, nonce: far }), 401, "bad_signature");
      // The body names the key's env, so it is read first: a bad body is 400 whatever the signature.
      assertError(await n1.post("/federation/heartbeat", null, { rawBody: "{not json", key: SEAL, nonce: far }), 400, "bad_request");
      assertError(
        await n1.post("/federation/heartbeat", hb, { sendBody: JSON.stringify({ ...hb, priority: 101 }), nonce: far }),
        401,
        "bad_signature",
      );
      assertError(await n1.post("/federation/heartbeat", hb, { ts: Date.now() - 120_000, nonce: far }), 401, "stale_timestamp");
      const big = JSON.stringify({ ...hb, pad: "x".repeat(70 * 1024) });
      assertError(await n1.post("/federation/heartbeat", null, { rawBody: big, nonce: far }), 413, "too_large");
      // The same without content-length: a chunked body is cut off at the cap.
      const chunks = Array.from({ length: 10 }, () => "x".repeat(8 * 1024));
      assertError(await n1.postChunked("/federation/heartbeat", "", chunks, { nonce: far }), 413, "too_large");
      assertError(await n1.post("/federation/heartbeat", null, { rawBody: "{not json", nonce: far }), 400, "bad_request");
      assertError(await n1.post("/federation/heartbeat", { priority: 1 }, { nonce: far }), 400, "bad_request");
      assertError(await n1.post("/federation/heartbeat", { ...hb, env: "bad env!" }, { nonce: far }), 400, "bad_request");
      // An env nobody joined reads as vacant (dashboards poll before nodes join), with the
      // read headers, and reading it creates nothing.
      const nobodyEnv = uniqueEnv("nobody");
      const nobody = await get(t, `/federation/leader?env=${nobodyEnv}`);
      assertView(t, nobody, { env: nobodyEnv, leader: null, term: 0 });
      assert.equal(nobody.headers.get("access-control-allow-origin"), "*");
      assert.equal(nobody.headers.get("cache-control"), "no-store");
      assertError(await get(t, `/federation/history?env=${env}&cursor=abc`), 400, "bad_request");
      const raw = await fetch(`${t.url}/federation/heartbeat`, { method: "POST", body: JSON.stringify(hb) });
      const rawText = await raw.text();
      assertError({ status: raw.status, text: rawText, json: JSON.parse(rawText) }, 401, "unauthorized");
      assertError(await get(t, "/federation/heartbeat"), 405, "method_not_allowed");
      assertError(await get(t, "/no/such/endpoint"), 404, "not_found");

      assert.deepEqual(await snapshot(t, env), before, "no refused request changed the state");
      // None of them advanced the replay mark: the next small sequence number is accepted.
      assertView(t, await n1.heartbeat(env), { env, leader: "n1", term: 1, you: "n1", role: "leader" });
    });

    test("sweep: a dead leader is expired and a live peer elected without any heartbeat (cron, alarm or timer)", async () => {
      const env = uniqueEnv("sweep");
      const n1 = new Agent(t, "n1");
      const n2 = new Agent(t, "n2");
      const v1 = assertView(t, await n1.heartbeat(env), { env, leader: "n1", term: 1, you: "n1", role: "leader" });
      await sleep(t.ttl - 200);
      // n2's last heartbeat: it stays alive until ~ttl after this.
      assertView(t, await n2.heartbeat(env), { env, leader: "n1", term: 1, you: "n2", role: "witness" });
      await sleep(Math.max(0, v1.lease.expires_at_ms - Date.now()) + 100);
      if (t.sweep && t.kind === "kv") {
        // The lease has run out, but nothing elected a new leader yet.
        assertView(t, await get(t, `/federation/leader?env=${env}`), { env, leader: null, term: 1 });
        await t.sweep();
        assertView(t, await get(t, `/federation/leader?env=${env}`), { env, leader: "n2", term: 2 });
        const c = await ledgerEntry(t, (c) => c.env === env && c.term === 2 && c.leader === "n2");
        assert.equal(c.reason, "expired");
      } else {
        // The native forge sweeps at the lease's expiry (and every 100 ms); in durable-object
        // mode the register's alarm fires at the expiry. No heartbeat, no cron.
        let v;
        for (let i = 0; i < 20; i++) {
          v = await get(t, `/federation/leader?env=${env}`);
          if (v.json.leader === "n2") break;
          await sleep(50);
        }
        assertView(t, v, { env, leader: "n2", term: 2 });
      }
    });

    test("dashboard and metrics", async () => {
      const page = await get(t, "/");
      assert.equal(page.status, 200);
      assert.match(page.headers.get("content-type"), /^text\/html/);
      assert.match(page.text, /<title>BRH forge<\/title>/);
      const m = await get(t, "/metrics");
      assert.equal(m.status, 200);
      assert.match(m.text, /^brh_forge_heartbeats_total\{env="[^"]+"\} [1-9]/m);
      assert.match(m.text, /^brh_forge_rejections_total\{reason="replay"\} [1-9]/m);
      const health = await get(t, "/health");
      assert.equal(health.status, 200);
      assert.equal(health.json.mode, t.mode);
      assert.equal(health.json.seal, true);
    });

    test("manifest/resolve: forge_sig is the forge key's Ed25519 signature of {target}:{epoch}", async () => {
      const m = await get(t, "/manifest/resolve?target=svc-1");
      assert.equal(m.status, 200, m.text);
      assert.deepEqual([m.json.target, m.json.forge_status], ["svc-1", "active"]);
      assert.match(m.json.forge_sig, /^[0-9a-f]{128}$/);
      assert.ok(verifyManifest(FORGE.publicHex, m.json), "verifies with the forge's public key");
      assert.ok(!verifyManifest(FORGE.publicHex, { ...m.json, target: "svc-2" }));
      assert.ok(!edVerifyHex(OPERATOR.publicHex, `${m.json.target}:${m.json.epoch}`, m.json.forge_sig));
      assert.notEqual(m.json.forge_sig.slice(0, 64), hmacHex(SEAL, `svc-1:${m.json.epoch}`), "no longer an HMAC under the seal");
    });
  });

  describe(`forge ${kind} restart`, () => {
    let t;
    before(async () => {
      // A longer lease, so it is still valid after the restart.
      t = await startTarget(kind, { ttl: 15000, hb: 1000 });
    });
    after(async () => {
      await t?.stop();
    });

    test("persistence: term, lease, replay marks and history survive a restart", async () => {
      const env = uniqueEnv("persist");
      const n1 = new Agent(t, "n1");
      const n2 = new Agent(t, "n2");
      assertView(t, await n1.heartbeat(env), { env, leader: "n1", term: 1, you: "n1", role: "leader" });
      assertView(t, await n2.heartbeat(env), { env, leader: "n1", term: 1, you: "n2", role: "witness" });
      const handed = assertView(t, await n1.resign(env, 1), { env, leader: "n2", term: 2, you: "n1", role: "witness" });

      await t.restart();

      const v = assertView(t, await get(t, `/federation/leader?env=${env}`), { env, leader: "n2", term: 2 });
      // The restart rule: same holder and term, the lease extended (to restart + ttl), never
      // shortened — renewals are not persisted.
      assert.ok(v.lease.expires_at_ms >= handed.lease.expires_at_ms, "the lease was not shortened");
      assertError(await n1.heartbeat(env, { nonce: `${n1.boot}:1` }), 409, "replay");
      assertView(t, await n2.heartbeat(env), { env, leader: "n2", term: 2, you: "n2", role: "leader" });
      const n3 = new Agent(t, "n3", { priority: 50 });
      assertView(t, await n3.heartbeat(env), { env, leader: "n2", term: 2, you: "n3", role: "witness" });

      // History pages newest first, one row at a time, through the store's cursor.
      const rows = [];
      let cursor = null;
      for (let i = 0; i < 5; i++) {
        const page = await get(t, `/federation/history?env=${env}&limit=1${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
        assert.equal(page.status, 200, page.text);
        rows.push(...page.json.history.map((h) => [h.term, h.leader, h.reason]));
        cursor = page.json.next;
        if (!cursor) break;
      }
      assert.deepEqual(rows, [
        [2, "n2", "resigned"],
        [1, null, "resigned"],
        [1, "n1", "elected"],
      ]);
    });
  });
}

// The Worker refuses clearly when it is not configured: no silent defaults.
for (const kind of only.filter((k) => k !== "native")) {
  describe(`forge ${kind} misconfigured`, () => {
    test("invalid timing vars: every endpoint but the page answers 503 naming the setting", async () => {
      const t = await startTarget(kind, { bindings: { BRH_LEASE_TTL_MS: "400", BRH_HEARTBEAT_INTERVAL_MS: "300" } });
      try {
        const res = await new Agent(t, "n1").heartbeat("dev");
        assertError(res, 503, "no_seal");
        assert.match(res.json.error.message, /BRH_LEASE_TTL_MS/);
        assertError(await get(t, "/federation/leader?env=dev"), 503, "no_seal");
        assert.equal((await get(t, "/")).status, 200);
      } finally {
        await t.stop();
      }
    });

    test("no DOMINION_SEAL: federation endpoints answer 503 no_seal", async () => {
      const t = await startTarget(kind, { bindings: { DOMINION_SEAL: "" } });
      try {
        assertError(await new Agent(t, "n1").heartbeat("dev"), 503, "no_seal");
        assertError(await get(t, "/federation/leader?env=dev"), 503, "no_seal");
        const health = await get(t, "/health");
        assert.equal(health.status, 200);
        assert.equal(health.json.seal, false);
      } finally {
        await t.stop();
      }
    });
  });
}
