// Protocol v1 signing and keys in JavaScript, independent of the Rust code, so the suite checks
// the forge and the agent against a second implementation. The vectors in sign.test.mjs are the
// ones of shared/src/sign.rs and shared/src/keys.rs (HMAC ones computed with openssl, Ed25519
// ones cross-checked against ed25519-dalek).
//
// Who signs what (shared/src/keys.rs), all derived from the federation's root secret, the seal:
//   node key      HMAC-SHA256(seal, "brh-v1-node-key\n{env}\n{node}"), 32 raw bytes: signs the
//                 node's requests to the forge (HTTP and stream frames); the forge's answers and
//                 pushes to that node are HMACs under it (view.sig, basis_sig). That is
//                 generation 0; generation g ≥ 1 (after a revocation and a re-enrolment) is
//                 HMAC-SHA256(seal, "brh-v1-node-key\n{env}\n{node}\n{g}"), named by the
//                 x-brh-key-gen header (stream: `key_gen`), which is not itself signed.
//   forge key     Ed25519, seed HMAC-SHA256(seal, "brh-v1-forge-key"): public views (no `you`),
//                 dominion roots, /manifest/resolve's forge_sig.
//   operator key  Ed25519, seed HMAC-SHA256(seal, "brh-v1-operator-key"): the top operator's
//                 requests to an agent's API, and the scoped operators' certificates.
import { createHash, createHmac, createPrivateKey, createPublicKey, sign as edSign, timingSafeEqual, verify as edVerify } from "node:crypto";

export const hmacHex = (key, msg) => createHmac("sha256", key).update(msg).digest("hex");
const hmacRaw = (key, msg) => createHmac("sha256", key).update(msg).digest();
const HEX64 = /^[0-9a-f]{64}$/;
const HEX128 = /^[0-9a-f]{128}$/;

// ---------------------------------------------------------------------------------------------
// Keys

/** A node's own key in one env: HMAC-SHA256(seal, "brh-v1-node-key\n{env}\n{node}"), 32 bytes. */
export const nodeKey = (seal, env, node) => hmacRaw(seal, `brh-v1-node-key\n${env}\n${node}`);

/**
 * Generation `g` of a node's key: generation 0 is `nodeKey`; g ≥ 1 (a re-enrolment after
 * `POST /federation/revoke`) is HMAC-SHA256(seal, "brh-v1-node-key\n{env}\n{node}\n{g}").
 */
export const nodeKeyGen = (seal, env, node, g) =>
  Number(g) === 0 ? nodeKey(seal, env, node) : hmacRaw(seal, `brh-v1-node-key\n${env}\n${node}\n${g}`);

/** `BRH_NODE_KEY` as a host holds it: 64 hex for generation 0, `{g}:{64 hex}` after a re-enrolment. */
export const nodeCredential = (g, key) => (Number(g) === 0 ? key.toString("hex") : `${g}:${key.toString("hex")}`);

const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");

/** An Ed25519 key pair from its 32-byte seed: `{ seed, privateKey, publicKey, publicHex }`. */
export function ed25519FromSeed(seed) {
  const s = Buffer.from(seed);
  if (s.length !== 32) throw new Error("an Ed25519 seed is 32 bytes");
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, s]), format: "der", type: "pkcs8" });
  const publicKey = createPublicKey(privateKey);
  const publicHex = publicKey.export({ format: "der", type: "spki" }).subarray(-32).toString("hex");
  return { seed: s, privateKey, publicKey, publicHex };
}

/** An Ed25519 public key from 64 hex digits (raw 32 bytes). */
export function ed25519Public(hex) {
  if (!HEX64.test(hex)) throw new Error("a public key is 64 lowercase hex digits");
  return createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), Buffer.from(hex, "hex")]), format: "der", type: "spki" });
}

/** The forge key: Ed25519 with seed HMAC-SHA256(seal, "brh-v1-forge-key"). */
export const forgeKey = (seal) => ed25519FromSeed(hmacRaw(seal, "brh-v1-forge-key"));

