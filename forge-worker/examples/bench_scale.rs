//! Scale benchmark of the native forge: heartbeat latency and throughput as the peer table
//! grows. Not a test: it prints a markdown table.
//!
//! ```text
//! cargo run --release -p forge-worker --example bench_scale -- [--peers 10,100,1000,10000] [--secs N]
//! ```
//!
//! For each peer count P: a fresh native forge in-process on 127.0.0.1:0 (fresh temp data dir,
//! default timing 5 s heartbeat / 15 s lease, core on its own thread); P distinct nodes join
//! with one signed heartbeat each (8 concurrent clients); then sequential renewals from random
//! existing nodes on one keep-alive connection (p50/p99 round trip); then 8 concurrent clients
//! for `--secs` seconds (requests/s, non-200 answers). Each node keeps its own boot id and an
//! increasing seq, and every request carries the real clock as its timestamp. Nodes are split
//! among the concurrent clients, so a node's requests never race each other.
//!
//! The HTTP/1.1 client is a few lines over a tokio `TcpStream` (requests with Content-Length,
//! responses with Content-Length or chunked), so the benchmark needs no extra dependency and
//! the client costs next to nothing next to the forge.
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use brh_shared::replay::Nonce;
use brh_shared::sign::{sign_request, HEADER_NODE, HEADER_NONCE, HEADER_SIG, HEADER_TS};
use brh_shared::Timing;
use forge_worker::native::{self, ServeOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const PATH: &str = "/federation/heartbeat";
const BODY: &[u8] = br#"{"env":"bench"}"#;
/// Concurrent clients for the joins and for the throughput phase.
const CLIENTS: usize = 8;
/// Sequential heartbeats measured for the latency percentiles (after a short warm-up).
const LATENCY_SAMPLES: usize = 2000;
const WARMUP: usize = 200;
/// Sequential `GET /health` round trips: the same HTTP + channel + core-thread path without
/// authentication or an election step, to tell the two apart.
const HEALTH_SAMPLES: usize = 1000;

struct Args {
    peers: Vec<usize>,
    secs: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        peers: vec![10, 100, 1000, 10_000],
        secs: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{key} needs a value"))
        };
        match key.as_str() {
            "--peers" => {
                args.peers = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--peers: {e}"))?;
                if args.peers.is_empty() || args.peers.contains(&0) || args.peers.len() > 16 {
                    return Err("--peers takes 1 to 16 counts, each at least 1".into());
                }
                if args.peers.iter().any(|&p| p > 99_999) {
                    return Err("--peers: at most 99999 peers per run".into());
                }
            }
            "--secs" => {
                args.secs = value()?.parse().map_err(|e| format!("--secs: {e}"))?;
                if args.secs == 0 {
                    return Err("--secs must be at least 1".into());
                }
            }
            "-h" | "--help" => {
                println!(
                    "usage: bench_scale [--peers 10,100,1000,10000] [--secs N]\n\
                     Heartbeat p50/p99 latency and 8-client throughput of the native forge \
                     per peer count."
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    Ok(args)
}

/// SplitMix64: enough randomness for seals, boot ids and picking nodes.
struct Rng(u64);

impl Rng {
    fn seeded(salt: u64) -> Self {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng(t ^ (u64::from(std::process::id()) << 32) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One simulated agent: its id, its boot id and the last seq it used.
struct Node {
    id: String,
    boot: String,
    seq: u64,
}

/// What one request came back with.
enum Answer {
    Ok,
    /// A non-200 status (with the start of the body), or a transport error.
    Failed(String),
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
    out: Vec<u8>,
    line: String,
    body: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> io::Result<Self> {
        let mut c = Conn {
            addr,
            stream: None,
            out: Vec::with_capacity(512),
            line: String::new(),
            body: Vec::new(),
        };
        c.connect().await?;
        Ok(c)
    }

    async fn connect(&mut self) -> io::Result<()> {
        let s = TcpStream::connect(self.addr).await?;
        s.set_nodelay(true)?;
        self.stream = Some(BufReader::new(s));
        Ok(())
    }

    /// One signed heartbeat from `node`: next seq, the real clock as timestamp.
    async fn heartbeat(&mut self, seal: &[u8], node: &mut Node) -> Answer {
        node.seq += 1;
        let ts = native::now_ms();
        let nonce = Nonce::new(node.boot.as_str(), node.seq);
        let key = brh_shared::keys::node_key(seal, "bench", &node.id);
        let h = sign_request(&key, "POST", PATH, &node.id, ts, nonce, BODY);
        self.out.clear();
        let mut head = String::with_capacity(320);
        let _ = write!(
            head,
            "POST {PATH} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n{HEADER_NODE}: {}\r\n{HEADER_TS}: {}\r\n\
             {HEADER_NONCE}: {}\r\n{HEADER_SIG}: {}\r\n\r\n",
            self.addr,
            BODY.len(),
            h.node,
            h.ts_ms,
            h.nonce,
            h.sig
        );
        self.out.extend_from_slice(head.as_bytes());
        self.out.extend_from_slice(BODY);
        self.exchange().await
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.out.clear();
        let head = format!("GET {path} HTTP/1.1\r\nhost: {}\r\n\r\n", self.addr);
        self.out.extend_from_slice(head.as_bytes());
        self.exchange().await
    }

    /// Sends `self.out` and reads one response. On a transport error the connection is
    /// dropped and reopened for the next request.
    async fn exchange(&mut self) -> Answer {
        match self.try_exchange().await {
            Ok((200, _)) => Answer::Ok,
            Ok((status, close)) => {
                if close {
                    self.stream = None;
                }
                let body = String::from_utf8_lossy(&self.body);
                Answer::Failed(format!(
                    "HTTP {status}: {}",
                    body.chars().take(200).collect::<String>()
                ))
            }
            Err(e) => {
                self.stream = None;
                Answer::Failed(format!("transport: {e}"))
            }
        }
    }

    /// Returns the status and whether the server will close the connection.
    async fn try_exchange(&mut self) -> io::Result<(u16, bool)> {
        if self.stream.is_none() {
            self.connect().await?;
        }
        let Some(s) = self.stream.as_mut() else {
            return Err(io::Error::other("not connected"));
        };
        s.get_mut().write_all(&self.out).await?;
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
        self.line.clear();
        if s.read_line(&mut self.line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status: u16 = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            self.line.clear();
            if s.read_line(&mut self.line).await? == 0 {
                return Err(bad("connection closed in headers"));
            }
            let l = self.line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((k, v)) = l.split_once(':') else {
                return Err(bad("bad header line"));
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = Some(v.parse().map_err(|_| bad("bad content-length"))?);
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            } else if k.eq_ignore_ascii_case("connection") {
                close = v.eq_ignore_ascii_case("close");
            }
        }
        self.body.clear();
        if chunked {
            loop {
                self.line.clear();
                s.read_line(&mut self.line).await?;
                let size_hex = self.line.trim().split(';').next().unwrap_or("");
                let n = usize::from_str_radix(size_hex, 16).map_err(|_| bad("bad chunk size"))?;
                let at = self.body.len();
                self.body.resize(at + n, 0);
                s.read_exact(&mut self.body[at..]).await?;
                self.line.clear();
                s.read_line(&mut self.line).await?; // CRLF after the chunk (or trailers end)
                if n == 0 {
                    break;
                }
            }
        } else {
            let n = length.ok_or_else(|| bad("response without length"))?;
            self.body.resize(n, 0);
            s.read_exact(&mut self.body).await?;
        }
        if close {
            self.stream = None;
        }
        Ok((status, close))
    }
}

/// Splits nodes among `k` owners (node i goes to owner i % k), so that no two concurrent
/// clients ever send for the same node and its nonces reach the forge in order.
fn split(nodes: Vec<Node>, k: usize) -> Vec<Vec<Node>> {
    let mut out: Vec<Vec<Node>> = (0..k).map(|_| Vec::new()).collect();
    for (i, n) in nodes.into_iter().enumerate() {
        out[i % k].push(n);
    }
    out.retain(|b| !b.is_empty());
    out
}

/// Counts failures and prints the first few.
#[derive(Default)]
struct Errors {
    count: u64,
    shown: u32,
}

impl Errors {
    fn note(&mut self, phase: &str, a: Answer) -> bool {
        match a {
            Answer::Ok => true,
            Answer::Failed(why) => {
                self.count += 1;
                if self.shown < 5 {
                    self.shown += 1;
                    eprintln!("  [{phase}] request failed: {why}");
                }
                false
            }
        }
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    // Nearest rank.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Row {
    peers: usize,
    p50: Duration,
    p99: Duration,
    rps: f64,
    /// Non-200 answers (or transport errors) in all three phases.
    errors: u64,
    tput_errors: u64,
}

async fn run_one(peers: usize, secs: u64, run: usize) -> anyhow::Result<Row> {
    let mut rng = Rng::seeded(run as u64 + 1);
    let seal: Vec<u8> = (0..4).flat_map(|_| rng.next().to_le_bytes()).collect();
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "brh-bench-scale-{}-{peers}-{:x}",
        std::process::id(),
        rng.next()
    ));
    std::fs::create_dir_all(&dir)?;
    let opts = ServeOptions::new("127.0.0.1:0".parse()?, dir.clone(), seal.clone());
    let forge = native::start(opts).await?;
    let addr = forge.addr;
    let result = drive(addr, &seal, peers, secs, &mut rng).await;
    forge.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn drive(
    addr: SocketAddr,
    seal: &[u8],
    peers: usize,
    secs: u64,
    rng: &mut Rng,
) -> anyhow::Result<Row> {
    let nodes: Vec<Node> = (1..=peers)
        .map(|i| Node {
            id: format!("n{i:05}"),
            boot: format!("{:016x}", rng.next()),
            seq: 0,
        })
        .collect();
    let mut errors = Errors::default();

    // 1. Populate: every node joins with one heartbeat, CLIENTS connections in parallel.
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for mut bucket in split(nodes, CLIENTS) {
        let seal = seal.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut failed = Vec::new();
            for node in &mut bucket {
                if let Answer::Failed(why) = conn.heartbeat(&seal, node).await {
                    failed.push(why);
                }
            }
            anyhow::Ok((bucket, failed))
        }));
    }
    let mut nodes = Vec::with_capacity(peers);
    for t in tasks {
        let (bucket, failed) = t.await??;
        nodes.extend(bucket);
        for why in failed {
            errors.note("join", Answer::Failed(why));
        }
    }
    let join_s = t0.elapsed().as_secs_f64();
    let join_errors = errors.count;

    // 2. Latency: sequential renewals from random existing nodes on one keep-alive connection.
    let mut conn = Conn::open(addr).await?;
    for _ in 0..WARMUP {
        let i = rng.below(nodes.len());
        errors.note("warm-up", conn.heartbeat(seal, &mut nodes[i]).await);
    }
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..LATENCY_SAMPLES {
        let i = rng.below(nodes.len());
        let node = &mut nodes[i];
        let t = Instant::now();
        let a = conn.heartbeat(seal, node).await;
        let dt = t.elapsed();
        if errors.note("latency", a) {
            samples.push(dt);
        }
    }
    anyhow::ensure!(!samples.is_empty(), "every latency request failed");
    samples.sort_unstable();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));

    // Same connection, same core thread, no authentication or election step.
    let mut health = Vec::with_capacity(HEALTH_SAMPLES);
    for _ in 0..HEALTH_SAMPLES {
        let t = Instant::now();
        let a = conn.get("/health").await;
        let dt = t.elapsed();
        if errors.note("health", a) {
            health.push(dt);
        }
    }
    health.sort_unstable();
    drop(conn);
    let latency_errors = errors.count - join_errors;

    // 3. Throughput: CLIENTS connections for `secs` seconds, random nodes each from its own share.
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for (k, mut bucket) in split(nodes, CLIENTS).into_iter().enumerate() {
        let seal = seal.to_vec();
        let mut rng = Rng::seeded(rng.next() ^ k as u64);
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let (mut ok, mut failed) = (0u64, Vec::new());
            while Instant::now() < deadline {
                let i = rng.below(bucket.len());
                match conn.heartbeat(&seal, &mut bucket[i]).await {
                    Answer::Ok => ok += 1,
                    Answer::Failed(why) => failed.push(why),
                }
            }
            anyhow::Ok((ok, failed))
        }));
    }
    let mut done = 0u64;
    let before = errors.count;
    for t in tasks {
        let (ok, failed) = t.await??;
        done += ok + failed.len() as u64;
        for why in failed {
            errors.note("throughput", Answer::Failed(why));
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let tput_errors = errors.count - before;
    let rps = done as f64 / wall;

    let h50 = if health.is_empty() {
        f64::NAN
    } else {
        ms(percentile(&health, 0.50))
    };
    eprintln!(
        "peers={peers}: joins {peers} in {join_s:.2} s ({:.0}/s, {join_errors} errors); \
         heartbeat p50 {:.3} ms p99 {:.3} ms ({latency_errors} errors); GET /health p50 \
         {h50:.3} ms; {done} heartbeats in {wall:.2} s = {rps:.0} req/s ({tput_errors} errors)",
        peers as f64 / join_s,
        ms(p50),
        ms(p99),
    );
    Ok(Row {
        peers,
        p50,
        p99,
        rps,
        errors: errors.count,
        tput_errors,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_scale: {e}");
            std::process::exit(2);
        }
    };
    let timing = Timing::DEFAULT;
    eprintln!(
        "bench_scale: native forge, heartbeat {} ms / lease {} ms, peers {:?}, {} s of load \
         per count, {} cores",
        timing.heartbeat_interval_ms,
        timing.lease_ttl_ms,
        args.peers,
        args.secs,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut rows = Vec::new();
    for (run, &p) in args.peers.iter().enumerate() {
        rows.push(run_one(p, args.secs, run).await?);
    }

    println!();
    println!("| peers | heartbeat p50 ms | p99 ms | req/s (8 clients) | errors |");
    println!("|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.3} | {:.3} | {:.0} | {} |",
            r.peers,
            ms(r.p50),
            ms(r.p99),
            r.rps,
            r.errors
        );
    }
    println!();
    println!(
        "errors = non-200 answers in all three phases (joins, {LATENCY_SAMPLES} sequential \
         renewals, {} s of 8-client load)",
        args.secs
    );

    // The issue's sustained-load check: 10,000 nodes at a 5 s heartbeat.
    let needed = 10_000.0 * 1000.0 / timing.heartbeat_interval_ms as f64;
    match rows.iter().find(|r| r.peers == 10_000) {
        Some(r) => {
            let pass = r.rps > needed && r.errors == 0;
            println!(
                "sustained load: 10,000 nodes at a {} s heartbeat = {needed:.0} heartbeats/s; \
                 measured at 10000 peers: {:.0} req/s ({:.1}x), {} errors under load, {} in \
                 total -> {}",
                timing.heartbeat_interval_ms / 1000,
                r.rps,
                r.rps / needed,
                r.tput_errors,
                r.errors,
                if pass { "PASS" } else { "FAIL" }
            );
        }
        None => println!(
            "sustained load: 10,000 nodes at a 5 s heartbeat = {needed:.0} heartbeats/s; not \
             measured (--peers has no 10000)"
        ),
    }
    if let (Some(small), Some(large)) = (
        rows.iter().min_by_key(|r| r.peers),
        rows.iter().max_by_key(|r| r.peers),
    ) {
        println!(
            "p50 ratio: {:.2}x ({} peers {:.3} ms / {} peers {:.3} ms)",
            ms(large.p50) / ms(small.p50),
            large.peers,
            ms(large.p50),
            small.peers,
            ms(small.p50)
        );
    }
    Ok(())
}
