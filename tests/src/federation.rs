//! Agent federation test helpers: spawn the real `forge` and `brh-agent` binaries on real
//! sockets, put a controllable TCP proxy between an agent and the forge, send signals, and
//! read the agents' leadership logs for the safety checker.
//!
//! The binaries are located next to the test executable (`<target>/<profile>/`). Build them
//! first: `cargo build -p brh-cli -p forge-worker --bins`.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use brh_shared::root::{DominionRoot, SCHEME_HTTP};
use serde::Deserialize;
use serde_json::Value;

pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `<target>/<profile>/` of the running test binary.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// Path to a workspace binary. They are not built from here: `cargo test` holds the build
/// directory lock while tests run, so a nested `cargo build` would block. Build them first.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p brh-cli -p forge-worker --bins` (same profile and \
         CARGO_TARGET_DIR) before these tests",
        p.display()
    );
    p
}

/// A fresh scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    let d = bin_dir().join("brh-test-scratch").join(format!(
        "{name}-{}-{}",
        std::process::id(),
        wall_ms()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Collects a child's stderr lines (and mirrors them to a file for post-mortems).
fn capture(stream: impl Read + Send + 'static, file: PathBuf) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    std::thread::spawn(move || {
        let mut out = std::fs::File::create(file).ok();
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(f) = out.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            l2.lock().unwrap().push(line);
        }
    });
    lines
}

