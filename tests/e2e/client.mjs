// A minimal signed forge client for the end-to-end suite and the benchmark.
import { randomBytes } from "node:crypto";
import { SEAL } from "./targets.mjs";
import { signRequest } from "./sign.mjs";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export const uniqueEnv = (prefix) => `${prefix}-${randomBytes(3).toString("hex")}`;

async function answer(r) {
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON (dashboard, metrics)
  }
  return { status: r.status, headers: r.headers, text, json };
}

export async function get(t, pathAndQuery) {
  return answer(await fetch(t.url + pathAndQuery));
}

/** One agent: its node id, boot id and nonce sequence. */
export class Agent {
  constructor(target, node, { priority = 0 } = {}) {
    this.t = target;
    this.node = node;
    this.priority = priority;
    this.boot = `b${randomBytes(4).toString("hex")}`;
    this.seq = 0;
  }

  nextNonce() {
    this.seq += 1;
    return `${this.boot}:${this.seq}`;
  }

  /** Signs and sends; `opts` can override ts, nonce, seal, the raw body, or tamper after signing. */
  async post(path, body, opts = {}) {
    const raw = opts.rawBody ?? JSON.stringify(body);
    const ts = opts.ts ?? Date.now();
    const nonce = opts.nonce ?? this.nextNonce();
    const headers = signRequest(opts.seal ?? SEAL, { method: "POST", path, node: this.node, ts, nonce, body: raw });
    const sent = opts.sendBody ?? raw;
    const init = { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: sent };
    if (typeof sent !== "string") init.duplex = "half";
    return answer(await fetch(this.t.url + path, init));
  }

  heartbeat(env, opts = {}) {
    const body = { env, priority: this.priority, draining: false, uptime_s: 1, version: "e2e", ...(opts.extra ?? {}) };
    return this.post("/federation/heartbeat", body, opts);
  }

  resign(env, term, opts = {}) {
    return this.post("/federation/resign", { env, term }, opts);
  }
}

/** What a refused request must not change: the lease, the term and the peer table. */
export async function snapshot(t, env) {
  const leader = await get(t, `/federation/leader?env=${env}`);
  const peers = await get(t, `/federation/peers?env=${env}`);
  if (leader.status !== 200 || peers.status !== 200) {
    return { leaderStatus: leader.status, peersStatus: peers.status };
  }
  const { leader: l, term, lease } = leader.json;
  return { leader: l, term, lease, peers: peers.json.peers.map(({ alive, ...p }) => p) };
}
