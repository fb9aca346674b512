// Raw HTTP/1.1 over node:net, for the hostile suites: exact bytes on the wire (duplicate
// headers, non-UTF-8 values, malformed chunked bodies, lying content-lengths, half-sent
// headers), which fetch and node:http normalize or refuse to send. Loopback only.
import net from "node:net";

const CRLF = "\r\n";

/** `{ host, port }` of an `http://host:port` base URL. */
export function hostPort(baseUrl) {
  const u = new URL(baseUrl);
  return { host: u.hostname, port: Number(u.port || 80) };
}

const asBuf = (v) => (Buffer.isBuffer(v) ? v : Buffer.from(String(v), "utf8"));

/**
 * The bytes of one request. `headers` is an array of `[name, value]` (sent in order, duplicates
 * kept; a value may be a Buffer for exact bytes) or an object. `host` and `connection: close`
 * are added unless present. Body framing:
 *   - `chunked: true` (or an array of chunks): `transfer-encoding: chunked`, well-formed chunks;
 *   - `contentLength`: a number or string sent as is (may lie); `null` sends none;
 *   - by default `content-length` is the body's length when there is a body.
 * `rawBody` (Buffer) is appended verbatim after the head, for hand-made framing.
 */
export function buildRequest({
  method = "GET",
  path = "/",
  headers = [],
  body,
  chunked = false,
  contentLength,
  rawBody,
  version = "HTTP/1.1",
  host = "127.0.0.1",
  close = true,
} = {}) {
  const list = Array.isArray(headers) ? [...headers] : Object.entries(headers);
  const has = (n) => list.some(([k]) => String(k).toLowerCase() === n);
  if (!has("host")) list.unshift(["host", host]);
  if (close && !has("connection")) list.push(["connection", "close"]);
  let bodyBuf = body === undefined || body === null ? null : asBuf(body);
  let chunks = null;
  if (chunked) {
    chunks = Array.isArray(chunked) ? chunked.map(asBuf) : bodyBuf ? [bodyBuf] : [];
    list.push(["transfer-encoding", "chunked"]);
  } else if (contentLength !== undefined) {
    if (contentLength !== null) list.push(["content-length", String(contentLength)]);
  } else if (bodyBuf) {
    list.push(["content-length", String(bodyBuf.length)]);
  }
  const parts = [asBuf(`${method} `), asBuf(path), asBuf(` ${version}${CRLF}`)];
  for (const [k, v] of list) parts.push(asBuf(`${k}: `), asBuf(v), asBuf(CRLF));
  parts.push(asBuf(CRLF));
  if (chunks) {
    for (const c of chunks) {
      if (c.length === 0) continue;
      parts.push(asBuf(`${c.length.toString(16)}${CRLF}`), c, asBuf(CRLF));
    }
    parts.push(asBuf(`0${CRLF}${CRLF}`));
  } else if (bodyBuf) {
    parts.push(bodyBuf);
  }
  if (rawBody) parts.push(asBuf(rawBody));
  return Buffer.concat(parts);
}

/** Parses one HTTP/1.x response from `buf`; `null` while incomplete. */
function parseResponse(buf, { head = false, closed = false } = {}) {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) return null;
  const lines = buf.subarray(0, end).toString("latin1").split(CRLF);
  const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!m) return { status: -1, statusLine: lines[0], rawHeaders: [], body: Buffer.alloc(0), consumed: buf.length };
  const status = Number(m[2]);
  const rawHeaders = lines.slice(1).map((l) => {
    const i = l.indexOf(":");
    return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()];
  });
  const get = (n) => rawHeaders.find(([k]) => k === n)?.[1];
  const rest = buf.subarray(end + 4);
  const noBody = head || status === 204 || status === 304 || (status >= 100 && status < 200);
  if (noBody) return { status, statusLine: lines[0], rawHeaders, body: Buffer.alloc(0), consumed: end + 4 };
  const te = get("transfer-encoding");
  if (te && /chunked/i.test(te)) {
    const out = [];
    let i = 0;
    for (;;) {
      const le = rest.indexOf(CRLF, i);
      if (le < 0) return closed ? { status, statusLine: lines[0], rawHeaders, body: Buffer.concat(out), consumed: buf.length, truncated: true } : null;
      const size = parseInt(rest.subarray(i, le).toString("latin1").split(";")[0], 16);
      if (Number.isNaN(size)) return { status, statusLine: lines[0], rawHeaders, body: Buffer.concat(out), consumed: buf.length, badChunk: true };
      if (size === 0) {
        const trailerEnd = rest.indexOf("\r\n\r\n", le);
        if (trailerEnd < 0 && !closed) return null;
        return { status, statusLine: lines[0], rawHeaders, body: Buffer.concat(out), consumed: end + 4 + (trailerEnd < 0 ? rest.length : trailerEnd + 4) };
      }
      if (rest.length < le + 2 + size + 2) return closed ? { status, statusLine: lines[0], rawHeaders, body: Buffer.concat(out), consumed: buf.length, truncated: true } : null;
      out.push(rest.subarray(le + 2, le + 2 + size));
      i = le + 2 + size + 2;
    }
  }
  const cl = get("content-length");
  if (cl !== undefined) {
    const n = Number(cl);
    if (rest.length < n) return closed ? { status, statusLine: lines[0], rawHeaders, body: rest, consumed: buf.length, truncated: true } : null;
    return { status, statusLine: lines[0], rawHeaders, body: rest.subarray(0, n), consumed: end + 4 + n };
  }
  // No framing: the body runs to the end of the connection.
  return closed ? { status, statusLine: lines[0], rawHeaders, body: rest, consumed: buf.length } : null;
}

