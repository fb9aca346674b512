// Cost counted at the store, and store failures, in workerd (and natively).
//
// Counts come from the forge's own `brh_forge_store_operations_total{op}` counters, which
// every store adapter increments on each call it makes to KV, Durable Object storage or the
// log: the Worker isolate's `/metrics`, and the register's (`/metrics?env=…` in
// durable-object mode). Printed as a table per heartbeat; `scripts/bench-cost.sh` turns them
// into per node per day and $/month (scripts/cost-model.mjs).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Agent, Stream, get, sleep, uniqueEnv } from "./client.mjs";
import { rawRequest } from "./raw.mjs";
import { operatorKey, signOperatorForge } from "./sign.mjs";
import { SEAL, startTarget } from "./targets.mjs";

const only = process.env.E2E_TARGETS ? process.env.E2E_TARGETS.split(",") : ["native", "kv", "durable-object"];

async function ops(t, env) {
  const out = {};
  const read = async (q) => {
    const r = await get(t, `/metrics${q}`);
    assert.equal(r.status, 200, r.text);
    for (const m of r.text.matchAll(/^brh_forge_store_operations_total\{op="([a-z_]+)"\} (\d+)/gm)) {
      out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
    }
    for (const m of r.text.matchAll(/^brh_forge_steps_total\{durability="([a-z]+)"\} (\d+)/gm)) {
      out[`steps_${m[1]}`] = (out[`steps_${m[1]}`] ?? 0) + Number(m[2]);
    }
  };
  await read("");
  if (t.kind === "durable-object") await read(`?env=${env}`);
  return out;
}

const delta = (a, b) => {
  const d = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const v = (b[k] ?? 0) - (a[k] ?? 0);
    if (v) d[k] = v;
  }
  return d;
};

