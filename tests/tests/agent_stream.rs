//! Real processes on the forge's stream (docs/design.md §7): agents beat over the WebSocket; when
//! the sockets drop (a forge restart), heartbeats go over HTTP until the stream is back, and the
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
        let demotions = a.demotions();
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

/// While the stream is up, what an agent sends besides heartbeats goes on it too: consensus
/// reports (without reading the peers first) and an operator's switchover. None of them is a
/// request through the forge's HTTP side — in durable-object mode, no Worker request.
#[test]
fn consensus_reports_and_a_switchover_go_on_the_stream() {
    let dir = scratch("stream-ops");
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    let opts = |priority| AgentOpts {
        priority,
        ..AgentOpts::default()
    };
    let mut agents = vec![
        Agent::start(&dir, "s1", &seal, forge.addr, opts(10)),
        Agent::start(&dir, "s2", &seal, forge.addr, opts(0)),
    ];
    let refs: Vec<&Agent> = agents.iter().collect();
    let (leader, term) =
        wait_until(Duration::from_secs(15), || agreed_leader(&refs)).expect("no leader");
    assert_eq!(leader, "s1");
    let on_stream = wait_until(Duration::from_secs(10), || {
        refs.iter().all(|a| connected(a) == 1).then_some(())
    });
    assert!(on_stream.is_some(), "the agents did not open their streams");
    let requests = |path: &str, transport: &str| {
        forge.metric(&format!(
            "brh_forge_requests_total{{path=\"/federation/{path}\",transport=\"{transport}\"}}"
        ))
    };

    // The test agents report every 2 s; the first report may have gone before the stream
    // was up, so count from here.
    let (http_reports, http_peers) = (requests("consensus", "http"), requests("peers", "http"));
    let stream_reports = requests("consensus", "stream");
    let more = wait_until(Duration::from_secs(10), || {
        (requests("consensus", "stream") >= stream_reports + 2.0).then_some(())
    });
    assert!(more.is_some(), "no consensus reports on the stream");
    assert_eq!(
        requests("consensus", "http"),
        http_reports,
        "a report went over HTTP"
    );
    assert_eq!(
        requests("peers", "http"),
        http_peers,
        "a report read the peers"
    );
    assert!(agents[0].log_has("[CN] Elected leader=s1 | peers=2 | → accepted"));

    let resigns_over_http = requests("resign", "http");
    let out = agent_cli(
        &["switchover", "--to", "s2"],
        &[
            ("DOMINION_SEAL", seal.clone()),
            ("FORGE_DOMINION_ROOT", root_for(&seal, forge.addr)),
        ],
    );
    let said = output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("s1 → s2 (term {})", term + 1)),
        "{said}"
    );
    assert_eq!(requests("resign", "stream"), 1.0, "the switchover's resign");
    assert_eq!(requests("resign", "http"), resigns_over_http);
    assert_eq!(
        wait_until(Duration::from_secs(10), || agreed_leader(&refs)
            .filter(|(l, _)| l == "s2")),
        Some(("s2".to_string(), term + 1))
    );
    drop(refs);
    finish_and_check(&mut agents);
}
