//! Real processes: unplanned (kill -9) and planned (SIGTERM) failover.
use std::time::Duration;

use brh_tests::federation::*;

const SETTLE: Duration = Duration::from_secs(15);
/// Fast profile in these tests: heartbeat 1 s, lease 3 s.
const HEARTBEAT_MS: u64 = 1_000;
const TTL_MS: u64 = 3_000;
/// Slack for a loaded 2-core CI machine (scheduling, process start). This is a safety bound,
/// not a performance assertion: the measured figures come from scripts/bench-failover.sh.
const SLACK_MS: u64 = 1_000;

fn federation(name: &str) -> (std::path::PathBuf, Forge, Vec<Agent>) {
    let dir = scratch(name);
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    let agents = ["n1", "n2", "n3"]
        .iter()
        .map(|n| Agent::start(&dir, n, &seal, forge.addr, AgentOpts::default()))
        .collect();
    (dir, forge, agents)
}

fn promote_time(a: &Agent, term: u64) -> Option<u64> {
    a.records()
        .iter()
        .find(|r| r.event == "promote" && r.term == term)
        .map(|r| r.at_ms)
}

#[test]
fn kill9_of_the_leader_promotes_another_within_ttl_plus_one_heartbeat() {
    let (_dir, _forge, mut agents) = federation("kill9");
    let refs: Vec<&Agent> = agents.iter().collect();
    let (leader, term) = wait_until(SETTLE, || agreed_leader(&refs)).expect("no leader");
    drop(refs);
    // Let it renew at least once so the lease is a renewed one, not a fresh grant.
    std::thread::sleep(Duration::from_millis(1500));
    let li = agents.iter().position(|a| a.node == leader).unwrap();
    let killed_at = agents[li].kill9();
    let rest: Vec<&Agent> = agents.iter().filter(|a| a.node != leader).collect();
    let (l2, t2) = wait_until(SETTLE, || agreed_leader(&rest)).expect("no new leader");
    assert_ne!(l2, leader);
    assert_eq!(t2, term + 1, "the new lease must carry the next term");
    let new = rest.iter().find(|a| a.node == l2).unwrap();
    let promoted_at = promote_time(new, t2).expect("promotion recorded");
    assert!(
        promoted_at <= killed_at + TTL_MS + HEARTBEAT_MS + SLACK_MS,
        "promotion {} ms after the kill; bound is ttl + one heartbeat (+ slack)",
        promoted_at - killed_at
    );
    drop(rest);
    finish_and_check(&mut agents);
}

#[test]
fn sigterm_of_the_leader_resigns_and_hands_over_within_about_a_heartbeat() {
    let (_dir, forge, mut agents) = federation("sigterm");
    let refs: Vec<&Agent> = agents.iter().collect();
    let (leader, term) = wait_until(SETTLE, || agreed_leader(&refs)).expect("no leader");
    drop(refs);
    let li = agents.iter().position(|a| a.node == leader).unwrap();
    let t0 = wall_ms();
    assert!(agents[li].terminate(), "the leader must exit 0 on SIGTERM");
    let recs = agents[li].records();
    let last = recs.last().expect("leadership records");
    assert_eq!(last.event, "demote");
    assert_eq!(last.reason.as_deref(), Some("shutdown"));
    assert!(agents[li].log_has(&format!("resigned term {term}")));
    // The forge's history shows a resignation, not an expiry.
    assert!(
        forge
            .history()
            .iter()
            .any(|(t, l, _)| *t == term && l.is_none())
            || forge.get("/federation/leader?env=dev")["term"].as_u64() > Some(term),
        "forge did not record the resignation"
    );
    let rest: Vec<&Agent> = agents.iter().filter(|a| a.node != leader).collect();
    let (l2, t2) = wait_until(SETTLE, || agreed_leader(&rest)).expect("no new leader");
    assert_ne!(l2, leader);
    assert_eq!(t2, term + 1);
    let promoted_at = promote_time(rest.iter().find(|a| a.node == l2).unwrap(), t2).unwrap();
    assert!(
        promoted_at <= t0 + HEARTBEAT_MS + SLACK_MS,
        "planned handover took {} ms; bound is about one heartbeat (+ slack)",
        promoted_at - t0
    );
    drop(rest);
    finish_and_check(&mut agents);
}

#[test]
fn a_node_that_stops_is_never_granted_again_even_alone() {
    let dir = scratch("leaving");
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    let mut a = Agent::start(&dir, "solo", &seal, forge.addr, AgentOpts::default());
    let (leader, term) = wait_until(SETTLE, || agreed_leader(&[&a])).expect("no leader");
    assert_eq!(leader, "solo");
    assert!(a.terminate(), "the agent must exit 0 on SIGTERM");
    assert!(a.log_has(&format!("resigned term {term}")));
    // A node that resigned because it is stopping is never re-granted, even as the only live
    // candidate (a dead node would lead for a lease): the lease stays vacant and the node is
    // shown as gone — also after a few sweeps (docs/design.md §4.2 rule 5).
    std::thread::sleep(Duration::from_millis(1_200));
    let v = forge.get("/federation/leader?env=dev");
    assert!(v["leader"].is_null(), "a stopped node was re-granted: {v}");
    assert_eq!(v["term"].as_u64(), Some(term));
    let peers = forge.get("/federation/peers?env=dev");
    let solo = peers["peers"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["node"] == "solo"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(solo["alive"], false, "{peers}");
}