/** The top operator's key: Ed25519 with seed HMAC-SHA256(seal, "brh-v1-operator-key"). */
export const operatorKey = (seal) => ed25519FromSeed(hmacRaw(seal, "brh-v1-operator-key"));

/** An Ed25519 signature of `msg` as 128 lowercase hex digits. */
export const edSignHex = (pair, msg) => edSign(null, Buffer.from(msg), pair.privateKey).toString("hex");

/** Whether `sigHex` (128 lowercase hex digits) is `pub`'s signature of `msg`. */
export function edVerifyHex(pub, msg, sigHex) {
  if (typeof sigHex !== "string" || !HEX128.test(sigHex)) return false;
  const key = typeof pub === "string" ? ed25519Public(pub) : (pub.publicKey ?? pub);
  return edVerify(null, Buffer.from(msg), key, Buffer.from(sigHex, "hex"));
}

/** The federation's id (`brh.federation` on its containers): the first 8 bytes of SHA-256 of the forge's public key, hex. */
export const federationId = (forgePublicHex) => createHash("sha256").update(Buffer.from(forgePublicHex, "hex")).digest("hex").slice(0, 16);

/**
 * What `brh-agent enroll NODE` gives a host, computed here: its node key, the forge's and the
 * top operator's public keys and the federation's id, as the agent's environment variables (no seal).
 */
export function enrolment(seal, env, node) {
  return {
    BRH_NODE_ID: node,
    BRH_ENV: env,
    BRH_NODE_KEY: nodeKey(seal, env, node).toString("hex"),
    BRH_FORGE_KEY: forgeKey(seal).publicHex,
    BRH_OPERATOR_KEY: operatorKey(seal).publicHex,
    BRH_FEDERATION: federationId(forgeKey(seal).publicHex),
  };
}

// ---------------------------------------------------------------------------------------------
// Requests to the forge

export function canonicalRequest(method, path, node, ts, nonce, body) {
  const digest = createHash("sha256").update(body).digest("hex");
  return ["brh-v1", method, path, node, String(ts), nonce, digest].join("\n");
}

/** The four x-brh-* headers of one request to the forge, signed with `key` (the node's key). */
export function signRequest(key, { method, path, node, ts, nonce, body }) {
  return {
    "x-brh-node": node,
    "x-brh-ts": String(ts),
    "x-brh-nonce": nonce,
    "x-brh-sig": hmacHex(key, canonicalRequest(method, path, node, ts, nonce, body)),
  };
}

/**
 * A request signed with generation `generation` of the node's key (`nodeKeyGen(seal, env, node,
 * generation)`): the four headers plus `x-brh-key-gen` (canonical decimal) when the generation
 * is ≥ 1; generation 0 sends no such header. The header only selects the key: it is not in the
 * signed string, so a changed value fails the signature.
 */
export function signRequestGen(seal, env, generation, req) {
  const h = signRequest(nodeKeyGen(seal, env, req.node, generation), req);
  if (Number(generation) !== 0) h["x-brh-key-gen"] = String(generation);
  return h;
}

// ---------------------------------------------------------------------------------------------
// Views

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

/** Whether the view's lease agrees with `leader` (neither is in the signed string whole). */
function consistent(v) {
  return (
    (v.leader === null && v.lease === null) ||
    (typeof v.leader === "string" && v.leader !== "" && v.lease !== null && v.lease.holder === v.leader && v.lease.term === v.term)
  );
}

/**
 * True when the view (an answer or push to one node) carries the HMAC of that node's key
 * (`key` = nodeKey(seal, env, node)) and its lease agrees with `leader`.
 */
export function verifyView(key, v) {
  if (!consistent(v) || typeof v.sig !== "string" || !HEX64.test(v.sig)) return false;
  const want = Buffer.from(hmacHex(key, canonicalView(v)), "hex");
  return timingSafeEqual(want, Buffer.from(v.sig, "hex"));
}

/** True when the public view (no `you`) carries the forge key's Ed25519 signature. */
export function verifyPublicView(forgePub, v) {
  return consistent(v) && edVerifyHex(forgePub, canonicalView(v), v.sig);
}

