// The three forges the end-to-end suite runs against, behind one interface:
//   native          target/debug/forge (the embedded forge, on-disk store, automatic sweep)
//   kv              the built Worker (build/index.js + index_bg.wasm) in workerd via
//                   miniflare 4, KV binding only
//   durable-object  the same bundle with KV + the LeaseRegister Durable Object
// Each target: { kind, url, restart(), sweep(), stop(), ledger[] }. Everything stays on
// loopback; nothing is fetched from the network.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { enrolment, forgeKey, operatorKey, signRoot } from "./sign.mjs";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const SEAL = "e2e-seal-0123456789abcdef";
/** The forge key of SEAL: public views, roots and /manifest/resolve verify with `FORGE.publicHex`. */
export const FORGE = forgeKey(SEAL);
/** The top operator's key of SEAL: signs requests to an agent's API. */
export const OPERATOR = operatorKey(SEAL);
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

/** `[command, args]` running `bin args` under `ulimit -n nofile` when `nofile` is set. */
function withNofile(bin, args, nofile) {
  return nofile ? ["sh", ["-c", `ulimit -n ${Number(nofile)} && exec "$0" "$@"`, bin, ...args]] : [bin, args];
}

async function startNative({ ttl, hb, dir, nofile, forgeEnv = {} }) {
  let child;
  const boot = () =>
    new Promise((resolve, reject) => {
      child = spawn(
        ...withNofile(forgeBin(), [
          "serve",
          "--listen", "127.0.0.1:0",
          "--data", dir,
          "--lease-ttl-ms", String(ttl),
          "--heartbeat-interval-ms", String(hb),
          "--sweep-interval-ms", "100",
        ], nofile),
        { env: { ...process.env, DOMINION_SEAL: SEAL, RUST_LOG: "warn", ...forgeEnv }, stdio: ["ignore", "ignore", "pipe"] },
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

/**
 * The Miniflare options of the built forge Worker (build/index.js + index_bg.wasm) on loopback:
 * `kind` "kv" binds the KV namespace only, "durable-object" adds the LeaseRegister Durable
 * Object; state persists under `dir` (kv/, do/), so a new Miniflare on the same `dir` starts
 * from what the last one stored. `vars` are the Worker's variables (DOMINION_SEAL,
 * BRH_LEASE_TTL_MS, ...). The one definition for this suite and scripts/workerd-forge.mjs (the
 * Rust drills' Worker), so the two run the same Worker.
 */
export function forgeWorkerOptions({ kind, dir, port = 0, vars }) {
  if (!["kv", "durable-object"].includes(kind)) throw new Error(`forgeWorkerOptions: unknown kind ${kind}`);
  return {
    name: "brh-forge",
    modules: true,
    scriptPath: path.join(ROOT, "build/index.js"),
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    compatibilityDate: COMPAT_DATE,
    host: "127.0.0.1",
    port,
    bindings: vars,
    // wrangler.toml [assets]: the dashboard page, handed out by the Worker (run_worker_first).
    assets: {
      directory: path.join(ROOT, "build/assets"),
      binding: "ASSETS",
      routerConfig: { has_user_worker: true, invoke_user_worker_ahead_of_assets: true },
    },
    kvNamespaces: ["BRH_KV"],
    kvPersist: path.join(dir, "kv"),
    ...(kind === "durable-object"
      ? {
          durableObjects: { LEASES: { className: "LeaseRegister", useSQLite: true } },
          durableObjectsPersist: path.join(dir, "do"),
        }
      : {}),
  };
}

async function startWorkerd(kind, { ttl, hb, dir, bindings = {} }) {
  const { Miniflare } = await import("miniflare");
  const ledger = await startLedger();
  const options = () =>
    forgeWorkerOptions({
      kind,
      dir,
      vars: {
        DOMINION_SEAL: SEAL,
        BRH_LEASE_TTL_MS: String(ttl),
        BRH_HEARTBEAT_INTERVAL_MS: String(hb),
        LEDGER_URL: ledger.url,
        ...bindings,
      },
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
  // durable-object with BRH_TEST_FAULTS=evictable: the env's register forgets its memory, as
  // an eviction or a hibernation does (straight to the object, not through the Worker).
  t.evict = async (env) => {
    const ns = await mf.getDurableObjectNamespace("LEASES");
    // The register's one call route, with the typed call (forge-worker/src/cloudflare/message.rs).
    const r = await ns.get(ns.idFromName(env)).fetch("https://lease-register.internal/__brh/call", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ call: "evict" }),
    });
    if (r.status !== 200) throw new Error(`evict: ${r.status} ${await r.text()}`);
  };
  t.stop = async () => {
    await mf.dispose();
    ledger.close();
  };
  return t;
}

/**
 * Starts a target with its own temporary data directory (removed by `stop`). `nofile` (native
 * only) runs the forge under `ulimit -n nofile`, which bounds its connection cap. `forgeEnv`
 * (native) adds environment variables to the forge process, as `bindings` add Worker vars.
 */
export async function startTarget(kind, { ttl = 900, hb = 300, bindings, nofile, forgeEnv } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), `brh-e2e-${kind}-`));
  const t =
    kind === "native"
      ? await startNative({ ttl, hb, dir, nofile, forgeEnv })
      : await startWorkerd(kind, { ttl, hb, dir, bindings });
  const stop = t.stop;
  t.ttl = ttl;
  t.hb = hb;
  // The target's temporary directory (for native: the forge's --data directory).
  t.dir = dir;
  t.stop = async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  };
  return t;
}

export const KINDS = ["native", "kv", "durable-object"];

