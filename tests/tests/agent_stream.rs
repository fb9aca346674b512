//! Real processes on the forge's stream (issue 12): agents beat over the WebSocket; when the
//! sockets drop (a forge restart), heartbeats go over HTTP until the stream is back, and the
//! leader keeps its lease throughout. Prints how long the agents were off the stream.
use std::time::{Duration, Instant};

use brh_tests::federation::*;

fn connected(a: &Agent) -> usize {
    a.lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("stream connected (ws://"))
        .count()
}

#[test]
fn sockets_dropped_by_a_forge_restart_fall_back_to_http_and_reconnect_without_a_demotion() {
    let dir = scratch("stream-drop");
    let seal = fresh_seal();
    let mut forge = Forge::start(&dir, &seal, None, 30_000);
    let addr = forge.addr;
    let opts = || AgentOpts {
        follow_forge: true,
        ..AgentOpts::default()
    };
    let mut agents = vec![
        Agent::start(&dir, "s1", &seal, addr, opts()),
        Agent::start(&dir, "s2", &seal, addr, opts()),
    ];
    let refs: Vec<&Agent> = agents.iter().collect();
    let (leader, term) =
        wait_until(Duration::from_secs(15), || agreed_leader(&refs)).expect("no leader");
    let on_stream = wait_until(Duration::from_secs(10), || {
        refs.iter().all(|a| connected(a) == 1).then_some(())
    });
    assert!(on_stream.is_some(), "the agents did not open their streams");
    drop(refs);

    // Three restarts: each drops every socket (the process dies; the new one has none).
    let mut off_stream = Vec::new();
    for round in 2..=4 {
        forge.kill();
        let down = Instant::now();
        forge = Forge::start(&dir, &seal, Some(addr), 30_000);
        let back = wait_until(Duration::from_secs(10), || {
            agents
                .iter()
                .all(|a| connected(a) == round)
                .then(|| down.elapsed())
        });
        let back = back.unwrap_or_else(|| panic!("round {round}: the streams did not come back"));
        off_stream.push(back.as_millis() as u64);
        // Between restarts the lease is renewed (over HTTP, then the stream).
        std::thread::sleep(Duration::from_millis(1_500));
    }
    eprintln!("off the stream after a forge restart: {off_stream:?} ms (forge start included)");

    let refs: Vec<&Agent> = agents.iter().collect();
    assert_eq!(
        agreed_leader(&refs),
        Some((leader.clone(), term)),
        "the lease moved"
    );
    drop(refs);
    for a in &agents {
        let demotions = a.records().iter().filter(|r| r.event == "demote").count();
        assert_eq!(
            demotions, 0,
            "{} was demoted while the streams were down",
            a.node
        );
        assert!(
            a.log_has("stream lost"),
            "{} never noticed the drop",
            a.node
        );
    }
    finish_and_check(&mut agents);
}