/** On the stream and over HTTP: the string binding a view to the request it follows (`basis`, a nonce). */
export const canonicalBasis = (node, basis, viewSig) => ["brh-v1-basis", node, basis, viewSig].join("\n");

/** True when `basisSig` binds `view` (for `node`, whose key is `key`) to the request with nonce `basis`. */
export function verifyBasis(key, node, basis, view, basisSig) {
  if (typeof basisSig !== "string" || !HEX64.test(basisSig)) return false;
  const want = Buffer.from(hmacHex(key, canonicalBasis(node, basis, view.sig)), "hex");
  return timingSafeEqual(want, Buffer.from(basisSig, "hex"));
}

// ---------------------------------------------------------------------------------------------
// Requests to an agent's API (operators)

/**
 * The string signed for a request to an agent's API: it names the receiving agent (`to`, its
 * node id as in its `GET /health`), so a request captured at one agent is refused by another.
 */
export function canonicalAgentRequest(to, method, path, caller, ts, nonce, body) {
  const digest = createHash("sha256").update(body).digest("hex");
  return ["brh-v1-agent", to, method, path, caller, String(ts), nonce, digest].join("\n");
}

/**
 * The x-brh-* headers of one request to agent `to`, Ed25519-signed by `signer`: the top
 * operator's key pair, or a scoped credential (then `x-brh-operator` carries its certificate).
 */
export function signAgentRequest(signer, to, method, path, caller, ts, nonce, body) {
  const pair = signer.pair ?? signer;
  const h = {
    "x-brh-node": caller,
    "x-brh-ts": String(ts),
    "x-brh-nonce": nonce,
    "x-brh-sig": edSignHex(pair, canonicalAgentRequest(to, method, path, caller, ts, nonce, body)),
  };
  if (signer.cert) h["x-brh-operator"] = signer.cert;
  return h;
}

/**
 * An operator's request to the forge (`POST /federation/revoke`): the same four x-brh-* headers
 * and the same canonical string as a node's request (`brh-v1\n{METHOD}\n{PATH}\n{caller}\n{ts}\n
 * {nonce}\n{hex(sha256(body))}`), but `x-brh-sig` is an Ed25519 signature (128 hex) by `signer`:
 * the top operator's key pair, or a scoped credential (`issueCredential`; then `x-brh-operator`
 * carries its certificate, which needs the `nodes` scope for the env).
 */
export function signOperatorForge(signer, { method = "POST", path, caller, ts, nonce, body }) {
  const pair = signer.pair ?? signer;
  const h = {
    "x-brh-node": caller,
    "x-brh-ts": String(ts),
    "x-brh-nonce": nonce,
    "x-brh-sig": edSignHex(pair, canonicalRequest(method, path, caller, ts, nonce, body)),
  };
  if (signer.cert) h["x-brh-operator"] = signer.cert;
  return h;
}

/** The string the top operator signs in a certificate. */
export const canonicalCertificate = (name, env, scopes, expiresS, keyHex) =>
  ["brh-v1-operator-cert", name, env, scopes, String(expiresS), keyHex].join("\n");

// `nodes`: the forge's POST /federation/revoke.
const SCOPE_ORDER = ["read", "switchover", "containers", "nodes"];

/**
 * A scoped operator's credential, as `brh-agent operator issue` makes it: `{ name, env, scopes,
 * expiresS, pair, cert, text }` where `cert` is the x-brh-operator header
 * (`brhop1:{name}:{env}:{scopes joined by +}:{expires_s}:{pubkey}:{sig}`) and `text` the
 * credential (`{cert}:{seed hex}`).
 */
export function issueCredential(top, { name, env, scopes, expiresS, seed }) {
  const sorted = [...new Set(scopes)].sort((a, b) => SCOPE_ORDER.indexOf(a) - SCOPE_ORDER.indexOf(b));
  const pair = ed25519FromSeed(seed);
  const joined = sorted.join("+");
  const sig = edSignHex(top, canonicalCertificate(name, env, joined, expiresS, pair.publicHex));
  const cert = `brhop1:${name}:${env}:${joined}:${expiresS}:${pair.publicHex}:${sig}`;
  return { name, env, scopes: sorted, expiresS, pair, cert, text: `${cert}:${pair.seed.toString("hex")}` };
}

