// The streaming channel (`GET /federation/stream`, docs/design.md §7), written from the wire
// contract in docs/stream.md with this suite's own signing (sign.mjs): signed frames get the same
// checks as HTTP (signed with the node's own key), answers and pushes to a node carry a view HMAC'd
// with that node's key and bound to a request (`basis_sig`), a socket no request bound gets the
// public view (Ed25519 under the forge key), the forge pushes on grant, resign and expiry to every
// socket of the env, and refused frames change nothing. On the native forge and on the Worker in
// workerd in durable-object mode (the register's hibernatable WebSockets); kv mode refuses the
// stream with a JSON 404.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Agent, Stream, get, sleep, snapshot, uniqueEnv } from "./client.mjs";
import { edVerifyHex, hmacHex, nodeKey, verifyBasis, verifyPublicView, verifyView } from "./sign.mjs";
import { FORGE, SEAL, startTarget } from "./targets.mjs";

const KINDS = (process.env.E2E_TARGETS ?? "native,kv,durable-object").split(",");
const STREAM_KINDS = KINDS.filter((k) => k !== "kv");

const pushes = (m) => m.reply_to === undefined;

/** A view for `node` (an answer or a push to its socket): under its key only, bound to `basis`. */
function assertBound(node, m) {
  assert.ok(m.view, JSON.stringify(m));
  const key = nodeKey(SEAL, m.view.env, node);
  assert.equal(m.view.you?.node, node, "addressed to the socket's node");
  assert.ok(verifyView(key, m.view), "view signature under the node's key");
  assert.ok(!verifyView(SEAL, m.view), "not under the seal");
  assert.ok(!verifyView(nodeKey(SEAL, m.view.env, `${node}-x`), m.view), "not under another node's key");
  assert.ok(verifyBasis(key, node, m.basis, m.view, m.basis_sig), "basis_sig");
  assert.ok(!verifyBasis(SEAL, node, m.basis, m.view, m.basis_sig), "basis_sig not under the seal");
}

