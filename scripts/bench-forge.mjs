#!/usr/bin/env node
// Measures the forge, loopback only, bounded loops; prints a table (nothing is asserted).
//   - Wasm size of build/index_bg.wasm, raw and gzipped
//   - p50/p99 latency (sequential, one client) and requests/s (8 concurrent clients) for a
//     heartbeat signed with the node's own key (tests/e2e/client.mjs; the forge derives the key
//     per request) and for GET /federation/leader (a public view: Ed25519 by the forge key), on
//     the native forge and on the Worker in workerd (miniflare, kv and durable-object modes)
//
// Usage (after scripts/test-e2e.sh has built everything):
//   node_modules/.bin/node scripts/bench-forge.mjs            # N=400 per measurement
//   BENCH_N=1000 FORGE_BIN=target/release/forge node_modules/.bin/node scripts/bench-forge.mjs
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { Agent, get, uniqueEnv } from "../tests/e2e/client.mjs";
import { ROOT, startTarget } from "../tests/e2e/targets.mjs";
import { pct } from "./stats.mjs";

const N = Number(process.env.BENCH_N || 400);
const CONCURRENCY = 8;

if (!process.env.FORGE_BIN) {
  const dir = path.resolve(ROOT, process.env.CARGO_TARGET_DIR || "target");
  const release = path.join(dir, "release/forge");
  process.env.FORGE_BIN = existsSync(release) ? release : path.join(dir, "debug/forge");
}

/** `op(client, i)` resolves to an answer; every answer must be 200. */
async function measure(op) {
  const lat = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    const r = await op(0, i);
    lat.push(performance.now() - t0);
    if (r.status !== 200) throw new Error(`status ${r.status}: ${r.text}`);
  }
  lat.sort((a, b) => a - b);
  const per = Math.ceil(N / CONCURRENCY);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, c) => {
      for (let i = 0; i < per; i++) {
        const r = await op(c, i);
        if (r.status !== 200) throw new Error(`status ${r.status}: ${r.text}`);
      }
    }),
  );
  const rps = (per * CONCURRENCY) / ((performance.now() - t0) / 1000);
  return { p50: pct(lat, 50), p99: pct(lat, 99), rps };
}

async function benchTarget(kind) {
  const t = await startTarget(kind, { ttl: 15000, hb: 5000 });
  try {
    const env = uniqueEnv("bench");
    // One agent per concurrent client: each keeps its own nonce sequence in order.
    const agents = Array.from({ length: CONCURRENCY }, (_, i) => new Agent(t, `bench-${i}`));
    for (const a of agents) await a.heartbeat(env);
    const hb = await measure((c) => agents[c].heartbeat(env));
    const leader = await measure(() => get(t, `/federation/leader?env=${env}`));
    return { kind, hb, leader };
  } finally {
    await t.stop();
  }
}

const wasmPath = path.join(ROOT, "build/index_bg.wasm");
const wasm = readFileSync(wasmPath);
const gz = gzipSync(wasm, { level: 9 });
console.log(`Wasm ${path.relative(ROOT, wasmPath)}: ${(wasm.length / 1024).toFixed(1)} KiB raw, ${(gz.length / 1024).toFixed(1)} KiB gzip -9`);
console.log(`native forge binary: ${path.relative(ROOT, process.env.FORGE_BIN)}; N=${N} sequential + ${N} over ${CONCURRENCY} clients\n`);

const rows = [];
for (const kind of ["native", "kv", "durable-object"]) rows.push(await benchTarget(kind));

const f = (x) => x.toFixed(2).padStart(7);
console.log("| runtime                | endpoint                      |  p50 ms |  p99 ms |   req/s |");
console.log("|------------------------|-------------------------------|---------|---------|---------|");
for (const r of rows) {
  for (const [name, m] of [
    ["POST /federation/heartbeat", r.hb],
    ["GET /federation/leader", r.leader],
  ]) {
    const runtime = r.kind === "native" ? "native" : `workerd ${r.kind}`;
    console.log(`| ${runtime.padEnd(22)} | ${name.padEnd(29)} | ${f(m.p50)} | ${f(m.p99)} | ${m.rps.toFixed(0).padStart(7)} |`);
  }
}
