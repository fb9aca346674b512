// Handover and failover over the stream, at the wire, natively and in workerd (durable-object
// mode): RUNS runs each (default 10), ms, median / worst. Prints a markdown table.
//   - resign → push: a holder resigns on its stream (over HTTP with `--http-resign`); the time
//     until the successor's socket has the push that grants it (planned handover: one
//     message plus one push);
//   - expiry → push: a holder stops renewing; the time from its lease's expiry (the forge's
//     `expires_at_ms`, same machine clock) until the successor's socket has the grant
//     (native: the core's expiry timer; workerd: the register's alarm).
// Usage: node_modules/.bin/node scripts/bench-stream.mjs [RUNS]  (after scripts/build-worker.sh
// and `cargo build -p forge-worker --bin forge`). Nothing is asserted.
import { Agent, Stream, sleep, uniqueEnv } from "../tests/e2e/client.mjs";
import { startTarget } from "../tests/e2e/targets.mjs";

const RUNS = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 10);
const HTTP_RESIGN = process.argv.includes("--http-resign");
const stats = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return `${s[Math.floor(s.length / 2)]} / ${s[s.length - 1]}`;
};

const rows = [];
for (const kind of (process.env.E2E_TARGETS ?? "native,durable-object").split(",")) {
  const t = await startTarget(kind, { ttl: 900, hb: 300 });
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
      if (HTTP_RESIGN) await a.resign(env, ra.view.term);
      else await sa.send(a, "/federation/resign", { env, term: ra.view.term });
      await sb.next((m) => m.reply_to === undefined && m.view?.leader === "b");
      handover.push(performance.now() - t0);
      // b now holds the lease and goes silent; a (alive, beating) is granted at b's expiry.
      const rb = await sb.beat(b, env);
      const expires = rb.view.lease.expires_at_ms;
      sa.inbox.length = 0;
      const granted = sa.next((m) => m.reply_to === undefined && m.view?.leader === "a", 5000);
      while (Date.now() < expires - 100) {
        await sa.beat(a, env);
        await sleep(100);
      }
      await granted;
      failover.push(Date.now() - expires);
      sa.close();
      sb.close();
      await sleep(50);
    }
  } finally {
    await t.stop();
  }
  rows.push(`| ${kind} | ${RUNS} | ${stats(handover.map((x) => Math.round(x)))} | ${stats(failover)} |`);
}
console.log(`| forge | runs | resign (${HTTP_RESIGN ? "HTTP" : "stream"}) → successor's push (ms, median / worst) | lease expiry → new holder's push (ms, median / worst) |`);
console.log("|---|---:|---:|---:|");
for (const r of rows) console.log(r);