for (const kind of STREAM_KINDS) describe(`stream on ${kind}`, () => {
  let t;
  before(async () => {
    t = await startTarget(kind, { ttl: 900, hb: 300 });
  });
  after(async () => t && (await t.stop()));

  test("heartbeats on the stream are answered with views bound to them", async () => {
    const env = uniqueEnv("st");
    const [a, b] = [new Agent(t, "a", { priority: 5 }), new Agent(t, "b")];
    const [sa, sb] = [await Stream.open(t, env), await Stream.open(t, env)];
    const ra = await sa.beat(a, env);
    assertBound("a", ra);
    assert.equal(ra.basis, ra.nonce);
    assert.equal(ra.view.leader, "a");
    assert.equal(ra.view.you.role, "leader");
    const rb = await sb.beat(b, env);
    assertBound("b", rb);
    assert.equal(rb.view.you.role, "witness");
    // The same as HTTP says.
    const http = await get(t, `/federation/leader?env=${env}`);
    assert.equal(http.json.leader, "a");
    assert.equal(http.json.term, ra.view.term);
    // A view or basis_sig does not carry over to another node or another request.
    const [ka, kb] = [nodeKey(SEAL, env, "a"), nodeKey(SEAL, env, "b")];
    assert.ok(!verifyView(kb, ra.view), "a's answer does not verify for b");
    assert.ok(!verifyBasis(kb, "b", ra.basis, ra.view, ra.basis_sig));
    assert.ok(!verifyBasis(ka, "a", rb.basis, ra.view, ra.basis_sig));
    sa.close();
    sb.close();
  });

  test("a resign over HTTP is pushed to every socket, the new holder's bound to its newest beat", async () => {
    const env = uniqueEnv("st");
    const [a, b] = [new Agent(t, "a", { priority: 5 }), new Agent(t, "b")];
    const [sa, sb] = [await Stream.open(t, env), await Stream.open(t, env)];
    // A socket no request has bound: it gets the public view, signed by the forge key.
    const watcher = await Stream.open(t, env);
    const ra = await sa.beat(a, env);
    const rb = await sb.beat(b, env);
    sa.inbox.length = 0;
    sb.inbox.length = 0;
    watcher.inbox.length = 0;
    const resigned = await a.resign(env, ra.view.term);
    assert.equal(resigned.status, 200, resigned.text);
    const pb = await sb.next((m) => pushes(m) && m.view?.leader === "b");
    assertBound("b", pb);
    assert.equal(pb.basis, rb.nonce, "the push names b's newest beat");
    assert.equal(pb.view.you.role, "leader");
    assert.ok(pb.view.term > ra.view.term);
    const pa = await sa.next((m) => pushes(m) && m.view?.leader === "b");
    assert.equal(pa.view.you.role, "witness");
    assertBound("a", pa);
    const pw = await watcher.next((m) => pushes(m) && m.view?.leader === "b");
    assert.equal(pw.view.you, undefined, "a public push names no node");
    assert.equal(pw.basis ?? null, null, "and no basis");
    assert.equal(pw.basis_sig ?? null, null);
    assert.match(pw.view.sig, /^[0-9a-f]{128}$/);
    assert.ok(verifyPublicView(FORGE.publicHex, pw.view), "the public push verifies with the forge's public key");
    assert.ok(!verifyView(nodeKey(SEAL, env, "b"), pw.view));
    sa.close();
    sb.close();
    watcher.close();
  });

  test("lease expiry is pushed: failover without waiting for the next heartbeat", async () => {
    const env = uniqueEnv("st");
    const [a, b] = [new Agent(t, "a", { priority: 5 }), new Agent(t, "b")];
    const [sa, sb] = [await Stream.open(t, env), await Stream.open(t, env)];
    const ra = await sa.beat(a, env);
    const expires = ra.view.lease.expires_at_ms;
    // b stays live (it beats well inside its liveness window) but not at the moment of expiry.
    const deadline = Date.now() + 2 * t.ttl;
    let rb;
    while (Date.now() < expires - 150) {
      rb = await sb.beat(b, env);
      await sleep(100);
    }
    sb.inbox.length = 0;
    const pb = await sb.next((m) => pushes(m) && m.view?.leader === "b", deadline - Date.now() + 2000);
    assertBound("b", pb);
    assert.equal(pb.basis, rb.nonce);
    const lag = Date.now() - expires;
    assert.ok(lag >= 0, "pushed before the lease ended");
    // a (silent since its first beat) learns on its socket too.
    const pa = await sa.next((m) => pushes(m) && m.view?.leader === "b");
    assert.equal(pa.view.you.role, "witness");
    if (t.ledger) {
      // No Worker saw this change (the register's alarm made it): the register tells the
      // ledger itself, signed like every ledger POST.
      let entry;
      for (let i = 0; i < 50 && !entry; i++) {
        entry = t.ledger.map((r) => ({ ...r, change: JSON.parse(r.body) })).find((r) => r.change.env === env && r.change.leader === "b");
        if (!entry) await sleep(50);
      }
      assert.ok(entry, "the ledger did not receive the alarm's change");
      assert.ok(edVerifyHex(FORGE.publicHex, entry.body, entry.headers["x-brh-sig"]), "signed by the forge key");
      assert.equal(entry.change.reason, "expired");
    }
    sa.close();
    sb.close();
  });

  test("refused frames say why on the socket and change nothing", async () => {
    const env = uniqueEnv("st");
    const [a, b] = [new Agent(t, "a"), new Agent(t, "b")];
    const s = await Stream.open(t, env);
    const first = await s.beat(a, env);
    assertBound("a", first);
    const before = await snapshot(t, env);
    const code = async (p) => (await p).error?.code;
    assert.equal(await code(s.beat(a, env, { nonce: first.nonce })), "replay");
    assert.equal(await code(s.beat(a, env, { method: "POST" })), "bad_signature");
    assert.equal(await code(s.beat(a, env, { seal: "another-seal-0123456789" })), "bad_signature");
    // Only a's own key in this env signs a's frames.
    assert.equal(await code(s.beat(a, env, { key: SEAL })), "bad_signature", "the seal is no node's key");
    assert.equal(await code(s.beat(a, env, { key: nodeKey(SEAL, env, "b") })), "bad_signature", "b's key does not speak for a");
    assert.equal(await code(s.beat(a, env, { keyEnv: `${env}-other` })), "bad_signature", "a's key of another env");
    assert.equal(await code(s.beat(a, env, { ts: Date.now() - 3_600_000 })), "stale_timestamp");
    assert.equal(await code(s.beat(b, env)), "bad_request", "a socket belongs to one node");
    assert.equal(await code(s.beat(a, "other")), "bad_request", "a socket belongs to one env");
    assert.equal(await code(s.send(a, "/federation/leader", { env })), "not_found");
    s.ws.send("not json");
    const garbage = await s.next((m) => m.error && m.reply_to === undefined);
    assert.equal(garbage.error.code, "bad_request");
    assert.deepEqual(await snapshot(t, env), before);
    assert.ok(!s.closed, "a refused frame does not close the socket");
    s.close();
  });

  test("the endpoint refuses what is not a WebSocket upgrade with JSON errors", async () => {
    const plain = await get(t, "/federation/stream?env=dev");
    assert.equal(plain.status, 400);
    assert.equal(plain.json.error.code, "bad_request");
    const post = await fetch(`${t.url}/federation/stream`, { method: "POST", body: "{}" });
    assert.equal(post.status, 405);
    assert.equal((await post.json()).error.code, "method_not_allowed");
    const badEnv = await get(t, "/federation/stream?env=no%20spaces");
    assert.equal(badEnv.status, 400);
  });
});

