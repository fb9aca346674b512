// Turns store operations counted per request into per node per day and $/month, on the
// Cloudflare free and paid plans. Prices and quotas in one place, as read on 2026-11-24 from
// Cloudflare's published Workers, Workers KV and Durable Objects pricing and limits.
export const PRICES_READ_ON = "2026-11-24";
export const FREE = {
  // per day
  worker_requests: 100_000,
  do_requests: 100_000,
  kv_reads: 100_000,
  kv_writes: 1_000,
  kv_lists: 1_000,
  kv_deletes: 1_000,
  do_rows_written: 100_000,
  do_rows_read: 5_000_000,
};
export const PAID = {
  base_usd_month: 5,
  // included per month, then $ per million
  worker_requests: [10_000_000, 0.3],
  do_requests: [1_000_000, 0.15],
  kv_reads: [10_000_000, 0.5],
  kv_writes: [1_000_000, 5],
  kv_lists: [1_000_000, 5],
  kv_deletes: [1_000_000, 5],
  do_rows_written: [50_000_000, 1],
  do_rows_read: [25_000_000_000, 0.001],
};

/** Heartbeats per node per day at an interval. */
export const beatsPerDay = (intervalMs) => (86_400_000 / intervalMs);

/**
 * perBeat: average operations per heartbeat (fleet-wide average, every node beating);
 * perDayFixed: operations per day that do not scale with beats (alarms, cron).
 * Returns per-day totals, free-plan use (fraction of each quota) and $/month on the paid plan.
 */
export function cost({ nodes, intervalMs, perBeat, perDayFixed = {} }) {
  const day = {};
  const keys = new Set([...Object.keys(perBeat), ...Object.keys(perDayFixed)]);
  for (const k of keys) {
    day[k] = (perBeat[k] ?? 0) * nodes * beatsPerDay(intervalMs) + (perDayFixed[k] ?? 0);
  }
  const free = {};
  for (const [k, quota] of Object.entries(FREE)) free[k] = (day[k] ?? 0) / quota;
  let usd = PAID.base_usd_month;
  for (const [k, v] of Object.entries(PAID)) {
    if (k === "base_usd_month") continue;
    const [included, perMillion] = v;
    const month = (day[k] ?? 0) * 30;
    usd += Math.max(0, month - included) / 1e6 * perMillion;
  }
  return { day, free, usd };
}

export function table(rows) {
  const cols = ["worker_requests", "do_requests", "kv_reads", "kv_writes", "kv_lists", "do_rows_written"];
  const lines = [
    `| scenario | ${cols.join(" / day | ")} / day | worst free-plan quota use | paid $/month |`,
    `|---|${cols.map(() => "---:").join("|")}|---:|---:|`,
  ];
  for (const r of rows) {
    const c = cost(r);
    const worst = Object.entries(c.free).sort((a, b) => b[1] - a[1])[0];
    lines.push(
      `| ${r.name} | ${cols.map((k) => Math.round(c.day[k] ?? 0).toLocaleString("en")).join(" | ")} | ` +
        `${(worst[1] * 100).toFixed(1)} % (${worst[0]}) | ${c.usd.toFixed(2)} |`,
    );
  }
  return lines.join("\n");
}