/** Reads a credential's text (`BRH_OPERATOR_CREDENTIAL`); checks that the seed is the certificate's. */
export function parseCredential(text) {
  const t = text.trim();
  const i = t.lastIndexOf(":");
  const cert = t.slice(0, i);
  const f = cert.split(":");
  if (f.length !== 7 || f[0] !== "brhop1") throw new Error(`not a brhop1 credential: ${t.slice(0, 40)}`);
  const [, name, env, scopes, expires, keyHex, sig] = f;
  const pair = ed25519FromSeed(Buffer.from(t.slice(i + 1), "hex"));
  if (pair.publicHex !== keyHex) throw new Error("the seed does not belong to the certificate's key");
  return { name, env, scopes: scopes.split("+"), expiresS: Number(expires), keyHex, sig, pair, cert, text: t };
}

/** Whether a certificate's signature is the top operator's (`topPub`). */
export function verifyCertificate(topPub, cert) {
  const [, name, env, scopes, expires, keyHex, sig] = cert.split(":");
  return edVerifyHex(topPub, canonicalCertificate(name, env, scopes, expires, keyHex), sig);
}

// ---------------------------------------------------------------------------------------------
// Dominion roots and the manifest's signature

export const canonicalRoot = (scheme, authority, env, epoch) => `${scheme}://${authority}|${env}|${epoch}`;

/** A root signed by the forge key (Ed25519, 128 hex), as `brh-agent root generate` prints it. */
export function signRoot(forge, { scheme = "dominion", authority, env, epoch }) {
  return `${scheme}://${authority}?env=${env}&epoch=${epoch}&sig=${edSignHex(forge, canonicalRoot(scheme, authority, env, epoch))}`;
}

/** A root in the original's form: HMAC-SHA256 under the seal (64 hex). Still parsed by the agent. */
export function signLegacyRoot(seal, { scheme = "dominion", authority, env, epoch }) {
  return `${scheme}://${authority}?env=${env}&epoch=${epoch}&sig=${hmacHex(seal, canonicalRoot(scheme, authority, env, epoch))}`;
}

/** `{ scheme, authority, env, epoch, sig }` of a root (the agent's rules: no path, first value wins). */
export function parseRoot(root) {
  const m = /^([a-z+]+):\/\/([^/?]+)\/?\?(.*)$/.exec(root.trim());
  if (!m) throw new Error(`not a dominion root: ${root}`);
  const q = new URLSearchParams(m[3]);
  return { scheme: m[1], authority: m[2], env: q.get("env"), epoch: Number(q.get("epoch")), sig: q.get("sig") };
}

/** Whether a root carries the forge key's signature (`forgePub`, hex or key). */
export function verifyRoot(forgePub, root) {
  const r = parseRoot(root);
  return edVerifyHex(forgePub, canonicalRoot(r.scheme, r.authority, r.env, r.epoch), r.sig);
}

/** Whether `/manifest/resolve`'s `forge_sig` is the forge key's signature of `{target}:{epoch}`. */
export const verifyManifest = (forgePub, m) => edVerifyHex(forgePub, `${m.target}:${m.epoch}`, m.forge_sig);

/**
 * Whether a lease token (`brhlt1:{env}:{holder}:{term}:{expires_at_s}:{sig}`, in an answer to the
 * holder) carries `forgePub`'s Ed25519 signature of `brh-v1-lease-token\n{env}\n{holder}\n{term}\n{expires_at_s}`.
 */
export function verifyLeaseToken(forgePub, token) {
  const f = typeof token === "string" ? token.split(":") : [];
  if (f.length !== 6 || f[0] !== "brhlt1") return false;
  const [, env, holder, term, expires, sig] = f;
  return edVerifyHex(forgePub, ["brh-v1-lease-token", env, holder, term, expires].join("\n"), sig);
}