if (KINDS.includes("kv"))
  describe("stream on kv", () => {
    let t;
    before(async () => {
      t = await startTarget("kv");
    });
    after(async () => t && (await t.stop()));

    test("kv mode refuses the stream with a JSON error naming durable-object mode", async () => {
      const r = await fetch(`${t.url}/federation/stream?env=dev`);
      assert.equal(r.status, 404);
      const body = await r.json();
      assert.equal(body.error.code, "not_found");
      assert.match(body.error.message, /durable-object/);
    });
  });

if (KINDS.includes("durable-object"))
  describe("stream across register evictions (durable-object)", () => {
    let t;
    before(async () => {
      t = await startTarget("durable-object", { ttl: 900, hb: 300, bindings: { BRH_TEST_FAULTS: "evictable" } });
    });
    after(async () => t && (await t.stop()));

    test("evicted between every message, the register reloads: same holder, same term, sockets keep working", async () => {
      const env = uniqueEnv("ev");
      const [a, b] = [new Agent(t, "a", { priority: 5 }), new Agent(t, "b")];
      const [sa, sb] = [await Stream.open(t, env), await Stream.open(t, env)];
      const first = await sa.beat(a, env);
      assertBound("a", first);
      const term = first.view.term;
      let last = first.view.lease.expires_at_ms;
      for (let i = 0; i < 6; i++) {
        await t.evict(env);
        // A witness's beat is the first event after the eviction: it must not take the lease.
        const w = await sb.beat(b, env);
        assertBound("b", w);
        assert.deepEqual([w.view.leader, w.view.term, w.view.you.role], ["a", term, "witness"]);
        await t.evict(env);
        const r = await sa.beat(a, env);
        assertBound("a", r);
        assert.deepEqual([r.view.leader, r.view.term, r.view.you.role], ["a", term, "leader"]);
        // The restart rule extends the holder's lease, never shortens it.
        assert.ok(r.view.lease.expires_at_ms >= last, "a reload shortened the lease");
        last = r.view.lease.expires_at_ms;
        await sleep(100);
      }
      // The sockets kept their binding through the evictions: another node's frame on a's
      // socket is still refused.
      assert.equal((await sa.beat(b, env)).error?.code, "bad_request");
      // And pushes still flow: a resigns on its socket, b is pushed the lease. (After an
      // eviction a witness is a candidate again only once it has beaten: the restart rule
      // counts peers not heard since the reload as dead, so b beats first.)
      await t.evict(env);
      await sb.beat(b, env);
      await sa.send(a, "/federation/resign", { env, term });
      const pb = await sb.next((m) => m.reply_to === undefined && m.view?.leader === "b");
      assertBound("b", pb);
      assert.ok(pb.view.term > term);
      // The evictions happened and each was followed by a reload from storage.
      const metrics = (await get(t, `/metrics?env=${env}`)).text;
      const op = (name) => Number(new RegExp(`op="${name}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
      assert.equal(op("do_test_evictions"), 13, metrics);
      assert.ok(op("do_rows_read") >= 13, `reloads: ${op("do_rows_read")}`);
      sa.close();
      sb.close();
    });
  });