for (const kind of only) {
  describe(`cost ${kind}`, () => {
    let t;
    before(async () => {
      t = await startTarget(kind, { ttl: 15000, hb: 5000 });
    });
    after(async () => {
      await t?.stop();
    });

    for (const n of [3, 100]) {
      test(`${n} nodes: a renewal round costs no storage write (counted at the store)`, async () => {
        const env = uniqueEnv(`cost${n}`);
        const agents = Array.from({ length: n }, (_, i) => new Agent(t, `n${i}`));
        for (const a of agents) assert.equal((await a.heartbeat(env)).status, 200);
        const joined = await ops(t, env);
        for (let round = 0; round < 2; round++) {
          for (const a of agents) assert.equal((await a.heartbeat(env)).status, 200);
        }
        const steady = delta(joined, await ops(t, env));
        const beats = 2 * n;
        const per = Object.fromEntries(Object.entries(steady).map(([k, v]) => [k, +(v / beats).toFixed(4)]));
        console.log(`COST ${kind} nodes=${n} per-heartbeat ${JSON.stringify(per)}`);
        // The rule: renewals and liveness are volatile steps everywhere...
        // (the native forge's own sweep runs meanwhile: it is a step too, also volatile)
        assert.ok((steady.steps_volatile ?? 0) >= beats, JSON.stringify(steady));
        assert.equal((steady.steps_write ?? 0) + (steady.steps_sync ?? 0), 0, JSON.stringify(steady));
        for (const op of ["do_rows_written", "log_append", "fsync"]) {
          assert.equal(steady[op] ?? 0, 0, `${op} per renewal: ${JSON.stringify(steady)}`);
        }
        if (kind === "durable-object") {
          // ...and in durable-object mode no KV operation either.
          for (const op of ["kv_write", "kv_read", "kv_list", "kv_delete"]) {
            assert.equal(steady[op] ?? 0, 0, `${op}: ${JSON.stringify(steady)}`);
          }
        }
        if (kind === "kv") {
          // kv mode: KV is the register; the lease key on each leader beat, peer keys only
          // when liveness needs refreshing (not within 10 s of the last write).
          assert.equal(steady.kv_write ?? 0, 2, `kv writes: ${JSON.stringify(steady)}`);
        }
      });
    }

    // Revocations ride in the lease record the env already loads: with some in force, a
    // renewal still costs nothing, and the revoked node's refusal costs no write either.
    test("with revoked nodes: a renewal round costs no storage write, a refusal none", async () => {
      const env = uniqueEnv("costrev");
      const agents = Array.from({ length: 3 }, (_, i) => new Agent(t, `n${i}`));
      for (const a of agents) assert.equal((await a.heartbeat(env)).status, 200);
      for (const node of ["n2", "gone-1", "gone-2"]) {
        const body = JSON.stringify({ env, node });
        const h = signOperatorForge(operatorKey(SEAL), { path: "/federation/revoke", caller: "ops", ts: Date.now(), nonce: `ops${node}:1`, body });
        const r = await rawRequest(t.url, { method: "POST", path: "/federation/revoke", headers: [...Object.entries(h), ["content-type", "application/json"]], body });
        assert.equal(r.status, 200, r.text);
      }
      const before = await ops(t, env);
      for (let round = 0; round < 2; round++) {
        for (const a of agents.slice(0, 2)) assert.equal((await a.heartbeat(env)).status, 200);
        const refused = await agents[2].heartbeat(env);
        assert.equal(refused.status, 401, refused.text);
        assert.match(refused.text, /"revoked"/);
      }
      const steady = delta(before, await ops(t, env));
      console.log(`COST ${kind} with revocations: ${JSON.stringify(steady)}`);
      assert.equal((steady.steps_write ?? 0) + (steady.steps_sync ?? 0), 0, JSON.stringify(steady));
      for (const op of ["do_rows_written", "log_append", "fsync"]) {
        assert.equal(steady[op] ?? 0, 0, `${op}: ${JSON.stringify(steady)}`);
      }
      if (kind === "durable-object") {
        for (const op of ["kv_write", "kv_read", "kv_list", "kv_delete"]) {
          assert.equal(steady[op] ?? 0, 0, `${op}: ${JSON.stringify(steady)}`);
        }
      }
    });

    for (const n of [3, 100]) {
      // An agent off the stream reports as the seed did: it reads the alive peers, then
      // posts its view (every BRH_CONSENSUS_INTERVAL, default 180 s).
      test(`${n} nodes: a consensus report over HTTP (peers read + report) writes nothing`, async () => {
        const env = uniqueEnv(`cons${n}`);
        const agents = Array.from({ length: n }, (_, i) => new Agent(t, `n${i}`));
        for (const a of agents) assert.equal((await a.heartbeat(env)).status, 200);
        const joined = await ops(t, env);
        for (const a of agents) {
          const peers = await get(t, `/federation/peers?env=${env}`);
          assert.equal(peers.status, 200, peers.text);
          const report = { env, leader: "n0", term: 1, peers: peers.json.peers.filter((p) => p.alive).map((p) => p.node), epoch: Math.floor(Date.now() / 1000) };
          const r = await a.post("/federation/consensus", report);
          assert.equal(r.status, 202, r.text);
        }
        const d = delta(joined, await ops(t, env));
        const per = Object.fromEntries(Object.entries(d).map(([k, v]) => [k, +(v / n).toFixed(4)]));
        console.log(`COST ${kind} nodes=${n} per-report ${JSON.stringify(per)}`);
        assert.equal((d.steps_write ?? 0) + (d.steps_sync ?? 0), 0, JSON.stringify(d));
        for (const op of ["do_rows_written", "log_append", "fsync", "kv_write"]) {
          assert.equal(d[op] ?? 0, 0, `${op} per report: ${JSON.stringify(d)}`);
        }
      });
    }

    if (kind !== "kv") {
      for (const n of [3, 100]) {
        test(`${n} nodes on the stream: a renewal is one socket message, no request, no storage`, async () => {
          const env = uniqueEnv(`stream${n}`);
          const agents = Array.from({ length: n }, (_, i) => new Agent(t, `n${i}`));
          const streams = [];
          for (const a of agents) streams.push(await Stream.open(t, env));
          for (let i = 0; i < n; i++) assert.ok((await streams[i].beat(agents[i], env)).view);
          const joined = await ops(t, env);
          await sleep(50);
          for (const s of streams) s.inbox.length = 0; // the first grant's pushes
          for (let round = 0; round < 2; round++) {
            for (let i = 0; i < n; i++) assert.ok((await streams[i].beat(agents[i], env)).view);
          }
          const steady = delta(joined, await ops(t, env));
          const beats = 2 * n;
          const per = Object.fromEntries(Object.entries(steady).map(([k, v]) => [k, +(v / beats).toFixed(4)]));
          console.log(`COST ${kind}-stream nodes=${n} per-heartbeat ${JSON.stringify(per)}`);
          for (const op of ["do_rows_written", "log_append", "fsync", "kv_write", "kv_read", "kv_list"]) {
            assert.equal(steady[op] ?? 0, 0, `${op} per renewal: ${JSON.stringify(steady)}`);
          }
          if (kind === "durable-object") {
            // Counted by the register: one message received per beat, nothing else.
            assert.equal(steady.do_stream_messages, beats, JSON.stringify(steady));
          }
          // Renewals change no leader: nothing is pushed to anyone.
          for (const s of streams) assert.equal(s.inbox.filter((m) => m.reply_to === undefined).length, 0);
          // A consensus report on the stream (the agent sends no peer list there): one message.
          const beaten = await ops(t, env);
          for (let i = 0; i < n; i++) {
            const report = { env, leader: "n0", term: 1, peers: [], epoch: Math.floor(Date.now() / 1000) };
            const r = await streams[i].send(agents[i], "/federation/consensus", report);
            assert.ok(r.view, JSON.stringify(r));
          }
          const reported = delta(beaten, await ops(t, env));
          const perReport = Object.fromEntries(Object.entries(reported).map(([k, v]) => [k, +(v / n).toFixed(4)]));
          console.log(`COST ${kind}-stream nodes=${n} per-report ${JSON.stringify(perReport)}`);
          for (const op of ["do_rows_written", "log_append", "fsync", "kv_write", "kv_read", "kv_list"]) {
            assert.equal(reported[op] ?? 0, 0, `${op} per report: ${JSON.stringify(reported)}`);
          }
          if (kind === "durable-object") assert.equal(reported.do_stream_messages, n, JSON.stringify(reported));
          for (const s of streams) s.close();
        });
      }
    }

    test("a forge restart mid-lease keeps the holder leading in the same term", async () => {
      const env = uniqueEnv("restart");
      const n1 = new Agent(t, "n1");
      const n2 = new Agent(t, "n2");
      assert.equal((await n1.heartbeat(env)).json.leader, "n1");
      await n2.heartbeat(env);
      await sleep(200);
      const renewed = (await n1.heartbeat(env)).json;
      if (kind === "kv") return; // KV is the register: nothing lives in memory to lose
      await t.restart();
      // A witness beat right after the restart does not take the lease.
      const w = (await n2.heartbeat(env)).json;
      assert.equal(w.leader, "n1");
      assert.equal(w.term, 1);
      const v = (await n1.heartbeat(env)).json;
      assert.deepEqual([v.leader, v.term, v.you.role], ["n1", 1, "leader"]);
      assert.ok(v.lease.expires_at_ms >= renewed.lease.expires_at_ms);
    });
  });
}