function shape(parsed, extra) {
  const headers = new Headers();
  for (const [k, v] of parsed.rawHeaders) {
    try {
      headers.append(k, v);
    } catch {
      // a header Headers will not hold; still in rawHeaders
    }
  }
  const text = parsed.body.toString("utf8");
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: parsed.status, statusLine: parsed.statusLine, headers, rawHeaders: parsed.rawHeaders, text, json, ...extra };
}

/**
 * Sends `data` (a Buffer, or an array of Buffers/strings written in turn, or an async
 * `(socket) => void` writer) on a fresh connection and resolves with the first response:
 * `{ status, headers (Headers), rawHeaders, text, json, ms, closedBeforeResponse }`. A server
 * that answers before it has read everything (413, 401 before the body) is fine: write errors
 * after that are ignored. `status` is 0 when the connection closed (or timed out) without a
 * response; `timedOut` tells which.
 */
export function rawExchange(baseUrl, data, { timeoutMs = 10_000, head = false } = {}) {
  const { host, port } = hostPort(baseUrl);
  const t0 = Date.now();
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (r) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ ms: Date.now() - t0, ...r });
    };
    const timer = setTimeout(() => {
      const p = parseResponse(buf, { head, closed: true });
      if (p) finish(shape(p, { timedOut: true, truncated: p.truncated }));
      else finish({ status: 0, timedOut: true, text: buf.toString("latin1"), json: null, headers: new Headers(), rawHeaders: [] });
    }, timeoutMs);
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      const p = parseResponse(buf, { head });
      if (p) finish(shape(p, {}));
    });
    sock.on("error", () => {
      // EPIPE/ECONNRESET after an early answer: whatever arrived is judged on close.
    });
    sock.on("close", () => {
      const p = parseResponse(buf, { head, closed: true });
      if (p) finish(shape(p, { truncated: p.truncated }));
      else finish({ status: 0, closedBeforeResponse: true, text: buf.toString("latin1"), json: null, headers: new Headers(), rawHeaders: [] });
    });
    sock.on("connect", async () => {
      try {
        if (typeof data === "function") await data(sock);
        else {
          for (const part of Array.isArray(data) ? data : [data]) {
            if (done || sock.destroyed) break;
            if (!sock.write(asBuf(part))) await new Promise((r) => sock.once("drain", r));
          }
        }
      } catch {
        // the server closed first; judged on close
      }
    });
  });
}

/** `buildRequest` + `rawExchange`. */
export function rawRequest(baseUrl, req, opts = {}) {
  return rawExchange(baseUrl, buildRequest(req), { head: req.method === "HEAD", ...opts });
}

/**
 * Opens `n` connections and writes `partial` on each (e.g. half a request head), then holds
 * them. Returns `{ opened, refused, closedCount(), closedWithin(ms), answers(), release() }`:
 * `closedCount` counts connections the server ended (FIN or RST) — times are measured from
 * when all were opened; `refused` those that failed to connect; `answers()` the statuses and
 * parsed bodies of whatever the server wrote on them (e.g. `503 busy`).
 */
export async function stallConnections(baseUrl, n, partial) {
  const { host, port } = hostPort(baseUrl);
  const socks = [];
  const closedAt = [];
  const received = [];
  let refused = 0;
  let released = false;
  let t0 = Date.now();
  await Promise.all(
    Array.from(
      { length: n },
      (_, i) =>
        new Promise((resolve) => {
          const s = net.connect({ host, port });
          received[i] = Buffer.alloc(0);
          let settled = false;
          const settle = () => {
            if (!settled) {
              settled = true;
              resolve();
            }
          };
          s.on("connect", () => {
            socks.push(s);
            s.write(asBuf(partial));
            settle();
          });
          s.on("data", (d) => {
            received[i] = Buffer.concat([received[i], d]);
          });
          s.on("error", () => {
            if (!settled) refused += 1;
            settle();
          });
          s.on("close", () => {
            if (!released) closedAt.push(Date.now() - t0);
            settle();
          });
          setTimeout(settle, 5000);
        }),
    ),
  );
  t0 = Date.now();
  return {
    opened: socks.length,
    get refused() {
      return refused;
    },
    closedCount: () => closedAt.length,
    closedWithin: (ms) => closedAt.filter((t) => t <= ms).length,
    answers: () =>
      received
        .filter((b) => b.length > 0)
        .map((b) => {
          const p = parseResponse(b, { closed: true });
          return p ? shape(p, {}) : { status: 0, text: b.toString("latin1"), json: null };
        }),
    release: () => {
      released = true;
      for (const s of socks) s.destroy();
    },
  };
}
