// Keeps docs/openapi-forge.yaml and docs/openapi-agent.yaml true:
//   1. routes: every route the code serves is documented and every documented operation is
//      served — read from the routers' source (forge-worker/src/forge.rs ROUTES,
//      brh-agent/src/api.rs .route(…)) and checked against a running native forge and agent:
//      a documented operation never answers 404/405, an undocumented method on a documented
//      path answers 405 (or 404), an undocumented path 404;
//   2. responses: real answers of the running servers (successes and refusals) are validated
//      against the documented status codes, content types and schemas, with the small JSON
//      Schema validator below (no dependency but `yaml` to read the documents);
//   3. error codes: every code the Rust code can emit is in a document's ErrorCode enum.
//
// Run: cargo build --workspace --bins, then
//   FORGE_BIN=target/debug/forge node --test tests/e2e/openapi.test.mjs
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { parse as parseYaml } from "yaml";
import { envOf, sleep, uniqueEnv } from "./client.mjs";
import { buildRequest, rawExchange, rawRequest } from "./raw.mjs";
import { canonicalRequest, hmacHex, issueCredential, nodeKey, nodeKeyGen, signAgentRequest, signOperatorForge } from "./sign.mjs";
import { OPERATOR, ROOT, SEAL, startAgent, startTarget } from "./targets.mjs";

const forgeDoc = parseYaml(readFileSync(path.join(ROOT, "docs/openapi-forge.yaml"), "utf8"));
const agentDoc = parseYaml(readFileSync(path.join(ROOT, "docs/openapi-agent.yaml"), "utf8"));
const METHODS = ["get", "post", "put", "delete", "patch"];

// ---------------------------------------------------------------------------------------------
// A JSON Schema validator for the subset the documents use (OpenAPI 3.1 = JSON Schema 2020-12).
// An unknown keyword is an error, so the documents cannot drift into what is not checked.

const ANNOTATIONS = new Set(["description", "default", "example", "examples", "title", "format", "deprecated", "readOnly", "writeOnly", "$comment"]);
const KEYWORDS = new Set([
  "$ref", "type", "enum", "const", "properties", "required", "additionalProperties", "items",
  "minItems", "maxItems", "minLength", "maxLength", "pattern", "minimum", "maximum",
  "allOf", "anyOf", "oneOf", "not",
]);

function resolveRef(doc, ref) {
  assert.ok(ref.startsWith("#/"), `only local $refs: ${ref}`);
  let node = doc;
  for (const part of ref.slice(2).split("/")) {
    node = node?.[part.replace(/~1/g, "/").replace(/~0/g, "~")];
    assert.ok(node !== undefined, `unresolved $ref ${ref}`);
  }
  return node;
}

const typeOf = (v) =>
  v === null ? "null" : Array.isArray(v) ? "array" : Number.isInteger(v) ? "integer" : typeof v;

/** Errors (strings with a JSON pointer) of `value` against `schema`; [] when valid. */
function validate(doc, schema, value, at = "") {
  if (schema === true || schema === undefined) return [];
  if (schema === false) return [`${at}: not allowed`];
  const errs = [];
  for (const k of Object.keys(schema)) {
    if (!KEYWORDS.has(k) && !ANNOTATIONS.has(k)) throw new Error(`schema keyword ${k} at ${at} is not supported by the validator`);
  }
  if (schema.$ref) errs.push(...validate(doc, resolveRef(doc, schema.$ref), value, at));
  if (schema.type !== undefined) {
    const types = [schema.type].flat();
    const t = typeOf(value);
    if (!types.includes(t) && !(t === "integer" && types.includes("number"))) return [...errs, `${at}: ${JSON.stringify(value)?.slice(0, 80)} is ${t}, not ${types.join("|")}`];
  }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) errs.push(`${at}: ${JSON.stringify(value)} not in ${JSON.stringify(schema.enum)}`);
  if ("const" in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) errs.push(`${at}: ${JSON.stringify(value)} is not ${JSON.stringify(schema.const)}`);
  if (typeof value === "string") {
    const n = [...value].length;
    if (schema.minLength !== undefined && n < schema.minLength) errs.push(`${at}: shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && n > schema.maxLength) errs.push(`${at}: longer than ${schema.maxLength}`);
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, "u").test(value)) errs.push(`${at}: ${JSON.stringify(value).slice(0, 80)} does not match ${schema.pattern}`);
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) errs.push(`${at}: ${value} < ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errs.push(`${at}: ${value} > ${schema.maximum}`);
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) errs.push(`${at}: fewer than ${schema.minItems} items`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) errs.push(`${at}: more than ${schema.maxItems} items`);
    if (schema.items !== undefined) value.forEach((v, i) => errs.push(...validate(doc, schema.items, v, `${at}/${i}`)));
  }
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const r of schema.required ?? []) if (!(r in value)) errs.push(`${at}: missing ${r}`);
    const props = schema.properties ?? {};
    for (const [k, v] of Object.entries(value)) {
      if (k in props) errs.push(...validate(doc, props[k], v, `${at}/${k}`));
      else if (schema.additionalProperties === false) errs.push(`${at}: unexpected property ${k}`);
      else if (typeof schema.additionalProperties === "object") errs.push(...validate(doc, schema.additionalProperties, v, `${at}/${k}`));
    }
  }
  for (const s of schema.allOf ?? []) errs.push(...validate(doc, s, value, at));
  if (schema.anyOf && !schema.anyOf.some((s) => validate(doc, s, value, at).length === 0)) errs.push(`${at}: matches none of anyOf`);
  if (schema.oneOf) {
    const results = schema.oneOf.map((s) => validate(doc, s, value, at));
    const n = results.filter((r) => r.length === 0).length;
    if (n !== 1) errs.push(`${at}: matches ${n} of oneOf (${results.map((r) => r[0] ?? "ok").join(" / ")})`);
  }
  if (schema.not && validate(doc, schema.not, value, at).length === 0) errs.push(`${at}: matches a 'not' schema`);
  return errs;
}

