//! BRH next to etcd's election API, same machine, same run, same lease ttl (not a test: it
//! prints a markdown table, also written to `target/bench-etcd.md`; nothing is asserted).
//!
//! ```text
//! cargo run --release -p brh-tests --example bench_etcd -- [RUNS] [--ttls 3,15] [--only brh|etcd] [--no-1s]
//!     [--forge native|durable-object]
//! ```
//! (or `scripts/bench-etcd.sh`, which installs etcd and builds the binaries first).
//!
//! For each lease ttl (seconds; default 3 and 15) and each system, RUNS runs (default 10) of:
//! - unplanned failover: `kill -9` of the leader at a random point of its renewal cycle →
//!   the next leader's PROMOTE; split out: the lease's remaining time at the kill and the
//!   lease's expiry → PROMOTE (kill → promote minus what was left of the lease);
//! - planned handover: SIGTERM of the leader → the next leader's PROMOTE.
//!
//! BRH: per run a fresh native forge and three `brh-agent` processes (the helpers of
//! `tests/src/federation.rs`, as `bench_failover`), heartbeat ttl/3 (1 s / 3 s and 5 s / 15 s:
//! the fast and default profiles). The lease's expiry is the forge's `expires_at_ms`, read just
//! after the kill. PROMOTE is the agent's own leadership log.
//!
//! etcd: per run a fresh single-member etcd on loopback (temporary data dir, free ports) and
//! three campaigner processes (this example re-executed as `bench_etcd campaign …`), each with
//! its own lease of the same ttl kept alive every ttl/3 over etcd's v3 JSON gateway
//! (`/v3/lease/grant`, `/v3/lease/keepalive`, `/v3/election/campaign`, `/v3/election/resign`,
//! `/v3/lease/revoke`). A campaigner logs PROMOTE with a wall-clock timestamp when its campaign
//! returns; on SIGTERM it resigns (or, not leading, revokes its lease) and exits. The lease's
//! expiry is estimated as the killed leader's last keepalive (send time) + ttl.
//!
//! `--forge durable-object` runs BRH's forge as the built Worker in workerd (miniflare, Durable
//! Object mode, `scripts/workerd-forge.mjs` as its own process group; needs
//! `scripts/build-worker.sh`), the agents on its stream as in production.
//!
//! Then a 1 s lease renewed every 200 ms (`--no-1s` skips it). BRH: heartbeat 200 ms, lease
//! 1 s (the forge's `--heartbeat-interval-ms/--lease-ttl-ms` through their environment
//! variables; forge and agent accept it: `Timing::validate` wants ttl ≥ 3 × interval and an
//! interval ≥ 100 ms). etcd: its lease ttl is whole seconds and at least ⌈1.5 × election
//! timeout⌉ (a default member turns a 1 s grant into 2 s), so that row runs a member with
//! `--election-timeout 500`, keepalive every 200 ms.
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use brh_tests::bench::{leader_of, promoted, rand_below, sigterm_to_promote, three_agents};
use brh_tests::federation::*;
use brh_tests::stats::median_worst;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Shared bits

/// One system's results for one ttl.
#[derive(Default)]
struct Cell {
    kill: Vec<u64>,
    left: Vec<u64>,
    gap: Vec<u64>,
    term: Vec<u64>,
}

impl Cell {
    /// Run `r` of a `kill -9` at `t_kill`, the next leader promoted at `t_prom`, with the
    /// killed holder's lease to expire at `expires` if it was read.
    fn record_kill(
        &mut self,
        label: &str,
        r: usize,
        t_kill: u64,
        t_prom: u64,
        expires: Option<u64>,
    ) {
        self.kill.push(t_prom - t_kill);
        if let Some(e) = expires {
            self.left.push(e.saturating_sub(t_kill));
            self.gap.push(t_prom.saturating_sub(e));
        }
        eprintln!(
            "[{label}] kill run {r}: {} ms (lease left {:?} ms, expiry→promote {:?} ms)",
            t_prom - t_kill,
            expires.map(|e| e.saturating_sub(t_kill)),
            expires.map(|e| t_prom.saturating_sub(e))
        );
    }
}

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    exe.ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

// ---------------------------------------------------------------------------------------------
// BRH (as bench_failover)

