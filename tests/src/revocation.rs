//! Revoking a stolen host, on real processes: the operator's `brh-agent revoke`, the forge's
//! refusal from the host's next request on, its durability across a forge restart, the
//! re-enrolment (`enroll --key-generation`, picked up on SIGHUP without a restart), and the
//! revocation of a leader (its lease runs out, never cut short: no overlap). Run by
//! `tests/tests/revocation.rs` (native forge) and `tests/tests/revocation_workerd.rs` (the
//! Worker in workerd, Durable Object mode).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::federation::*;
use brh_shared::keys::node_key;
use brh_shared::replay::Nonce;
use brh_shared::sign::sign_request;
use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(20);

/// What a host's credentials file holds: `brh-agent enroll NODE` output, written as the
/// operator would hand it over.
pub fn enrol_into(dir: &Path, node: &str, seal: &str, root: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["enroll", node];
    args.extend_from_slice(extra);
    let out = agent_cli(
        &args,
        &[
            ("DOMINION_SEAL", seal.to_string()),
            ("FORGE_DOMINION_ROOT", root.to_string()),
        ],
    );
    assert!(out.status.success(), "enroll {node}: {}", output_text(&out));
    let path = dir.join(format!("{node}.env"));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

fn peers(forge: SocketAddr, env: &str) -> Vec<String> {
    let v = http_get(forge, &format!("/federation/peers?env={env}")).unwrap_or(Value::Null);
    v["peers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["node"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A heartbeat of `node` signed with its first-generation key, as the thief would send it.
fn stolen_beat(forge: SocketAddr, seal: &str, env: &str, node: &str) -> (u16, Value) {
    let body = format!(r#"{{"env":"{env}","version":"thief"}}"#);
    let key = node_key(seal.as_bytes(), env, node);
    let h = sign_request(
        &key,
        "POST",
        "/federation/heartbeat",
        node,
        wall_ms(),
        Nonce::new(format!("thief{}", wall_ms()), 1),
        body.as_bytes(),
    );
    http_post(
        forge,
        "/federation/heartbeat",
        &signed_headers(h),
        body.as_bytes(),
    )
}

fn revoke(
    forge: SocketAddr,
    env: &str,
    node: &str,
    envs: &[(&str, String)],
) -> std::process::Output {
    let mut all = vec![
        ("BRH_FORGE_URL", format!("http://{forge}")),
        ("BRH_ENV", env.to_string()),
    ];
    all.extend(envs.iter().map(|(k, v)| (*k, v.clone())));
    agent_cli(&["revoke", node], &all)
}

/// The drill. `restart` restarts the forge on the same address and storage.
pub fn drill(dir: &Path, seal: &str, forge: SocketAddr, env: &str, restart: &mut dyn FnMut()) {
    let root = root_for_env(seal, forge, env);
    let opts = |prio: i32, file: &Path| AgentOpts {
        priority: prio,
        env: Some(env.into()),
        args: vec!["--credentials-file".into(), file.display().to_string()],
        ..AgentOpts::default()
    };
    let files: Vec<PathBuf> = ["r1", "r2", "r3"]
        .iter()
        .map(|n| enrol_into(dir, n, seal, &root, &[]))
        .collect();
    let mut agents = vec![
        Agent::start(dir, "r1", seal, forge, opts(10, &files[0])),
        Agent::start(dir, "r2", seal, forge, opts(5, &files[1])),
        Agent::start(dir, "r3", seal, forge, opts(0, &files[2])),
    ];
    let refs: Vec<&Agent> = agents.iter().collect();
    let (leader, term) = wait_until(SETTLE, || agreed_leader(&refs)).expect("a leader");
    assert_eq!(leader, "r1");

    // Refused: a scoped operator without the nodes scope, and the stolen host's own key.
    let issue = agent_cli(
        &[
            "operator",
            "issue",
            "--name",
            "alice",
            "--scopes",
            "switchover",
            "--env",
            env,
        ],
        &[("DOMINION_SEAL", seal.to_string())],
    );
    assert!(issue.status.success(), "{}", output_text(&issue));
    let alice = String::from_utf8(issue.stdout).unwrap();
    let alice = alice
        .lines()
        .find_map(|l| l.strip_prefix("BRH_OPERATOR_CREDENTIAL='"))
        .and_then(|l| l.strip_suffix('\''))
        .expect("a credential line")
        .to_string();
    let out = revoke(forge, env, "r3", &[("BRH_OPERATOR_CREDENTIAL", alice)]);
    assert!(!out.status.success());
    let text = output_text(&out);
    assert!(text.contains("403 forbidden"), "{text}");
    assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
    assert!(peers(forge, env).contains(&"r3".to_string()));

    // The operator revokes the stolen witness r3.
    let top = [("DOMINION_SEAL", seal.to_string())];
    let out = revoke(forge, env, "r3", &top);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("--key-generation 1"), "{text}");
    wait_until(SETTLE, || {
        (!peers(forge, env).contains(&"r3".to_string())).then_some(())
    })
    .expect("r3 leaves the table");
    let (status, body) = stolen_beat(forge, seal, env, "r3");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("revoked")),
        "{body}"
    );
    wait_until(SETTLE, || agents[2].log_has("revoked").then_some(()))
        .expect("r3's own agent is told it was revoked");

    // Durable: after a forge restart the key is still refused, r3 is no candidate, and the
    // leader and its term have not moved.
    restart();
    let (status, body) = stolen_beat(forge, seal, env, "r3");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("revoked")),
        "{body}"
    );
    let refs: Vec<&Agent> = agents[..2].iter().collect();
    assert_eq!(
        wait_until(SETTLE, || agreed_leader(&refs)),
        Some((leader.clone(), term)),
        "the revocation changed nothing for the others"
    );
    assert!(!peers(forge, env).contains(&"r3".to_string()));

    // Re-enrolled (generation 1), r3 is back on SIGHUP, without a restart.
    enrol_into(dir, "r3", seal, &root, &["--key-generation", "1"]);
    signal(agents[2].pid(), libc::SIGHUP);
    wait_until(SETTLE, || {
        agents[2].log_has("credentials reloaded").then_some(())
    })
    .expect("r3 reloads its credentials");
    wait_until(SETTLE, || {
        peers(forge, env).contains(&"r3".to_string()).then_some(())
    })
    .expect("r3 is a member again");
    let refs: Vec<&Agent> = agents.iter().collect();
    assert_eq!(
        wait_until(SETTLE, || agreed_leader(&refs)),
        Some((leader.clone(), term))
    );

    // Revoking the leader: its lease is not cut short but not renewed either, so the next
    // leader is granted after it ran out (the no-overlap check below), by a higher term.
    let out = revoke(forge, env, "r1", &top);
    assert!(out.status.success(), "{}", output_text(&out));
    let refs: Vec<&Agent> = agents[1..].iter().collect();
    let (next, next_term) = wait_until(SETTLE, || {
        agreed_leader(&refs).filter(|(l, t)| l != "r1" && *t > term)
    })
    .expect("another leader after the revoked one's lease ran out");
    assert_eq!(next, "r2");
    wait_until(SETTLE, || {
        (agents[0].status()?["role"] != "leader").then_some(())
    })
    .expect("the revoked leader steps down at its deadline");
    assert!(next_term > term);
    finish_and_check(&mut agents);
}
