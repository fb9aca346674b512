// The README cannot rot: every command in its ```sh blocks is run here, and its
// configuration tables are compared with the binaries' own --help and wrangler.toml.
//
// How each command is run is listed in RULES, keyed by the exact command text (continuation
// lines joined, trailing "  # comments" dropped). A command in the README without a rule
// fails the test, and so does a rule whose command left the README. The translations are
// deliberate and few:
//   - `cargo run --release --bin brh-agent --` runs the debug binary CI already built (same
//     code; a release build would cost minutes), with free ports instead of 8787/7878 and a
//     scratch working directory, so a developer's own `.brh/up` is never touched;
//   - `npx wrangler` is the pinned `node_modules/.bin/wrangler` (npx is not installed here);
//   - commands that need a Cloudflare account are checked against `wrangler <cmd> --help`,
//     and `wrangler deploy` runs with `--dry-run`;
//   - long-running commands (`up`, `run`, `forge serve`) run until ready, then get SIGTERM
//     or SIGINT and must exit 0.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import { ROOT, forgeBin } from "./targets.mjs";

const BIN = path.dirname(forgeBin());
const README = readFileSync(path.join(ROOT, "README.md"), "utf8");
const WORK = mkdtempSync(path.join(tmpdir(), "brh-readme-"));
for (const d of ["scripts", "examples"]) symlinkSync(path.join(ROOT, d), path.join(WORK, d));

const ENV = {
  ...process.env,
  PATH: `${BIN}:${path.join(ROOT, "node_modules/.bin")}:${process.env.PATH}`,
  BRH_LOG: "info",
  NO_COLOR: "1",
};
for (const k of [
  "DOMINION_SEAL",
  "FORGE_DOMINION_ROOT",
  "BRH_ENV",
  "BRH_FORGE_URL",
  "BRH_AGENT_URL",
  "BRH_CONFIG",
  "BRH_NODE_KEY",
  "BRH_FORGE_KEY",
  "BRH_OPERATOR_KEY",
  "BRH_OPERATOR_CREDENTIAL",
  "BRH_LEGACY_SEAL",
  "BRH_FEDERATION",
]) {
  delete ENV[k];
}

/** The ```sh blocks of the README: arrays of commands. */
function shBlocks(md) {
  const blocks = [];
  const re = /```sh\n([\s\S]*?)```/g;
  for (let m; (m = re.exec(md)); ) {
    const joined = m[1].replace(/\\\n\s*/g, " ");
    blocks.push(
      joined
        .split("\n")
        .map((l) => l.replace(/\s{2,}#.*$/, "").trim())
        .filter((l) => l && !l.startsWith("#")),
    );
  }
  return blocks;
}

function sh(script, { cwd = WORK, env = ENV, timeout = 120_000 } = {}) {
  const r = spawnSync("sh", ["-ec", script], { cwd, env, encoding: "utf8", timeout });
  const out = `${r.stdout}${r.stderr}`;
  assert.equal(r.status, 0, `\`${script}\` failed (${r.status ?? r.signal}):\n${out}`);
  return r.stdout;
}

/** Starts a long-running command; resolves once `ready` matches its output. */
function startLong(cmd, args, { cwd = WORK, env = ENV, ready }) {
  const child = spawn(cmd, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const seen = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready in 60 s: ${cmd} ${args.join(" ")}\n${out}`)), 60_000);
    const onData = (d) => {
      out += d;
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited ${code} before ready:\n${out}`));
    });
  });
  const stop = async (signal = "SIGTERM") => {
    if (child.exitCode !== null) return child.exitCode;
    const code = new Promise((r) => child.on("exit", (c, s) => r(c ?? s)));
    child.kill(signal);
    return code;
  };
  return { child, seen, stop, output: () => out };
}

/** `brh-agent up` as the README runs it, translated (see the top of this file). */
function up(extra) {
  return startLong(path.join(BIN, "brh-agent"), ["up", "--forge-listen", "127.0.0.1:0", "--api-port", "0", ...extra], {
    ready: /Ctrl-C stops everything/,
  });
}

