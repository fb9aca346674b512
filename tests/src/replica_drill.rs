//! Fault drills on forge replicas over a real etcd cluster (docs/replicas.md,
//! docs/design.md §12): three etcd members, three `forge serve --store etcd` replicas, 3–5
//! agents that hold every replica's address (`BRH_FORGE_URL=A,B,C`, each agent in another
//! order). Each replica reaches each etcd member through its own TCP proxy, so a replica can
//! be cut off from etcd while the agents still reach it.
//!
//! Faults, overlapping on different parts: `kill -9` of the active replica (started again
//! later on its port), `SIGSTOP` of the active replica (a zombie: its sockets stay open; it
//! is thawed later, often after another replica took over), the active replica partitioned
//! from every etcd member, a graceful restart of any replica, `kill -9` of one etcd member,
//! and quorum loss (two members killed) and return. At the end every agent's leadership log
//! goes through the overlap checker, and the federation must have a leader again.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::etcd::*;
use crate::federation::*;
use crate::sim::Rng;

pub const REPLICA_DRILL_KINDS: [&str; 6] = [
    "replica-kill-9",
    "replica-sigstop",
    "replica-partition",
    "replica-restart",
    "etcd-member-kill",
    "etcd-quorum-loss",
];

#[derive(Debug, Clone)]
pub struct ReplicaDrillOpts {
    pub agents: usize,
    pub faults: u64,
    pub seed: u64,
    /// Mean time between fault starts.
    pub every: Duration,
    /// `(heartbeat_ms, ttl_ms)` the replicas run (the agents follow it).
    pub timing: (u64, u64),
    /// `--etcd-lease-ttl` (seconds; etcd rounds it up to its own minimum).
    pub etcd_ttl_s: u64,
}

impl ReplicaDrillOpts {
    /// 5 agents, 1,000 faults, fast profile, etcd lease 1 s.
    pub fn long() -> ReplicaDrillOpts {
        ReplicaDrillOpts {
            agents: 5,
            faults: 1_000,
            seed: 1,
            every: Duration::from_millis(1_500),
            timing: (1_000, 3_000),
            etcd_ttl_s: 1,
        }
    }
}

#[derive(Debug)]
pub struct ReplicaDrillReport {
    pub faults: BTreeMap<&'static str, u64>,
    /// Leadership intervals checked for overlap.
    pub intervals: usize,
    /// The final term (term changes over the run = terms − 1).
    pub terms: u64,
    /// Demotions over all agents (leaders that stepped down, for any reason).
    pub demotions: usize,
    /// Kill / stop / partition of the active replica → another replica serving, in ms.
    pub takeovers_ms: Vec<u64>,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Up,
    Down,
    Stopped,
    Cut,
}

struct Replica {
    forge: Option<Forge>,
    listen: SocketAddr,
    /// One per etcd member.
    proxies: Vec<Proxy>,
    state: State,
}

enum Recovery {
    Start(usize),
    Cont(usize),
    Heal(usize),
    EtcdUp(Vec<usize>),
}

fn timing_args(o: &ReplicaDrillOpts) -> [String; 4] {
    [
        "--heartbeat-interval-ms".into(),
        o.timing.0.to_string(),
        "--lease-ttl-ms".into(),
        o.timing.1.to_string(),
    ]
}

fn start_replica(dir: &Path, seal: &str, o: &ReplicaDrillOpts, r: &Replica) -> Forge {
    let endpoints = r
        .proxies
        .iter()
        .map(|p| format!("http://{}", p.addr))
        .collect::<Vec<_>>()
        .join(",");
    let t = timing_args(o);
    let t: Vec<&str> = t.iter().map(String::as_str).collect();
    replica(dir, seal, &endpoints, r.listen, o.etcd_ttl_s, &t)
}

/// The replica that serves now, among those that can answer (a stopped one is skipped: it
/// would only time out).
fn active(replicas: &[Replica]) -> Option<usize> {
    (0..replicas.len()).find(|&i| {
        matches!(replicas[i].state, State::Up | State::Cut)
            && serves(replicas[i].listen) == Some(true)
    })
}

