// The JavaScript signer must agree with the Rust one. The HMAC vectors are those of
// shared/src/sign.rs (`request_vector_matches_openssl`, `view_vector_matches_openssl`,
// computed with openssl); the key, Ed25519 and certificate vectors were computed here with
// node:crypto and checked against brh_shared (keys::node_key, keys::forge_signing_key,
// keys::operator_signing_key, sign::sign_view / sign_public_view / sign_basis,
// root::DominionRoot::sign, operator::issue_credential) by a throwaway Rust program; the
// Ed25519 primitive itself against RFC 8032 §7.1 TEST 1 (as shared/src/keys.rs does).
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  canonicalRequest,
  canonicalAgentRequest,
  ed25519FromSeed,
  edSignHex,
  edVerifyHex,
  enrolment,
  forgeKey,
  issueCredential,
  nodeCredential,
  nodeKey,
  nodeKeyGen,
  operatorKey,
  parseCredential,
  signAgentRequest,
  signLegacyRoot,
  signOperatorForge,
  signRequest,
  signRequestGen,
  signRoot,
  verifyBasis,
  verifyCertificate,
  verifyManifest,
  verifyPublicView,
  verifyRoot,
  verifyView,
  hmacHex,
  canonicalView,
} from "./sign.mjs";

const SEAL = "test-seal";
const VIEW = {
  env: "production",
  leader: "brh-node-01",
  term: 7,
  lease: { holder: "brh-node-01", term: 7, expires_at_ms: 1763900015000, ttl_ms: 15000 },
  epoch: 1763900000,
  issued_at_ms: 1763900000000,
  peers_alive: 3,
  mode: "native",
  you: { node: "brh-node-02", role: "witness" },
};

