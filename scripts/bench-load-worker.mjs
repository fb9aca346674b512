#!/usr/bin/env node
// Load test of the forge Worker in workerd (miniflare, durable-object mode): N simulated nodes
// (default 100), each sending a signed heartbeat every second for D seconds (default 60).
// Prints a markdown table (also written to target/bench-load-worker.md); nothing is asserted.
//
// Usage (after scripts/build-worker.sh and scripts/setup-node.sh):
//   node_modules/.bin/node scripts/bench-load-worker.mjs [--nodes 100] [--secs 60] [--mode durable-object|kv]
//
// Each node has its own boot id, nonce sequence and node key (HMAC(seal,
// "brh-v1-node-key\n{env}\n{node}"), what `brh-agent enroll` gives a host) and signs like the
// agent (tests/e2e/sign.mjs: x-brh-node, x-brh-ts = the real clock, x-brh-nonce = <boot>:<seq>,
// x-brh-sig under its key), with the agent's heartbeat body. Node i beats at i/N of every
// second, one request at a time (as an agent does). Every answer must be 200 with a view whose
// signature verifies under the node's key, for this env and addressed to this node. A warm-up
// round (the joins) is reported apart from the measured
// window. workerd's CPU (utime + stime of the workerd process miniflare spawned, from
// /proc/<pid>/stat, and its threads' schedstat) is read before and after the window; it
// includes the simulated storage (SQLite for the Durable Object, files for KV).
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ROOT, SEAL, startTarget } from "../tests/e2e/targets.mjs";
import { nodeKey, signRequest, verifyView } from "../tests/e2e/sign.mjs";
import { pct } from "./stats.mjs";

const PATH = "/federation/heartbeat";

function parseArgs(argv) {
  const a = { nodes: 100, secs: 60, mode: "durable-object" };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    if (k === "--nodes") (a.nodes = Number(v)), i++;
    else if (k === "--secs") (a.secs = Number(v)), i++;
    else if (k === "--mode") (a.mode = v), i++;
    else if (k === "-h" || k === "--help") {
      console.log("usage: bench-load-worker.mjs [--nodes 100] [--secs 60] [--mode durable-object|kv]");
      process.exit(0);
    } else throw new Error(`unknown argument ${k}`);
  }
  if (!(a.nodes >= 1 && a.secs >= 1)) throw new Error("--nodes and --secs must be at least 1");
  if (!["durable-object", "kv"].includes(a.mode)) throw new Error("--mode is durable-object or kv");
  return a;
}

const sleepUntil = (t) => new Promise((r) => setTimeout(r, Math.max(0, t - performance.now())));

/** Pids of this process's descendants whose command is workerd. */
function workerdPids() {
  const parent = new Map();
  const comm = new Map();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, "utf8");
      const close = s.lastIndexOf(")");
      comm.set(Number(d), s.slice(s.indexOf("(") + 1, close));
      parent.set(Number(d), Number(s.slice(close + 2).split(" ")[1]));
    } catch {
      // gone
    }
  }
  const mine = (pid) => {
    for (let p = pid, n = 0; p > 1 && n < 32; p = parent.get(p) ?? 0, n++) if (p === process.pid) return true;
    return false;
  };
  return [...comm].filter(([pid, c]) => c.includes("workerd") && pid !== process.pid && mine(pid)).map(([p]) => p);
}

/** [utime + stime in ms, on-CPU ns from schedstat] summed over `pids`. */
function cpuOf(pids) {
  let ms = 0;
  let ns = 0;
  for (const pid of pids) {
    try {
      const s = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
      ms += ((Number(f[11]) + Number(f[12])) * 1000) / 100; // USER_HZ is 100 on Linux
      for (const t of readdirSync(`/proc/${pid}/task`)) {
        ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[0]);
      }
    } catch {
      // gone
    }
  }
  return [ms, ns];
}

