//! Load test of the native forge: N simulated nodes heartbeating every second (not a test: it
//! prints a table; nothing is asserted).
//!
//! ```text
//! cargo run --release -p brh-tests --example bench_load -- [--nodes 1000] [--secs 60] [--tasks 8] [--store file|etcd]
//! ```
//! `--store etcd`: the forge is one replica (active) over a one-member etcd the harness starts
//! (`forge serve --store etcd`); the table adds etcd's own `etcd_mvcc_put_total` over the
//! measured window, as etcd writes per node per day.
//! (or `scripts/bench-load.sh`, which builds the forge first).
//!
//! One process plays every node with the agent's own wire format: `POST /federation/heartbeat`
//! with a `Heartbeat` JSON body, signed with `brh_shared::sign::sign_request` (`x-brh-node`,
//! `x-brh-ts` = the real clock, `x-brh-nonce` = `<boot>:<seq>`, `x-brh-sig`), one keep-alive
//! HTTP/1.1 connection per node (as each agent has its own). Every answer is checked like the
//! agent does: 200, a `LeaderView` whose signature `verify_view` accepts, for this env and
//! addressed to this node.
//!
//! Pacing: node `i` beats at `i / N` of every interval (so N nodes spread evenly over the
//! second), driven by a few scheduler tasks on one client thread; each task owns every
//! `tasks`-th node in phase order and sleeps until each node's slot. A warm-up round (the joins,
//! which the forge persists) is reported apart; the measured window is the `--secs` rounds after
//! it. Latency is send → verified answer; the scheduler's own lateness is reported too.
//!
//! The forge is `target/release/forge serve --profile fast` (1 s / 3 s) started by the
//! harness. Its CPU per heartbeat comes from `/proc/<pid>/stat` (utime + stime, clock ticks) and
//! `/proc/<pid>/task/*/schedstat` (ns) read before and after the window; its RSS from
//! `/proc/<pid>/status`.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use brh_shared::replay::Nonce;
use brh_shared::sign::{
    sign_request, verify_view, HEADER_NODE, HEADER_NONCE, HEADER_SIG, HEADER_TS,
};
use brh_shared::wire::{Heartbeat, LeaderView};
use brh_tests::federation::{fresh_seal, scratch, wall_ms, Forge};
use brh_tests::stats::percentile;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant as TInstant;

const PATH: &str = "/federation/heartbeat";
const ENV: &str = "load";
const TIMEOUT: Duration = Duration::from_secs(5);