const UP_ENV = "set -a; . .brh/up/up.env; set +a";
/** The private engine's DOCKER_HOST once the containers test started it. */
let dockerHost = null;
// Env `dev` containers on the test engine, left by an earlier run: their newer terms would
// fence this run's fresh federation (terms start at 1 again), so they go first and last.
const removeDevContainers = () =>
  spawnSync("sh", ["-c", 'docker rm -f $(docker ps -aq --filter label=brh.env=dev --filter label=brh.managed=true) 2>/dev/null; docker network rm brh_example_net 2>/dev/null; true'], {
    env: { ...ENV, DOCKER_HOST: dockerHost },
  });

// Exact README command → how it is exercised. `run` gets the block's state object.
const RULES = {
  "cargo run --release --bin brh-agent -- up": { kind: "long", note: "debug binary, free ports, scratch dir" },
  "scripts/test.sh": { kind: "ci", note: "this test runs inside it (.ci/run)" },
  "cargo install --locked --path brh-cli": { kind: "install", bin: "brh-agent" },
  "cargo install --locked --path forge-worker --bin forge": { kind: "install", bin: "forge" },
  "scripts/build-static.sh": { kind: "covered", by: "tests/tests/shipping.rs (builds the static binaries and images)" },
  "set -a; . .brh/up/up.env; set +a": { kind: "block" },
  "brh-agent status": { kind: "block" },
  "brh-agent switchover --to brh-node-02": { kind: "block" },
  "brh-agent switchover": { kind: "block" },
  "brh-agent status --json": { kind: "block" },
  'scripts/dockerd.sh start && eval "$(scripts/dockerd.sh env)"': { kind: "block" },
  "cargo run --release --bin brh-agent -- up --config examples/bridge.runtime.yaml": { kind: "long" },
  "brh-agent deploy --service web --image brh-test/web:2": { kind: "block" },
  "brh-agent restart brh_dev_web_1": { kind: "block" },
  "brh-agent drain brh_dev_worker_2": { kind: "block" },
  'export DOMINION_SEAL="$(brh-agent seal)"': { kind: "block" },
  'export FORGE_DOMINION_ROOT="$(brh-agent root generate --host forge.example.com --env production)"': { kind: "block" },
  "brh-agent root verify": { kind: "block" },
  "brh-agent enroll brh-node-01 > brh-node-01.env": { kind: "block" },
  "set -a; . ./brh-node-01.env; set +a": { kind: "block" },
  "brh-agent run --config examples/bridge.runtime.yaml": { kind: "long" },
  "forge serve --listen 0.0.0.0:8787 --data /var/lib/brh-forge --profile default": { kind: "long" },
  "npx wrangler login": { kind: "account" },
  "npx wrangler kv namespace create BRH_KV": { kind: "account" },
  "npx wrangler secret put DOMINION_SEAL": { kind: "account" },
  "npx wrangler deploy": { kind: "dry-run" },
  "brh-agent root generate --host brh-forge.ACCOUNT.workers.dev --env production": { kind: "block" },
  "BRH_ON_PROMOTE=examples/hooks/floating-ip.sh BRH_ON_DEMOTE=examples/hooks/floating-ip.sh  FLOATING_IP=192.0.2.10/24 FLOATING_DEV=eth0 brh-agent run": { kind: "covered", by: "tests/tests/agent_hooks.rs (the example run as both hooks by real agents, `ip`/`arping` recorded; needs no CAP_NET_ADMIN)" },
  "brh-agent manifest check compose.yaml": { kind: "covered", by: "tests/tests/containers_compose.rs (manifest check, then the stack on real agents and dockerd) and tests/tests/compose_corpus.rs" },
  "brh-agent run --config compose.yaml": { kind: "covered", by: "tests/tests/containers_compose.rs (two agents, kill -9, adoption in place)" },
  "brh-agent revoke brh-node-03": { kind: "covered", by: "tests/tests/revocation.rs (brh-agent revoke, refused and accepted, on real processes)" },
  "brh-agent enroll brh-node-03 --key-generation 1 > brh-node-03.env": { kind: "covered", by: "tests/tests/revocation.rs (the re-enrolment, picked up on SIGHUP)" },
};

const blocks = shBlocks(README);
const findBlock = (first) => {
  const b = blocks.find((b) => b[0] === first);
  assert.ok(b, `no README block starting with \`${first}\``);
  return b;
};

