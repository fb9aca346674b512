//! Fault drills on real processes (docs/design.md §4.5): one forge — the native binary, or the
//! built Worker in workerd in Durable Object mode — and 3–5 `brh-agent` processes, each reaching the forge through its own TCP proxy, under a random schedule of
//! overlapping faults — `kill -9` (and restart with a new boot), `SIGSTOP` past the lease,
//! partitions (the proxy cuts), forge restarts from its durable state (a `kill -9` of the
//! forge process — for workerd, of node and workerd together — then a start on the same
//! data), and restarts with a skewed wall clock. Any timing: the fast profile (1 s / 3 s) or
//! the sub-second one (200 ms / 1 s); the agents follow the forge's. At the end every incarnation's leadership log goes through the overlap
//! checker (`assert_no_overlap`): no two agents' guard-open intervals may overlap, and terms
//! never go back.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::federation::*;
use crate::sim::Rng;

pub const DRILL_KINDS: [&str; 5] = [
    "kill-9",
    "sigstop",
    "partition",
    "forge-restart",
    "clock-skew",
];

/// Which forge the drill runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillForge {
    Native,
    /// The built Worker in workerd, KV + the LeaseRegister Durable Object.
    DurableObject,
}

#[derive(Debug, Clone)]
pub struct DrillOpts {
    pub agents: usize,
    pub faults: u64,
    pub seed: u64,
    /// Mean time between fault starts.
    pub every: Duration,
    pub forge: DrillForge,
    /// `(heartbeat_ms, ttl_ms)` the forge runs (the agents follow it); fault lengths scale
    /// with the ttl.
    pub timing: (u64, u64),
}

impl DrillOpts {
    /// 5 agents, 1,000 faults, native forge, fast profile.
    pub fn long() -> DrillOpts {
        DrillOpts {
            agents: 5,
            faults: 1_000,
            seed: 1,
            every: Duration::from_millis(400),
            forge: DrillForge::Native,
            timing: (1_000, 3_000),
        }
    }
}

enum RunningForge {
    Native(Forge),
    Workerd(WorkerdForge),
}

impl RunningForge {
    fn start(o: &DrillOpts, dir: &Path, seal: &str, at: Option<SocketAddr>) -> RunningForge {
        const SKEW_MS: u64 = 30_000;
        match o.forge {
            DrillForge::Native => {
                RunningForge::Native(Forge::start_timing(dir, seal, at, SKEW_MS, o.timing))
            }
            DrillForge::DurableObject => {
                RunningForge::Workerd(WorkerdForge::start(dir, seal, at, SKEW_MS, o.timing))
            }
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            RunningForge::Native(f) => f.addr,
            RunningForge::Workerd(f) => f.addr,
        }
    }

    fn kill(&mut self) {
        match self {
            RunningForge::Native(f) => f.kill(),
            RunningForge::Workerd(f) => f.kill(),
        }
    }
}

#[derive(Debug)]
pub struct DrillReport {
    pub faults: BTreeMap<&'static str, u64>,
    pub intervals: usize,
    pub terms: u64,
    pub elapsed: Duration,
}

enum Recovery {
    Restart { skew_ms: i64 },
    Cont,
    Heal,
    ForgeUp,
}

struct Slot {
    agent: Agent,
    proxy: Proxy,
    busy: bool,
    incarnation: u32,
}

fn start_agent(dir: &Path, node: &str, seal: &str, proxy: &Proxy, skew_ms: i64) -> Agent {
    Agent::start(
        dir,
        node,
        seal,
        proxy.addr,
        AgentOpts {
            follow_forge: true,
            clock_skew_ms: skew_ms,
            ..AgentOpts::default()
        },
    )
}

