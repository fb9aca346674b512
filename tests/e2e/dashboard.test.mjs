// The dashboard page (GET /) in a real browser (headless Debian chromium via playwright-core),
// against the native forge and the Worker in workerd, at the fast profile (heartbeat 1 s,
// lease 3 s). Three nodes heartbeat (signed, from JS); the page must follow, without reload:
// the leader, a failover after the leader is killed, a handover after a resign, the timeline,
// dead peers greyed; a stopped forge shows the unreachable banner with the data greyed, and
// recovery clears it; `?env=` is honoured from the first request; a phone viewport does not
// overflow. A second suite feeds the page synthetic answers (vacancies, a peer past the forget
// interval, a forge clock an hour off) that a live forge cannot produce within seconds.
//
// The page is reached through a loopback proxy, so it keeps its origin while the forge behind
// it stops and restarts on another port. BRH_SCREENSHOTS=1 writes docs/dashboard*.png (from the
// durable-object target when it runs, else the first one). E2E_TARGETS selects targets.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { CHROMIUM, launchBrowser, startProxy } from "./browser.mjs";
import { Agent, get, sleep, uniqueEnv } from "./client.mjs";
import { KINDS, ROOT, startTarget } from "./targets.mjs";

const only = process.env.E2E_TARGETS ? process.env.E2E_TARGETS.split(",") : KINDS;
const SHOTS = process.env.BRH_SCREENSHOTS === "1";
const SHOT_KIND = only.includes("durable-object") ? "durable-object" : only[0];
const TTL = 3000;
const HB = 1000;
const ABS_TIME = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC[+-]\d{1,2}(:\d{2})?$/;

/** One node heartbeating every HB ms until stopped ("killed": it just goes silent). */
class Beater {
  constructor(target, node, env, { priority = 0 } = {}) {
    this.agent = new Agent(target, node, { priority });
    this.env = env;
    this.extra = { version: "0.1.0-e2e", api: `http://10.0.0.${node.slice(-1)}:7878` };
    this.on = false;
  }
  beat() {
    return this.agent.heartbeat(this.env, { extra: this.extra });
  }
  start() {
    this.on = true;
    this.loop = (async () => {
      while (this.on) {
        const t0 = Date.now();
        await this.beat().catch(() => {});
        await new Promise((r) => {
          this.wake = r;
          this.timer = setTimeout(r, Math.max(0, HB - (Date.now() - t0)));
        });
      }
    })();
    return this;
  }
  async stop() {
    this.on = false;
    clearTimeout(this.timer);
    this.wake?.();
    await this.loop;
  }
}

const shot = (page, name, opts = {}) =>
  page.screenshot({ path: path.join(ROOT, "docs", name), ...opts });

