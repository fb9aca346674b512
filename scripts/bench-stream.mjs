// Handover and failover over the stream, at the wire, natively and in workerd (durable-object
// mode): RUNS runs each (default 20), ms, median / worst. Prints a markdown table.
//   - resign → push: a holder resigns on its stream (over HTTP with `--http-resign`); the time
//     until the successor's socket has the push that grants it (planned handover: one
//     message plus one push);
//   - expiry → push: a holder stops renewing; the time from its lease's expiry (the forge's
//     `expires_at_ms`, same machine clock) until the successor's socket has the grant
//     (native: the core's expiry timer; workerd: the register's alarm).
// The forge runs in a process of its own, as it would in production: workerd through
// `scripts/workerd-forge.mjs`, logs discarded. `--in-process` runs miniflare inside this
// process instead (as the e2e suite does, with its ledger): then the measuring client also
// relays workerd's log lines and takes the ledger's POST at the moment of the push, which
// adds ~2 ms to the workerd figures (kept to reproduce the older numbers).
// Usage: node_modules/.bin/node scripts/bench-stream.mjs [RUNS] [--http-resign] [--in-process]
// (after scripts/build-worker.sh and `cargo build -p forge-worker --bin forge`). Nothing is
// asserted.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, Stream, sleep, uniqueEnv } from "../tests/e2e/client.mjs";
import { SEAL, startTarget } from "../tests/e2e/targets.mjs";
import { pct } from "./stats.mjs";

const RUNS = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 20);
const HTTP_RESIGN = process.argv.includes("--http-resign");
const IN_PROCESS = process.argv.includes("--in-process");
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The Worker in workerd, Durable Object mode, as its own process group. */
async function startWorkerdProcess({ ttl, hb }) {
  const dir = mkdtempSync(path.join(tmpdir(), "brh-bench-stream-"));
  const child = spawn(process.execPath, [path.join(ROOT, "scripts/workerd-forge.mjs"), "--dir", dir, "--ttl", String(ttl), "--hb", String(hb)], {
    cwd: ROOT,
    env: { ...process.env, DOMINION_SEAL: SEAL },
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  const url = await new Promise((resolve, reject) => {
    let err = "";
    child.stderr.on("data", (d) => {
      err += d;
      const m = /forge listening on (http:\/\/\S+)/.exec(err);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`workerd forge exited ${code}: ${err}`)));
  });
  child.stderr.resume();
  return {
    kind: "durable-object",
    url,
    stop: async () => {
      const gone = new Promise((r) => child.once("exit", r));
      process.kill(-child.pid, "SIGTERM");
      await gone;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
const stats = (v) => {
  const s = [...v].sort((a, b) => a - b);
  const f = (x) => x.toFixed(1);
  return `${f(pct(s, 50))} / ${f(pct(s, 100))}`;
};

const rows = [];
for (const kind of (process.env.E2E_TARGETS ?? "native,durable-object").split(",")) {
  const t =
    kind === "durable-object" && !IN_PROCESS
      ? await startWorkerdProcess({ ttl: 900, hb: 300 })
      : await startTarget(kind, { ttl: 900, hb: 300 });
  const handover = [], failover = [];
  try {
    for (let run = 0; run < RUNS; run++) {
      const env = uniqueEnv("bs");
      const [a, b] = [new Agent(t, "a", { priority: 5 }), new Agent(t, "b")];
      const [sa, sb] = [await Stream.open(t, env), await Stream.open(t, env)];
      const ra = await sa.beat(a, env);
      await sb.beat(b, env);
      sb.inbox.length = 0;
      const t0 = performance.now();
      // Not awaited: the push may overtake the resigning side's answer.
      const resigned = HTTP_RESIGN ? a.resign(env, ra.view.term) : sa.send(a, "/federation/resign", { env, term: ra.view.term });
      const pushed = await sb.next((m) => m.reply_to === undefined && m.view?.leader === "b");
      handover.push(pushed.at - t0);
      await resigned;
      // b now holds the lease and goes silent; a (alive, beating) is granted at b's expiry.
      const rb = await sb.beat(b, env);
      const expires = rb.view.lease.expires_at_ms;
      sa.inbox.length = 0;
      const granted = sa.next((m) => m.reply_to === undefined && m.view?.leader === "a", 5000);
      while (Date.now() < expires - 100) {
        await sa.beat(a, env);
        await sleep(100);
      }
      const g = await granted;
      failover.push(performance.timeOrigin + g.at - expires);
      sa.close();
      sb.close();
      await sleep(50);
    }
  } finally {
    await t.stop();
  }
  rows.push(`| ${kind}${kind === "durable-object" && IN_PROCESS ? " (in process)" : ""} | ${RUNS} | ${stats(handover)} | ${stats(failover)} |`);
}
console.log(`| forge | runs | resign (${HTTP_RESIGN ? "HTTP" : "stream"}) → successor's push (ms, median / worst) | lease expiry → new holder's push (ms, median / worst) |`);
console.log("|---|---:|---:|---:|");
for (const r of rows) console.log(r);