struct Args {
    nodes: usize,
    secs: u64,
    tasks: usize,
    interval_ms: u64,
    etcd: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        nodes: 1000,
        secs: 60,
        tasks: 8,
        interval_ms: 1000,
        etcd: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))?
                .parse::<u64>()
                .map_err(|e| format!("{name}: {e}"))
        };
        match k.as_str() {
            "--nodes" => a.nodes = num("--nodes")? as usize,
            "--secs" => a.secs = num("--secs")?,
            "--tasks" => a.tasks = num("--tasks")? as usize,
            "--store" => match it.next().as_deref() {
                Some("file") => a.etcd = false,
                Some("etcd") => a.etcd = true,
                _ => return Err("--store needs file or etcd".into()),
            },
            "-h" | "--help" => {
                println!(
                    "usage: bench_load [--nodes 1000] [--secs 60] [--tasks 8] [--store file|etcd]\n\
                     N signed 1 s heartbeats against a native forge (fast profile); prints a table.\n\
                     --store etcd: the forge as a replica over a one-member etcd (started here)."
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    if a.nodes == 0 || a.secs == 0 || a.tasks == 0 {
        return Err("--nodes, --secs and --tasks must be at least 1".into());
    }
    a.tasks = a.tasks.min(a.nodes);
    Ok(a)
}

/// One simulated agent.
struct Node {
    id: String,
    boot: String,
    seq: u64,
    api: String,
    conn: Option<SendRequest<Full<Bytes>>>,
}

/// What one scheduler task saw.
#[derive(Default)]
struct Tally {
    /// Latencies (µs) of the measured window's answers, errors included.
    lat_us: Vec<u32>,
    /// Latencies (µs) of the warm-up round (the joins).
    join_us: Vec<u32>,
    /// Errors of the measured window, by kind.
    errors: BTreeMap<String, u64>,
    /// Errors of the warm-up round.
    join_errors: u64,
    /// Every term and leader seen in an accepted answer.
    terms: BTreeSet<(u64, String)>,
    /// Answers that named a leader (after the first grant every answer should).
    without_leader_after_grant: u64,
    /// Scheduler lateness: slot → send.
    late_max_us: u64,
    late_over_10ms: u64,
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(send)
}

/// One heartbeat of `node`: the verified view, or why it failed.
async fn beat(
    addr: SocketAddr,
    seal: &[u8],
    node: &mut Node,
    uptime_s: u64,
) -> Result<LeaderView, String> {
    let hb = Heartbeat {
        env: ENV.into(),
        priority: 0,
        draining: false,
        uptime_s,
        version: "bench-load".into(),
        api: Some(node.api.clone()),
    };
    let body = serde_json::to_vec(&hb).expect("heartbeat serializes");
    node.seq += 1;
    let key = brh_shared::keys::node_key(seal, ENV, &node.id);
    let h = sign_request(
        &key,
        "POST",
        PATH,
        &node.id,
        wall_ms(),
        Nonce::new(node.boot.as_str(), node.seq),
        &body,
    );
    if node.conn.as_ref().is_none_or(|c| c.is_closed()) {
        node.conn = Some(connect(addr).await?);
    }
    let conn = node.conn.as_mut().expect("connected");
    conn.ready().await.map_err(|e| format!("transport: {e}"))?;
    let req = hyper::Request::post(PATH)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header(HEADER_NODE, &h.node)
        .header(HEADER_TS, h.ts_ms.to_string())
        .header(HEADER_NONCE, h.nonce.to_string())
        .header(HEADER_SIG, &h.sig)
        .body(Full::new(Bytes::from(body)))
        .expect("valid request");
    let res = conn
        .send_request(req)
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let status = res.status().as_u16();
    let bytes = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("transport: {e}"))?
        .to_bytes();
    if status != 200 {
        let text = String::from_utf8_lossy(&bytes);
        let code = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(String::from))
            .unwrap_or_else(|| text.chars().take(40).collect());
        return Err(format!("{status} {code}"));
    }
    let view: LeaderView = serde_json::from_slice(&bytes).map_err(|e| format!("bad json: {e}"))?;
    if !verify_view(&key, &view) {
        return Err("bad view signature".into());
    }
    if view.env != ENV || view.you.as_ref().is_none_or(|y| y.node != node.id) {
        return Err("view for another env or node".into());
    }
    Ok(view)
}