/** Every schema in the document, so the validator's keyword check sees them all. */
function walkSchemas(doc, fn) {
  const visit = (node, at) => {
    if (!node || typeof node !== "object") return;
    if (node.schema && typeof node.schema === "object") fn(node.schema, `${at}/schema`);
    for (const [k, v] of Object.entries(node)) if (k !== "schema") visit(v, `${at}/${k}`);
  };
  visit(doc.paths, "#/paths");
  visit(doc.components?.parameters, "#/components/parameters");
  visit(doc.components?.responses, "#/components/responses");
  for (const [name, s] of Object.entries(doc.components?.schemas ?? {})) fn(s, `#/components/schemas/${name}`);
}

// ---------------------------------------------------------------------------------------------
// Checking one response against the document

const deref = (doc, node) => (node?.$ref ? deref(doc, resolveRef(doc, node.$ref)) : node);
const mediaOf = (ct) => (ct ?? "").split(";")[0].trim().toLowerCase();

/** `doc` path template matching a concrete path (`/restart/x` → `/restart/{name}`). */
function templateOf(doc, concrete) {
  const p = concrete.split("?")[0];
  for (const t of Object.keys(doc.paths)) {
    const re = new RegExp(`^${t.replace(/\{[^}]+\}/g, "[^/]+")}$`);
    if (re.test(p)) return t;
  }
  return null;
}

/** Validates a response; records (template, method, status) as exercised. */
function checkResponse(doc, seen, method, concretePath, res) {
  const t = templateOf(doc, concretePath);
  assert.ok(t, `${concretePath} is not a documented path`);
  const op = doc.paths[t][method.toLowerCase()];
  assert.ok(op, `${method} ${t} is not documented`);
  const status = String(res.status);
  const r = deref(doc, op.responses[status] ?? op.responses[`${status[0]}XX`] ?? op.responses.default);
  assert.ok(r, `${method} ${t} answered ${status}, which is not documented: ${res.text?.slice(0, 200)}`);
  seen.add(`${method.toUpperCase()} ${t} ${status}`);
  const media = mediaOf(res.headers.get("content-type"));
  if (!r.content) {
    assert.equal(res.text, "", `${method} ${t} ${status}: documented without a body`);
    return;
  }
  assert.ok(media in r.content, `${method} ${t} ${status}: content-type ${media} is not documented (${Object.keys(r.content)})`);
  const schema = r.content[media].schema;
  if (media === "application/json") {
    assert.ok(res.json !== null || res.text === "null", `${method} ${t} ${status}: body is not JSON: ${res.text?.slice(0, 200)}`);
    const errs = validate(doc, schema, res.json);
    assert.deepEqual(errs, [], `${method} ${t} ${status}: ${res.text?.slice(0, 300)}`);
  } else {
    assert.deepEqual(validate(doc, schema, res.text), [], `${method} ${t} ${status}`);
  }
}

/** Every documented (METHOD template status). */
function documentedStatuses(doc) {
  const out = [];
  for (const [t, item] of Object.entries(doc.paths)) {
    for (const m of METHODS) {
      if (!item[m]) continue;
      for (const s of Object.keys(item[m].responses)) out.push(`${m.toUpperCase()} ${t} ${s}`);
    }
  }
  return out;
}

function documentedOps(doc) {
  const out = [];
  for (const [t, item] of Object.entries(doc.paths)) for (const m of METHODS) if (item[m]) out.push(`${m.toUpperCase()} ${t}`);
  return out.sort();
}

// ---------------------------------------------------------------------------------------------
// Routes as the code declares them

// The forge's routes are one table, shared/src/route.rs (`endpoints!`): `read("/path", …)` is a
// GET, `signed_write("/path", "Body", status, …)` a POST answered with `status`.
function forgeRouteTable() {
  const src = readFileSync(path.join(ROOT, "shared/src/route.rs"), "utf8");
  const block = /\nendpoints! \{([\s\S]*?)\n\}/.exec(src);
  assert.ok(block, "endpoints! not found in shared/src/route.rs");
  const reads = [...block[1].matchAll(/\bread\(\s*"([^"]+)"/g)].map((m) => ({ method: "GET", path: m[1], success: "200" }));
  const writes = [...block[1].matchAll(/\bsigned_write\(\s*"([^"]+)",\s*"\w+",\s*(\d{3}),/g)].map((m) => ({ method: "POST", path: m[1], success: m[2] }));
  assert.ok(reads.length >= 5 && writes.length >= 3, "no routes parsed from shared/src/route.rs");
  return [...reads, ...writes];
}

function forgeRoutesInCode() {
  const routes = forgeRouteTable().map((r) => `${r.method} ${r.path}`);
  // The stream is served at the runtimes' edges (an upgrade), not by Forge::handle.
  const wire = readFileSync(path.join(ROOT, "shared/src/wire.rs"), "utf8");
  const stream = /pub const STREAM_PATH: &str = "([^"]+)";/.exec(wire);
  assert.ok(stream, "STREAM_PATH not found in shared/src/wire.rs");
  return [...routes, `GET ${stream[1]}`].sort();
}

