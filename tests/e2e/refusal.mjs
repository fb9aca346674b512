// Assertions shared by the hostile suites (hostile.test.mjs: forges; hostile-agent.test.mjs:
// the agent API): what a refusal must look like, and the two slow-client properties of the
// native server (forge and agent use the same one, http-server/src/lib.rs).
import assert from "node:assert/strict";
import { sleep } from "./client.mjs";
import { rawRequest, stallConnections } from "./raw.mjs";

export function describeRes(res) {
  return `${res.status} ${res.headers?.get?.("content-type") ?? ""} ${String(res.text ?? "").slice(0, 300)}`;
}

/**
 * A refusal: 4xx (one of `status` when given), JSON error body with `code` (one of, when given),
 * served as application/json. `httpLayer` marks requests so malformed that the HTTP parser
 * (hyper, or workerd before the Worker runs) refuses them itself: a 4xx with whatever body it
 * writes is accepted there. `runtime501` (workerd only): workerd answers methods it does not
 * know with 501 before the Worker runs.
 */
export function assertRefused(res, { status, code, httpLayer = false, runtime501 = false } = {}, kind = "native") {
  const d = describeRes(res);
  if (runtime501 && kind !== "native" && res.status === 501) return;
  assert.ok(res.status >= 400 && res.status < 500, `expected a 4xx, got ${d}`);
  if (status !== undefined) {
    const ok = [status].flat();
    assert.ok(ok.includes(res.status), `expected ${ok.join("|")}, got ${d}`);
  }
  if (httpLayer && !(res.headers.get("content-type") ?? "").startsWith("application/json")) return;
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/, `content-type of ${d}`);
  assert.equal(typeof res.json?.error?.code, "string", `JSON error body: ${d}`);
  assert.equal(typeof res.json.error.message, "string", `JSON error message: ${d}`);
  if (code !== undefined) {
    const ok = [code].flat();
    assert.ok(ok.includes(res.json.error.code), `expected code ${ok.join("|")}, got ${d}`);
  }
}

const HALF_HEAD = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nx-a";

/** 20 half-sent request heads are all dropped within the header read timeout (≤ 10 s). */
export async function assertStalledHeadsDropped(url) {
  const stalled = await stallConnections(url, 20, HALF_HEAD);
  try {
    const deadline = Date.now() + 12_000;
    while (stalled.closedCount() < stalled.opened && Date.now() < deadline) await sleep(100);
    assert.equal(stalled.closedWithin(10_500), stalled.opened, `closed within 10.5 s: ${stalled.closedWithin(10_500)} of ${stalled.opened}`);
    for (const a of stalled.answers()) assert.ok(a.status === 0 || (a.status >= 400 && a.status < 500), `answer to a stalled request: ${a.status}`);
  } finally {
    stalled.release();
  }
}

/**
 * `url` serves with a cap of ~128 connections (started under `ulimit -n 256`): 200 stalled
 * connections are refused or closed at once rather than queued, a new request is answered
 * quickly, and the server serves normally once they are gone.
 */
export async function assertConnectionCap(url) {
  const stalled = await stallConnections(url, 200, HALF_HEAD);
  try {
    await sleep(1500);
    const quick = stalled.closedWithin(2000) + stalled.refused;
    assert.ok(quick >= 50, `of 200 connections over a cap of ~128, ${quick} were refused or closed within 2 s`);
    for (const a of stalled.answers()) {
      if (a.status === 0) continue;
      assert.ok([400, 408, 503].includes(a.status), `answer on a refused connection: ${describeRes(a)}`);
      assert.equal(typeof a.json?.error?.code, "string", `JSON error: ${describeRes(a)}`);
    }
    const t0 = Date.now();
    const h = await rawRequest(url, { path: "/health" }, { timeoutMs: 3000 });
    assert.ok(Date.now() - t0 < 2000, `a new request at the cap was answered within 2 s (${Date.now() - t0} ms, ${h.status})`);
    assert.ok(h.status === 200 || h.status === 503 || h.status === 0, describeRes(h));
  } finally {
    stalled.release();
  }
  await sleep(300);
  const h = await rawRequest(url, { path: "/health" });
  assert.equal(h.status, 200, "served again once the stalled connections are gone");
}