struct Brh {
    hb: u64,
    ttl: u64,
    forge: ForgeKind,
    /// `fast` / `default`, or `None` for a custom timing passed through the environment.
    profile: Option<&'static str>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ForgeKind {
    Native,
    DurableObject,
}

/// The forge of one run; dropping it stops it.
enum BrhForge {
    Native(Forge),
    Workerd(WorkerdForge),
}

impl BrhForge {
    fn addr(&self) -> SocketAddr {
        match self {
            BrhForge::Native(f) => f.addr,
            BrhForge::Workerd(f) => f.addr,
        }
    }

    fn get(&self, path: &str) -> Value {
        http_get(self.addr(), path).expect("forge GET")
    }
}

fn brh_start(p: &Brh, tag: &str) -> (PathBuf, BrhForge, Vec<Agent>) {
    let dir = scratch(tag);
    let seal = fresh_seal();
    // The forge reads BRH_HEARTBEAT_INTERVAL_MS / BRH_LEASE_TTL_MS as overrides of its profile.
    match p.profile {
        Some(_) => {
            std::env::remove_var("BRH_HEARTBEAT_INTERVAL_MS");
            std::env::remove_var("BRH_LEASE_TTL_MS");
        }
        None => {
            std::env::set_var("BRH_HEARTBEAT_INTERVAL_MS", p.hb.to_string());
            std::env::set_var("BRH_LEASE_TTL_MS", p.ttl.to_string());
        }
    }
    let forge = match p.forge {
        ForgeKind::Native => BrhForge::Native(Forge::start_profile(
            &dir,
            &seal,
            None,
            30_000,
            p.profile.unwrap_or("fast"),
        )),
        ForgeKind::DurableObject => BrhForge::Workerd(WorkerdForge::start(
            &dir,
            &seal,
            None,
            30_000,
            (p.hb, p.ttl),
        )),
    };
    let agents = three_agents(&dir, &seal, forge.addr(), (p.hb, p.ttl));
    (dir, forge, agents)
}

fn brh_cell(p: &Brh, label: &str, runs: usize) -> Cell {
    let mut c = Cell::default();
    for r in 0..runs {
        let (_d, forge, mut agents) = brh_start(p, "bench-etcd-brh-kill");
        let (li, term) = leader_of(&agents);
        // Steady state, then a random phase within the heartbeat cycle.
        std::thread::sleep(Duration::from_millis(p.hb + rand_below(p.hb)));
        let t_kill = agents[li].kill9();
        // A renewal already on the wire may still land: read the lease just after.
        std::thread::sleep(Duration::from_millis(50));
        let v = forge.get("/federation/leader?env=dev");
        let lease = &v["lease"];
        let expires = (lease["holder"].as_str() == Some(agents[li].node.as_str())
            && lease["term"].as_u64() == Some(term))
        .then(|| lease["expires_at_ms"].as_u64())
        .flatten();
        let t_prom = promoted(&agents, li, term + 1, Duration::from_millis(3 * p.ttl));
        c.record_kill(label, r, t_kill, t_prom, expires);
    }
    for r in 0..runs {
        let (_d, _forge, mut agents) = brh_start(p, "bench-etcd-brh-term");
        let ms = sigterm_to_promote(&mut agents, p.hb, p.ttl);
        c.term.push(ms);
        eprintln!("[{label}] sigterm run {r}: {ms} ms");
    }
    c
}

// ---------------------------------------------------------------------------------------------
// etcd: the member and the campaigners

struct Etcd {
    child: Child,
    addr: SocketAddr,
    /// Removed on drop: etcd preallocates ~120 MB of WAL per member.
    data: PathBuf,
}