let browser;
before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: run scripts/setup-browser.sh`);
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** Fails the test on any uncaught error in the page. */
function watch(page) {
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  return errors;
}

for (const kind of only) {
  describe(`dashboard ${kind}`, () => {
    let t, proxy, page, pageErrors;
    const env = uniqueEnv("dash");
    const beaters = [];
    const beater = (node, e, opts) => {
      const b = new Beater(t, node, e, opts);
      beaters.push(b);
      return b;
    };

    before(async () => {
      t = await startTarget(kind, { ttl: TTL, hb: HB });
      proxy = await startProxy(t.url);
    });
    after(async () => {
      await Promise.all(beaters.map((b) => b.stop()));
      await page?.close().catch(() => {});
      await proxy?.close();
      await t?.stop();
    });

    test("leader, peers, then failover, handover and timeline without reload", async () => {
      // n1 joins first and leads; n2 (priority 1) is the best witness, then n3.
      const n1 = beater("brh-node-01", env);
      assert.equal((await n1.beat()).json.leader, "brh-node-01");
      n1.start();
      const n2 = beater("brh-node-02", env, { priority: 1 }).start();
      const n3 = beater("brh-node-03", env).start();

      page = await browser.context.newPage();
      pageErrors = watch(page);
      await page.goto(`${proxy.url}/?env=${env}`);
      await page.evaluate(() => {
        window.__sameDocument = true;
      });
      await page.locator('#leader[data-leader="brh-node-01"]').waitFor({ timeout: 5000 });
      await page.locator('#peers tr[data-alive="true"]').nth(2).waitFor({ timeout: 5000 });
      await page.waitForFunction(() => document.getElementById("alive").textContent === "3 of 3 peers alive", null, { timeout: 3000 });
      assert.equal(await page.getAttribute('#history tr[data-term="1"]', "data-kind"), "elected");
      assert.match((await page.textContent('#history tr[data-term="1"] time')).trim(), ABS_TIME);

      // An honest countdown: a lease renewed every second never leaves "ok" (one ttl of samples).
      const levels = new Set();
      for (let i = 0; i < 30; i++) {
        levels.add(await page.getAttribute("#countdown", "data-level"));
        await sleep(100);
      }
      assert.deepEqual([...levels], ["ok"], "a renewing lease is never shown in danger");
      const left = parseFloat(await page.textContent("#countdown"));
      assert.ok(left > 0 && left <= TTL / 1000, `countdown ${left} s within (0, ttl]`);

      // The leader is killed: after its lease expires n2 leads; the page follows by itself.
      await n1.stop();
      await page.locator('#leader[data-leader="brh-node-02"]').waitFor({ timeout: TTL + 6000 });
      const failover = page.locator('#history tr[data-term="2"]');
      await failover.waitFor({ timeout: 3000 });
      assert.equal(await failover.getAttribute("data-kind"), "failover");
      assert.match(await failover.textContent(), /failover after expiry/);
      assert.match(await failover.textContent(), /brh-node-01/, "names the previous leader");
      assert.match(await page.textContent('#history tr[data-term="1"]'), /then expired/);
      await page.locator('#timeline .seg[data-node="brh-node-02"][data-term="2"][data-current="true"]').waitFor({ timeout: 3000 });
      await page.locator('#timeline .seg[data-node="brh-node-01"][data-term="1"][data-current="false"]').waitFor();
      await page.locator('#timeline .mark[data-kind="failover"][data-term="2"]').waitFor();
      if (SHOTS) await sleep(3000); // longer tenures make a more readable screenshot
      // The dead node is greyed.
      const dead = page.locator('#peers tr[data-node="brh-node-01"]');
      await page.locator('#peers tr[data-node="brh-node-01"][data-state="dead"]').waitFor({ timeout: TTL + 3000 });
      assert.equal(await dead.getAttribute("data-alive"), "false");
      const opacity = await dead.locator("td").first().evaluate((e) => Number(getComputedStyle(e).opacity));
      assert.ok(opacity < 1, `a dead peer is greyed (opacity ${opacity})`);

      // A planned resign: n2 stops and hands over at once, to n3.
      const view = (await get(t, `/federation/leader?env=${env}`)).json;
      assert.equal(view.leader, "brh-node-02");
      await n2.stop();
      const r = await n2.agent.post("/federation/resign", { env, term: view.term, leaving: true });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.leader, "brh-node-03");
      await page.locator('#leader[data-leader="brh-node-03"]').waitFor({ timeout: 5000 });
      const handover = page.locator(`#history tr[data-term="${view.term + 1}"]`);
      await handover.waitFor({ timeout: 3000 });
      assert.equal(await handover.getAttribute("data-kind"), "handover");
      assert.match(await handover.textContent(), /handover after resign/);
      assert.match(await handover.textContent(), /brh-node-02/);
      assert.match(await page.textContent(`#history tr[data-term="${view.term}"]`), /then resigned/);
      await page.locator(`#timeline .mark[data-kind="handover"][data-term="${view.term + 1}"]`).waitFor({ timeout: 3000 });
      await page.locator(`#timeline .seg[data-node="brh-node-03"][data-current="true"]`).waitFor();
      assert.equal(await page.getAttribute("#banner", "hidden"), "", "no banner while the forge answers");
      assert.equal(await page.evaluate(() => window.__sameDocument), true, "no reload happened");
      if (SHOTS && kind === SHOT_KIND) {
        await sleep(1500);
        await shot(page, "dashboard.png");
      }
      assert.deepEqual(pageErrors, []);
    });

    // kv mode keeps a leaving node alive (and electable) after its resign: plan_save in
    // forge-worker/src/cloudflare/kv/layout.rs skips the peer key because peer_durably_equal
    // ignores `leaving`, so /federation/peers says alive=true until its last beat is a ttl old.
    test("a node that resigned to leave is shown as left, greyed", async () => {
      const row = page.locator('#peers tr[data-node="brh-node-02"]');
      await page.locator('#peers tr[data-node="brh-node-02"][data-state="left"]').waitFor({ timeout: 3000 });
      assert.equal(await row.getAttribute("data-alive"), "false");
      assert.equal(await page.locator('#peers tr[data-node="brh-node-02"][data-state="left"]').count(), 1);
    });

    test("?env= is honoured from the first request and kept in the URL on change", async () => {
      const env2 = uniqueEnv("prod");
      const p1 = beater("brh-node-09", env2);
      await p1.beat();
      p1.start();
      const p = await browser.context.newPage();
      const errors = watch(p);
      const asked = [];
      p.on("request", (req) => {
        const u = new URL(req.url());
        if (/^\/federation\/(leader|peers|history)$/.test(u.pathname)) asked.push(u.searchParams.get("env"));
      });
      await p.goto(`${proxy.url}/?env=${env2}`, { waitUntil: "domcontentloaded" });
      assert.equal(await p.inputValue("#env"), env2, "the env selector shows ?env= before any answer");
      await p.locator('#leader[data-leader="brh-node-09"]').waitFor({ timeout: 5000 });
      assert.ok(asked.length >= 2);
      assert.deepEqual([...new Set(asked)], [env2], "every request of the page was for ?env=");

      // The user picks the other env: the page shows it and the URL says so (a reload keeps it).
      await p.locator(`#env option[value="${env}"]`).waitFor({ state: "attached", timeout: 16000 });
      asked.length = 0;
      await p.selectOption("#env", env);
      await p.locator('#leader[data-leader="brh-node-03"]').waitFor({ timeout: 5000 });
      assert.equal(new URL(p.url()).searchParams.get("env"), env);
      await sleep(300);
      assert.deepEqual([...new Set(asked)], [env], "after the change only the new env is read");
      await p.reload();
      await p.locator('#leader[data-leader="brh-node-03"]').waitFor({ timeout: 5000 });
      await p1.stop();
      await p.close();
      assert.deepEqual(errors, []);
    });

    test("phone viewport 390×844: no horizontal overflow, leader visible", async () => {
      const p = await browser.context.newPage();
      const errors = watch(p);
      await p.setViewportSize({ width: 390, height: 844 });
      await p.goto(`${proxy.url}/?env=${env}`);
      await p.locator('#leader[data-leader="brh-node-03"]').waitFor({ timeout: 5000 });
      await p.locator("#timeline .seg").first().waitFor();
      await p.locator('#peers tr[data-node="brh-node-01"]').waitFor();
      const m = await p.evaluate(() => ({
        inner: window.innerWidth,
        doc: document.documentElement.scrollWidth,
        body: document.body.scrollWidth,
        // the wide tables scroll inside their cards instead
        tables: [...document.querySelectorAll(".scroll")].map((e) => [e.scrollWidth, e.clientWidth]),
        overflowing: [...document.querySelectorAll("body *")]
          .filter((e) => !e.closest(".scroll") && e.getBoundingClientRect().right > window.innerWidth + 0.5)
          .map((e) => e.tagName + (e.id ? "#" + e.id : "") + "." + e.className),
      }));
      assert.equal(m.inner, 390);
      assert.ok(m.doc <= 390 && m.body <= 390, `page wider than the phone: ${JSON.stringify(m)}`);
      assert.deepEqual(m.overflowing, [], "no element sticks out of the viewport");
      assert.ok(m.tables.some(([sw, cw]) => sw > cw), "the tables scroll inside their cards");
      const box = await p.locator("#leader").boundingBox();
      assert.ok(box && box.x >= 0 && box.x + box.width <= 390 && box.y + box.height <= 844, "leader in view");
      if (SHOTS && kind === SHOT_KIND) await shot(p, "dashboard-phone.png");
      await p.close();
      assert.deepEqual(errors, []);
    });

    test("forge stopped: banner, data greyed; recovery clears it", async () => {
      // Restart the forge: the old process stops; the proxy still points at it until told.
      await t.restart();
      const banner = page.locator("#banner");
      await banner.waitFor({ state: "visible", timeout: 5000 });
      assert.match(
        (await banner.textContent()).replace(/\s+/g, " "),
        /^Forge unreachable since \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC\+0 — data below is \d+ s old \(last answer \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC\+0\)\./,
      );
      assert.equal(await page.getAttribute("#main", "data-stale"), "true");
      assert.match(await page.$eval("#main", (e) => getComputedStyle(e).filter), /grayscale\(1\)/);
      assert.equal(await page.getAttribute("#countdown", "data-level"), "unknown");
      // The age keeps counting while nothing answers.
      await page.waitForFunction(() => /data below is [2-9]\d* s old/.test(document.getElementById("banner").textContent), null, { timeout: 5000 });
      await page.locator("#timeline .nodata").waitFor({ timeout: 3000 });
      if (SHOTS && kind === SHOT_KIND) await shot(page, "dashboard-unreachable.png");

      proxy.setTarget(t.url);
      await banner.waitFor({ state: "hidden", timeout: 5000 });
      assert.equal(await page.getAttribute("#main", "data-stale"), "false");
      await page.locator('#leader[data-leader="brh-node-03"]').waitFor({ timeout: TTL + 5000 });
      assert.equal(await page.evaluate(() => window.__sameDocument), true, "recovered without reload");
      assert.deepEqual(pageErrors, []);
    });
  });
}

