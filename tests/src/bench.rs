//! What the failover benches (`tests/examples/bench_failover.rs`, `bench_etcd.rs`) share: three
//! agents on one forge with a timing profile, and reading leadership off their logs.
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::federation::{agreed_leader, fresh_seal, wait_until, wall_ms, Agent, AgentOpts};

/// Agents `n1`, `n2`, `n3` on the forge at `forge`, each heartbeating every `hb` ms on a
/// lease of `ttl` ms (the timing the forge must also run, or it overrides theirs).
pub fn three_agents(
    dir: &Path,
    seal: &str,
    forge: SocketAddr,
    (hb, ttl): (u64, u64),
) -> Vec<Agent> {
    let o = AgentOpts {
        timing: Some((hb, ttl)),
        ..AgentOpts::default()
    };
    ["n1", "n2", "n3"]
        .iter()
        .map(|n| Agent::start(dir, n, seal, forge, o.clone()))
        .collect()
}

/// The leader all of `agents` agree on (waiting up to a minute): its index and term.
pub fn leader_of(agents: &[Agent]) -> (usize, u64) {
    let refs: Vec<&Agent> = agents.iter().collect();
    let (l, t) = wait_until(Duration::from_secs(60), || agreed_leader(&refs)).expect("no leader");
    (agents.iter().position(|a| a.node == l).unwrap(), t)
}

/// When (wall ms, from its log) an agent other than `agents[skip]` promoted in `term`; panics
/// after `timeout`.
pub fn promoted(agents: &[Agent], skip: usize, term: u64, timeout: Duration) -> u64 {
    wait_until(timeout, || {
        agents
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .find_map(|(_, a)| {
                a.records()
                    .into_iter()
                    .find(|r| r.event == "promote" && r.term == term)
                    .map(|r| r.at_ms)
            })
    })
    .expect("no promotion")
}

/// A random number below `n` (0 for `n` = 0): the phase of a kill within a heartbeat cycle.
pub fn rand_below(n: u64) -> u64 {
    let s = fresh_seal();
    u64::from_str_radix(&s[..12], 16).unwrap() % n.max(1)
}

/// A planned handover on `agents` (heartbeat `hb` ms, lease `ttl` ms): once they agree on a
/// leader, waits a heartbeat and a random part of the next, sends the leader SIGTERM and
/// returns the ms until another agent promoted in the next term.
pub fn sigterm_to_promote(agents: &mut [Agent], hb: u64, ttl: u64) -> u64 {
    let (li, term) = leader_of(agents);
    std::thread::sleep(Duration::from_millis(hb + rand_below(hb)));
    let t0 = wall_ms();
    agents[li].terminate();
    promoted(agents, li, term + 1, Duration::from_millis(3 * ttl)) - t0
}
