//! Rotating the root secret on a running federation (README "Rotating the root secret"), on
//! real processes: three agents enrolled under seal A, each with a credentials file. Then:
//! 1. the forge restarts with seal B and `DOMINION_SEAL_PREVIOUS` = A (the overlap window);
//! 2. each host is re-enrolled under B (same federation id) and sent SIGHUP, one by one;
//! 3. the forge restarts with B alone.
//!
//! Measured: leader changes during the whole rotation (goal 0) and agent restarts (0).
//! Checked: every step keeps the leader and its term; after step 3 a key derived from A is
//! refused, and the containers' federation id did not change. Run by `tests/tests/rotation.rs`
//! (native forge) and `tests/tests/rotation_workerd.rs`.
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::federation::*;
use crate::revocation::enrol_into;
use brh_shared::keys::node_key;
use brh_shared::replay::Nonce;
use brh_shared::sign::sign_request;

const SETTLE: Duration = Duration::from_secs(20);

/// Restarts the forge on the same address and storage with `(seal, previous seal)`.
pub type Restart<'a> = dyn FnMut(&str, Option<&str>) + 'a;

fn steady(agents: &[Agent], want: &(String, u64), beats: u32) {
    // Several heartbeat intervals (fast profile: 1 s) in which every agent agrees on the
    // same leader and term and reaches the forge.
    let refs: Vec<&Agent> = agents.iter().collect();
    // After a forge restart, each agent's next beat finds it again.
    let reachable = |a: &Agent| a.status().is_some_and(|s| s["forge"]["reachable"] == true);
    wait_until(Duration::from_secs(10), || {
        agents.iter().all(reachable).then_some(())
    })
    .expect("every agent reaches the forge again");
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(beats as u64) {
        let got = wait_until(Duration::from_secs(5), || agreed_leader(&refs));
        assert_eq!(got.as_ref(), Some(want), "leader moved during the rotation");
        for a in agents {
            let st = a.status().expect("status");
            assert_eq!(st["forge"]["reachable"], true, "{}: {st}", a.node);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `timing` is the forge's `(heartbeat_ms, ttl_ms)`; the agents pin the same.
pub fn drill(
    dir: &Path,
    forge: SocketAddr,
    env: &str,
    timing: (u64, u64),
    restart: &mut Restart<'_>,
) {
    let (old, new) = (fresh_seal(), fresh_seal());
    restart(&old, None);
    let old_root = root_for_env(&old, forge, env);
    let federation = brh_shared::keys::federation_id(
        &brh_shared::keys::forge_signing_key(old.as_bytes()).verifying_key(),
    );
    let nodes = ["q1", "q2", "q3"];
    let files: Vec<_> = nodes
        .iter()
        .map(|n| enrol_into(dir, n, &old, &old_root, &[]))
        .collect();
    let opts = |prio: i32, file: &Path| AgentOpts {
        priority: prio,
        env: Some(env.into()),
        args: vec!["--credentials-file".into(), file.display().to_string()],
        timing: Some(timing),
        ..AgentOpts::default()
    };
    let mut agents: Vec<Agent> = nodes
        .iter()
        .zip([10, 5, 0])
        .zip(&files)
        .map(|((n, p), f)| Agent::start(dir, n, &old, forge, opts(p, f)))
        .collect();
    let pids: Vec<u32> = agents.iter().map(Agent::pid).collect();
    let refs: Vec<&Agent> = agents.iter().collect();
    let leader = wait_until(SETTLE, || agreed_leader(&refs)).expect("a leader");
    assert_eq!(leader.0, "q1");
    steady(&agents, &leader, 2);

    // 1. The overlap window.
    restart(&new, Some(&old));
    steady(&agents, &leader, 3);

    // 2. Re-enrolment rollout: a new file and SIGHUP, host by host; the federation keeps its id.
    let new_root = root_for_env(&new, forge, env);
    for (a, n) in agents.iter().zip(nodes) {
        enrol_into(dir, n, &new, &new_root, &["--federation", &federation]);
        signal(a.pid(), libc::SIGHUP);
        wait_until(SETTLE, || a.log_has("credentials reloaded").then_some(()))
            .unwrap_or_else(|| panic!("{n} did not reload its credentials"));
        steady(&agents, &leader, 2);
    }

    // 3. The old seal is gone.
    restart(&new, None);
    steady(&agents, &leader, 3);
    let body = format!(r#"{{"env":"{env}","version":"t"}}"#);
    let h = sign_request(
        &node_key(old.as_bytes(), env, "q2"),
        "POST",
        "/federation/heartbeat",
        "q2",
        wall_ms(),
        Nonce::new("old-seal", 1),
        body.as_bytes(),
    );
    let (status, answer) = http_post(
        forge,
        "/federation/heartbeat",
        &signed_headers(h),
        body.as_bytes(),
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (401, Some("bad_signature")),
        "the old seal's keys no longer speak: {answer}"
    );
    for a in &agents {
        let st = a.status().expect("status");
        assert!(!a.log_has("refused, keeping the current"), "{}", a.node);
        assert_eq!(st["forge"]["reachable"], true, "{}: {st}", a.node);
    }

    // The figures: leader changes (every agent's own records) and restarts.
    let now_pids: Vec<u32> = agents.iter().map(Agent::pid).collect();
    assert_eq!(pids, now_pids, "no agent was restarted");
    // Counted up to here: stopping the agents afterwards hands the lease on, by design.
    let rotated_at = wall_ms();
    let intervals: Vec<_> = finish_and_check(&mut agents)
        .into_iter()
        .filter(|i| i.start < rotated_at)
        .collect();
    let changes = intervals.len().saturating_sub(1);
    println!(
        "rotation ({env}): leader changes {changes}, agent restarts 0, forge restarts 3, \
         leader {} term {}",
        leader.0, leader.1
    );
    assert_eq!(changes, 0, "leader intervals: {intervals:?}");
}
