// The three forges the end-to-end suite runs against, behind one interface:
//   native          target/debug/forge (the embedded forge, on-disk store, automatic sweep)
//   kv              the built Worker (build/index.js + index_bg.wasm) in workerd via
//                   miniflare 4, KV binding only
//   durable-object  the same bundle with KV + the LeaseRegister Durable Object
// Each target: { kind, url, restart(), sweep(), stop(), ledger[] }. Everything stays on
// loopback; nothing is fetched from the network.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const SEAL = "e2e-seal-0123456789abcdef";
export const COMPAT_DATE = "2026-07-30";

process.env.CLOUDFLARE_CF_FETCH_ENABLED ??= "false";
process.env.WRANGLER_SEND_METRICS ??= "false";

export function forgeBin() {
  if (process.env.FORGE_BIN) return process.env.FORGE_BIN;
  const targetDir = process.env.CARGO_TARGET_DIR || path.join(ROOT, "target");
  return path.join(path.resolve(ROOT, targetDir), "debug", "forge");
}

/** A loopback HTTP server standing in for the ledger: records every POST. */
async function startLedger() {
  const received = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      res.writeHead(204).end();
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { received, url: `http://127.0.0.1:${server.address().port}/ledger`, close: () => server.close() };
}

async function startNative({ ttl, hb, dir }) {
  let child;
  const boot = () =>
    new Promise((resolve, reject) => {
      child = spawn(
        forgeBin(),
        [
          "serve",
          "--listen", "127.0.0.1:0",
          "--data", dir,
          "--lease-ttl-ms", String(ttl),
          "--heartbeat-interval-ms", String(hb),
          "--sweep-interval-ms", "100",
        ],
        { env: { ...process.env, DOMINION_SEAL: SEAL, RUST_LOG: "warn" }, stdio: ["ignore", "ignore", "pipe"] },
      );
      let err = "";
      const timer = setTimeout(() => reject(new Error(`native forge did not start: ${err}`)), 15000);
      child.stderr.on("data", (d) => {
        err += d;
        const m = /forge listening on (http:\/\/\S+)\r?\n/.exec(err);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.on("exit", (code) => reject(new Error(`native forge exited ${code}: ${err}`)));
    });
  const stopChild = () =>
    new Promise((resolve) => {
      if (!child || child.exitCode !== null) return resolve();
      child.once("exit", () => resolve());
      child.kill("SIGTERM");
    });
  const t = { kind: "native", mode: "native", url: await boot(), ledger: null };
  t.restart = async () => {
    await stopChild();
    t.url = await boot();
  };
  // The native forge sweeps on its own (--sweep-interval-ms); nothing to trigger.
  t.sweep = null;
  t.stop = stopChild;
  return t;
}

async function startWorkerd(kind, { ttl, hb, dir, bindings = {} }) {
  const { Miniflare } = await import("miniflare");
  const ledger = await startLedger();
  const options = () => ({
    name: "brh-forge",
    modules: true,
    scriptPath: path.join(ROOT, "build/index.js"),
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    compatibilityDate: COMPAT_DATE,
    host: "127.0.0.1",
    port: 0,
    bindings: {
      DOMINION_SEAL: SEAL,
      BRH_LEASE_TTL_MS: String(ttl),
      BRH_HEARTBEAT_INTERVAL_MS: String(hb),
      LEDGER_URL: ledger.url,
      ...bindings,
    },
    kvNamespaces: ["BRH_KV"],
    kvPersist: path.join(dir, "kv"),
    ...(kind === "durable-object"
      ? {
          durableObjects: { LEASES: { className: "LeaseRegister", useSQLite: true } },
          durableObjectsPersist: path.join(dir, "do"),
        }
      : {}),
  });
  let mf = new Miniflare(options());
  const t = { kind, mode: kind, url: (await mf.ready).toString().replace(/\/$/, ""), ledger: ledger.received };
  t.restart = async () => {
    await mf.dispose();
    mf = new Miniflare(options());
    t.url = (await mf.ready).toString().replace(/\/$/, "");
  };
  t.sweep = async () => {
    const worker = await mf.getWorker();
    await worker.scheduled({ cron: "* * * * *" });
  };
  t.stop = async () => {
    await mf.dispose();
    ledger.close();
  };
  return t;
}

/** Starts a target with its own temporary data directory (removed by `stop`). */
export async function startTarget(kind, { ttl = 900, hb = 300, bindings } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), `brh-e2e-${kind}-`));
  const t =
    kind === "native" ? await startNative({ ttl, hb, dir }) : await startWorkerd(kind, { ttl, hb, dir, bindings });
  const stop = t.stop;
  t.ttl = ttl;
  t.hb = hb;
  t.stop = async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  };
  return t;
}

export const KINDS = ["native", "kv", "durable-object"];
