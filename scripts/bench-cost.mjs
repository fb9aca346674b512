// Runs the store-counting scenarios (tests/e2e/cost.test.mjs) in workerd and natively, then
// turns the counts per heartbeat into per node per day and $/month (scripts/cost-model.mjs).
// Usage: node_modules/.bin/node scripts/bench-cost.mjs   (after scripts/build-worker.sh)
import { spawnSync } from "node:child_process";
import { PRICES_READ_ON, beatsPerDay, table } from "./cost-model.mjs";

const run = spawnSync(process.execPath, ["--test", "--test-concurrency=1", "tests/e2e/cost.test.mjs"], {
  encoding: "utf8",
  env: { ...process.env, E2E_TARGETS: process.env.E2E_TARGETS ?? "kv,durable-object" },
});
const counts = {};
const reports = {};
for (const m of (run.stdout + run.stderr).matchAll(/COST (\S+) nodes=(\d+) per-(heartbeat|report) (\{.*\})/g)) {
  (m[3] === "heartbeat" ? counts : reports)[`${m[1]}/${m[2]}`] = JSON.parse(m[4]);
}
if (run.status !== 0 || Object.keys(counts).length === 0) {
  console.error(run.stdout.slice(-4000), run.stderr.slice(-4000));
  process.exit(1);
}
console.log("per heartbeat, counted at the store (steady state: renewals and liveness beats):");
for (const [k, v] of Object.entries(counts)) console.log(`  ${k}: ${JSON.stringify(v)}`);
console.log("per consensus report (over HTTP: the peers read and the report; on the stream: one frame):");
for (const [k, v] of Object.entries(reports)) console.log(`  ${k}: ${JSON.stringify(v)}`);

const interval = 5000; // the default profile
const ttl = 15000;
// The agent's consensus report (seed compatibility, on by default): every 180 s per node.
const REPORTS_PER_DAY = 86_400 / 180;
/** Per day, `nodes` agents reporting: `perRequest` operations per HTTP request of a report. */
const reporting = (nodes, report, perRequest) => {
  const out = {};
  for (const [k, v] of Object.entries(perRequest)) out[k] = nodes * REPORTS_PER_DAY * v;
  const r = report ?? {};
  for (const [op, key] of [["kv_read", "kv_reads"], ["kv_list", "kv_lists"], ["kv_write", "kv_writes"], ["do_rows_written", "do_rows_written"]]) {
    out[key] = (out[key] ?? 0) + nodes * REPORTS_PER_DAY * (r[op] ?? 0);
  }
  return out;
};
const plus = (a, b) => {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + v;
  return out;
};
// Per heartbeat, every request is one Worker request; in durable-object mode also one DO request.
const rows = [];
for (const nodes of [5, 100, 1000]) {
  // 1,000 nodes: the 100-node counts per beat (the same steady state), scaled.
  const sample = nodes === 5 ? 3 : 100;
  const kv = nodes === 1000 ? null : counts[`kv/${sample}`];
  const dobj = counts[`durable-object/${sample}`];
  if (kv) {
    rows.push({
      name: `kv mode, ${nodes} nodes`,
      nodes,
      intervalMs: interval,
      perBeat: {
        worker_requests: 1,
        kv_reads: kv.kv_read ?? 0,
        kv_lists: kv.kv_list ?? 0,
        kv_writes: kv.kv_write ?? 0,
      },
      // the per-minute cron kv mode needs: one list of envs, one load (read + list) per env;
      // consensus reports: two Worker requests each (peers read, report)
      perDayFixed: plus(
        { worker_requests: 1440, kv_lists: 1440 * 2, kv_reads: 1440 },
        reporting(nodes, reports[`kv/${sample}`], { worker_requests: 2 }),
      ),
    });
  }
  if (dobj) {
    rows.push({
      name: `durable-object mode, ${nodes} nodes`,
      nodes,
      intervalMs: interval,
      perBeat: {
        worker_requests: 1,
        do_requests: 1,
        kv_writes: dobj.kv_write ?? 0,
        do_rows_written: dobj.do_rows_written ?? 0,
      },
      // lease alarm: at most one set (a row) and one invocation (a request) per ttl − interval;
      // hourly backstop cron: one list and one DO request per env.
      // consensus reports: two Worker + two DO requests each (peers read, report)
      perDayFixed: plus(
        {
          do_requests: 86_400_000 / (ttl - interval) + 24,
          do_rows_written: 86_400_000 / (ttl - interval),
          worker_requests: 24,
          kv_lists: 24,
        },
        reporting(nodes, reports[`durable-object/${sample}`], { worker_requests: 2, do_requests: 2 }),
      ),
    });
  }
  const stream = counts[`durable-object-stream/${sample}`];
  if (stream) {
    // Hibernatable WebSockets: a message received by the register is billed as 1/20 of a DO
    // request and costs no Worker request; the socket's upgrade is one of each (reconnects
    // aside). The register counted one message per beat (`do_stream_messages`).
    const dashboard = {
      // open all day on the stream: one read (leader, peers, history: 3 Worker + 3 DO
      // requests) every 2 minutes, plus one per leader change (a handful a day), plus the
      // socket.
      worker_requests: 720 * 3 + 1,
      do_requests: 720 * 3 + 1,
    };
    rows.push({
      name: `durable-object + stream, ${nodes} nodes, a dashboard open all day`,
      nodes,
      intervalMs: interval,
      perBeat: {
        worker_requests: 0,
        do_requests: (stream.do_stream_messages ?? 0) / 20,
        kv_writes: stream.kv_write ?? 0,
        do_rows_written: stream.do_rows_written ?? 0,
      },
      // consensus reports on the stream: one message each (1/20 of a DO request), no peers read
      perDayFixed: plus(
        {
          do_requests: 86_400_000 / (ttl - interval) + 24 + nodes + dashboard.do_requests,
          do_rows_written: 86_400_000 / (ttl - interval),
          worker_requests: 24 + nodes + dashboard.worker_requests,
          kv_lists: 24,
        },
        reporting(nodes, reports[`durable-object-stream/${sample}`], { do_requests: 1 / 20 }),
      ),
    });
  }
}
console.log(`\nper day and per month, default profile (heartbeat ${interval} ms, ${beatsPerDay(interval)} beats per node per day); prices read ${PRICES_READ_ON}:\n`);
console.log(table(rows));
