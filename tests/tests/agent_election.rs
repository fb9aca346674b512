//! Real processes: one forge, three agents. Election agreement, clock skew immunity.
use std::time::Duration;

use brh_tests::federation::*;

/// Generous bound for "the federation settles": process start + a few fast-profile beats.
const SETTLE: Duration = Duration::from_secs(15);

#[test]
fn three_agents_elect_exactly_one_leader_and_agree() {
    let dir = scratch("elect");
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    let mut agents: Vec<Agent> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| Agent::start(&dir, n, &seal, forge.addr, AgentOpts::default()))
        .collect();
    let refs: Vec<&Agent> = agents.iter().collect();
    let (leader, term) = wait_until(SETTLE, || agreed_leader(&refs)).expect("agents never agreed");
    assert!(term >= 1);
    // The forge says the same, and `brh-agent status --json` prints it.
    let view = forge.get("/federation/leader?env=dev");
    assert_eq!(view["leader"].as_str(), Some(leader.as_str()));
    assert_eq!(view["term"].as_u64(), Some(term));
    let out = std::process::Command::new(bin("brh-agent"))
        .args(["status", "--json"])
        .env("DOMINION_SEAL", &seal)
        .env("FORGE_DOMINION_ROOT", root_for(&seal, forge.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["leader"].as_str(), Some(leader.as_str()));
    assert_eq!(j["peers"].as_array().map(|p| p.len()), Some(3));
    // Stable: a few heartbeats later, same leader and term (no flapping).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(agreed_leader(&refs), Some((leader.clone(), term)));
    // The leader logged the original's vocabulary.
    let l = agents.iter().find(|a| a.node == leader).unwrap();
    assert!(l.log_has(&format!("[CN] PROMOTE → I am leader ({leader})")));
    drop(refs);
    let iv = finish_and_check(&mut agents);
    assert_eq!(iv.iter().filter(|i| i.term == term).count(), 1);
}

#[test]
fn a_skewed_wall_clock_changes_nothing() {
    let dir = scratch("skew");
    let seal = fresh_seal();
    // The forge admits ±15 min here, so skewed agents are heard at all; the point is that
    // their clocks have no say in who leads or for how long (the original's fast clock won).
    let forge = Forge::start(&dir, &seal, None, 15 * 60_000);
    let a = Agent::start(&dir, "a-normal", &seal, forge.addr, AgentOpts::default());
    let (leader, term) = wait_until(SETTLE, || agreed_leader(&[&a])).expect("no leader");
    assert_eq!(leader, "a-normal");
    let fast = AgentOpts {
        clock_skew_ms: 10 * 60_000,
        ..AgentOpts::default()
    };
    let slow = AgentOpts {
        clock_skew_ms: -10 * 60_000,
        ..AgentOpts::default()
    };
    let b = Agent::start(&dir, "b-fast", &seal, forge.addr, fast);
    let c = Agent::start(&dir, "c-slow", &seal, forge.addr, slow);
    let all = [&a, &b, &c];
    assert_eq!(
        wait_until(SETTLE, || agreed_leader(&all)),
        Some((leader.clone(), term))
    );
    std::thread::sleep(Duration::from_secs(4)); // > lease ttl: several renewals
    assert_eq!(
        agreed_leader(&all),
        Some((leader, term)),
        "skew moved the lease"
    );
    // Failover still works between skewed agents, with the next term.
    let mut agents = vec![a, b, c];
    agents[0].kill9();
    let rest: Vec<&Agent> = agents[1..].iter().collect();
    let (l2, t2) = wait_until(SETTLE, || agreed_leader(&rest)).expect("no failover");
    assert_ne!(l2, "a-normal");
    assert_eq!(t2, term + 1);
    drop(rest);
    finish_and_check(&mut agents);
}