describe("store failures", () => {
  if (only.includes("durable-object")) {
    test("durable-object mode: a KV outage keeps grants going and reads honest", async () => {
      const t = await startTarget("durable-object", { bindings: { BRH_TEST_FAULTS: "kv" } });
      try {
        const env = uniqueEnv("kvdown");
        const n1 = new Agent(t, "n1");
        const n2 = new Agent(t, "n2");
        assert.equal((await n1.heartbeat(env)).json.leader, "n1");
        await n2.heartbeat(env);
        await n1.resign(env, 1);
        const v = await get(t, `/federation/leader?env=${env}`);
        assert.equal(v.status, 200, v.text);
        assert.deepEqual([v.json.leader, v.json.term], ["n2", 2], "reads come from the register");
        assert.ok(Math.abs(v.json.issued_at_ms - Date.now()) < 5000);
        const m = await ops(t, env);
        assert.ok((m.kv_mirror_failures ?? 0) >= 1, JSON.stringify(m));
        // What needs KV itself answers 503 store_unavailable, never a 500 or a stack.
        const envs = await get(t, "/federation/envs");
        assert.equal(envs.status, 503, envs.text);
        assert.equal(envs.json.error.code, "store_unavailable");
        assert.ok(envs.headers.get("retry-after"));
        assert.ok(!/ at |\.js:\d/.test(envs.text), envs.text);
      } finally {
        await t.stop();
      }
    });

    test("durable-object mode: a storage failure answers 503 store_unavailable and grants nothing", async () => {
      const t = await startTarget("durable-object", { bindings: { BRH_TEST_FAULTS: "do-storage" } });
      try {
        const env = uniqueEnv("dodown");
        const r = await new Agent(t, "n1").heartbeat(env);
        assert.equal(r.status, 503, r.text);
        assert.equal(r.json.error.code, "store_unavailable");
        assert.ok(r.headers.get("retry-after"));
        assert.ok(!/ at |\.js:\d/.test(r.text), r.text);
        const v = await get(t, `/federation/leader?env=${env}`);
        assert.deepEqual([v.status, v.json.leader, v.json.term], [200, null, 0]);
      } finally {
        await t.stop();
      }
    });
  }
  if (only.includes("kv")) {
    test("kv mode: a KV failure answers 503 store_unavailable with Retry-After", async () => {
      const t = await startTarget("kv", { bindings: { BRH_TEST_FAULTS: "kv" } });
      try {
        const r = await new Agent(t, "n1").heartbeat(uniqueEnv("kvfail"));
        assert.equal(r.status, 503, r.text);
        assert.equal(r.json.error.code, "store_unavailable");
        assert.ok(r.headers.get("retry-after"));
        assert.ok(!/ at |\.js:\d/.test(r.text), r.text);
      } finally {
        await t.stop();
      }
    });
  }
});