test("request signature matches the Rust/openssl vector (HMAC keyed by whatever key is given)", () => {
  const h = signRequest("test-seal", {
    method: "POST",
    path: "/federation/heartbeat",
    node: "n1",
    ts: 1763900000000,
    nonce: "boot1:7",
    body: '{"env":"dev"}',
  });
  assert.equal(h["x-brh-sig"], "6885cb141b946b54a936a742dcd524c75cca18896cd72e0b52ccdf30f1d43940");
  assert.equal(
    canonicalRequest("POST", "/federation/heartbeat", "n1", 42, "boot1:7", ""),
    "brh-v1\nPOST\n/federation/heartbeat\nn1\n42\nboot1:7\n" +
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
});

test("view signature matches the Rust/openssl vector and tampering is detected", () => {
  const v = { ...VIEW, sig: "24ea00c45222b663056e15499c5e03cae70deaba94735643d923873b1df3d91a" };
  assert.ok(verifyView("test-seal", v));
  assert.ok(!verifyView("other", v));
  assert.ok(!verifyView("test-seal", { ...v, you: { node: "brh-node-02", role: "leader" } }));
  assert.ok(!verifyView("test-seal", { ...v, lease: { ...v.lease, holder: "x" } }));
});

test("node keys: HMAC(seal, brh-v1-node-key\\n{env}\\n{node}), separated by env and node (Rust vectors)", () => {
  assert.equal(nodeKey(SEAL, "production", "brh-node-02").toString("hex"), "d077a4ff9ccfba964995cf298371f7d80ae0f427848982fd0e300046d9d239dd");
  const n1 = nodeKey(SEAL, "dev", "n1");
  assert.equal(n1.toString("hex"), "c37fab11b975451f84643462d490bb55a35378bd9e0e3f99023ff7099fb13998");
  assert.notDeepEqual(n1, nodeKey(SEAL, "dev", "n2"));
  assert.notDeepEqual(n1, nodeKey(SEAL, "prod", "n1"));
  assert.notDeepEqual(n1, nodeKey("other", "dev", "n1"));
  // A heartbeat signed with n1's key (sign::sign_request(&keys::node_key(..)) in Rust).
  const h = signRequest(n1, { method: "POST", path: "/federation/heartbeat", node: "n1", ts: 1763900000000, nonce: "boot1:7", body: '{"env":"dev"}' });
  assert.equal(h["x-brh-sig"], "69560c69a2537ce962fbeaea11513de0a8690da727cca32ce26680a57a25b6c0");
});

test("Ed25519: RFC 8032 TEST 1, and the forge and operator keys of the seal (Rust vectors)", () => {
  const rfc = ed25519FromSeed(Buffer.from("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "hex"));
  assert.equal(rfc.publicHex, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  const sig = edSignHex(rfc, "");
  assert.equal(sig, "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
  assert.ok(edVerifyHex(rfc.publicHex, "", sig));
  assert.ok(!edVerifyHex(rfc.publicHex, "x", sig));
  assert.ok(!edVerifyHex(rfc.publicHex, "", sig.toUpperCase()), "uppercase hex is not the wire form");
  assert.ok(!edVerifyHex(rfc.publicHex, "", sig.slice(2)));
  assert.equal(forgeKey(SEAL).publicHex, "344384d5ad8594b2cd46e74e5f94683417d2ffcef10839ecb89509ab7f27be18");
  assert.equal(operatorKey(SEAL).publicHex, "f021da6169184d1a712e0905ec7dfde63aed275e700f3115cfeaed8d36e827b0");
  assert.deepEqual(enrolment(SEAL, "dev", "n1"), {
    BRH_NODE_ID: "n1",
    BRH_ENV: "dev",
    BRH_NODE_KEY: "c37fab11b975451f84643462d490bb55a35378bd9e0e3f99023ff7099fb13998",
    BRH_FORGE_KEY: "344384d5ad8594b2cd46e74e5f94683417d2ffcef10839ecb89509ab7f27be18",
    BRH_OPERATOR_KEY: "f021da6169184d1a712e0905ec7dfde63aed275e700f3115cfeaed8d36e827b0",
    BRH_FEDERATION: "325e382d6189adfa",
  });
});

test("a node's view is an HMAC under its own key; another node's key, or the seal, does not verify it", () => {
  const key = nodeKey(SEAL, "production", "brh-node-02");
  const v = { ...VIEW, sig: "201558fac15046d562c9f4a238aa916c9bf2b7bab8548612e950738069ed25f3" };
  assert.equal(hmacHex(key, canonicalView(v)), v.sig);
  assert.ok(verifyView(key, v));
  assert.ok(!verifyView(nodeKey(SEAL, "production", "brh-node-03"), v));
  assert.ok(!verifyView(nodeKey(SEAL, "staging", "brh-node-02"), v));
  assert.ok(!verifyView(SEAL, v));
  assert.ok(!verifyPublicView(forgeKey(SEAL), v), "a node's HMAC view is not a public view");
  const basisSig = "469dc70ac18a85717817f24fcdd2bbabeecf8b25afa32d1c4628a2558d2a89ff";
  assert.ok(verifyBasis(key, "brh-node-02", "b1:1", v, basisSig));
  assert.ok(!verifyBasis(key, "brh-node-02", "b1:2", v, basisSig));
  assert.ok(!verifyBasis(SEAL, "brh-node-02", "b1:1", v, basisSig));
  assert.ok(!verifyBasis(nodeKey(SEAL, "production", "brh-node-03"), "brh-node-02", "b1:1", v, basisSig));
});

test("a public view is Ed25519 under the forge key (128 hex); tampering and other keys fail", () => {
  const { you, ...pv } = VIEW;
  const v = {
    ...pv,
    sig: "57c6b03fa5149d11658c5d6a47cbdfc4ce5e2b1fa1dd2c11b91888dfe80bafe0b9091417efcd947ed66f4d7d8776ceb00a8227176f7a3a1aa05446fed604d306",
  };
  assert.equal(edSignHex(forgeKey(SEAL), canonicalView(v)), v.sig, "Ed25519 is deterministic");
  assert.ok(verifyPublicView(forgeKey(SEAL).publicHex, v));
  assert.ok(verifyPublicView(forgeKey(SEAL), v));
  assert.ok(!verifyPublicView(forgeKey("other").publicHex, v));
  assert.ok(!verifyPublicView(operatorKey(SEAL).publicHex, v), "the operator key is another key");
  assert.ok(!verifyPublicView(forgeKey(SEAL), { ...v, term: 8, lease: { ...v.lease, term: 8 } }));
  assert.ok(!verifyPublicView(forgeKey(SEAL), { ...v, you: { node: "brh-node-02", role: "leader" } }));
  assert.ok(!verifyPublicView(forgeKey(SEAL), { ...v, lease: { ...v.lease, holder: "x" } }));
  assert.ok(!verifyView(SEAL, v), "not an HMAC view");
});

test("roots: Ed25519 of scheme://authority|env|epoch under the forge key; the original's HMAC form is another string", () => {
  const root = signRoot(forgeKey(SEAL), { authority: "sovereign.bridge", env: "dev", epoch: 1700000000 });
  assert.equal(
    root,
    "dominion://sovereign.bridge?env=dev&epoch=1700000000&sig=6a32d9c3d78bbd40c099f14a73eaee6a1fd7023d2b27844db4f05fefb7ed1f94f342fa6305ab078451e5b91a50e084c3cfcd28f6967d630045578c23cb98ea08",
  );
  assert.ok(verifyRoot(forgeKey(SEAL).publicHex, root));
  assert.ok(!verifyRoot(forgeKey("other").publicHex, root));
  assert.ok(!verifyRoot(forgeKey(SEAL).publicHex, root.replace("env=dev", "env=prod")));
  assert.ok(!verifyRoot(forgeKey(SEAL).publicHex, root.replace("dominion://", "dominion+http://")), "no downgrade");
  // shared/src/root.rs's legacy vector (openssl): still what an HMAC root looks like.
  assert.equal(
    signLegacyRoot(SEAL, { authority: "sovereign.bridge", env: "dev", epoch: 1700000000 }),
    "dominion://sovereign.bridge?env=dev&epoch=1700000000&sig=02caf100e40d1bae4eb5f1014d86b583f63d0bef1443d84f1a86274f999926aa",
  );
  const m = { target: "svc-1", epoch: 1763900000, forge_sig: "4a5fbb696a81a5b94fafd21d91abaa889f60340d6892056c2e5c80d72d56d232d8bf806205df4504da95906fada2ac179b7dc5c1c8591d5a860a18045207c109" };
  assert.ok(verifyManifest(forgeKey(SEAL).publicHex, m));
  assert.ok(!verifyManifest(forgeKey(SEAL).publicHex, { ...m, epoch: m.epoch + 1 }));
});

test("agent API: Ed25519 by an operator over the receiver-naming string (Rust vector); scoped certificates", () => {
  const body = '{"image":"nginx"}';
  const h = signAgentRequest(operatorKey(SEAL), "n1", "POST", "/deploy", "ops", 1000, "c1:1", body);
  assert.equal(
    h["x-brh-sig"],
    "f0ffe693e16ac0f1eb7905e0deeef918f877706a4e60614fd667d9dd3152bd9cb6f15b33e8fc1121fc9578ee29109fea73fc1f942a2d7999015cd21767d45c00",
  );
  assert.equal(h["x-brh-operator"], undefined, "the top operator sends no certificate");
  const msg = canonicalAgentRequest("n1", "POST", "/deploy", "ops", 1000, "c1:1", body);
  assert.ok(msg.startsWith("brh-v1-agent\nn1\nPOST\n/deploy\nops\n1000\nc1:1\n"));
  assert.ok(edVerifyHex(operatorKey(SEAL).publicHex, msg, h["x-brh-sig"]));
  assert.ok(!edVerifyHex(operatorKey(SEAL).publicHex, canonicalAgentRequest("n2", "POST", "/deploy", "ops", 1000, "c1:1", body), h["x-brh-sig"]));

  const c = issueCredential(operatorKey(SEAL), { name: "alice", env: "dev", scopes: ["containers", "switchover", "containers"], expiresS: 2000, seed: Buffer.alloc(32, 9) });
  assert.equal(
    c.cert,
    "brhop1:alice:dev:switchover+containers:2000:fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f618:" +
      "304b9107ade8b62c2ecba37e144247a9be798ae97b3b40fc109ad7693561a4caff33dac41449e851d81eae792131bdbd4367063e262cde44861788f417ba4705",
  );
  assert.ok(verifyCertificate(operatorKey(SEAL).publicHex, c.cert));
  assert.ok(!verifyCertificate(operatorKey(SEAL).publicHex, c.cert.replace(":dev:", ":prod:")));
  assert.ok(!verifyCertificate(operatorKey("other").publicHex, c.cert));
  const back = parseCredential(c.text);
  assert.equal(back.cert, c.cert);
  assert.deepEqual(back.scopes, ["switchover", "containers"]);
  assert.throws(() => parseCredential(`${c.cert}:${"02".repeat(32)}`), /seed/);
  const s = signAgentRequest(back, "n1", "POST", "/switchover", "alice", 1000, "a:1", "{}");
  assert.equal(s["x-brh-operator"], c.cert);
  assert.ok(edVerifyHex(c.pair.publicHex, canonicalAgentRequest("n1", "POST", "/switchover", "alice", 1000, "a:1", "{}"), s["x-brh-sig"]));
});

// Key generations and operator requests to the forge (POST /federation/revoke). The HMAC
// vectors were computed with openssl (`printf 'brh-v1-node-key\nproduction\nbrh-node-02\n3' |
// openssl dgst -sha256 -hmac test-seal`), independently of both implementations.

test("node key generations: 0 is the node key; g ≥ 1 is HMAC(seal, brh-v1-node-key\\n{env}\\n{node}\\n{g}) (openssl vectors)", () => {
  assert.deepEqual(nodeKeyGen(SEAL, "production", "brh-node-02", 0), nodeKey(SEAL, "production", "brh-node-02"));
  assert.equal(nodeKeyGen(SEAL, "production", "brh-node-02", 0).toString("hex"), "d077a4ff9ccfba964995cf298371f7d80ae0f427848982fd0e300046d9d239dd");
  assert.equal(nodeKeyGen(SEAL, "production", "brh-node-02", 3).toString("hex"), "7b66f55ff1689e2606d38f76351eeaf4f758e266c87db3a55da7a60ee8727371");
  assert.equal(nodeKeyGen(SEAL, "production", "brh-node-02", 4294967295).toString("hex"), "a77b796ed65c05ebce4dad23f1263e0379d1fb3db43999ddfa9872206b39c638");
  assert.notDeepEqual(nodeKeyGen(SEAL, "production", "brh-node-02", 1), nodeKeyGen(SEAL, "production", "brh-node-02", 2));
  const k3 = nodeKeyGen(SEAL, "production", "brh-node-02", 3);
  assert.equal(nodeCredential(3, k3), `3:${k3.toString("hex")}`);
  assert.equal(nodeCredential(0, nodeKey(SEAL, "dev", "n1")), "c37fab11b975451f84643462d490bb55a35378bd9e0e3f99023ff7099fb13998");
  // Generation 0 sends no header; a later one names itself, and signs with its own key only.
  const req = { method: "POST", path: "/federation/heartbeat", node: "n1", ts: 1763900000000, nonce: "boot1:7", body: '{"env":"dev"}' };
  const g0 = signRequestGen(SEAL, "dev", 0, req);
  assert.equal(g0["x-brh-key-gen"], undefined);
  assert.equal(g0["x-brh-sig"], "69560c69a2537ce962fbeaea11513de0a8690da727cca32ce26680a57a25b6c0");
  const g2 = signRequestGen(SEAL, "dev", 2, req);
  assert.equal(g2["x-brh-key-gen"], "2");
  assert.equal(g2["x-brh-sig"], signRequest(nodeKeyGen(SEAL, "dev", "n1", 2), req)["x-brh-sig"]);
  assert.notEqual(g2["x-brh-sig"], g0["x-brh-sig"]);
});

test("operator requests to the forge: Ed25519 over the node request's canonical string, by the top operator or a scoped credential", () => {
  const body = '{"env":"dev","node":"n2","generation":0}';
  const req = { path: "/federation/revoke", caller: "ops", ts: 1763900000000, nonce: "op1:1", body };
  const msg = canonicalRequest("POST", "/federation/revoke", "ops", 1763900000000, "op1:1", body);
  const top = signOperatorForge(operatorKey(SEAL), req);
  assert.match(top["x-brh-sig"], /^[0-9a-f]{128}$/);
  assert.equal(top["x-brh-operator"], undefined, "the top operator sends no certificate");
  assert.ok(edVerifyHex(operatorKey(SEAL).publicHex, msg, top["x-brh-sig"]));
  assert.ok(!edVerifyHex(operatorKey(SEAL).publicHex, canonicalAgentRequest("forge", "POST", "/federation/revoke", "ops", 1763900000000, "op1:1", body), top["x-brh-sig"]), "not the agent-API string");
  assert.ok(!edVerifyHex(forgeKey(SEAL).publicHex, msg, top["x-brh-sig"]));
  const c = issueCredential(operatorKey(SEAL), { name: "ops", env: "dev", scopes: ["nodes", "read"], expiresS: 2000, seed: Buffer.alloc(32, 5) });
  assert.deepEqual(c.scopes, ["read", "nodes"], "nodes sorts after containers");
  assert.match(c.cert, /^brhop1:ops:dev:read\+nodes:2000:/);
  assert.ok(verifyCertificate(operatorKey(SEAL).publicHex, c.cert));
  const scoped = signOperatorForge(c, req);
  assert.equal(scoped["x-brh-operator"], c.cert);
  assert.ok(edVerifyHex(c.pair.publicHex, msg, scoped["x-brh-sig"]));
});