function agentRoutesInCode() {
  const src = readFileSync(path.join(ROOT, "brh-agent/src/api.rs"), "utf8");
  const out = [];
  for (const m of src.matchAll(/\.route\(\s*"([^"]+)",\s*((?:[a-z]+\([a-z_]+\)\.?)+)\s*\)/g)) {
    for (const h of m[2].matchAll(/([a-z]+)\(/g)) out.push(`${h[1].toUpperCase()} ${m[1]}`);
  }
  assert.ok(out.length > 0, "no .route( found in brh-agent/src/api.rs");
  return out.sort();
}

function errorCodesInCode() {
  const wire = readFileSync(path.join(ROOT, "shared/src/wire.rs"), "utf8");
  const codes = [...wire.matchAll(/ErrorCode::[A-Za-z]+ => "([a-z_]+)"/g)].map((m) => m[1]);
  assert.ok(codes.length >= 10, "ErrorCode::as_str not found in shared/src/wire.rs");
  // The container layer's codes are mapped at the edge: `orchestration_code` in api.rs.
  const names = Object.fromEntries([...wire.matchAll(/ErrorCode::([A-Za-z]+) => "([a-z_]+)"/g)].map((m) => [m[1], m[2]]));
  const api = readFileSync(path.join(ROOT, "brh-agent/src/api.rs"), "utf8");
  const start = api.indexOf("pub fn orchestration_code(");
  assert.ok(start >= 0, "orchestration_code not found in brh-agent/src/api.rs");
  const body = api.slice(start, api.indexOf("\n}\n", start));
  const orchCodes = [...body.matchAll(/=> \{?\s*ErrorCode::([A-Za-z]+)/g)].map((m) => names[m[1]]);
  assert.ok(orchCodes.length >= 5 && orchCodes.every(Boolean), "no codes found in orchestration_code");
  return { wire: [...new Set(codes)], orch: [...new Set(orchCodes)] };
}

// ---------------------------------------------------------------------------------------------
// Signed requests

let seq = 0;
const BOOT = `oa${Date.now().toString(36)}`;
const nextNonce = () => `${BOOT}:${++seq}`;

/** A request to the forge, signed with the node's key in the env its body names (or `key`). */
function forgeSigned(t, p, body, { node = "n1", ts = Date.now(), nonce = nextNonce(), key, extra = [], wireBody, ...req } = {}) {
  const sig = hmacHex(key ?? nodeKey(SEAL, envOf(body), node), canonicalRequest("POST", p, node, ts, nonce, body));
  const headers = [["x-brh-node", node], ["x-brh-ts", String(ts)], ["x-brh-nonce", nonce], ["x-brh-sig", sig], ["content-type", "application/json"], ...extra];
  return rawRequest(t.url, { method: "POST", path: p, headers, body: wireBody === undefined ? body : wireBody, ...req });
}

/** A request to an agent's API, signed by `signer`: the top operator, or a scoped credential. */
function agentSigned(agent, signer, p, body = "", { ts = Date.now(), nonce = nextNonce(), ...req } = {}) {
  const h = signAgentRequest(signer, agent.node, "POST", p, signer.name ?? "openapi-test", ts, nonce, body);
  return rawRequest(agent.url, { method: "POST", path: p, headers: [...Object.entries(h), ["content-type", "application/json"]], body, ...req });
}

const hb = (env, extra = {}) => JSON.stringify({ env, priority: 0, draining: false, uptime_s: 1, version: "openapi", ...extra });

// ---------------------------------------------------------------------------------------------

describe("openapi documents", () => {
  test("parse, are OpenAPI 3.1, and use only what the validator checks", () => {
    for (const doc of [forgeDoc, agentDoc]) {
      assert.match(doc.openapi, /^3\.1\./);
      assert.ok(doc.info?.title && doc.paths);
      walkSchemas(doc, (s, at) => {
        // Throws on an unknown keyword or an unresolved $ref.
        const walk = (node, where) => {
          if (!node || typeof node !== "object") return;
          if (node.$ref) resolveRef(doc, node.$ref);
          for (const k of Object.keys(node)) {
            if (!KEYWORDS.has(k) && !ANNOTATIONS.has(k)) throw new Error(`${where}: keyword ${k} is not supported by the validator`);
          }
          for (const k of ["allOf", "anyOf", "oneOf"]) (node[k] ?? []).forEach((n, i) => walk(n, `${where}/${k}/${i}`));
          for (const k of ["items", "not"]) walk(node[k], `${where}/${k}`);
          if (typeof node.additionalProperties === "object") walk(node.additionalProperties, `${where}/additionalProperties`);
          for (const [p, n] of Object.entries(node.properties ?? {})) walk(n, `${where}/properties/${p}`);
        };
        walk(s, at);
      });
      // Every operation documents at least one success and its refusals as JSON errors.
      for (const [t, item] of Object.entries(doc.paths)) {
        for (const m of METHODS) {
          if (!item[m]) continue;
          const codes = Object.keys(item[m].responses);
          const success = (c) => c.startsWith("2") || (item["x-brh-websocket"] && c === "101");
          assert.ok(codes.some(success), `${m} ${t} documents no success`);
          for (const c of codes.filter((c) => /^[45]/.test(c))) {
            const r = deref(doc, item[m].responses[c]);
            assert.ok(r.content?.["application/json"], `${m} ${t} ${c}: errors are JSON`);
          }
        }
      }
    }
  });

  test("the validator itself", () => {
    const doc = { components: { schemas: { Id: { type: "string", pattern: "^[a-z]+$" } } } };
    const s = {
      type: "object",
      required: ["a"],
      additionalProperties: false,
      properties: { a: { $ref: "#/components/schemas/Id" }, b: { oneOf: [{ type: "integer", minimum: 1 }, { type: "null" }] } },
    };
    assert.deepEqual(validate(doc, s, { a: "x", b: null }), []);
    assert.deepEqual(validate(doc, s, { a: "x", b: 2 }), []);
    assert.equal(validate(doc, s, { a: "X" }).length, 1);
    assert.equal(validate(doc, s, { a: "x", c: 1 }).length, 1);
    assert.equal(validate(doc, s, { b: 0 }).length, 2);
    assert.equal(validate(doc, { not: { required: ["y"] } }, { y: 1 }).length, 1);
    assert.throws(() => validate(doc, { unknownKeyword: 1 }, 1));
  });

  test("security: node-key requests to the forge (any key generation), operator requests to the forge's revoke and to the agent (403 without the scope), an open nudge", () => {
    const params = (doc, op) => (op.parameters ?? []).map((p) => deref(doc, p).name);
    const param = (doc, op, name) => (op.parameters ?? []).map((p) => deref(doc, p)).find((p) => p.name === name);
    // The forge's one operator route: Ed25519 by the top operator or a scoped one (`nodes`).
    const FORGE_OPERATOR_ROUTES = ["/federation/revoke"];
    for (const [t, item] of Object.entries(forgeDoc.paths)) {
      if (!item.post) continue;
      if (FORGE_OPERATOR_ROUTES.includes(t)) {
        assert.deepEqual(item.post.tags, ["operators"], `POST ${t}`);
        assert.deepEqual(item.post.security, [{ operatorSignature: [] }, { operatorSignature: [], operatorCertificate: [] }], `POST ${t}`);
        assert.ok(params(forgeDoc, item.post).includes("x-brh-operator"), `POST ${t}`);
        assert.ok(!params(forgeDoc, item.post).includes("x-brh-key-gen"), `POST ${t}: no node key signs it`);
        assert.match(deref(forgeDoc, param(forgeDoc, item.post, "x-brh-sig").schema).pattern, /\{128\}/, `POST ${t}: Ed25519, 128 hex`);
        assert.ok(item.post.responses["401"] && item.post.responses["403"], `POST ${t} documents 401 and 403`);
        continue;
      }
      assert.deepEqual(item.post.security, [{ nodeKey: [] }], `POST ${t}`);
      assert.ok(params(forgeDoc, item.post).includes("x-brh-sig"), `POST ${t}`);
      assert.ok(params(forgeDoc, item.post).includes("x-brh-key-gen"), `POST ${t} takes the key generation`);
      assert.match(deref(forgeDoc, item.post.responses["401"]).description, /`revoked`/, `POST ${t}: 401 names revoked`);
    }
    assert.equal(forgeDoc.components.securitySchemes.nodeKey.name, "x-brh-sig");
    assert.equal(forgeDoc.components.securitySchemes.operatorSignature.name, "x-brh-sig");
    assert.equal(forgeDoc.components.securitySchemes.operatorCertificate.name, "x-brh-operator");
    // Every scope a certificate can carry is in both documents' certificate pattern.
    const cert = (scopes) => `brhop1:alice:dev:${scopes}:1:${"a".repeat(64)}:${"b".repeat(128)}`;
    for (const doc of [forgeDoc, agentDoc]) {
      for (const scopes of ["read", "nodes", "switchover+containers", "read+switchover+containers+nodes"]) {
        assert.deepEqual(validate(doc, { $ref: "#/components/schemas/OperatorCertificate" }, cert(scopes)), [], scopes);
      }
    }
    for (const [t, item] of Object.entries(agentDoc.paths)) {
      if (!item.post) continue;
      if (t === "/federation/nudge") {
        assert.deepEqual(item.post.security, [], "the nudge takes no authentication");
        assert.deepEqual(params(agentDoc, item.post).filter((n) => n.startsWith("x-brh-")), [], "and documents no x-brh-* header");
        assert.equal(item.post.responses["401"], undefined);
        continue;
      }
      assert.deepEqual(item.post.security, [{ operatorSignature: [] }, { operatorSignature: [], operatorCertificate: [] }], `POST ${t}`);
      assert.ok(params(agentDoc, item.post).includes("x-brh-operator"), `POST ${t}`);
      assert.ok(item.post.responses["401"] && item.post.responses["403"], `POST ${t} documents 401 and 403`);
    }
    assert.match(deref(agentDoc, agentDoc.components.parameters.XBrhSig).schema.pattern, /\{128\}/, "Ed25519: 128 hex");
  });

  test("every route in the code is documented, and nothing else", () => {
    assert.deepEqual(documentedOps(forgeDoc), forgeRoutesInCode(), "forge: docs/openapi-forge.yaml vs ROUTES in shared/src/route.rs");
    assert.deepEqual(documentedOps(agentDoc), agentRoutesInCode(), "agent: docs/openapi-agent.yaml vs .route(…) in brh-agent/src/api.rs");
  });

  test("every forge route's success status is the one documented", () => {
    for (const r of forgeRouteTable()) {
      const op = forgeDoc.paths[r.path]?.[r.method.toLowerCase()];
      assert.ok(op, `${r.method} ${r.path} not documented`);
      assert.ok(op.responses[r.success], `${r.method} ${r.path}: success ${r.success} (shared/src/route.rs) not in docs/openapi-forge.yaml`);
    }
  });

  test("every error code the code can emit is in an ErrorCode enum", () => {
    const { wire, orch } = errorCodesInCode();
    const forgeCodes = forgeDoc.components.schemas.ErrorCode.enum;
    const agentCodes = agentDoc.components.schemas.ErrorCode.enum;
    const both = new Set([...forgeCodes, ...agentCodes]);
    assert.deepEqual(wire.filter((c) => !both.has(c)), [], "codes of shared/src/wire.rs missing from both documents");
    assert.deepEqual(orch.filter((c) => !agentCodes.includes(c)), [], "container-layer codes missing from docs/openapi-agent.yaml");
  });
});

/** A WebSocket handshake; resolves with the answer (101 and the socket closed, or a refusal). */
function upgrade(base, p) {
  return new Promise((resolve, reject) => {
    const headers = { connection: "Upgrade", upgrade: "websocket", "sec-websocket-key": randomBytes(16).toString("base64"), "sec-websocket-version": "13" };
    const req = httpRequest(base + p, { headers });
    const answer = (res, text) => resolve({ status: res.statusCode, headers: new Headers(res.headers), text, json: null });
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      answer(res, "");
    });
    req.on("response", (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode, headers: new Headers(res.headers), text, json: JSON.parse(text) });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

describe("openapi vs the running native forge and agents", () => {
  const ctx = {};
  const seenForge = new Set();
  const seenAgent = new Set();
  before(async () => {
    ctx.forge = await startTarget("native", { ttl: 15000, hb: 5000 });
    ctx.env = uniqueEnv("openapi");
    ctx.key = OPERATOR;
    // A scoped operator allowed only switchovers: 403 forbidden on the container routes.
    ctx.switchOnly = issueCredential(OPERATOR, { name: "oa-op", env: ctx.env, scopes: ["switchover"], expiresS: Math.floor(Date.now() / 1000) + 3600, seed: Buffer.alloc(32, 7) });
    ctx.a = await startAgent({ forgeUrl: ctx.forge.url, node: "oa-a", env: ctx.env });
    for (let i = 0; i < 100 && (await (await fetch(`${ctx.a.url}/status`)).json()).role !== "leader"; i++) await sleep(100);
    ctx.b = await startAgent({ forgeUrl: ctx.forge.url, node: "oa-b", env: ctx.env });
    for (let i = 0; i < 100 && (await (await fetch(`${ctx.b.url}/status`)).json()).leader !== "oa-a"; i++) await sleep(100);
  });
  after(async () => {
    await ctx.a?.stop();
    await ctx.b?.stop();
    await ctx.forge?.stop();
  });

  test("forge: documented operations are served; other methods 405, other paths 404", async () => {
    for (const [t, item] of Object.entries(forgeDoc.paths)) {
      const concrete = `${t}?env=${ctx.env}`;
      for (const m of METHODS) {
        const res = await rawRequest(ctx.forge.url, { method: m.toUpperCase(), path: concrete, body: m === "get" ? undefined : "{}" });
        if (item[m]) assert.ok(res.status !== 404 && res.status !== 405, `${m.toUpperCase()} ${t} is documented but answered ${res.status} ${res.text.slice(0, 120)}`);
        else assert.ok(res.status === 405 || res.status === 404, `${m.toUpperCase()} ${t} is not documented but answered ${res.status}`);
      }
      if (item["x-brh-websocket"]) {
        // An upgrade, so no HEAD and no preflight, as documented.
        for (const method of ["HEAD", "OPTIONS"]) assert.equal((await rawRequest(ctx.forge.url, { method, path: concrete })).status, 405, `${method} ${t}`);
        continue;
      }
      // HEAD for every GET, OPTIONS (CORS preflight) everywhere, as the description says.
      if (item.get) assert.equal((await rawRequest(ctx.forge.url, { method: "HEAD", path: concrete })).status, 200, `HEAD ${t}`);
      const pre = await rawRequest(ctx.forge.url, { method: "OPTIONS", path: t, headers: [["origin", "https://x.example"], ["access-control-request-method", "POST"]] });
      assert.ok(pre.status >= 200 && pre.status < 300, `OPTIONS ${t}: ${pre.status}`);
    }
    for (const p of ["/nope", "/federation", "/federation/", "/federation/leaders", "/openapi.json", "/api/health"]) {
      const res = await rawRequest(ctx.forge.url, { path: p });
      assert.equal(res.status, 404, `${p} is not documented but answered ${res.status}`);
      assert.deepEqual(validate(forgeDoc, { $ref: "#/components/schemas/Error" }, res.json), []);
    }
  });

  test("agent: documented operations are served; other methods 405, other paths 404", async () => {
    for (const [t, item] of Object.entries(agentDoc.paths)) {
      const concrete = t.replace(/\{[^}]+\}/g, "x");
      for (const m of METHODS) {
        const res = await rawRequest(ctx.a.url, { method: m.toUpperCase(), path: concrete, body: m === "get" ? undefined : "{}" });
        if (item[m]) assert.ok(res.status !== 404 && res.status !== 405, `${m.toUpperCase()} ${t} is documented but answered ${res.status} ${res.text.slice(0, 120)}`);
        else assert.ok(res.status === 405 || res.status === 404, `${m.toUpperCase()} ${t} is not documented but answered ${res.status}`);
      }
    }
    for (const p of ["/nope", "/federation", "/restart", "/restart/", "/openapi.json", "/api/status"]) {
      const res = await rawRequest(ctx.a.url, { path: p });
      assert.equal(res.status, 404, `${p} is not documented but answered ${res.status}`);
      assert.deepEqual(validate(agentDoc, { $ref: "#/components/schemas/Error" }, res.json), []);
    }
  });

  test("forge: real responses match the documented statuses, content types and schemas", async () => {
    const f = ctx.forge;
    const env = uniqueEnv("oa-forge");
    const check = (method, p, res) => checkResponse(forgeDoc, seenForge, method, p, res);
    const GET = async (p) => check("GET", p, await rawRequest(f.url, { path: p }));

    await GET("/");
    await GET("/health");
    // Signed writes: a leader, a witness, consensus, resign by the wrong and the right node.
    const HB = "/federation/heartbeat";
    check("POST", HB, await forgeSigned(f, HB, hb(env, { api: "http://127.0.0.1:1" }), { node: "n1" }));
    check("POST", HB, await forgeSigned(f, HB, hb(env), { node: "n2" }));
    check("POST", "/federation/consensus", await forgeSigned(f, "/federation/consensus", JSON.stringify({ env, leader: "n1", term: 1, peers: ["n1", "n2"], epoch: 1 }), { node: "n2" }));
    check("POST", "/federation/consensus", await forgeSigned(f, "/federation/consensus", JSON.stringify({ env, leader: "n1" }), { node: "stranger" }));
    check("POST", "/federation/resign", await forgeSigned(f, "/federation/resign", JSON.stringify({ env, term: 1 }), { node: "n2" }));
    check("POST", "/federation/resign", await forgeSigned(f, "/federation/resign", JSON.stringify({ env, term: 1 }), { node: "stranger" }));
    check("POST", "/federation/resign", await forgeSigned(f, "/federation/resign", JSON.stringify({ env, term: 1 }), { node: "n1" }));
    // Refusals.
    const ts = Date.now();
    const nonce = nextNonce();
    check("POST", HB, await forgeSigned(f, HB, hb(env), { node: "n1", ts, nonce }));
    check("POST", HB, await forgeSigned(f, HB, hb(env), { node: "n1", ts, nonce }));
    check("POST", HB, await rawRequest(f.url, { method: "POST", path: HB, body: hb(env) }));
    check("POST", HB, await forgeSigned(f, HB, hb(env), { key: "wrong" }));
    check("POST", HB, await forgeSigned(f, HB, hb(env), { key: nodeKey(SEAL, env, "n2") }));
    check("POST", HB, await forgeSigned(f, HB, hb(env), { ts: Date.now() - 120_000 }));
    check("POST", HB, await forgeSigned(f, HB, "{not json"));
    check("POST", HB, await forgeSigned(f, HB, `{"env":"${env}","pad":"${"x".repeat(70_000)}"}`));
    check("POST", HB, await forgeSigned(f, HB, hb(env), { extra: Array.from({ length: 100 }, (_, i) => [`x-junk-${i}`, "v"]) }));
    check("POST", HB, await forgeSigned(f, HB, "", { wireBody: null, contentLength: null, extra: [["transfer-encoding", "chunked"]], rawBody: "zz\r\n\r\n" }));
    // Revocation (operator-signed) and key generations.
    const REV = "/federation/revoke";
    const expect = async (status, res) => {
      assert.equal(res.status, status, `${res.status} ${res.text?.slice(0, 200)}`);
      return res;
    };
    const opSigned = (body, { signer = OPERATOR, caller = "oa-ops", ts = Date.now(), nonce = nextNonce(), headers = (h) => h } = {}) =>
      rawRequest(f.url, { method: "POST", path: REV, headers: [...headers(Object.entries(signOperatorForge(signer, { path: REV, caller, ts, nonce, body }))), ["content-type", "application/json"]], body });
    const cred = (name, scopes, expiresS = Math.floor(Date.now() / 1000) + 3600) => issueCredential(OPERATOR, { name, env, scopes, expiresS, seed: Buffer.alloc(32, 8) });
    check("POST", HB, await expect(200, await forgeSigned(f, HB, hb(env), { node: "n3" })));
    check("POST", REV, await expect(200, await opSigned(JSON.stringify({ env, node: "n3" }))));
    check("POST", REV, await expect(200, await opSigned(JSON.stringify({ env, node: "n4", generation: 2 }), { signer: cred("oa-nodes", ["nodes"]), caller: "oa-nodes" })));
    check("POST", REV, await expect(400, await opSigned(JSON.stringify({ env, node: "n3", generation: 4294967295 }))));
    check("POST", REV, await expect(400, await opSigned(JSON.stringify({ env, node: "n3", why: "stolen" }))));
    check("POST", REV, await expect(400, await opSigned(JSON.stringify({ env, node: "n3" }), { headers: (h) => h.map(([k, v]) => [k, k === "x-brh-ts" ? `0${v}` : v]) })));
    check("POST", REV, await expect(401, await opSigned(JSON.stringify({ env, node: "n3" }), { headers: (h) => h.filter(([k]) => k !== "x-brh-sig") })));
    check("POST", REV, await expect(401, await forgeSigned(f, REV, JSON.stringify({ env, node: "n3" }), { node: "n3" })));
    check("POST", REV, await expect(401, await opSigned(JSON.stringify({ env, node: "n3" }), { ts: Date.now() - 120_000 })));
    check("POST", REV, await expect(401, await opSigned(JSON.stringify({ env, node: "n3" }), { signer: cred("oa-old", ["nodes"], 1), caller: "oa-old" })));
    check("POST", REV, await expect(403, await opSigned(JSON.stringify({ env, node: "n3" }), { signer: cred("oa-read", ["read", "switchover", "containers"]), caller: "oa-read" })));
    check("POST", REV, await expect(413, await opSigned(`{"env":"${env}","node":"n3","pad":"${"x".repeat(70_000)}"}`)));
    const revoked = await expect(401, await forgeSigned(f, HB, hb(env), { node: "n3" }));
    assert.equal(revoked.json.error.code, "revoked");
    check("POST", HB, revoked);
    check("POST", "/federation/resign", await expect(401, await forgeSigned(f, "/federation/resign", JSON.stringify({ env, term: 1 }), { node: "n3" })));
    check("POST", "/federation/consensus", await expect(401, await forgeSigned(f, "/federation/consensus", JSON.stringify({ env, leader: "n1" }), { node: "n3" })));
    const gen1 = { node: "n3", key: nodeKeyGen(SEAL, env, "n3", 1) };
    check("POST", HB, await expect(400, await forgeSigned(f, HB, hb(env), { ...gen1, extra: [["x-brh-key-gen", "01"]] })));
    check("POST", HB, await expect(401, await forgeSigned(f, HB, hb(env), { ...gen1, extra: [["x-brh-key-gen", "2"]] })));
    check("POST", HB, await expect(200, await forgeSigned(f, HB, hb(env), { ...gen1, extra: [["x-brh-key-gen", "1"]] })));
    check("POST", "/federation/consensus", await expect(202, await forgeSigned(f, "/federation/consensus", JSON.stringify({ env, leader: "n2", term: 2 }), { ...gen1, extra: [["x-brh-key-gen", "1"]] })));
    // Reads.
    await GET(`/federation/leader?env=${env}`);
    await GET(`/federation/leader?env=${env}-vacant`);
    await GET("/federation/leader?env=bad!");
    await GET(`/federation/peers?env=${env}`);
    await GET(`/federation/peers?env=${env}-vacant`);
    await GET("/federation/peers?env=bad!");
    const page = await rawRequest(f.url, { path: `/federation/history?env=${env}&limit=1` });
    check("GET", "/federation/history", page);
    assert.equal(typeof page.json.next, "string", "a first page of one row has a next cursor");
    await GET(`/federation/history?env=${env}&limit=1&cursor=${encodeURIComponent(page.json.next)}`);
    await GET(`/federation/history?env=${env}&cursor=abc`);
    await GET(`/federation/history?env=${env}-vacant`);
    await GET("/federation/envs");
    await GET("/manifest/resolve");
    await GET("/manifest/resolve?target=svc-1");
    await GET("/manifest/resolve?target=bad!");
    await GET("/metrics");
    await GET(`/metrics?env=${env}`);
    // The stream: without the upgrade, with a bad env, with another method, then opened.
    await GET(`/federation/stream?env=${env}`);
    await GET("/federation/stream?env=bad!");
    await GET(`/federation/stream?env=${env}&env=other`);
    const post = await rawRequest(f.url, { method: "POST", path: `/federation/stream?env=${env}`, body: "{}" });
    assert.equal(post.status, 405);
    assert.deepEqual(validate(forgeDoc, { $ref: "#/components/schemas/Error" }, post.json), []);
    assert.equal(post.headers.get("allow"), "GET");
    const opened = await upgrade(f.url, `/federation/stream?env=${env}`);
    assert.equal(opened.status, 101, opened.text);
    check("GET", "/federation/stream", opened);
    // Any method the path does not take: 405 with the Error body.
    const m = await rawRequest(f.url, { method: "PUT", path: HB });
    assert.equal(m.status, 405);
    assert.deepEqual(validate(forgeDoc, { $ref: "#/components/schemas/Error" }, m.json), []);
    assert.ok(m.headers.get("allow"));
  });

  test("agent: real responses match the documented statuses, content types and schemas", async () => {
    const { a, b, key } = ctx;
    const check = (agent, method, p, res) => checkResponse(agentDoc, seenAgent, method, p, res);
    for (const agent of [a, b]) {
      for (const p of ["/health", "/status", "/federation/state", "/events", "/metrics"]) check(agent, "GET", p, await rawRequest(agent.url, { path: p }));
    }
    // A nudge needs no authentication (its x-brh-* headers are not documented, nor read).
    check(a, "POST", "/federation/nudge", await rawRequest(a.url, { method: "POST", path: "/federation/nudge" }));
    check(b, "POST", "/federation/nudge", await rawRequest(b.url, { method: "POST", path: "/federation/nudge", body: "{not json" }));
    check(a, "POST", "/deploy", await agentSigned(a, key, "/deploy", '{"image":"nginx:1.25"}'));
    check(b, "POST", "/deploy", await agentSigned(b, key, "/deploy", '{"image":"nginx:1.25"}'));
    check(a, "POST", "/deploy", await agentSigned(a, key, "/deploy", "{not json"));
    check(a, "POST", "/deploy", await agentSigned(a, key, "/deploy", '{"image":"UPPER/case"}'));
    check(a, "POST", "/deploy", await rawRequest(a.url, { method: "POST", path: "/deploy", body: "{}" }));
    check(a, "POST", "/deploy", await agentSigned(a, key, "/deploy", `{"image":"nginx:1","pad":"${"x".repeat(70_000)}"}`));
    check(b, "POST", "/deploy", await agentSigned(b, key, "/deploy", "{}"));
    for (const action of ["restart", "drain"]) {
      check(a, "POST", `/${action}/x`, await agentSigned(a, key, `/${action}/x`));
      check(b, "POST", `/${action}/x`, await agentSigned(b, key, `/${action}/x`));
      check(a, "POST", `/${action}/%2e%2e`, await agentSigned(a, key, `/${action}/%2e%2e`));
      check(a, "POST", `/${action}/x`, await rawRequest(a.url, { method: "POST", path: `/${action}/x` }));
      check(a, "POST", `/${action}/x`, await agentSigned(a, ctx.switchOnly, `/${action}/x`));
    }
    // Authenticated without the route's scope: 403 forbidden.
    const forbidden = await agentSigned(a, ctx.switchOnly, "/deploy", '{"image":"nginx:1.25"}');
    assert.equal(forbidden.status, 403, forbidden.text);
    check(a, "POST", "/deploy", forbidden);
    check(b, "POST", "/switchover", await agentSigned(b, ctx.switchOnly, "/switchover", "{}"));
    for (const ag of [a, b]) {
      // Leader: 409 not_candidate; witness: 409 not_leader. Then a body that is not one.
      check(ag, "POST", "/switchover", await agentSigned(ag, key, "/switchover", '{"to":"nobody"}'));
      check(ag, "POST", "/switchover", await agentSigned(ag, key, "/switchover", '{"to":5}'));
    }
    check(a, "POST", "/switchover", await rawRequest(a.url, { method: "POST", path: "/switchover", body: "{}" }));
    // A real one, from whichever leads to the other: 200, and back.
    for (let i = 0; i < 2; i++) {
      const leader = (await rawRequest(a.url, { path: "/status" })).json.role === "leader" ? a : b;
      const res = await agentSigned(leader, key, "/switchover", "{}");
      assert.equal(res.status, 200, JSON.stringify(res.json));
      check(leader, "POST", "/switchover", res);
      await new Promise((r) => setTimeout(r, 300));
    }
    check(a, "GET", "/health", await rawRequest(a.url, { path: "/health", headers: Array.from({ length: 100 }, (_, i) => [`x-junk-${i}`, "v"]) }));
    const m = await rawRequest(a.url, { method: "PUT", path: "/deploy" });
    assert.equal(m.status, 405);
    assert.deepEqual(validate(agentDoc, { $ref: "#/components/schemas/Error" }, m.json), []);
  });

  test("body read timeout: 408 on both servers, as documented", async () => {
    const partial = (url, p, headers) =>
      rawExchange(
        url,
        async (sock) => {
          sock.write(buildRequest({ method: "POST", path: p, headers, contentLength: 100 }));
          sock.write("{");
        },
        { timeoutMs: 15_000 },
      );
    const HB = "/federation/heartbeat";
    const fts = Date.now();
    const fn = nextNonce();
    const fsig = hmacHex(nodeKey(SEAL, "dev", "n1"), canonicalRequest("POST", HB, "n1", fts, fn, "{"));
    const ats = Date.now();
    const an = nextNonce();
    const ah = signAgentRequest(ctx.key, ctx.a.node, "POST", "/deploy", "openapi-test", ats, an, "{");
    const [fr, ar] = await Promise.all([
      partial(ctx.forge.url, HB, [["x-brh-node", "n1"], ["x-brh-ts", String(fts)], ["x-brh-nonce", fn], ["x-brh-sig", fsig]]),
      partial(ctx.a.url, "/deploy", Object.entries(ah)),
    ]);
    checkResponse(forgeDoc, seenForge, "POST", HB, fr);
    checkResponse(agentDoc, seenAgent, "POST", "/deploy", ar);
    assert.equal(fr.status, 408, `forge: ${fr.status} ${fr.text}`);
    assert.equal(ar.status, 408, `agent: ${ar.status} ${ar.text}`);
  });

  test("every documented operation was exercised; documented statuses not seen are listed", () => {
    for (const [doc, seen, name] of [
      [forgeDoc, seenForge, "forge"],
      [agentDoc, seenAgent, "agent"],
    ]) {
      const ops = documentedOps(doc);
      const exercised = new Set([...seen].map((s) => s.split(" ").slice(0, 2).join(" ")));
      assert.deepEqual(ops.filter((o) => !exercised.has(o)), [], `${name}: operations never exercised`);
      const unseen = documentedStatuses(doc).filter((s) => !seen.has(s));
      console.log(`# ${name}: ${seen.size} documented responses exercised; not exercised here (need faults or containers): ${unseen.length}`);
    }
  });
});
