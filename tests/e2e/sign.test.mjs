// The JavaScript signer must agree with the Rust one: same vectors as shared/src/sign.rs
// (`request_vector_matches_openssl`, `view_vector_matches_openssl`), computed with openssl.
import assert from "node:assert/strict";
import { test } from "node:test";
import { canonicalRequest, signRequest, verifyView } from "./sign.mjs";

test("request signature matches the Rust/openssl vector", () => {
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
  const v = {
    env: "production",
    leader: "brh-node-01",
    term: 7,
    lease: { holder: "brh-node-01", term: 7, expires_at_ms: 1763900015000, ttl_ms: 15000 },
    epoch: 1763900000,
    issued_at_ms: 1763900000000,
    peers_alive: 3,
    mode: "native",
    you: { node: "brh-node-02", role: "witness" },
    sig: "24ea00c45222b663056e15499c5e03cae70deaba94735643d923873b1df3d91a",
  };
  assert.ok(verifyView("test-seal", v));
  assert.ok(!verifyView("other", v));
  assert.ok(!verifyView("test-seal", { ...v, you: { node: "brh-node-02", role: "leader" } }));
  assert.ok(!verifyView("test-seal", { ...v, lease: { ...v.lease, holder: "x" } }));
});