fn wait_for_line(lines: &Mutex<Vec<String>>, needle: &str, timeout: Duration) -> Option<String> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if let Some(l) = lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
            return Some(l.clone());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn addr_after(line: &str, marker: &str) -> SocketAddr {
    let line = strip_ansi(line);
    let rest = &line[line.find(marker).expect("marker") + marker.len()..];
    let a: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    a.parse()
        .unwrap_or_else(|_| panic!("no address in {line:?}"))
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid we spawned; no memory is involved.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// The native forge as a process.
pub struct Forge {
    pub child: Child,
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub seal: String,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Forge {
    /// Fast profile (1 s / 3 s). `listen` defaults to a free port.
    pub fn start(dir: &Path, seal: &str, listen: Option<SocketAddr>, skew_ms: u64) -> Forge {
        Self::start_profile(dir, seal, listen, skew_ms, "fast")
    }

    /// `profile` is `fast` (1 s / 3 s) or `default` (5 s / 15 s).
    pub fn start_profile(
        dir: &Path,
        seal: &str,
        listen: Option<SocketAddr>,
        skew_ms: u64,
        profile: &str,
    ) -> Forge {
        Self::start_with(dir, seal, listen, skew_ms, &["--profile", profile])
    }

    /// Any timing: `(heartbeat_ms, ttl_ms)` (e.g. the sub-second profile, 200 ms / 1 s).
    pub fn start_timing(
        dir: &Path,
        seal: &str,
        listen: Option<SocketAddr>,
        skew_ms: u64,
        (hb, ttl): (u64, u64),
    ) -> Forge {
        let (hb, ttl) = (hb.to_string(), ttl.to_string());
        let args = ["--heartbeat-interval-ms", &hb, "--lease-ttl-ms", &ttl];
        Self::start_with(dir, seal, listen, skew_ms, &args)
    }

    /// Any `forge serve` arguments besides listen, data dir and skew (timing, `--previous-seal`).
    pub fn start_with(
        dir: &Path,
        seal: &str,
        listen: Option<SocketAddr>,
        skew_ms: u64,
        timing: &[&str],
    ) -> Forge {
        Self::start_with_vars(dir, seal, listen, skew_ms, timing, &[])
    }

    /// [`Forge::start_with`] plus environment variables, set last (e.g. `BRH_LOG_FORMAT`).
    pub fn start_with_vars(
        dir: &Path,
        seal: &str,
        listen: Option<SocketAddr>,
        skew_ms: u64,
        timing: &[&str],
        vars: &[(&str, &str)],
    ) -> Forge {
        let data = dir.join("forge");
        let listen = listen.map_or("127.0.0.1:0".to_string(), |a| a.to_string());
        let mut child = Command::new(bin("forge"))
            .args(["serve", "--listen", &listen, "--data"])
            .arg(&data)
            .args(timing)
            .args(["--skew-ms", &skew_ms.to_string()])
            .env("DOMINION_SEAL", seal)
            .env("RUST_LOG", "info")
            .env_remove("BRH_LOG_FORMAT")
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn forge");
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let lines = capture(
            child.stderr.take().unwrap(),
            dir.join(format!("forge-{n}.log")),
        );
        let line = wait_for_line(&lines, "listening on http://", Duration::from_secs(20))
            .expect("forge did not start");
        Forge {
            addr: addr_after(&line, "listening on http://"),
            child,
            data,
            seal: seal.into(),
            lines,
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `GET` a JSON document from the forge.
    pub fn get(&self, path: &str) -> Value {
        http_get(self.addr, path).expect("forge GET")
    }

    /// The value of one sample of the forge's `/metrics`, e.g.
    /// `brh_forge_requests_total{path="/federation/resign",transport="stream"}`; 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        let text = http_get_text(self.addr, "/metrics").expect("forge GET /metrics");
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    /// Leader changes as `(term, leader, at_ms)`.
    pub fn history(&self) -> Vec<(u64, Option<String>, u64)> {
        #[derive(Deserialize)]
        struct E {
            term: u64,
            leader: Option<String>,
            at_ms: u64,
        }
        let v = self.get("/federation/history?env=dev&limit=500");
        let entries: Vec<E> = serde_json::from_value(v["history"].clone()).unwrap_or_default();
        entries
            .into_iter()
            .map(|e| (e.term, e.leader, e.at_ms))
            .collect()
    }
}

impl Drop for Forge {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A signed root pointing at `addr` (plain HTTP, env `dev`).
/// The built Worker in workerd (miniflare), Durable Object mode, as one process group
/// (`scripts/workerd-forge.mjs`): node and the workerd it spawns die together on `kill`, as a
/// crashed host would. State persists in `dir/workerd`, so a restart reloads the register
/// from durable storage. Needs `scripts/setup-node.sh` and `scripts/build-worker.sh`.
pub struct WorkerdForge {
    child: Child,
    pub addr: SocketAddr,
    dead: bool,
}

impl WorkerdForge {
    pub fn start(
        dir: &Path,
        seal: &str,
        listen: Option<SocketAddr>,
        skew_ms: u64,
        timing: (u64, u64),
    ) -> WorkerdForge {
        Self::start_rotating(dir, seal, None, listen, skew_ms, timing)
    }

    /// [`Self::start`] during a rotation of the root secret: `previous` is the seal being
    /// replaced (`DOMINION_SEAL_PREVIOUS`).
    pub fn start_rotating(
        dir: &Path,
        seal: &str,
        previous: Option<&str>,
        listen: Option<SocketAddr>,
        skew_ms: u64,
        (hb, ttl): (u64, u64),
    ) -> WorkerdForge {
        // miniflare names modules relative to its working directory and refuses paths that
        // climb out of it: run it from the repository root.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ has a parent")
            .to_path_buf();
        let node = root.join("node_modules/.bin/node");
        for (need, how) in [
            (&node, "scripts/setup-node.sh"),
            (&root.join("build/index.js"), "scripts/build-worker.sh"),
        ] {
            assert!(
                need.exists(),
                "{} is missing: run {how} first",
                need.display()
            );
        }
        let port = listen.map_or(0, |a| a.port());
        let mut child = Command::new(node)
            .arg(root.join("scripts/workerd-forge.mjs"))
            .arg("--dir")
            .arg(dir.join("workerd"))
            .args(["--port", &port.to_string(), "--hb", &hb.to_string()])
            .args(["--ttl", &ttl.to_string(), "--skew", &skew_ms.to_string()])
            .current_dir(&root)
            .env("DOMINION_SEAL", seal)
            .env_remove("DOMINION_SEAL_PREVIOUS")
            .envs(previous.map(|p| ("DOMINION_SEAL_PREVIOUS", p)))
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("WRANGLER_SEND_METRICS", "false")
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node scripts/workerd-forge.mjs");
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let lines = capture(
            child.stderr.take().unwrap(),
            dir.join(format!("workerd-{n}.log")),
        );
        let marker = "forge listening on http://";
        let line = wait_for_line(&lines, marker, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("workerd forge did not start: {:?}", lines.lock().unwrap()));
        WorkerdForge {
            addr: addr_after(&line, marker),
            child,
            dead: false,
        }
    }

    /// SIGKILL to the whole group: no dispose, no flush beyond what storage already made
    /// durable.
    pub fn kill(&mut self) {
        if std::mem::replace(&mut self.dead, true) {
            return; // the group id may belong to someone else by now
        }
        // SAFETY: killpg(2) on the group we created with process_group(0).
        unsafe { libc::killpg(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for WorkerdForge {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn root_for(seal: &str, addr: SocketAddr) -> String {
    root_for_env(seal, addr, "dev")
}

pub fn root_for_env(seal: &str, addr: SocketAddr, env: &str) -> String {
    DominionRoot::sign(
        &brh_shared::keys::forge_signing_key(seal.as_bytes()),
        SCHEME_HTTP,
        &addr.to_string(),
        env,
        wall_ms() / 1000,
    )
    .unwrap()
    .to_string()
}

/// What `brh-agent enroll NODE` gives a host of `env` (besides its id and root): its own
/// key and the forge's and the operator's public keys. No seal.
pub fn host_keys(seal: &str, env: &str, node: &str) -> [(&'static str, String); 3] {
    use brh_shared::keys::public_hex;
    let c = brh_agent::config::Credentials::derive(seal.as_bytes(), env, node);
    [
        ("BRH_NODE_KEY", brh_shared::hex::encode(&c.node_key)),
        ("BRH_FORGE_KEY", public_hex(&c.forge_key)),
        ("BRH_OPERATOR_KEY", public_hex(&c.operator_key)),
    ]
}

/// One `brh-agent run` process.
pub struct Agent {
    pub node: String,
    pub child: Child,
    pub api: SocketAddr,
    pub event_log: PathBuf,
    pub lines: Arc<Mutex<Vec<String>>>,
    /// Wall ms when it was killed with SIGKILL (its interval ends there at the latest).
    pub killed_at: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct AgentOpts {
    pub priority: i32,
    pub clock_skew_ms: i64,
    /// `(heartbeat_ms, ttl_ms)` pinned on the command line; default the fast profile
    /// (1000, 3000).
    pub timing: Option<(u64, u64)>,
    /// Pass no timing at all: the agent starts at its defaults and follows the forge.
    pub follow_forge: bool,
    /// Extra `brh-agent run` arguments (e.g. `--config manifest.yaml`).
    pub args: Vec<String>,
    /// The env (default `dev`).
    pub env: Option<String>,
    /// Run on the seal (`--legacy-seal`) instead of the host's enrolment.
    pub legacy_seal: bool,
    /// Extra environment variables, set last (e.g. `BRH_LOG_FORMAT=json`).
    pub vars: Vec<(String, String)>,
}

impl Agent {
    /// Starts an agent (fast profile) that reaches the forge at `forge` (direct or a proxy).
    pub fn start(dir: &Path, node: &str, seal: &str, forge: SocketAddr, o: AgentOpts) -> Agent {
        let event_log = dir.join(format!("{node}.leadership.jsonl"));
        let (hb, ttl) = o.timing.unwrap_or((1000, 3000));
        let timing = if o.follow_forge {
            Vec::new()
        } else {
            vec![
                format!("--heartbeat-interval={hb}ms"),
                format!("--lease-ttl={ttl}ms"),
            ]
        };
        let mut child = Command::new(bin("brh-agent"))
            .arg("run")
            .args(["--node-id", node, "--listen", "127.0.0.1:0"])
            .args(&timing)
            .args(["--consensus-interval", "2"])
            .args(["--priority", &o.priority.to_string()])
            .args(["--test-clock-skew-ms", &o.clock_skew_ms.to_string()])
            .arg("--event-log")
            .arg(&event_log)
            .args(&o.args)
            // Enrolled: the host holds its own key, never the seal (unless `legacy_seal`).
            .env_remove("DOMINION_SEAL")
            .env_remove("BRH_LEGACY_SEAL")
            .envs(if o.legacy_seal {
                vec![
                    ("DOMINION_SEAL", seal.to_string()),
                    ("BRH_LEGACY_SEAL", "true".to_string()),
                ]
            } else {
                host_keys(seal, o.env.as_deref().unwrap_or("dev"), node).to_vec()
            })
            .env(
                "FORGE_DOMINION_ROOT",
                root_for_env(seal, forge, o.env.as_deref().unwrap_or("dev")),
            )
            .env("BRH_LOG", "info")
            .env_remove("BRH_ENV")
            // The federation's id follows its forge key unless a test passes `--federation`.
            .env_remove("BRH_FEDERATION")
            .env_remove("BRH_HEARTBEAT_INTERVAL")
            .env_remove("BRH_LEASE_TTL")
            .env_remove("BRH_LOG_FORMAT")
            .envs(o.vars.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn brh-agent");
        let lines = capture(
            child.stderr.take().unwrap(),
            dir.join(format!("{node}.log")),
        );
        let marker = format!("[API] {node} listening on http://");
        let line = wait_for_line(&lines, &marker, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{node} did not start: {:?}", lines.lock().unwrap()));
        Agent {
            node: node.into(),
            api: addr_after(&line, &marker),
            child,
            event_log,
            lines,
            killed_at: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn status(&self) -> Option<Value> {
        http_get(self.api, "/status")
    }

    pub fn kill9(&mut self) -> u64 {
        let t = wall_ms();
        signal(self.pid(), libc::SIGKILL);
        let _ = self.child.wait();
        self.killed_at = Some(t);
        t
    }

    /// SIGTERM and wait for exit; returns the exit status success.
    pub fn terminate(&mut self) -> bool {
        if self.child.try_wait().ok().flatten().is_some() {
            return true;
        }
        signal(self.pid(), libc::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn records(&self) -> Vec<Record> {
        read_records(&self.event_log)
    }

    /// How often this agent stepped down so far (its `demote` records).
    pub fn demotions(&self) -> usize {
        self.records()
            .iter()
            .filter(|r| r.event == "demote")
            .count()
    }

    pub fn log_has(&self, needle: &str) -> bool {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One line of an agent's leadership log.
#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    pub node: String,
    pub event: String,
    pub term: u64,
    pub at_ms: u64,
    #[serde(default)]
    pub reason: Option<String>,
}

pub fn read_records(path: &Path) -> Vec<Record> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record {l:?}: {e}")))
        .collect()
}

/// A leadership interval `[start, end]` in wall ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub node: String,
    pub term: u64,
    pub start: u64,
    pub end: u64,
}

/// Pairs promote/demote records into intervals. An interval left open ends at `open_end`
/// (the kill time for a SIGKILLed agent); records must alternate.
pub fn intervals(records: &[Record], open_end: u64) -> Vec<Interval> {
    let mut out = Vec::new();
    let mut open: Option<&Record> = None;
    for r in records {
        match (r.event.as_str(), open) {
            ("promote", None) => open = Some(r),
            ("demote", Some(p)) => {
                assert_eq!(
                    p.term, r.term,
                    "demote term differs from promote: {records:?}"
                );
                assert!(r.at_ms >= p.at_ms, "demote before promote: {records:?}");
                out.push(Interval {
                    node: r.node.clone(),
                    term: r.term,
                    start: p.at_ms,
                    end: r.at_ms,
                });
                open = None;
            }
            _ => panic!("promote/demote records do not alternate: {records:?}"),
        }
    }
    if let Some(p) = open {
        out.push(Interval {
            node: p.node.clone(),
            term: p.term,
            start: p.at_ms,
            end: open_end,
        });
    }
    out
}

/// The safety checker: no two leadership intervals of different agents overlap in time,
/// and terms never go back in time order.
pub fn assert_no_overlap(all: &[Interval]) {
    let mut v = all.to_vec();
    v.sort_by_key(|i| (i.start, i.end));
    for (i, a) in v.iter().enumerate() {
        for b in &v[i + 1..] {
            if a.node != b.node {
                assert!(
                    b.start >= a.end,
                    "two leaders at once: {a:?} overlaps {b:?} (all: {v:#?})"
                );
            }
        }
    }
    for w in v.windows(2) {
        assert!(w[1].term >= w[0].term, "terms went back: {v:#?}");
    }
}

/// Stops every agent still alive with SIGTERM (so their intervals close), then checks all
/// intervals of the run. Returns them.
pub fn finish_and_check(agents: &mut [Agent]) -> Vec<Interval> {
    for a in agents.iter_mut() {
        if a.killed_at.is_none() {
            assert!(a.terminate(), "{} did not exit cleanly on SIGTERM", a.node);
        }
    }
    let mut all = Vec::new();
    for a in agents.iter() {
        let end = a.killed_at.unwrap_or(u64::MAX);
        let iv = intervals(&a.records(), end);
        assert!(
            iv.iter().all(|i| i.end != u64::MAX),
            "{} still leads after exiting: {iv:?}",
            a.node
        );
        all.extend(iv);
    }
    assert_no_overlap(&all);
    all
}

/// `brh-agent ARGS` as an operator runs it: none of the test process's federation settings
/// leak in, only `envs`.
pub fn agent_cli(args: &[&str], envs: &[(&str, String)]) -> std::process::Output {
    let mut c = Command::new(bin("brh-agent"));
    c.args(args)
        .env_remove("DOMINION_SEAL")
        .env_remove("FORGE_DOMINION_ROOT")
        .env_remove("BRH_ENV")
        .env_remove("BRH_FEDERATION")
        .env_remove("BRH_AGENT_URL");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run brh-agent")
}

/// A command's stdout and stderr together, for assertions and their messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Minimal HTTP/1.1 GET returning parsed JSON (None on any failure).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<Value> {
    serde_json::from_str(&http_get_text(addr, path)?).ok()
}

/// Minimal HTTP/1.1 GET returning the body (None on any failure).
pub fn http_get_text(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // Decode chunked bodies (small answers only).
        let mut out = String::new();
        let mut rest = body;
        loop {
            let (len, after) = rest.split_once("\r\n")?;
            let n = usize::from_str_radix(len.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(after.get(..n)?);
            rest = after.get(n + 2..)?;
        }
        return Some(out);
    }
    Some(body.to_string())
}

/// One HTTP/1.1 POST with `headers`; the status and the JSON body.
pub fn http_post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

pub fn signed_headers(h: brh_shared::sign::SignedHeaders) -> Vec<(&'static str, String)> {
    vec![
        ("x-brh-node", h.node),
        ("x-brh-ts", h.ts_ms.to_string()),
        ("x-brh-nonce", h.nonce.to_string()),
        ("x-brh-sig", h.sig),
    ]
}

/// Polls `f` every 50 ms until it returns Some or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if t0.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `(leader, term)` if every given agent reports the same leader and term, and exactly one of
/// them says it is the leader.
pub fn agreed_leader(agents: &[&Agent]) -> Option<(String, u64)> {
    let st: Vec<Value> = agents.iter().map(|a| a.status()).collect::<Option<_>>()?;
    let leader = st[0]["leader"].as_str()?.to_string();
    let term = st[0]["term"].as_u64()?;
    let leaders = st.iter().filter(|s| s["role"] == "leader").count();
    let agree = st
        .iter()
        .all(|s| s["leader"].as_str() == Some(&leader) && s["term"].as_u64() == Some(term));
    (agree && leaders == 1).then_some((leader, term))
}

/// A TCP proxy the test controls: it forwards to `target` until cut, and when cut it drops
/// every open connection and refuses new ones.
pub struct Proxy {
    pub addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (t2, c2, k2) = (target.clone(), cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for inbound in l.incoming() {
                let Ok(inbound) = inbound else { continue };
                if c2.load(Ordering::SeqCst) {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                }
                let to = *t2.lock().unwrap();
                let Ok(outbound) = TcpStream::connect(to) else {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                };
                {
                    let mut k = k2.lock().unwrap();
                    k.retain(|s| s.peer_addr().is_ok());
                    k.push(inbound.try_clone().unwrap());
                    k.push(outbound.try_clone().unwrap());
                }
                pipe(inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
                pipe(outbound, inbound);
            }
        });
        Proxy {
            addr,
            target,
            cut,
            conns,
        }
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            for s in self.conns.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    pub fn retarget(&self, to: SocketAddr) {
        *self.target.lock().unwrap() = to;
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// A random seal for one test run.
/// Runs `brh-agent deploy --agent <api> --image <image> [extra]` for `env`; returns whether
/// it succeeded and everything it printed.
pub fn cli_deploy(
    seal: &str,
    env: &str,
    api: SocketAddr,
    image: &str,
    extra: &[&str],
) -> (bool, String) {
    let out = Command::new(bin("brh-agent"))
        .args([
            "deploy",
            "--agent",
            &format!("http://{api}"),
            "--image",
            image,
        ])
        .args(extra)
        .env("DOMINION_SEAL", seal)
        .env("BRH_ENV", env)
        .output()
        .expect("run brh-agent deploy");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The project's own engine (`scripts/dockerd.sh`), unless `DOCKER_HOST` names another.
pub const PRIVATE_DOCKER_SOCK: &str = "unix:///var/tmp/brh-docker/docker.sock";

pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| PRIVATE_DOCKER_SOCK.into())
}

/// Compose v2, the reference implementation (`scripts/dockerd.sh` unpacks it from Debian's
/// archive): `BRH_COMPOSE_V2`, else its place beside the private engine.
pub fn compose_v2() -> PathBuf {
    if let Ok(p) = std::env::var("BRH_COMPOSE_V2") {
        return PathBuf::from(p);
    }
    let dir = std::env::var("BRH_DOCKER_DIR").unwrap_or_else(|_| "/var/tmp/brh-docker".into());
    let p = PathBuf::from(dir).join("compose-v2/docker-compose");
    assert!(
        p.exists(),
        "Compose v2 is not at {} (run scripts/setup.sh, or set BRH_COMPOSE_V2)",
        p.display()
    );
    p
}

/// The docker CLI against that engine: its trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", docker_host())
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes every container of `env` (labelled `brh.env`), left by an earlier run.
pub fn remove_env_containers(env: &str) {
    for id in docker(&["ps", "-aq", "--filter", &format!("label=brh.env={env}")]).lines() {
        docker(&["rm", "-f", id]);
    }
}

pub fn fresh_seal() -> String {
    let mut b = [0u8; 16];
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    f.read_exact(&mut b).unwrap();
    brh_shared::hex::encode(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(node: &str, term: u64, start: u64, end: u64) -> Interval {
        Interval {
            node: node.into(),
            term,
            start,
            end,
        }
    }

    #[test]
    fn checker_accepts_disjoint_and_catches_overlap() {
        assert_no_overlap(&[iv("a", 1, 0, 10), iv("b", 2, 10, 20), iv("a", 3, 25, 30)]);
        let r =
            std::panic::catch_unwind(|| assert_no_overlap(&[iv("a", 1, 0, 10), iv("b", 2, 9, 20)]));
        assert!(r.is_err(), "overlap must be caught");
    }

    #[test]
    fn records_pair_into_intervals() {
        let rec = |e: &str, t, at| Record {
            node: "a".into(),
            event: e.into(),
            term: t,
            at_ms: at,
            reason: None,
        };
        let v = intervals(
            &[
                rec("promote", 1, 5),
                rec("demote", 1, 9),
                rec("promote", 2, 20),
            ],
            30,
        );
        assert_eq!(v, vec![iv("a", 1, 5, 9), iv("a", 2, 20, 30)]);
    }
}
