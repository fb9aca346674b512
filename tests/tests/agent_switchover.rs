//! Real processes: `brh-agent switchover` (docs/design.md §6.2), `status` without the secret,
//! and the operator commands' refusals.
use std::time::Duration;

use brh_tests::federation::*;

const SETTLE: Duration = Duration::from_secs(15);

#[test]
fn switchover_hands_the_lease_to_the_named_node_and_refuses_a_dead_one() {
    let dir = scratch("switchover");
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    let opts = |priority| AgentOpts {
        priority,
        ..AgentOpts::default()
    };
    // s1 is the best candidate; the operator will pick s3, not the runner-up s2.
    let mut agents = vec![
        Agent::start(&dir, "s1", &seal, forge.addr, opts(10)),
        Agent::start(&dir, "s2", &seal, forge.addr, opts(5)),
        Agent::start(&dir, "s3", &seal, forge.addr, opts(0)),
    ];
    let refs: Vec<&Agent> = agents.iter().collect();
    let (leader, term) = wait_until(SETTLE, || agreed_leader(&refs)).expect("no leader");
    assert_eq!(leader, "s1");
    let env = [
        ("DOMINION_SEAL", seal.clone()),
        ("FORGE_DOMINION_ROOT", root_for(&seal, forge.addr)),
    ];

    let out = agent_cli(&["switchover", "--to", "s3"], &env);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains(&format!("switchover: s1 → s3 (term {})", term + 1)),
        "{}",
        output_text(&out)
    );
    let view = forge.get("/federation/leader?env=dev");
    assert_eq!(view["leader"], "s3", "{view}");
    let reasons: Vec<String> = forge.get("/federation/history?env=dev")["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        reasons.first().map(String::as_str),
        Some("switchover"),
        "{reasons:?}"
    );
    assert_eq!(
        wait_until(SETTLE, || agreed_leader(&refs).filter(|(l, _)| l == "s3")),
        Some(("s3".to_string(), term + 1))
    );
    assert!(
        agents[0].log_has("reason=switchover"),
        "s1 did not step down first"
    );
    // Asking again is a no-op, not an error (safe to repeat).
    let out = agent_cli(&["switchover", "--to", "s3"], &env);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("s3 already leads env dev; nothing to do"),
        "{}",
        output_text(&out)
    );
    // An empty variable counts as unset (the forge is then found through the other one).
    let out = agent_cli(
        &["status"],
        &[
            ("FORGE_DOMINION_ROOT", String::new()),
            ("BRH_FORGE_URL", format!("http://{}", forge.addr)),
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));

    // A node that is down cannot be chosen: one line, non-zero, nothing changes.
    agents[1].kill9();
    std::thread::sleep(Duration::from_millis(3_500)); // > ttl: the forge counts s2 dead
    let out = agent_cli(&["switchover", "--to", "s2"], &env);
    assert!(!out.status.success(), "{}", output_text(&out));
    let t = output_text(&out);
    assert_eq!(t.trim().lines().count(), 1, "{t}");
    assert!(
        t.contains("not_candidate") && t.contains("s2") && t.contains("not alive"),
        "{t}"
    );
    let view = forge.get("/federation/leader?env=dev");
    assert_eq!(
        (view["leader"].as_str(), view["term"].as_u64()),
        (Some("s3"), Some(term + 1))
    );

    // Sent to a witness directly: refused with not_leader.
    let witness = format!("http://{}", agents[0].api);
    let out = agent_cli(&["switchover", "--agent", &witness], &env);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("not_leader"),
        "{}",
        output_text(&out)
    );

    // No name: the best live candidate (s1: priority 10) gets it back.
    let out = agent_cli(&["switchover"], &env);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("s3 → s1"),
        "{}",
        output_text(&out)
    );

    // Container commands on an agent without a manifest: a clear refusal, non-zero.
    let out = agent_cli(&["restart", "web-1"], &env);
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("not_configured"),
        "{}",
        output_text(&out)
    );
    let out = agent_cli(&["drain", "bad name"], &env);
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("invalid NAME"),
        "{}",
        output_text(&out)
    );

    // `status` reads the public endpoints: no secret needed. It shows each node's role,
    // liveness and last beat, and the killed node as down.
    let out = agent_cli(
        &["status", "--json"],
        &[("FORGE_DOMINION_ROOT", root_for(&seal, forge.addr))],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["verified"], false);
    let role = |n: &str| {
        j["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["node"] == n)
            .map(|p| {
                (
                    p["role"].as_str().unwrap().to_string(),
                    p["alive"].as_bool().unwrap(),
                )
            })
    };
    assert_eq!(role("s1"), Some(("leader".into(), true)), "{j}");
    assert_eq!(role("s2"), Some(("down".into(), false)), "{j}");
    assert_eq!(role("s3"), Some(("witness".into(), true)), "{j}");
    let out = agent_cli(
        &["status"],
        &[("BRH_FORGE_URL", format!("http://{}", forge.addr))],
    );
    let t = output_text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("signatures not checked") && t.contains("LAST SEEN"),
        "{t}"
    );
    // BRH_ENV is honoured: another env of the same forge is empty.
    let out = agent_cli(
        &["status", "--json"],
        &[
            ("BRH_FORGE_URL", format!("http://{}", forge.addr)),
            ("BRH_ENV", "prod".into()),
        ],
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (j["env"].as_str(), j["leader"].is_null()),
        (Some("prod"), true),
        "{j}"
    );

    finish_and_check(&mut agents);
}