after(() => {
  // Containers the README's manifest left running (relinquish keeps them) on the test engine.
  if (dockerHost) removeDevContainers();
  rmSync(WORK, { recursive: true, force: true });
});

test("every README command has a rule, and every rule a README command", () => {
  const all = blocks.flat();
  const missing = all.filter((c) => !(c in RULES));
  assert.deepEqual(missing, [], "README commands no test runs: add them to RULES");
  const stale = Object.keys(RULES).filter((c) => !all.includes(c));
  assert.deepEqual(stale, [], "rules for commands the README no longer has");
});

test("the two first commands: a local federation, and the test command", async () => {
  assert.deepEqual(blocks[0], ["cargo run --release --bin brh-agent -- up", "scripts/test.sh"]);
  const u = up([]);
  await u.seen;
  // The operator's day, verbatim, in a second shell.
  const day = findBlock(UP_ENV);
  const out = sh(day.join("\n"));
  // Whoever `up` elected first: brh-node-02 gets it, or already has it (a no-op, exit 0).
  assert.match(out, /switchover: (brh-node-\d\d → brh-node-02 \(term \d+\)|brh-node-02 already leads env dev; nothing to do)/);
  assert.match(out, /switchover: brh-node-02 → brh-node-\d\d \(term \d+\)/);
  assert.match(out, /LAST SEEN/);
  const status = JSON.parse(out.slice(out.indexOf("{\n")));
  assert.equal(status.peers.length, 3);
  assert.equal(status.verified, true);
  assert.equal(await u.stop("SIGINT"), 0, u.output());
  // Again: the federation continues (the README says state survives restarts).
  const again = up([]);
  await again.seen;
  assert.match(again.output(), /continuing the federation/);
  assert.equal(await again.stop("SIGINT"), 0);
});

