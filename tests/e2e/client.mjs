// A minimal signed forge client for the end-to-end suite and the benchmark.
import { randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { SEAL } from "./targets.mjs";
import { nodeKey, signRequest } from "./sign.mjs";

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

/** The env a signed body names (its node key is derived for that env); `dev` when it names none. */
export function envOf(body) {
  try {
    const env = JSON.parse(Buffer.isBuffer(body) ? body.toString("utf8") : body)?.env;
    return typeof env === "string" ? env : "dev";
  } catch {
    return "dev";
  }
}

/**
 * The key a request by `node` is signed with: by default the node's own key in the env its body
 * names (what `brh-agent enroll` gives the host); `opts.key` signs with exactly that key,
 * `opts.seal` with the node key another seal would give, `opts.keyEnv` with the node's key in
 * another env (all refused by the forge).
 */
export function signingKey(node, raw, opts = {}) {
  if (opts.key !== undefined) return opts.key;
  return nodeKey(opts.seal ?? SEAL, opts.keyEnv ?? opts.env ?? envOf(raw), node);
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

  /** This node's key in `env` (what answers to it are signed with). */
  key(env) {
    return nodeKey(SEAL, env, this.node);
  }

  nextNonce() {
    this.seq += 1;
    return `${this.boot}:${this.seq}`;
  }

  /**
   * Signs `rawBody` and sends `chunks` instead, chunked (no content-length). Uses node:http, not
   * fetch: a server may answer (413) and close before the client has written everything, and
   * the answer still counts.
   */
  async postChunked(path, rawBody, chunks, opts = {}) {
    const nonce = opts.nonce ?? this.nextNonce();
    const headers = signRequest(signingKey(this.node, rawBody, opts), { method: "POST", path, node: this.node, ts: Date.now(), nonce, body: rawBody });
    return new Promise((resolve, reject) => {
      let answered = false;
      const req = httpRequest(this.t.url + path, { method: "POST", headers: { ...headers, "content-type": "application/json" } }, (res) => {
        answered = true;
        const parts = [];
        res.on("data", (d) => parts.push(d));
        res.on("end", () => {
          const text = Buffer.concat(parts).toString("utf8");
          let json = null;
          try {
            json = JSON.parse(text);
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode, headers: new Headers(res.headers), text, json });
        });
        res.on("error", reject);
      });
      req.on("error", (e) => setTimeout(() => answered || reject(e), 500));
      (async () => {
        for (const c of chunks) {
          if (!req.write(c)) await new Promise((r) => req.once("drain", r));
        }
        req.end();
      })().catch(() => {});
    });
  }

  /**
   * Signs and sends; `opts` can override ts, nonce, the signing key (`key`, `seal`, `keyEnv`:
   * see `signingKey`), the raw body, or tamper after signing (`sendBody`).
   */
  async post(path, body, opts = {}) {
    const raw = opts.rawBody ?? JSON.stringify(body);
    const ts = opts.ts ?? Date.now();
    const nonce = opts.nonce ?? this.nextNonce();
    const headers = signRequest(signingKey(this.node, raw, opts), { method: "POST", path, node: this.node, ts, nonce, body: raw });
    const sent = opts.sendBody ?? raw;
    const init = { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: sent };
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

/** One socket: frames in order, and a way to wait for the next that matches. */
export class Stream {
  static async open(t, env) {
    const s = new Stream();
    s.ws = new WebSocket(`${t.url.replace(/^http/, "ws")}/federation/stream?env=${env}`);
    s.inbox = [];
    s.waiters = [];
    s.closed = false;
    s.ws.onmessage = (e) => {
      const m = { at: performance.now(), ...JSON.parse(e.data) };
      s.inbox.push(m);
      s.waiters = s.waiters.filter((w) => !w(m));
    };
    s.ws.onclose = () => (s.closed = true);
    await new Promise((resolve, reject) => {
      s.ws.onopen = resolve;
      s.ws.onerror = () => reject(new Error("stream did not open"));
    });
    return s;
  }

  /** The first frame (already received or to come) matching `pred`. */
  next(pred, ms = 5000) {
    const seen = this.inbox.find(pred);
    if (seen) {
      this.inbox.splice(this.inbox.indexOf(seen), 1);
      return Promise.resolve(seen);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching frame in ${ms} ms: ${JSON.stringify(this.inbox)}`)), ms);
      this.waiters.push((m) => {
        if (!pred(m)) return false;
        clearTimeout(timer);
        this.inbox.splice(this.inbox.indexOf(m), 1);
        resolve(m);
        return true;
      });
    });
  }

  /** Sends a signed request as one frame; resolves with its answer. */
  send(agent, path, body, opts = {}) {
    const raw = opts.rawBody ?? JSON.stringify(body);
    const ts = opts.ts ?? Date.now();
    const nonce = opts.nonce ?? agent.nextNonce();
    const h = signRequest(signingKey(agent.node, raw, opts), { method: opts.method ?? "WS", path, node: agent.node, ts, nonce, body: raw });
    const frame = { path, node: agent.node, ts, nonce, sig: h["x-brh-sig"], body: raw };
    const sentAt = performance.now();
    this.ws.send(JSON.stringify(frame));
    return this.next((m) => m.reply_to === nonce).then((m) => ({ ...m, nonce, sentAt }));
  }

  beat(agent, env, opts = {}) {
    return this.send(agent, "/federation/heartbeat", { env, priority: agent.priority, version: "e2e" }, opts);
  }

  close() {
    this.ws.close();
  }
}