impl Etcd {
    /// `election_timeout_ms`: etcd's `--election-timeout` (default 1000, with the default
    /// 100 ms heartbeat); the shortest lease a member grants is ⌈1.5 × it⌉ in whole seconds.
    fn start(dir: &Path, election_timeout_ms: Option<u64>) -> Etcd {
        let (cp, pp) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{cp}");
        let peer = format!("http://127.0.0.1:{pp}");
        let log = std::fs::File::create(dir.join("etcd.log")).expect("etcd log");
        let data = dir.join("etcd-data");
        let child = Command::new("etcd")
            .args(["--name", "bench", "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("bench={peer}")])
            .args(["--logger", "zap", "--log-level", "warn"])
            .args(election_timeout_ms.map_or_else(Vec::new, |e| {
                vec!["--election-timeout".to_string(), e.to_string()]
            }))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd (run scripts/setup-etcd.sh)");
        let addr: SocketAddr = format!("127.0.0.1:{cp}").parse().unwrap();
        wait_until(Duration::from_secs(30), || {
            (http_get(addr, "/health")?["health"] == "true").then_some(())
        })
        .expect("etcd did not become healthy");
        Etcd { child, addr, data }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

struct Campaigner {
    child: Child,
    log: PathBuf,
}

impl Campaigner {
    fn start(dir: &Path, etcd: SocketAddr, node: &str, ttl_s: u64, renew_ms: u64) -> Campaigner {
        let log = dir.join(format!("{node}.campaign.jsonl"));
        let child = Command::new(std::env::current_exe().expect("own path"))
            .arg("campaign")
            .args(["--endpoint", &etcd.to_string()])
            .args(["--node", node, "--ttl", &ttl_s.to_string()])
            .args(["--keepalive-ms", &renew_ms.to_string(), "--log"])
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{node}.log"))).expect("log"))
            .spawn()
            .expect("spawn campaigner");
        Campaigner { child, log }
    }

    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Wall ms of the first record with this event.
    fn first(&self, event: &str) -> Option<u64> {
        self.records()
            .iter()
            .find(|r| r["event"] == event)
            .and_then(|r| r["at_ms"].as_u64())
    }

    fn last_keepalive(&self) -> Option<u64> {
        self.records()
            .iter()
            .filter(|r| r["event"] == "keepalive")
            .filter_map(|r| r["at_ms"].as_u64())
            .max()
    }

    fn kill9(&mut self) -> u64 {
        let t = wall_ms();
        signal(self.child.id(), libc::SIGKILL);
        let _ = self.child.wait();
        t
    }

    fn terminate(&mut self) -> bool {
        signal(self.child.id(), libc::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

impl Drop for Campaigner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An etcd setting: lease ttl (whole seconds), keepalive period, member election timeout.
#[derive(Clone, Copy)]
struct EtcdSetup {
    ttl_s: u64,
    renew_ms: u64,
    election_timeout_ms: Option<u64>,
}

fn etcd_start(e: EtcdSetup, tag: &str) -> (PathBuf, Etcd, Vec<Campaigner>) {
    let dir = scratch(tag);
    let etcd = Etcd::start(&dir, e.election_timeout_ms);
    let cs: Vec<Campaigner> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| Campaigner::start(&dir, etcd.addr, n, e.ttl_s, e.renew_ms))
        .collect();
    (dir, etcd, cs)
}

/// The campaigner that leads once all three are campaigning.
fn etcd_leader(cs: &[Campaigner]) -> usize {
    wait_until(Duration::from_secs(30), || {
        let all_in = cs.iter().all(|c| c.first("campaign").is_some());
        let leaders: Vec<usize> = (0..cs.len())
            .filter(|&i| cs[i].first("promote").is_some())
            .collect();
        (all_in && leaders.len() == 1).then(|| leaders[0])
    })
    .expect("no etcd leader")
}

fn etcd_promoted(cs: &[Campaigner], skip: usize, timeout: Duration) -> u64 {
    wait_until(timeout, || {
        (0..cs.len())
            .filter(|&i| i != skip)
            .find_map(|i| cs[i].first("promote"))
    })
    .expect("no etcd promotion")
}

fn etcd_cell(e: EtcdSetup, label: &str, runs: usize) -> Cell {
    let (ttl, period) = (e.ttl_s * 1000, e.renew_ms);
    let mut c = Cell::default();
    for r in 0..runs {
        let (_d, _etcd, mut cs) = etcd_start(e, "bench-etcd-kill");
        let li = etcd_leader(&cs);
        std::thread::sleep(Duration::from_millis(period + rand_below(period)));
        let t_kill = cs[li].kill9();
        let expires = cs[li].last_keepalive().map(|k| k + ttl);
        let t_prom = etcd_promoted(&cs, li, Duration::from_millis(3 * ttl));
        c.record_kill(label, r, t_kill, t_prom, expires);
    }
    for r in 0..runs {
        let (_d, _etcd, mut cs) = etcd_start(e, "bench-etcd-term");
        let li = etcd_leader(&cs);
        std::thread::sleep(Duration::from_millis(period + rand_below(period)));
        let t0 = wall_ms();
        let clean = cs[li].terminate();
        let t_prom = etcd_promoted(&cs, li, Duration::from_millis(3 * ttl));
        c.term.push(t_prom - t0);
        eprintln!(
            "[{label}] sigterm run {r}: {} ms{}",
            t_prom - t0,
            if clean { "" } else { " (unclean exit)" }
        );
    }
    c
}

// ---------------------------------------------------------------------------------------------
// The campaigner process: `bench_etcd campaign --endpoint ADDR --node ID --ttl S --log FILE`

const ELECTION: &str = "brh-bench";

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for ch in data.chunks(3) {
        let n = (u32::from(ch[0]) << 16)
            | (u32::from(*ch.get(1).unwrap_or(&0)) << 8)
            | u32::from(*ch.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= ch.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One JSON POST to etcd's gateway on a fresh connection.
async fn post(addr: SocketAddr, path: &str, body: &Value) -> Result<Value, String> {
    let s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let req = hyper::Request::post(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let res = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status();
    let bytes = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "{path}: {status} {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("{path}: {e}"))
}

struct Log {
    node: String,
    file: std::fs::File,
}

impl Log {
    fn event(&mut self, event: &str, extra: Value) {
        self.event_at(event, wall_ms(), extra);
    }

    /// One JSON line, written at once (the harness reads the file while it grows).
    fn event_at(&mut self, event: &str, at_ms: u64, extra: Value) {
        let mut v = json!({"node": self.node, "event": event, "at_ms": at_ms});
        if let (Some(o), Value::Object(x)) = (v.as_object_mut(), extra) {
            o.extend(x);
        }
        let _ = self.file.write_all(format!("{v}\n").as_bytes());
    }
}

fn campaigner(args: &[String]) -> Result<(), String> {
    let mut it = args.iter();
    let (mut endpoint, mut node, mut ttl, mut log) = (None, None, 3u64, None);
    let mut renew_ms = None;
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--endpoint" => endpoint = Some(v.parse::<SocketAddr>().map_err(|e| e.to_string())?),
            "--node" => node = Some(v.clone()),
            "--ttl" => ttl = v.parse().map_err(|e| format!("--ttl: {e}"))?,
            "--keepalive-ms" => {
                renew_ms = Some(
                    v.parse::<u64>()
                        .map_err(|e| format!("--keepalive-ms: {e}"))?,
                )
            }
            "--log" => log = Some(PathBuf::from(v)),
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    let addr = endpoint.ok_or("--endpoint is required")?;
    let node = node.ok_or("--node is required")?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log.ok_or("--log is required")?)
        .map_err(|e| e.to_string())?;
    let mut log = Log {
        node: node.clone(),
        file,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        use tokio::signal::unix::{signal as on, SignalKind};
        let mut term = on(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let grant = post(addr, "/v3/lease/grant", &json!({"TTL": ttl})).await?;
        let lease = grant["ID"]
            .as_str()
            .ok_or_else(|| format!("no lease id in {grant}"))?
            .to_string();
        log.event("lease", json!({"lease": lease, "ttl": ttl}));
        // Keep the lease alive every ttl/3 (the first right away, as a renewal cycle starts).
        let (ka_node, ka_lease, ka_log) = (node.clone(), lease.clone(), log.file.try_clone());
        tokio::spawn(async move {
            let mut log = Log {
                node: ka_node,
                file: ka_log.expect("log handle"),
            };
            let every = renew_ms.unwrap_or(ttl * 1000 / 3).max(1);
            let mut tick = tokio::time::interval(Duration::from_millis(every));
            loop {
                tick.tick().await;
                let sent = wall_ms();
                let r = tokio::time::timeout(
                    Duration::from_secs(2),
                    post(addr, "/v3/lease/keepalive", &json!({"ID": ka_lease})),
                )
                .await;
                match r {
                    Ok(Ok(v)) if v["result"]["TTL"].as_str().is_some_and(|t| t != "0") => {
                        // `at_ms` is the send time: etcd refreshes the lease after it.
                        log.event_at("keepalive", sent, json!({"ttl": v["result"]["TTL"]}));
                    }
                    other => log.event("keepalive_failed", json!({"error": format!("{other:?}")})),
                }
            }
        });
        log.event("campaign", json!({}));
        let body = json!({
            "name": b64(ELECTION.as_bytes()),
            "lease": lease,
            "value": b64(node.as_bytes()),
        });
        let campaign = post(addr, "/v3/election/campaign", &body);
        let leader = tokio::select! {
            r = campaign => r?,
            _ = term.recv() => {
                // Not leading: give the lease back so nobody waits on it, and go.
                let _ = post(addr, "/v3/lease/revoke", &json!({"ID": lease})).await;
                log.event("exit", json!({"leading": false}));
                return Ok(());
            }
        };
        let key = leader["leader"].clone();
        log.event("promote", json!({"key": key["key"]}));
        eprintln!("PROMOTE {node} at {}", wall_ms());
        term.recv().await;
        let r = post(addr, "/v3/election/resign", &json!({"leader": key})).await;
        log.event("resign", json!({"ok": r.is_ok()}));
        eprintln!("RESIGN {node} at {}: {r:?}", wall_ms());
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// The harness

struct Opts {
    runs: usize,
    forge: ForgeKind,
    ttls: Vec<u64>,
    brh: bool,
    etcd: bool,
    subsecond: bool,
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        runs: 10,
        forge: ForgeKind::Native,
        ttls: vec![3, 15],
        brh: true,
        etcd: true,
        subsecond: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ttls" => {
                o.ttls = it
                    .next()
                    .ok_or("--ttls needs a value")?
                    .split(',')
                    .map(|s| s.trim().parse::<u64>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--ttls: {e}"))?;
                if o.ttls.iter().any(|&t| !(3..=3600).contains(&t)) {
                    return Err("--ttls: whole seconds from 3 (ttl/3 must be ≥ 1 s) to 3600".into());
                }
            }
            "--only" => match it.next().map(String::as_str) {
                Some("brh") => o.etcd = false,
                Some("etcd") => o.brh = false,
                _ => return Err("--only takes brh or etcd".into()),
            },
            "--no-1s" => o.subsecond = false,
            "--forge" => match it.next().map(String::as_str) {
                Some("native") => o.forge = ForgeKind::Native,
                Some("durable-object") => o.forge = ForgeKind::DurableObject,
                _ => return Err("--forge takes native or durable-object".into()),
            },
            "-h" | "--help" => {
                println!(
                    "usage: bench_etcd [RUNS] [--ttls 3,15] [--only brh|etcd] [--no-1s] \
                     [--forge native|durable-object]"
                );
                std::process::exit(0);
            }
            n => o.runs = n.parse().map_err(|_| format!("unknown argument {n}"))?,
        }
    }
    if o.runs == 0 {
        return Err("RUNS must be at least 1".into());
    }
    Ok(o)
}

fn cell_str(v: &[u64]) -> String {
    median_worst(v).map_or("—".into(), |(m, w)| format!("{m} / {w}"))
}

fn ratio_str(a: &[u64], b: &[u64]) -> String {
    match (median_worst(a), median_worst(b)) {
        (Some((am, aw)), Some((bm, bw))) if bm > 0 && bw > 0 => format!(
            "{:.2}× / {:.2}×",
            am as f64 / bm as f64,
            aw as f64 / bw as f64
        ),
        _ => "—".into(),
    }
}

/// The table's rows for one lease ttl: one per system that ran, then the ratios if both did.
fn push_rows(
    rows: &mut Vec<String>,
    ttl: &str,
    renew: &str,
    brh: (&str, Option<Cell>),
    etcd: (&str, Option<Cell>),
) {
    for (name, c) in [&brh, &etcd] {
        if let Some(c) = c {
            rows.push(format!(
                "| {ttl} | {name} | {renew} | {} | {} | {} | {} |",
                cell_str(&c.kill),
                cell_str(&c.left),
                cell_str(&c.gap),
                cell_str(&c.term)
            ));
        }
    }
    if let ((_, Some(b)), (_, Some(e))) = (&brh, &etcd) {
        rows.push(format!(
            "| {ttl} | **BRH / etcd** | | {} | (phase of the kill) | {} | {} |",
            ratio_str(&b.kill, &e.kill),
            ratio_str(&b.gap, &e.gap),
            ratio_str(&b.term, &e.term)
        ));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("campaign") {
        if let Err(e) = campaigner(&args[1..]) {
            eprintln!("campaigner: {e}");
            std::process::exit(1);
        }
        return;
    }
    let o = parse_args(&args).unwrap_or_else(|e| {
        eprintln!("bench_etcd: {e}");
        std::process::exit(2);
    });
    let etcd_version = if o.etcd {
        let out = Command::new("etcd").arg("--version").output();
        let v = out.ok().filter(|o| o.status.success()).and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().last().map(String::from))
        });
        Some(v.unwrap_or_else(|| {
            eprintln!("bench_etcd: `etcd --version` failed: run scripts/setup-etcd.sh");
            std::process::exit(2);
        }))
    } else {
        None
    };
    let etcd_name = etcd_version.map_or_else(|| "etcd".to_string(), |v| format!("etcd {v}"));

    let brh_name = match o.forge {
        ForgeKind::Native => "BRH",
        ForgeKind::DurableObject => "BRH (Worker in workerd, DO)",
    };
    let mut rows: Vec<String> = Vec::new();
    for &ttl_s in &o.ttls {
        let ttl = ttl_s * 1000;
        let p = Brh {
            hb: ttl / 3,
            ttl,
            forge: o.forge,
            profile: match ttl_s {
                3 => Some("fast"),
                15 => Some("default"),
                _ => None,
            },
        };
        let brh = o
            .brh
            .then(|| brh_cell(&p, &format!("BRH {ttl_s} s"), o.runs));
        let etcd = o.etcd.then(|| {
            let e = EtcdSetup {
                ttl_s,
                renew_ms: ttl / 3,
                election_timeout_ms: None,
            };
            etcd_cell(e, &format!("etcd {ttl_s} s"), o.runs)
        });
        let (label, renew) = (format!("{ttl_s} s"), format!("{} ms", ttl / 3));
        push_rows(
            &mut rows,
            &label,
            &renew,
            (brh_name, brh),
            (&etcd_name, etcd),
        );
    }
    if o.subsecond {
        // BRH at heartbeat 200 ms / lease 1 s. etcd's lease ttl is whole seconds and at least
        // ⌈1.5 × election timeout⌉ (2 s on a default member, which raises a 1 s grant to 2 s);
        // with `--election-timeout 500` a member grants 1 s, kept alive every 200 ms as BRH.
        let p = Brh {
            hb: 200,
            ttl: 1000,
            forge: o.forge,
            profile: None,
        };
        let brh = o.brh.then(|| brh_cell(&p, "BRH 1 s", o.runs));
        let etcd = o.etcd.then(|| {
            let e = EtcdSetup {
                ttl_s: 1,
                renew_ms: 200,
                election_timeout_ms: Some(500),
            };
            etcd_cell(e, "etcd 1 s", o.runs)
        });
        let etcd_tuned = format!("{etcd_name} (`--election-timeout 500`)");
        push_rows(
            &mut rows,
            "1 s",
            "200 ms",
            (brh_name, brh),
            (&etcd_tuned, etcd),
        );
    }

    let mut out = String::new();
    out.push_str(&format!(
        "Leader failover, BRH vs {etcd_name} election API, same machine, {} runs per cell \
         (ms, median / worst; ratios BRH/etcd of the medians / of the worsts). Three nodes; \
         renewals every ttl/3; kill -9 at a random point of the renewal cycle.\n\n",
        o.runs
    ));
    out.push_str(
        "| lease ttl | system | renew every | kill -9 → promote | lease left at kill | \
         lease expiry → promote | SIGTERM → promote |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|\n");
    for r in &rows {
        out.push_str(r);
        out.push('\n');
    }
    println!();
    print!("{out}");
    let md = target_dir().join("bench-etcd.md");
    match std::fs::write(&md, &out) {
        Ok(()) => eprintln!("(written to {})", md.display()),
        Err(e) => eprintln!("could not write {}: {e}", md.display()),
    }
}
