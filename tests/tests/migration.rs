//! Migrating a running federation from the seal on every host to per-node credentials, as
//! the README's "Upgrading a federation" says: three agents on the seal (`--legacy-seal`),
//! then each witness restarted on its enrolment, then the leader. The witnesses' rollout
//! changes no leader (measured here: the forge's history gains no entry); the leader's own
//! restart is one planned handover (its SIGTERM resigns), and no two agents ever lead at once.
use std::time::Duration;

use brh_tests::federation::*;

const SETTLE: Duration = Duration::from_secs(15);

#[test]
fn witnesses_move_to_their_enrolment_without_a_leader_change() {
    let dir = scratch("migration");
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    let opts = |priority, legacy_seal| AgentOpts {
        priority,
        legacy_seal,
        ..AgentOpts::default()
    };
    let mut agents = vec![
        Agent::start(&dir, "m1", &seal, forge.addr, opts(10, true)),
        Agent::start(&dir, "m2", &seal, forge.addr, opts(5, true)),
        Agent::start(&dir, "m3", &seal, forge.addr, opts(0, true)),
    ];
    let (leader, term) =
        wait_until(SETTLE, || agreed_leader(&agents.iter().collect::<Vec<_>>())).expect("leader");
    assert_eq!(leader, "m1");
    assert!(
        agents[0].log_has("--legacy-seal"),
        "no warning on a legacy host"
    );
    let before = forge
        .history()
        .iter()
        .filter(|(_, l, _)| l.is_some())
        .count();

    // The witnesses, one at a time: stop, start again on the enrolment.
    let mut old = Vec::new();
    for i in [1, 2] {
        let node = agents[i].node.clone();
        assert!(agents[i].terminate(), "{node} did not stop cleanly");
        let fresh = Agent::start(
            &dir,
            &node,
            &seal,
            forge.addr,
            opts(5 - 5 * (i as i32 - 1), false),
        );
        old.push(std::mem::replace(&mut agents[i], fresh));
        let back = wait_until(SETTLE, || {
            agents[i]
                .status()
                .filter(|s| s["leader"] == "m1")
                .map(|_| ())
        });
        assert!(back.is_some(), "{node} did not rejoin on its enrolment");
    }
    let v = forge.get("/federation/leader?env=dev");
    assert_eq!(
        (v["leader"].as_str(), v["term"].as_u64()),
        (Some("m1"), Some(term)),
        "the witnesses' rollout changed the leader: {v}"
    );
    let during = forge.history();
    assert_eq!(
        during.iter().filter(|(_, l, _)| l.is_some()).count(),
        before,
        "a leader change during the rollout: {during:?}"
    );

    // The leader last: one planned handover.
    assert!(agents[0].terminate());
    let fresh = Agent::start(&dir, "m1", &seal, forge.addr, opts(10, false));
    old.push(std::mem::replace(&mut agents[0], fresh));
    let (after, _) = wait_until(SETTLE, || {
        agreed_leader(&agents.iter().collect::<Vec<_>>()).filter(|(l, t)| l != "m1" && *t > term)
    })
    .expect("a successor after the leader's restart");
    let history = forge.history();
    assert_eq!(
        history.iter().filter(|(_, l, _)| l.is_some()).count(),
        before + 1,
        "more than one new leader: {history:?}"
    );
    assert!(after == "m2" || after == "m3");
    drop(old); // exited; their records are in the same event logs as their successors'
    finish_and_check(&mut agents);
}