/// Runs one drill in `dir` (a fresh scratch directory). Panics on a safety violation.
pub fn run(dir: &Path, o: &DrillOpts, mut progress: impl FnMut(&str)) -> DrillReport {
    let seal = fresh_seal();
    let mut rng = Rng::new(o.seed);
    let mut forge = RunningForge::start(o, dir, &seal, None);
    // Restarts come back on the same port, so the proxies need no retargeting.
    let forge_addr = forge.addr();
    let ttl = o.timing.1;
    let mut slots: Vec<Slot> = (0..o.agents)
        .map(|i| {
            let proxy = Proxy::start(forge_addr);
            let node = format!("d{i}");
            Slot {
                agent: start_agent(dir, &node, &seal, &proxy, 0),
                proxy,
                busy: false,
                incarnation: 0,
            }
        })
        .collect();
    let mut forge_busy = false;
    let mut retired: Vec<Interval> = Vec::new();
    let mut faults: BTreeMap<&'static str, u64> = DRILL_KINDS.iter().map(|k| (*k, 0)).collect();
    // (due, slot or usize::MAX for the forge, what)
    let mut pending: Vec<(Instant, usize, Recovery)> = Vec::new();
    let start = Instant::now();
    let mut next_fault = Instant::now() + Duration::from_secs(2);
    let retire = |slot: &mut Slot, retired: &mut Vec<Interval>, dir: &Path| {
        let end = slot.agent.killed_at.expect("retired after a kill");
        retired.extend(intervals(&slot.agent.records(), end));
        slot.incarnation += 1;
        let kept: PathBuf = dir.join(format!("{}.{}.jsonl", slot.agent.node, slot.incarnation));
        std::fs::rename(&slot.agent.event_log, kept).expect("keep the event log");
    };
    let total = |f: &BTreeMap<&str, u64>| f.values().sum::<u64>();
    while total(&faults) < o.faults || !pending.is_empty() {
        let now = Instant::now();
        // Recoveries due.
        let mut i = 0;
        while i < pending.len() {
            if pending[i].0 > now {
                i += 1;
                continue;
            }
            let (_, s, what) = pending.swap_remove(i);
            match what {
                Recovery::Restart { skew_ms } => {
                    let slot = &mut slots[s];
                    retire(slot, &mut retired, dir);
                    let node = slot.agent.node.clone();
                    slot.agent = start_agent(dir, &node, &seal, &slot.proxy, skew_ms);
                    slot.busy = false;
                }
                Recovery::Cont => {
                    signal(slots[s].agent.pid(), libc::SIGCONT);
                    slots[s].busy = false;
                }
                Recovery::Heal => {
                    slots[s].proxy.set_cut(false);
                    slots[s].busy = false;
                }
                Recovery::ForgeUp => {
                    forge = RunningForge::start(o, dir, &seal, Some(forge_addr));
                    forge_busy = false;
                }
            }
        }
        // The next fault, on something that is not already faulted.
        if now >= next_fault && total(&faults) < o.faults {
            let kind = DRILL_KINDS[rng.range(0, DRILL_KINDS.len() as u64) as usize];
            // Half the faults hit the current leader: that is where safety is at stake.
            let leader = crate::federation::http_get(forge_addr, "/federation/leader?env=dev")
                .and_then(|v| v["leader"].as_str().map(String::from))
                .and_then(|l| slots.iter().position(|s| s.agent.node == l));
            let s = match leader {
                Some(l) if rng.chance(500) => l,
                _ => rng.range(0, slots.len() as u64) as usize,
            };
            let d = |rng: &mut Rng, lo: u64, hi: u64| Duration::from_millis(rng.range(lo, hi));
            let injected = match kind {
                "forge-restart" if !forge_busy => {
                    forge.kill();
                    forge_busy = true;
                    let down = d(&mut rng, 0, ttl);
                    pending.push((now + down, usize::MAX, Recovery::ForgeUp));
                    true
                }
                "forge-restart" => false,
                _ if slots[s].busy => false,
                "kill-9" | "clock-skew" => {
                    slots[s].agent.kill9();
                    slots[s].busy = true;
                    let (back, skew_ms) = if kind == "kill-9" {
                        (d(&mut rng, 0, 2 * ttl), 0)
                    } else {
                        // Within the forge's window (30 s): heard, but with a skewed clock.
                        (Duration::ZERO, rng.range(0, 40_001) as i64 - 20_000)
                    };
                    pending.push((now + back, s, Recovery::Restart { skew_ms }));
                    true
                }
                "sigstop" => {
                    signal(slots[s].agent.pid(), libc::SIGSTOP);
                    slots[s].busy = true;
                    pending.push((now + d(&mut rng, ttl / 2, 2 * ttl), s, Recovery::Cont));
                    true
                }
                _ => {
                    slots[s].proxy.set_cut(true);
                    slots[s].busy = true;
                    pending.push((now + d(&mut rng, ttl / 2, 2 * ttl), s, Recovery::Heal));
                    true
                }
            };
            if injected {
                *faults.get_mut(kind).unwrap() += 1;
                let n = total(&faults);
                if n % 50 == 0 || n == o.faults {
                    progress(&format!(
                        "{n}/{} faults in {:.0} s",
                        o.faults,
                        start.elapsed().as_secs_f64()
                    ));
                }
            }
            let mean = o.every.as_millis() as u64;
            next_fault = now + Duration::from_millis(rng.range(mean / 2, mean * 3 / 2 + 1));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Everyone back; a moment to settle, then stop all and check every interval.
    std::thread::sleep(Duration::from_millis(2 * ttl));
    let terms = http_get(forge.addr(), "/federation/leader?env=dev")
        .and_then(|v| v["term"].as_u64())
        .unwrap_or(0);
    let mut agents: Vec<Agent> = slots.into_iter().map(|s| s.agent).collect();
    let mut all = finish_and_check(&mut agents);
    all.extend(retired);
    assert_no_overlap(&all);
    DrillReport {
        faults,
        intervals: all.len(),
        terms,
        elapsed: start.elapsed(),
    }
}
