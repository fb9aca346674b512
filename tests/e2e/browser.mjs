// A real browser for page tests: Debian's chromium (/usr/bin/chromium, scripts/setup-browser.sh)
// driven by playwright-core, which never downloads a browser of its own. Plus a loopback HTTP
// proxy, so a page keeps one origin while the forge behind it stops, restarts or moves port.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";

process.env.PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = "1";

export const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";

// Headless chromium offline: without the background-networking flags it keeps trying closed
// network connections.
const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Headless chromium with a new, empty --user-data-dir (removed by `close`). Resolves with
 * `{ context, close() }`; `context.newPage()` opens pages (desktop 1280×800 by default).
 */
export async function launchBrowser({ viewport = { width: 1280, height: 800 } } = {}) {
  const { chromium } = await import("playwright-core");
  const dir = mkdtempSync(path.join(tmpdir(), "brh-chromium-"));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport,
    timezoneId: "UTC",
    locale: "en-GB",
  });
  return {
    context,
    close: async () => {
      await context.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A loopback reverse proxy to `target` (an http:// base URL). `setTarget(url)` moves it to
 * another upstream; while the upstream refuses, the client's connection is dropped, which a
 * browser sees exactly like an unreachable forge ("Failed to fetch").
 */
export async function startProxy(target) {
  let upstream = new URL(target);
  const sockets = new Set();
  const server = createServer((req, res) => {
    const up = httpRequest(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: upstream.host },
      },
      (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      },
    );
    up.on("error", () => res.socket?.destroy());
    req.pipe(up);
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    setTarget: (url) => {
      upstream = new URL(url);
    },
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