#[allow(clippy::too_many_arguments)]
async fn scheduler(
    addr: SocketAddr,
    seal: Vec<u8>,
    mut nodes: Vec<(Duration, Node)>,
    start: TInstant,
    interval: Duration,
    rounds: u64,
    granted: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Tally {
    use std::sync::atomic::Ordering;
    let mut t = Tally::default();
    for r in 0..rounds {
        for (phase, node) in nodes.iter_mut() {
            let slot = start + interval * r as u32 + *phase;
            tokio::time::sleep_until(slot).await;
            let sent = TInstant::now();
            let late = sent.saturating_duration_since(slot).as_micros() as u64;
            let res = tokio::time::timeout(TIMEOUT, beat(addr, &seal, node, r)).await;
            let us = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
            let res = res.unwrap_or_else(|_| Err("timeout".into()));
            if r == 0 {
                t.join_us.push(us);
            } else {
                t.lat_us.push(us);
                t.late_max_us = t.late_max_us.max(late);
                t.late_over_10ms += u64::from(late > 10_000);
            }
            match res {
                Ok(v) => match v.leader {
                    Some(l) => {
                        granted.store(true, Ordering::Relaxed);
                        t.terms.insert((v.term, l));
                    }
                    None => {
                        if granted.load(Ordering::Relaxed) {
                            t.without_leader_after_grant += 1;
                        }
                    }
                },
                Err(e) => {
                    if e.starts_with("transport") || e.starts_with("connect") || e == "timeout" {
                        node.conn = None;
                    }
                    if r == 0 {
                        t.join_errors += 1;
                    } else {
                        *t.errors.entry(e).or_default() += 1;
                    }
                }
            }
        }
    }
    t
}

/// `(utime + stime in ms, on-CPU ns from schedstat)` of a process.
fn cpu_of(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    let ns = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
                .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    (ticks * 1000 / hz, ns)
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// This process's CPU (user + system) in ms.
fn self_cpu_ms() -> u64 {
    let (ms, _) = cpu_of(std::process::id());
    ms
}

/// The `p`-th percentile of ascending `sorted` µs, in ms; 0 for no samples.
fn pct(sorted: &[u32], p: f64) -> f64 {
    percentile(sorted, p).map_or(0.0, |us| us as f64 / 1000.0)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("bench_load: {e}");
        std::process::exit(2);
    });
    let dir = scratch("bench-load");
    let seal = fresh_seal();
    let etcd = args
        .etcd
        .then(|| brh_tests::etcd::EtcdCluster::start(&dir, 1));
    let forge = match &etcd {
        None => Forge::start(&dir, &seal, None, 30_000),
        Some(e) => {
            let listen = brh_tests::etcd::free_addr();
            let timing = ["--profile", "fast"];
            let f = brh_tests::etcd::replica(&dir, &seal, &e.endpoints(), listen, 3, &timing);
            brh_tests::federation::wait_until(Duration::from_secs(20), || {
                brh_tests::etcd::serves(listen).filter(|s| *s)
            })
            .expect("the etcd replica never became active");
            f
        }
    };
    let store = if args.etcd { "etcd" } else { "file" };
    let pid = forge.child.id();
    eprintln!(
        "forge (pid {pid}, fast profile 1 s / 3 s) on {}; {} nodes × {} s, {} scheduler tasks",
        forge.addr, args.nodes, args.secs, args.tasks
    );
    let interval = Duration::from_millis(args.interval_ms);
    let rounds = 1 + args.secs;

    // Node i beats at i/N of the interval; task k owns nodes k, k + K, … (in phase order).
    let mut per_task: Vec<Vec<(Duration, Node)>> = (0..args.tasks).map(|_| Vec::new()).collect();
    for i in 0..args.nodes {
        let phase = interval * i as u32 / args.nodes as u32;
        let node = Node {
            id: format!("load-{i:05}"),
            boot: fresh_seal()[..16].to_string(),
            seq: 0,
            api: format!("http://10.{}.{}.{}:8788", i >> 16, (i >> 8) & 255, i & 255),
            conn: None,
        };
        per_task[i % args.tasks].push((phase, node));
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let addr = forge.addr;
    let etcd_ref = etcd.as_ref();
    let (tallies, window, cpu0, cpu1, client_cpu_ms, puts) = rt.block_on(async move {
        let start = TInstant::now() + Duration::from_millis(200);
        let granted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handles: Vec<_> = per_task
            .into_iter()
            .map(|nodes| {
                tokio::spawn(scheduler(
                    addr,
                    seal.clone().into_bytes(),
                    nodes,
                    start,
                    interval,
                    rounds,
                    granted.clone(),
                ))
            })
            .collect();
        // The measured window starts after the warm-up round.
        tokio::time::sleep_until(start + interval).await;
        let puts0 = etcd_ref.map(|e| e.puts());
        // Halfway through the window every join has long been written: the second half counts
        // what the steady state writes (renewals: nothing).
        let halfway = etcd_ref.map(|e| {
            let member = e.members[0].client;
            let at = start + interval + interval * (rounds as u32 - 1) / 2;
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                let t = Instant::now();
                let puts = tokio::task::spawn_blocking(move || {
                    brh_tests::etcd::puts_at(member).unwrap_or(0.0)
                })
                .await
                .unwrap_or(0.0);
                (t, puts)
            })
        });
        let (w0, c0, s0) = (Instant::now(), cpu_of(pid), self_cpu_ms());
        let mut tallies = Vec::new();
        for h in handles {
            tallies.push(h.await.expect("scheduler task"));
        }
        let (window, c1, s1) = (w0.elapsed(), cpu_of(pid), self_cpu_ms());
        let end_puts = etcd_ref.map(|e| e.puts());
        let half = match halfway {
            Some(h) => h.await.ok().map(|(t, p)| (t.elapsed(), p)),
            None => None,
        };
        let puts = puts0.zip(end_puts).map(|(a, b)| {
            let (half_secs, half_puts) = half.map_or((0.0, 0.0), |(d, p)| (d.as_secs_f64(), b - p));
            (b - a, half_puts, half_secs)
        });
        (tallies, window, c0, c1, s1 - s0, puts)
    });
    let rss_kb = status_kb(pid, "VmRSS");
    let hwm_kb = status_kb(pid, "VmHWM");
    let history = forge.get(&format!("/federation/history?env={ENV}&limit=500"));
    let history_len = history["history"].as_array().map_or(0, Vec::len);

    let mut lat: Vec<u32> = tallies
        .iter()
        .flat_map(|t| t.lat_us.iter().copied())
        .collect();
    let mut join: Vec<u32> = tallies
        .iter()
        .flat_map(|t| t.join_us.iter().copied())
        .collect();
    lat.sort_unstable();
    join.sort_unstable();
    let measured = lat.len() as u64;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in &tallies {
        for (k, v) in &t.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
    }
    let n_errors: u64 = errors.values().sum();
    let join_errors: u64 = tallies.iter().map(|t| t.join_errors).sum();
    let terms: BTreeSet<(u64, String)> = tallies.iter().flat_map(|t| t.terms.clone()).collect();
    let leader_changes = terms.len().saturating_sub(1);
    let no_leader: u64 = tallies.iter().map(|t| t.without_leader_after_grant).sum();
    let late_max = tallies.iter().map(|t| t.late_max_us).max().unwrap_or(0);
    let late10: u64 = tallies.iter().map(|t| t.late_over_10ms).sum();
    let secs = window.as_secs_f64();
    let (tick_ms, ns) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
    let per_beat_us = ns as f64 / 1000.0 / measured.max(1) as f64;
    let per_beat_tick_us = tick_ms as f64 * 1000.0 / measured.max(1) as f64;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "native forge ({store} store) under load: {} nodes × 1 heartbeat/s, {} s measured after \
         one join round (fast profile 1 s / 3 s; {})",
        args.nodes,
        args.secs,
        std::env::consts::ARCH
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| nodes | requests | errors | leader changes | p50 ms | p99 ms | max ms | req/s | \
         forge CPU µs/beat | forge CPU % of a core | forge RSS MiB |"
    );
    let _ = writeln!(
        out,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {:.3} | {:.3} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} |",
        args.nodes,
        measured,
        n_errors,
        leader_changes,
        pct(&lat, 50.0),
        pct(&lat, 99.0),
        pct(&lat, 100.0),
        measured as f64 / secs,
        per_beat_us,
        ns as f64 / 1e9 / secs * 100.0,
        rss_kb as f64 / 1024.0,
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "- joins (the warm-up round; each join is persisted): {} requests, {join_errors} errors, \
         p50 {:.3} ms, p99 {:.3} ms, max {:.1} ms",
        join.len(),
        pct(&join, 50.0),
        pct(&join, 99.0),
        pct(&join, 100.0)
    );
    let _ = writeln!(
        out,
        "- forge CPU, /proc/<pid>/stat utime+stime: {tick_ms} ms over {measured} beats = \
         {per_beat_tick_us:.1} µs/beat (10 ms ticks); /proc/<pid>/task/*/schedstat: \
         {per_beat_us:.1} µs/beat; peak RSS {:.1} MiB",
        hwm_kb as f64 / 1024.0
    );
    let _ = writeln!(
        out,
        "- terms seen (term:leader): {:?}; answers without a leader after the first grant: \
         {no_leader}; forge history entries: {history_len}",
        terms
            .iter()
            .map(|(t, l)| format!("{t}:{l}"))
            .collect::<Vec<_>>()
    );
    let _ = writeln!(
        out,
        "- client (this process, one thread): {:.1} % of a core; scheduler lateness max {:.1} ms, \
         {late10} beats sent > 10 ms after their slot",
        client_cpu_ms as f64 / 10.0 / secs,
        late_max as f64 / 1000.0
    );
    if let Some((puts, half_puts, half_secs)) = puts {
        let _ = writeln!(
            out,
            "- etcd puts (`etcd_mvcc_put_total`): {puts} over the measured window (joins still \
             being written included); {half_puts} over its last {half_secs:.0} s = {:.2} etcd \
             writes per node per day in the steady state",
            half_puts / args.nodes as f64 / half_secs.max(1.0) * 86_400.0
        );
    }
    if !errors.is_empty() {
        let _ = writeln!(out, "- errors by kind: {errors:?}");
    }
    println!();
    print!("{out}");
    let md = target_dir().join(if args.etcd {
        "bench-load-etcd.md"
    } else {
        "bench-load.md"
    });
    match std::fs::write(&md, &out) {
        Ok(()) => eprintln!("(written to {})", md.display()),
        Err(e) => eprintln!("could not write {}: {e}", md.display()),
    }
}

/// `target/` of the running example (`target/<profile>/examples/bench_load`).
fn target_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    exe.ancestors()
        .nth(3)
        .map_or_else(|| std::path::PathBuf::from("target"), |p| p.to_path_buf())
}