function statusKb(pids, key) {
  let kb = 0;
  for (const pid of pids) {
    try {
      const line = readFileSync(`/proc/${pid}/status`, "utf8")
        .split("\n")
        .find((l) => l.startsWith(key));
      kb += Number(line.split(/\s+/)[1]);
    } catch {
      // gone
    }
  }
  return kb;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const t = await startTarget(args.mode, { ttl: 3000, hb: 1000 });
  const pids = workerdPids();
  const env = `load-${randomBytes(3).toString("hex")}`;
  console.error(
    `workerd ${args.mode} at ${t.url} (workerd pids ${pids.join(",") || "?"}); ${args.nodes} nodes × ${args.secs} s, env ${env}`,
  );
  const rounds = 1 + args.secs;
  const start = performance.now() + 300;
  const lat = [];
  const joins = [];
  const errors = new Map();
  let joinErrors = 0;
  const terms = new Set();
  let granted = false;
  let noLeader = 0;
  let lateMax = 0;
  let late10 = 0;
  const countErr = (r, e) => {
    if (r === 0) joinErrors++;
    else errors.set(e, (errors.get(e) ?? 0) + 1);
  };

  async function node(i) {
    const id = `load-${String(i).padStart(5, "0")}`;
    const boot = randomBytes(8).toString("hex");
    const key = nodeKey(SEAL, env, id);
    let seq = 0;
    const phase = (i * 1000) / args.nodes;
    for (let r = 0; r < rounds; r++) {
      const slot = start + r * 1000 + phase;
      await sleepUntil(slot);
      const body = JSON.stringify({
        env,
        priority: 0,
        draining: false,
        uptime_s: r,
        version: "bench-load",
        api: `http://10.0.${i >> 8}.${i & 255}:8788`,
      });
      seq += 1;
      const headers = signRequest(key, { method: "POST", path: PATH, node: id, ts: Date.now(), nonce: `${boot}:${seq}`, body });
      const t0 = performance.now();
      if (r > 0) {
        lateMax = Math.max(lateMax, t0 - slot);
        if (t0 - slot > 10) late10++;
      }
      let err = null;
      let view = null;
      try {
        const res = await fetch(t.url + PATH, {
          method: "POST",
          headers: { ...headers, "content-type": "application/json" },
          body,
          signal: AbortSignal.timeout(5000),
        });
        const text = await res.text();
        if (res.status !== 200) {
          let code = text.slice(0, 40);
          try {
            code = JSON.parse(text).error.code;
          } catch {
            // not JSON
          }
          err = `${res.status} ${code}`;
        } else {
          view = JSON.parse(text);
          if (!verifyView(key, view)) err = "bad view signature";
          else if (view.env !== env || view.you?.node !== id) err = "view for another env or node";
        }
      } catch (e) {
        err = `transport: ${e.name === "TimeoutError" ? "timeout" : e.message}`;
      }
      const ms = performance.now() - t0;
      (r === 0 ? joins : lat).push(ms);
      if (err) countErr(r, err);
      else if (view.leader) {
        granted = true;
        terms.add(`${view.term}:${view.leader}`);
      } else if (granted) noLeader++;
    }
  }

  const all = Array.from({ length: args.nodes }, (_, i) => node(i));
  await sleepUntil(start + 1000);
  const w0 = performance.now();
  const c0 = cpuOf(pids);
  await Promise.all(all);
  const secs = (performance.now() - w0) / 1000;
  const c1 = cpuOf(pids);
  const rssKb = statusKb(pids, "VmRSS");
  const hwmKb = statusKb(pids, "VmHWM");
  const hist = await (await fetch(`${t.url}/federation/history?env=${env}&limit=500`)).json().catch(() => ({}));
  await t.stop();

  lat.sort((a, b) => a - b);
  joins.sort((a, b) => a - b);
  const nErr = [...errors.values()].reduce((a, b) => a + b, 0);
  const beats = lat.length;
  const [tickMs, ns] = [c1[0] - c0[0], c1[1] - c0[1]];
  const f3 = (x) => x.toFixed(3);
  const out = [];
  out.push(
    `forge Worker in workerd (miniflare, ${args.mode} mode) under load: ${args.nodes} nodes × 1 heartbeat/s, ${args.secs} s measured after one join round (1 s / 3 s)`,
  );
  out.push("");
  out.push(
    "| runtime | nodes | requests | errors | leader changes | p50 ms | p99 ms | max ms | req/s | workerd CPU µs/beat | workerd CPU % of a core | workerd RSS MiB |",
  );
  out.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  out.push(
    `| workerd ${args.mode} | ${args.nodes} | ${beats} | ${nErr} | ${Math.max(0, terms.size - 1)} | ${f3(pct(lat, 50))} | ${f3(pct(lat, 99))} | ${pct(lat, 100).toFixed(1)} | ${(beats / secs).toFixed(0)} | ${pids.length ? (ns / 1000 / beats).toFixed(1) : "?"} | ${pids.length ? ((ns / 1e9 / secs) * 100).toFixed(1) : "?"} | ${pids.length ? (rssKb / 1024).toFixed(1) : "?"} |`,
  );
  out.push("");
  out.push(
    `- joins (the warm-up round): ${joins.length} requests, ${joinErrors} errors, p50 ${f3(pct(joins, 50))} ms, p99 ${f3(pct(joins, 99))} ms, max ${pct(joins, 100).toFixed(1)} ms`,
  );
  out.push(
    `- workerd CPU, /proc/<pid>/stat utime+stime: ${tickMs} ms over ${beats} beats = ${((tickMs * 1000) / Math.max(1, beats)).toFixed(1)} µs/beat (10 ms ticks); schedstat: ${(ns / 1000 / Math.max(1, beats)).toFixed(1)} µs/beat; peak RSS ${(hwmKb / 1024).toFixed(1)} MiB`,
  );
  out.push(
    `- terms seen (term:leader): ${JSON.stringify([...terms])}; answers without a leader after the first grant: ${noLeader}; forge history entries: ${hist.history?.length ?? "?"}`,
  );
  out.push(`- client (node, one thread): scheduler lateness max ${lateMax.toFixed(1)} ms, ${late10} beats sent > 10 ms after their slot`);
  if (errors.size) out.push(`- errors by kind: ${JSON.stringify(Object.fromEntries(errors))}`);
  const text = out.join("\n") + "\n";
  console.log(`\n${text}`);
  const dir = path.resolve(ROOT, process.env.CARGO_TARGET_DIR || "target");
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `bench-load-worker${args.mode === "kv" ? "-kv" : ""}.md`);
  writeFileSync(file, text);
  console.error(`(written to ${file})`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