/// Runs one drill in `dir` (a fresh scratch directory). Panics on a safety violation, or
/// when the federation has no leader once every fault has healed.
pub fn run(dir: &Path, o: &ReplicaDrillOpts, mut progress: impl FnMut(&str)) -> ReplicaDrillReport {
    let seal = fresh_seal();
    let mut rng = Rng::new(o.seed);
    let mut etcd = EtcdCluster::start(dir, 3);
    let mut replicas: Vec<Replica> = (0..3)
        .map(|_| Replica {
            forge: None,
            listen: free_addr(),
            proxies: etcd
                .members
                .iter()
                .map(|m| Proxy::start(m.client))
                .collect(),
            state: State::Up,
        })
        .collect();
    for r in replicas.iter_mut() {
        r.forge = Some(start_replica(dir, &seal, o, r));
    }
    wait_until(Duration::from_secs(20), || active(&replicas)).expect("no replica became active");
    let urls: Vec<String> = replicas
        .iter()
        .map(|r| format!("http://{}", r.listen))
        .collect();
    let mut agents: Vec<Agent> = (0..o.agents)
        .map(|i| {
            // Each agent tries the replicas in its own order.
            let mut order = urls.clone();
            order.rotate_left(i % urls.len());
            let opts = AgentOpts {
                follow_forge: true,
                vars: vec![("BRH_FORGE_URL".into(), order.join(","))],
                ..AgentOpts::default()
            };
            Agent::start(dir, &format!("r{i}"), &seal, replicas[0].listen, opts)
        })
        .collect();
    let ttl = o.timing.1;
    let etcd_ttl_ms = o.etcd_ttl_s.max(2) * 1000;
    let mut faults: BTreeMap<&'static str, u64> =
        REPLICA_DRILL_KINDS.iter().map(|k| (*k, 0)).collect();
    let mut pending: Vec<(Instant, Recovery)> = Vec::new();
    let mut takeovers_ms = Vec::new();
    // (since, the replica that was hit): waiting for another one to serve.
    let mut awaiting: Option<(Instant, usize)> = None;
    let start = Instant::now();
    let mut next_fault = Instant::now() + Duration::from_secs(2);
    let mut last_probe = Instant::now();
    let total = |f: &BTreeMap<&str, u64>| f.values().sum::<u64>();
    while total(&faults) < o.faults || !pending.is_empty() {
        let now = Instant::now();
        let mut i = 0;
        while i < pending.len() {
            if pending[i].0 > now {
                i += 1;
                continue;
            }
            let (_, what) = pending.swap_remove(i);
            match what {
                Recovery::Start(r) => {
                    let f = start_replica(dir, &seal, o, &replicas[r]);
                    replicas[r].forge = Some(f);
                    replicas[r].state = State::Up;
                }
                Recovery::Cont(r) => {
                    let pid = replicas[r].forge.as_ref().unwrap().child.id();
                    signal(pid, libc::SIGCONT);
                    replicas[r].state = State::Up;
                }
                Recovery::Heal(r) => {
                    for p in &replicas[r].proxies {
                        p.set_cut(false);
                    }
                    replicas[r].state = State::Up;
                }
                Recovery::EtcdUp(ms) => {
                    for m in ms {
                        etcd.restart(m);
                    }
                }
            }
        }
        if let Some((since, hit)) = awaiting {
            if now.duration_since(last_probe) >= Duration::from_millis(50) {
                last_probe = now;
                let other = (0..replicas.len()).filter(|&r| r != hit).find(|&r| {
                    replicas[r].state == State::Up && serves(replicas[r].listen) == Some(true)
                });
                if other.is_some() {
                    takeovers_ms.push(since.elapsed().as_millis() as u64);
                    awaiting = None;
                } else if since.elapsed() > Duration::from_secs(60) {
                    awaiting = None;
                }
            }
        }
        if now >= next_fault && total(&faults) < o.faults {
            let n = total(&faults);
            // One of each kind first, so even a short drill has them all; then at random.
            let kind = if (n as usize) < REPLICA_DRILL_KINDS.len() {
                REPLICA_DRILL_KINDS[n as usize]
            } else {
                REPLICA_DRILL_KINDS[rng.range(0, REPLICA_DRILL_KINDS.len() as u64) as usize]
            };
            let d = |rng: &mut Rng, lo: u64, hi: u64| Duration::from_millis(rng.range(lo, hi));
            let etcd_all_up = etcd.members.iter().all(|m| m.is_up());
            let injected = match kind {
                "replica-kill-9" | "replica-sigstop" | "replica-partition" => {
                    match active(&replicas).filter(|_| awaiting.is_none()) {
                        None => false,
                        Some(r) => {
                            let rep = &mut replicas[r];
                            match kind {
                                "replica-kill-9" => {
                                    rep.forge.as_mut().unwrap().kill();
                                    rep.state = State::Down;
                                    let back = now + d(&mut rng, 0, 2 * ttl);
                                    pending.push((back, Recovery::Start(r)));
                                }
                                "replica-sigstop" => {
                                    signal(rep.forge.as_ref().unwrap().child.id(), libc::SIGSTOP);
                                    rep.state = State::Stopped;
                                    // Often past the etcd lease: another replica takes over
                                    // and the thawed one must not answer as active.
                                    let back = now
                                        + d(&mut rng, etcd_ttl_ms / 2, 2 * ttl.max(etcd_ttl_ms));
                                    pending.push((back, Recovery::Cont(r)));
                                }
                                _ => {
                                    for p in &rep.proxies {
                                        p.set_cut(true);
                                    }
                                    rep.state = State::Cut;
                                    let back = now
                                        + d(&mut rng, etcd_ttl_ms / 2, 2 * ttl.max(etcd_ttl_ms));
                                    pending.push((back, Recovery::Heal(r)));
                                }
                            }
                            awaiting = Some((now, r));
                            true
                        }
                    }
                }
                "replica-restart" => {
                    let up: Vec<usize> = (0..replicas.len())
                        .filter(|&r| replicas[r].state == State::Up)
                        .collect();
                    if up.is_empty() {
                        false
                    } else {
                        let r = up[rng.range(0, up.len() as u64) as usize];
                        let f = replicas[r].forge.as_mut().unwrap();
                        signal(f.child.id(), libc::SIGTERM);
                        let exited = wait_until(Duration::from_secs(15), || {
                            f.child.try_wait().ok().flatten()
                        });
                        if exited.is_none() {
                            f.kill();
                        }
                        replicas[r].state = State::Down;
                        pending.push((Instant::now(), Recovery::Start(r)));
                        true
                    }
                }
                "etcd-member-kill" if etcd_all_up => {
                    let m = rng.range(0, etcd.members.len() as u64) as usize;
                    etcd.kill(m);
                    pending.push((now + d(&mut rng, 500, 3 * ttl), Recovery::EtcdUp(vec![m])));
                    true
                }
                "etcd-quorum-loss" if etcd_all_up => {
                    let keep = rng.range(0, etcd.members.len() as u64) as usize;
                    let down: Vec<usize> = (0..etcd.members.len()).filter(|&m| m != keep).collect();
                    for &m in &down {
                        etcd.kill(m);
                    }
                    pending.push((now + d(&mut rng, 500, 2 * ttl), Recovery::EtcdUp(down)));
                    true
                }
                _ => false,
            };
            if injected {
                *faults.get_mut(kind).unwrap() += 1;
                let n = total(&faults);
                if n % 25 == 0 || n == o.faults {
                    progress(&format!(
                        "{n}/{} faults in {:.0} s, {} takeovers",
                        o.faults,
                        start.elapsed().as_secs_f64(),
                        takeovers_ms.len()
                    ));
                }
                let mean = o.every.as_millis() as u64;
                next_fault = now + Duration::from_millis(rng.range(mean / 2, mean * 3 / 2 + 1));
            } else {
                next_fault = now + Duration::from_millis(100);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Everything healed: the cluster, a serving replica, and one leader all agents agree on.
    assert!(
        etcd.wait_healthy(Duration::from_secs(30)),
        "etcd did not recover"
    );
    wait_until(Duration::from_secs(30), || active(&replicas))
        .expect("no replica serves after every fault healed");
    let refs: Vec<&Agent> = agents.iter().collect();
    let (_, terms) = wait_until(Duration::from_secs(30), || agreed_leader(&refs))
        .expect("no agreed leader after every fault healed");
    drop(refs);
    let demotions = agents.iter().map(Agent::demotions).sum();
    let all = finish_and_check(&mut agents);
    for r in &mut replicas {
        if let Some(f) = r.forge.as_mut() {
            f.kill();
        }
    }
    ReplicaDrillReport {
        faults,
        intervals: all.len(),
        terms,
        demotions,
        takeovers_ms,
        elapsed: start.elapsed(),
    }
}
