//! Real processes: the forge is the one timing authority (docs/design.md §4.3).
//!
//! An agent at the default profile (5 s / 15 s) on a fast forge (1 s / 3 s) must beat and
//! measure its margin by the forge's timing: on its own it would hit its deadline 1.5 s after
//! each grant (a tenth of *its* ttl) and be re-granted at its next beat 5 s on — a new term
//! every beat.
use std::time::{Duration, Instant};

use brh_tests::federation::*;

const SETTLE: Duration = Duration::from_secs(15);

#[test]
fn agents_without_timing_follow_the_forge_and_never_flap() {
    let dir = scratch("timing-follow");
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000); // fast: 1 s / 3 s
    let follow = AgentOpts {
        follow_forge: true,
        ..AgentOpts::default()
    };
    let mut agents = vec![
        Agent::start(&dir, "t1", &seal, forge.addr, follow.clone()),
        Agent::start(&dir, "t2", &seal, forge.addr, follow),
    ];
    let refs: Vec<&Agent> = agents.iter().collect();
    let (leader, term) = wait_until(SETTLE, || agreed_leader(&refs)).expect("no leader");
    // Four leases' worth of renewals: an agent on its own timing would demote at 1.5 s and flap
    // every 5 s.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(
        agreed_leader(&refs),
        Some((leader.clone(), term)),
        "the lease moved"
    );
    for a in &agents {
        let s = a.status().expect("status");
        assert_eq!(s["heartbeat_interval_ms"], 1000, "{}: {s}", a.node);
        assert_eq!(s["lease_ttl_ms"], 3000, "{}: {s}", a.node);
        assert!(
            a.log_has("following the forge's timing: heartbeat=1000ms lease=3000ms"),
            "{} did not log the adoption",
            a.node
        );
    }
    let history = forge.history();
    assert_eq!(history.len(), 1, "one grant, no flapping: {history:?}");
    for a in &agents {
        let promotions = a.records().iter().filter(|r| r.event == "promote").count();
        assert_eq!(promotions, usize::from(a.node == leader), "{}", a.node);
        assert!(
            a.records().iter().all(|r| r.event != "demote"),
            "{}",
            a.node
        );
    }
    finish_and_check(&mut agents);
}

#[test]
fn an_agent_pinned_to_other_timing_refuses_to_run_and_never_acts() {
    let dir = scratch("timing-pinned");
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000); // fast: 1 s / 3 s
    let pinned = AgentOpts {
        timing: Some((5000, 15000)),
        ..AgentOpts::default()
    };
    let mut a = Agent::start(&dir, "p1", &seal, forge.addr, pinned);
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = a.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "a pinned agent kept running against a forge with other timing"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "exit status {status:?}");
    let lines = a.lines.lock().unwrap().clone();
    let last = lines.last().cloned().unwrap_or_default();
    // One line naming both values and what pinned ours.
    for needle in [
        "timing mismatch",
        "heartbeat 5000 ms / lease 15000 ms",
        "BRH_HEARTBEAT_INTERVAL, BRH_LEASE_TTL",
        "heartbeat 1000 ms / lease 3000 ms",
    ] {
        assert!(
            last.contains(needle),
            "{needle:?} not in the last line {last:?}"
        );
    }
    assert!(
        a.records().iter().all(|r| r.event != "promote"),
        "it acted as leader: {:?}",
        a.records()
    );
    // The lease the forge granted at its first beat was handed back, not left to expire.
    let view = forge.get("/federation/leader?env=dev");
    assert!(view["leader"].is_null(), "{view}");
}