export function agentBin() {
  if (process.env.AGENT_BIN) return process.env.AGENT_BIN;
  return path.join(path.dirname(forgeBin()), "brh-agent");
}

/**
 * A `dominion+http://` root for a forge on loopback, signed by the forge key of `seal` (Ed25519
 * of `scheme://authority|env|epoch`, 128 hex), as `brh-agent root generate --http` prints it.
 */
export function dominionRoot(seal, forgeUrl, env) {
  const authority = new URL(forgeUrl).host;
  return signRoot(forgeKey(seal), { scheme: "dominion+http", authority, env, epoch: Math.floor(Date.now() / 1000) });
}

/**
 * `brh-agent enroll NODE` run where the seal is (DOMINION_SEAL, FORGE_DOMINION_ROOT): the host's
 * environment as `{ KEY: value }` (its `KEY='value'` lines; `#` lines are comments). Checked
 * against this suite's own derivation (sign.mjs `enrolment`), so an agent started here runs on
 * exactly what the operator's command hands a host.
 */
export function enroll({ node, root, seal = SEAL, forgeUrl }) {
  const r = spawnSync(agentBin(), ["enroll", node, ...(forgeUrl ? ["--forge-url", forgeUrl] : [])], {
    env: { ...cleanEnv(), DOMINION_SEAL: seal, FORGE_DOMINION_ROOT: root, NO_COLOR: "1" },
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`brh-agent enroll ${node} exited ${r.status}: ${r.stderr}`);
  const vars = {};
  for (const line of r.stdout.split("\n")) {
    if (!line.trim() || line.startsWith("#")) continue;
    const m = /^([A-Z_]+)='([^']*)'$/.exec(line);
    if (!m) throw new Error(`brh-agent enroll ${node}: unexpected line ${JSON.stringify(line)}`);
    vars[m[1]] = m[2];
  }
  const want = { ...enrolment(seal, parseEnv(root), node), FORGE_DOMINION_ROOT: root, ...(forgeUrl ? { BRH_FORGE_URL: forgeUrl } : {}) };
  const got = JSON.stringify(Object.entries(vars).sort());
  if (got !== JSON.stringify(Object.entries(want).sort())) throw new Error(`brh-agent enroll ${node} printed ${got}, expected ${JSON.stringify(want)}`);
  return vars;
}

const parseEnv = (root) => new URL(root.replace(/^dominion(\+http)?:/, "http:")).searchParams.get("env");

/** The process environment minus every credential setting, so an agent gets only what it is given. */
function cleanEnv() {
  const env = { ...process.env };
  for (const k of ["DOMINION_SEAL", "BRH_NODE_KEY", "BRH_FORGE_KEY", "BRH_OPERATOR_KEY", "BRH_LEGACY_SEAL", "BRH_OPERATOR_CREDENTIAL", "FORGE_DOMINION_ROOT", "BRH_FEDERATION"]) delete env[k];
  return env;
}

/**
 * Starts one `brh-agent run` (no manifest, so no container layer) against the forge at
 * `forgeUrl`, its API on a free loopback port, enrolled like a real host: its environment is
 * what `brh-agent enroll NODE` prints (node key, forge and operator public keys, root) and no
 * DOMINION_SEAL. Consensus reports are off so its /events only change on role changes. `nofile`
 * runs it under `ulimit -n nofile` (bounds its connection cap); `extraEnv` adds variables.
 * `legacySeal` runs it the old way instead: DOMINION_SEAL on the host, `BRH_LEGACY_SEAL=true`.
 * Resolves with `{ node, env, url, child, vars, log(), stop() }`.
 */
export function startAgent({ forgeUrl, node, env = "dev", seal = SEAL, hbMs = 5000, ttlMs = 15000, args = [], nofile, extraEnv = {}, legacySeal = false }) {
  const root = dominionRoot(seal, forgeUrl, env);
  const vars = legacySeal ? { DOMINION_SEAL: seal, FORGE_DOMINION_ROOT: root, BRH_LEGACY_SEAL: "true" } : enroll({ node, root, seal });
  return new Promise((resolve, reject) => {
    const child = spawn(
      ...withNofile(agentBin(), [
        "run",
        "--node-id", node,
        "--env", env,
        "--listen", "127.0.0.1:0",
        "--heartbeat-interval", `${hbMs}ms`,
        "--lease-ttl", `${ttlMs}ms`,
        "--consensus-enabled", "false",
        ...args,
      ], nofile),
      {
        env: {
          ...cleanEnv(),
          ...vars,
          BRH_LOG: "info",
          BRH_RUNTIME: "api",
          NO_COLOR: "1",
          ...extraEnv,
        },
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    let err = "";
    const marker = new RegExp(`\\[API\\] ${node.replace(/[.]/g, "\\.")} listening on (http://[0-9.:]+)`);
    const timer = setTimeout(() => reject(new Error(`brh-agent ${node} did not start: ${err}`)), 20000);
    const onExit = (code) => reject(new Error(`brh-agent ${node} exited ${code}: ${err}`));
    child.on("exit", onExit);
    child.stderr.on("data", (d) => {
      err += d;
      const m = marker.exec(err.replace(/\x1b\[[0-9;]*m/g, ""));
      if (m) {
        clearTimeout(timer);
        child.off("exit", onExit);
        resolve({
          node,
          env,
          url: m[1],
          child,
          vars,
          log: () => err,
          stop: () =>
            new Promise((r) => {
              if (child.exitCode !== null || child.signalCode !== null) return r();
              child.once("exit", () => r());
              child.kill("SIGTERM");
              setTimeout(() => child.kill("SIGKILL"), 10000).unref();
            }),
        });
      }
    });
  });
}