describe("dashboard page logic (synthetic answers)", () => {
  const HTML = readFileSync(path.join(ROOT, "forge-worker/src/dashboard.html"), "utf8");

  /** A page whose forge answers `answers(pathname)` (JSON) from a fake origin. */
  async function fakeForge(answers, { delayMs = 0 } = {}) {
    const p = await browser.context.newPage();
    const errors = watch(p);
    await p.route("http://forge.test/**", async (route) => {
      const u = new URL(route.request().url());
      if (u.pathname === "/") return route.fulfill({ contentType: "text/html; charset=utf-8", body: HTML });
      const json = answers(u.pathname);
      if (delayMs) await sleep(delayMs);
      return json ? route.fulfill({ json }) : route.fulfill({ status: 404, json: { error: { code: "not_found", message: "no" } } });
    });
    return { p, errors };
  }

  test("with the stream live, a peer alive at the last read is shown alive as of that read, not quieter and quieter", async () => {
    const t0 = Date.now();
    let reads = 0;
    const { p, errors } = await fakeForge((path) => {
      const t = Date.now();
      if (path === "/federation/envs") return { envs: ["dev"] };
      if (path === "/federation/leader") {
        reads += 1;
        return { env: "dev", leader: "n1", term: 1, lease: { holder: "n1", term: 1, expires_at_ms: t + TTL, ttl_ms: TTL }, epoch: 0, issued_at_ms: t, peers_alive: 2, mode: "native", heartbeat_interval_ms: HB, lease_ttl_ms: TTL, sig: "" };
      }
      // Both beat every second: each was heard 400 ms before this answer.
      if (path === "/federation/peers")
        return { env: "dev", peers: ["n1", "n2"].map((node) => ({ node, alive: true, last_seen_ms: t - 400, joined_at_ms: t0 - 60000, priority: 0, draining: false, uptime_s: 60, version: "v" })) };
      if (path === "/federation/history") return { env: "dev", history: [{ term: 1, leader: "n1", reason: "elected", at_ms: t0 - 60000 }], next: null };
    });
    // The stream opens (a mock socket that stays up and pushes nothing): the page then reads
    // every 2 minutes instead of every second.
    await p.routeWebSocket(/\/federation\/stream/, () => {});
    await p.goto("http://forge.test/?env=dev");
    const cell = () => p.textContent('#peers tr[data-node="n2"] td:nth-child(4)');
    await p.waitForFunction(() => /Live: the forge pushes/.test(document.querySelector("footer").textContent), null, { timeout: 5000 });
    const readsLive = reads;
    // Four seconds on: no new read. Anything that redraws the page (here a resize) must not
    // show n2 as quiet for as long as the page has not asked ("4 s ago" and growing), but as
    // alive as of the read.
    await sleep(4000);
    await p.setViewportSize({ width: 1100, height: 900 });
    assert.ok(reads <= readsLive + 1, `the page kept polling (${reads - readsLive} reads) while live`);
    assert.match(await cell(), /alive at the last read \([3-9](\.\d)? s ago\)$/);
    assert.equal(await p.getAttribute('#peers tr[data-node="n2"]', "data-state"), "alive");
    assert.deepEqual(errors, []);
    await p.close();
  });

  test("vacancies, gaps, the forget interval and a forge clock an hour ahead", async () => {
    const SKEW = 3600000; // the forge's clock runs an hour ahead of the browser's
    const now = () => Date.now() + SKEW;
    const T = now();
    const history = [
      { term: 3, leader: null, reason: "expired", at_ms: T - 5000 },
      { term: 3, leader: "c", reason: "resigned", at_ms: T - 20000 },
      { term: 2, leader: null, reason: "resigned", at_ms: T - 20000 },
      { term: 2, leader: "b", reason: "expired", at_ms: T - 30000 },
      { term: 1, leader: null, reason: "expired", at_ms: T - 40000 },
      { term: 1, leader: "a", reason: "elected", at_ms: T - 60000 },
    ];
    const peers = (t) => [
      { node: "a", alive: false, last_seen_ms: t - 2 * 3600000, joined_at_ms: t - 3 * 3600000, priority: 0, draining: false, uptime_s: 1, version: "v" },
      { node: "b", alive: false, last_seen_ms: T - 20000, joined_at_ms: t - 3600000, priority: 0, draining: false, uptime_s: 1, version: "v" },
      { node: "c", alive: false, last_seen_ms: T - 8000, joined_at_ms: t - 3600000, priority: 0, draining: false, uptime_s: 1, version: "v" },
      { node: "d", alive: false, last_seen_ms: t - 600000, joined_at_ms: t - 3600000, priority: 0, draining: false, uptime_s: 1, version: "v" },
    ];
    const vacant = await fakeForge((p) => {
      const t = now();
      if (p === "/federation/envs") return { envs: ["dev"] };
      if (p === "/federation/leader")
        return { env: "dev", leader: null, term: 3, lease: null, epoch: 0, issued_at_ms: t, peers_alive: 0, mode: "native", heartbeat_interval_ms: HB, lease_ttl_ms: TTL, sig: "" };
      if (p === "/federation/peers") return { env: "dev", peers: peers(t) };
      if (p === "/federation/history") return { env: "dev", history, next: null };
    });
    const { p } = vacant;
    await p.goto("http://forge.test/?env=dev");
    await p.locator('#history tr[data-kind="vacancy"]').waitFor({ timeout: 5000 });
    assert.equal(await p.getAttribute("#leader", "data-leader"), "");
    assert.equal(await p.textContent("#leader"), "no leader");
    assert.equal(await p.getAttribute("#countdown", "data-level"), "bad");
    const row = (term) => p.textContent(`#history tr[data-term="${term}"]:not([data-kind="vacancy"])`);
    assert.equal(await p.getAttribute('#history tr[data-term="2"]', "data-kind"), "elected");
    assert.match(await row(2), /elected after vacancy \(previous lease expired\)/);
    const cell = (term, n) => p.textContent(`#history tr[data-term="${term}"]:not([data-kind="vacancy"]) td:nth-child(${n})`);
    assert.equal(await cell(2, 6), "10 s", "the gap before term 2: from the expiry of term 1 to the grant");
    assert.match(await cell(1, 5), /^20 sthen expired$/, "term 1 held from its grant to its expiry");
    assert.equal(await cell(3, 6), "none", "a handover in the same step leaves no gap");
    assert.equal(await p.getAttribute('#history tr[data-term="3"]:not([data-kind="vacancy"])', "data-kind"), "handover");
    assert.match(await p.textContent('#history tr[data-kind="vacancy"]'), /no leader: lease expired/);
    await p.locator('#timeline .gap[data-gap="1"]').waitFor({ state: "attached" });
    await p.locator('#timeline .gap[data-gap="3"]').waitFor({ state: "attached" });
    // a: not heard for 2 h, hidden (the forge forgets after 1 h); b: last heard at its own
    // resignation → left; c and d: dead, greyed.
    assert.equal(await p.locator('#peers tr[data-node="a"]').count(), 0);
    assert.match(await p.textContent("#peers-note"), /1 not heard for over 1 h/);
    assert.equal(await p.getAttribute('#peers tr[data-node="b"]', "data-state"), "left");
    assert.equal(await p.getAttribute('#peers tr[data-node="c"]', "data-state"), "dead");
    assert.equal(await p.getAttribute('#peers tr[data-node="d"]', "data-state"), "dead");
    // Ages are on the forge's clock, whatever the browser's says.
    assert.match(await p.textContent('#peers tr[data-node="d"]'), /10 min 00 s ago/);
    assert.match(await p.textContent("footer"), /forge's clock differs from this browser's by 1 h 00 min \(ahead\)/);
    await p.close();

    // A lease renewed every heartbeat, each time a little late (1.1 s before each answer), on a
    // forge an hour ahead whose answers take 400 ms, with the fields of an older forge (no
    // heartbeat_interval_ms / lease_ttl_ms): the countdown stays "ok" all along.
    const renewing = await fakeForge((path_) => {
      const t = now();
      if (path_ === "/federation/envs") return { envs: ["dev"] };
      if (path_ === "/federation/leader")
        return { env: "dev", leader: "c", term: 4, lease: { holder: "c", term: 4, expires_at_ms: t + TTL - 1100, ttl_ms: TTL }, epoch: 0, issued_at_ms: t, peers_alive: 1, mode: "native", sig: "" };
      if (path_ === "/federation/peers") return { env: "dev", peers: [] };
      if (path_ === "/federation/history") return { env: "dev", history: [{ term: 4, leader: "c", reason: "elected", at_ms: T - 1000 }], next: null };
    }, { delayMs: 400 });
    await renewing.p.goto("http://forge.test/?env=dev");
    await renewing.p.locator('#leader[data-leader="c"]').waitFor({ timeout: 5000 });
    const levels = new Set();
    for (let i = 0; i < 35; i++) {
      levels.add(await renewing.p.getAttribute("#countdown", "data-level"));
      await sleep(100);
    }
    assert.deepEqual([...levels], ["ok"]);
    assert.match(await renewing.p.textContent("#timing"), /heartbeat 1\.0 s \(≤, assumed\) · lease 3\.0 s/);
    await renewing.p.close();
    assert.deepEqual([...vacant.errors, ...renewing.errors], []);
  });
});