test("install", { timeout: 900_000 }, () => {
  const root = mkdtempSync(path.join(tmpdir(), "brh-install-"));
  try {
    for (const [cmd, rule] of Object.entries(RULES).filter(([, r]) => r.kind === "install")) {
      // Same command into a scratch root, debug profile, sharing the built target dir.
      sh(`${cmd} --debug --root ${root} --quiet`, {
        cwd: ROOT,
        env: { ...ENV, CARGO_TARGET_DIR: path.resolve(ROOT, process.env.CARGO_TARGET_DIR ?? "target") },
        timeout: 900_000,
      });
      const v = spawnSync(path.join(root, "bin", rule.bin), ["--version"], { encoding: "utf8" });
      assert.equal(v.status, 0, v.stderr);
      assert.match(v.stdout, /0\.\d+\.\d+/);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("containers: the example manifest, deploy, restart, drain, switchover", { timeout: 300_000 }, async (t) => {
  const [engine, start] = findBlock('scripts/dockerd.sh start && eval "$(scripts/dockerd.sh env)"');
  const probe = spawnSync("sh", ["-ec", `${engine}; echo "DOCKER_HOST=$DOCKER_HOST"`], { cwd: WORK, env: ENV, encoding: "utf8", timeout: 300_000 });
  if (probe.status !== 0) {
    // scripts/test.sh starts the engine in setup; only a bare `node --test` lacks it.
    assert.ok(!process.env.CI, `the private Docker engine did not start:\n${probe.stdout}${probe.stderr}`);
    t.skip("no Docker engine here (CI always has one)");
    return;
  }
  dockerHost = probe.stdout.match(/DOCKER_HOST=(\S+)/)[1];
  removeDevContainers();
  const env = { ...ENV, DOCKER_HOST: dockerHost };
  assert.equal(start, "cargo run --release --bin brh-agent -- up --config examples/bridge.runtime.yaml");
  const u = startLong(
    path.join(BIN, "brh-agent"),
    ["up", "--forge-listen", "127.0.0.1:0", "--api-port", "0", "--config", "examples/bridge.runtime.yaml"],
    { env, ready: /Ctrl-C stops everything/ },
  );
  try {
    await u.seen;
    // The leader has started the manifest when its /status lists every replica running.
    sh(`${UP_ENV}; for i in $(seq 100); do brh-agent status >/dev/null && docker ps --filter label=brh.env=dev --format '{{.Names}}' | grep -q brh_dev_worker_2 && docker ps --format '{{.Names}}' | grep -q brh_dev_web_2 && exit 0; sleep 0.2; done; exit 1`, { env });
    const ops = findBlock("brh-agent deploy --service web --image brh-test/web:2");
    const out = sh(`${UP_ENV}\n${ops.join("\n")}`, { env });
    assert.match(out, /"status":"deployed"/);
    assert.match(out, /restarted: brh_dev_web_1/);
    assert.match(out, /drained: brh_dev_worker_2/);
    assert.match(out, /switchover: brh-node-\d\d → brh-node-\d\d/);
    const names = sh("docker ps --filter label=brh.env=dev --format '{{.Names}} {{.Image}}'", { env });
    assert.match(names, /brh_dev_web_1 brh-test\/web:2/);
  } finally {
    assert.equal(await u.stop("SIGINT"), 0, u.output());
  }
});

test("running an agent: seal, root, verify and enroll on the operator's machine; run on the host", async () => {
  // The operator's block verbatim, in a shell of its own: it writes brh-node-01.env.
  const operator = findBlock('export DOMINION_SEAL="$(brh-agent seal)"');
  assert.equal(operator.at(-1), "brh-agent enroll brh-node-01 > brh-node-01.env");
  const out = sh(`${operator.join("\n")}\necho "SEAL=$DOMINION_SEAL"`);
  assert.match(out, /ok: forge https:\/\/forge\.example\.com env production/);
  const seal = out.match(/^SEAL=(\S+)$/m)[1];
  const file = readFileSync(path.join(WORK, "brh-node-01.env"), "utf8");
  // What the host gets: its own key and public keys, never the federation's secret.
  const keys = [...file.matchAll(/^([A-Z_]+)=/gm)].map((m) => m[1]).sort();
  assert.deepEqual(keys, ["BRH_ENV", "BRH_FEDERATION", "BRH_FORGE_KEY", "BRH_NODE_ID", "BRH_NODE_KEY", "BRH_OPERATOR_KEY", "FORGE_DOMINION_ROOT"]);
  assert.ok(!file.includes(seal), "the enrolment file does not contain the seal");
  assert.match(file, /^BRH_NODE_ID='brh-node-01'$/m);
  assert.match(file, /^BRH_NODE_KEY='[0-9a-f]{64}'$/m);
  // The host's block in another shell, without DOMINION_SEAL (`exec env`, so the signal
  // reaches the agent), on a free port: forge.example.com is not reachable from here, so it
  // keeps retrying until SIGTERM.
  const host = findBlock("set -a; . ./brh-node-01.env; set +a");
  const run = host.at(-1);
  assert.equal(run, "brh-agent run --config examples/bridge.runtime.yaml");
  const script = `${host.slice(0, -1).join("\n")}\nexec env ${run}`;
  const a = startLong("sh", ["-ec", script], {
    env: { ...ENV, BRH_API_LISTEN: "127.0.0.1:0" },
    ready: /\[API\] brh-node-01 listening/,
  });
  await a.seen;
  assert.doesNotMatch(a.output(), /legacy-seal/, "runs on its enrolment, not on the seal");
  assert.equal(await a.stop(), 0, a.output());
});

test("the native forge", async () => {
  const [cmd] = findBlock("forge serve --listen 0.0.0.0:8787 --data /var/lib/brh-forge --profile default");
  const args = cmd
    .split(" ")
    .slice(1)
    .map((a) => (a === "0.0.0.0:8787" ? "127.0.0.1:0" : a === "/var/lib/brh-forge" ? path.join(WORK, "forge-data") : a));
  const f = startLong(path.join(BIN, "forge"), args, {
    env: { ...ENV, DOMINION_SEAL: "readme-test-seal-0123456789" },
    ready: /forge listening on http:\/\/\S+/,
  });
  await f.seen;
  const url = f.output().match(/forge listening on (http:\/\/\S+)/)[1];
  const health = await (await fetch(`${url}/health`)).json();
  assert.equal(health.status, "ok");
  const view = await (await fetch(`${url}/federation/leader?env=production`)).json();
  assert.deepEqual([view.heartbeat_interval_ms, view.lease_ttl_ms], [5000, 15000]);
  assert.equal(await f.stop(), 0, f.output());
});

test("Cloudflare: account commands exist in the pinned wrangler, deploy dry-runs, root for the Worker", { timeout: 300_000 }, () => {
  const block = findBlock("npx wrangler login");
  for (const cmd of block) {
    const rule = RULES[cmd];
    const words = cmd.replace(/^npx /, "").split(" ");
    if (rule.kind === "account") {
      // The subcommand (words before the first argument in capitals) must exist.
      const sub = words.filter((w, i) => i === 0 || /^[a-z-]+$/.test(w));
      const r = spawnSync(sub[0], [...sub.slice(1), "--help"], { cwd: ROOT, env: ENV, encoding: "utf8" });
      assert.equal(r.status, 0, `${sub.join(" ")} --help: ${r.stderr}`);
      assert.match(r.stdout + r.stderr, new RegExp(`wrangler ${sub.slice(1).join(" ")}`));
    } else if (rule.kind === "dry-run") {
      const out = mkdtempSync(path.join(tmpdir(), "brh-dry-"));
      try {
        sh(`${words.join(" ")} --dry-run --outdir ${out}`, { cwd: ROOT, timeout: 300_000 });
        assert.ok(existsSync(path.join(out, "index.js")));
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    } else {
      const root = sh(cmd, { env: { ...ENV, DOMINION_SEAL: "readme-test-seal" } });
      // Signed by the forge key: an Ed25519 signature, 128 hex digits.
      assert.match(root, /^dominion:\/\/brh-forge\.ACCOUNT\.workers\.dev\?env=production&epoch=\d+&sig=[0-9a-f]{128}\n$/);
    }
  }
});

/** `[VAR, --flag or null]` of the rows of the README table under `heading`. */
function table(heading) {
  const start = README.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `README has no ${heading}`);
  const out = [];
  for (const l of README.slice(start + heading.length + 2).split("\n")) {
    if (l.startsWith("#")) break;
    const cells = l.split("|").map((c) => c.trim());
    const v = cells[1]?.match(/^`([A-Z_]+)`$/);
    if (v) out.push([v[1], cells[2]?.match(/^`(--[a-z-]+)`$/)?.[1] ?? null]);
  }
  return out;
}

/** `[VAR, --flag]` pairs of a binary's long help (`[env: VAR=…]` under each option). */
function helpPairs(bin, args) {
  const r = spawnSync(path.join(BIN, bin), [...args, "--help"], { encoding: "utf8", env: { ...ENV, USER: "" } });
  assert.equal(r.status, 0, r.stderr);
  const pairs = [];
  let flag = null;
  for (const line of r.stdout.split("\n")) {
    const f = line.match(/^\s+(?:-\w, )?(--[a-z-]+)/);
    if (f) flag = f[1];
    const e = line.match(/\[env: ([A-Z_]+)[=\]]/);
    if (e && flag) pairs.push([e[1], flag]);
  }
  return pairs;
}

test("configuration reference matches brh-agent run --help, forge serve --help and wrangler.toml", () => {
  for (const [heading, bin, args] of [
    ["### brh-agent run", "brh-agent", ["run"]],
    ["### forge serve", "forge", ["serve"]],
  ]) {
    const documented = table(heading).filter(([, f]) => f).map(([v, f]) => `${v} ${f}`).sort();
    const code = helpPairs(bin, args).map(([v, f]) => `${v} ${f}`).sort();
    assert.ok(code.length > 5, `could not read ${bin} --help`);
    assert.deepEqual(documented, code, `${heading}: README table vs --help`);
  }
  const toml = readFileSync(path.join(ROOT, "wrangler.toml"), "utf8");
  const vars = toml.slice(toml.indexOf("[vars]"), toml.indexOf("\n[[", toml.indexOf("[vars]")));
  const keys = [...vars.matchAll(/^#?\s*([A-Z_]+) = /gm)].map((m) => m[1]).sort();
  // Secrets (`wrangler secret put`) are not [vars].
  const secrets = ["DOMINION_SEAL", "DOMINION_SEAL_PREVIOUS"];
  const documented = table("### The Worker (`wrangler.toml` `[vars]`, secrets)")
    .map(([v]) => v)
    .filter((v) => !secrets.includes(v))
    .sort();
  assert.deepEqual(documented, keys, "Worker table vs wrangler.toml [vars]");
});
