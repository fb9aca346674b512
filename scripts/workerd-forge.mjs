// The built Worker (build/index.js + index_bg.wasm) in workerd via miniflare, in Durable
// Object mode (KV + the LeaseRegister), as a plain process for the Rust fault drills
// (tests/src/drill.rs): `node scripts/workerd-forge.mjs --dir D [--port P] [--ttl MS]
// [--hb MS] [--skew MS]`, seal in DOMINION_SEAL (the forge's root secret: it derives each
// node's key from it, so clients sign with node keys — tests/e2e/sign.mjs `nodeKey` — and
// verify public views with the forge key's public half). State persists under D (kv/, do/), so a
// process killed with SIGKILL and started again on the same D restarts the register from
// its durable state, as Cloudflare would after an eviction. Prints
// "forge listening on http://127.0.0.1:PORT" once ready; SIGTERM/SIGINT dispose cleanly.
// Loopback only; nothing is fetched.
import { parseArgs } from "node:util";
import { forgeWorkerOptions } from "../tests/e2e/targets.mjs";

const { values: a } = parseArgs({
  options: {
    dir: { type: "string" },
    port: { type: "string", default: "0" },
    ttl: { type: "string", default: "3000" },
    hb: { type: "string", default: "1000" },
    skew: { type: "string", default: "30000" },
  },
});
if (!a.dir) {
  console.error("usage: workerd-forge.mjs --dir DIR [--port P] [--ttl MS] [--hb MS] [--skew MS]");
  process.exit(2);
}
if (!process.env.DOMINION_SEAL) {
  console.error("DOMINION_SEAL is not set");
  process.exit(2);
}

const { Miniflare } = await import("miniflare");
const mf = new Miniflare(
  forgeWorkerOptions({
    kind: "durable-object",
    dir: a.dir,
    port: Number(a.port),
    vars: {
      DOMINION_SEAL: process.env.DOMINION_SEAL,
      // A rotation's overlap window: the seal being replaced (README "Rotating the root secret").
      ...(process.env.DOMINION_SEAL_PREVIOUS
        ? { DOMINION_SEAL_PREVIOUS: process.env.DOMINION_SEAL_PREVIOUS }
        : {}),
      BRH_LEASE_TTL_MS: a.ttl,
      BRH_HEARTBEAT_INTERVAL_MS: a.hb,
      BRH_SKEW_MS: a.skew,
    },
  }),
);
const url = (await mf.ready).toString().replace(/\/$/, "");
console.error(`forge listening on ${url}`);
const stop = async () => {
  await mf.dispose();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
