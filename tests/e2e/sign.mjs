// Protocol v1 signing in JavaScript (design §3), independent of the Rust code, so the suite
// checks the forge against a second implementation. The vectors in sign.test.mjs are the ones
// of shared/src/sign.rs (computed with openssl).
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

export const hmacHex = (key, msg) => createHmac("sha256", key).update(msg).digest("hex");

export function canonicalRequest(method, path, node, ts, nonce, body) {
  const digest = createHash("sha256").update(body).digest("hex");
  return ["brh-v1", method, path, node, String(ts), nonce, digest].join("\n");
}

/** The four x-brh-* headers of one signed request. */
export function signRequest(seal, { method, path, node, ts, nonce, body }) {
  return {
    "x-brh-node": node,
    "x-brh-ts": String(ts),
    "x-brh-nonce": nonce,
    "x-brh-sig": hmacHex(seal, canonicalRequest(method, path, node, ts, nonce, body)),
  };
}

export function canonicalView(v) {
  return [
    "brh-v1-view",
    v.env,
    v.leader ?? "",
    String(v.term),
    String(v.lease ? v.lease.expires_at_ms : 0),
    String(v.issued_at_ms),
    v.you ? v.you.node : "",
    v.you ? v.you.role : "",
  ].join("\n");
}

/** True when the view's `sig` is the forge's HMAC and its lease agrees with `leader`. */
export function verifyView(seal, v) {
  const consistent =
    (v.leader === null && v.lease === null) ||
    (v.leader !== null && v.lease !== null && v.lease.holder === v.leader && v.lease.term === v.term);
  if (!consistent || typeof v.sig !== "string" || !/^[0-9a-f]{64}$/.test(v.sig)) return false;
  const want = Buffer.from(hmacHex(seal, canonicalView(v)), "hex");
  return timingSafeEqual(want, Buffer.from(v.sig, "hex"));
}

/** An env's agent API key: HMAC-SHA256(seal, "brh-v1-agent-api\n{env}"), 32 raw bytes. */
export const agentApiKey = (seal, env) => createHmac("sha256", seal).update(`brh-v1-agent-api\n${env}`).digest();

/**
 * The string signed for a request to an agent's API: it names the receiving agent (`to`, its
 * node id as in its `GET /health`), so a request captured at one agent is refused by another.
 */
export function canonicalAgentRequest(to, method, path, caller, ts, nonce, body) {
  const digest = createHash("sha256").update(body).digest("hex");
  return ["brh-v1-agent", to, method, path, caller, String(ts), nonce, digest].join("\n");
}

/** The four x-brh-* headers of one request to agent `to`, signed with the env's API key. */
export function signAgentRequest(key, to, method, path, caller, ts, nonce, body) {
  return {
    "x-brh-node": caller,
    "x-brh-ts": String(ts),
    "x-brh-nonce": nonce,
    "x-brh-sig": hmacHex(key, canonicalAgentRequest(to, method, path, caller, ts, nonce, body)),
  };
}

/** On the stream: the string binding a view to the request it follows (`basis`, a nonce). */
export const canonicalBasis = (node, basis, viewSig) => ["brh-v1-basis", node, basis, viewSig].join("\n");

/** True when `basis_sig` binds `view` (for `node`) to the request with nonce `basis`. */
export function verifyBasis(seal, node, basis, view, basisSig) {
  if (typeof basisSig !== "string" || !/^[0-9a-f]{64}$/.test(basisSig)) return false;
  const want = Buffer.from(hmacHex(seal, canonicalBasis(node, basis, view.sig)), "hex");
  return timingSafeEqual(want, Buffer.from(basisSig, "hex"));
}
