//! The threat model, tried as an attacker on real processes (README "Security model"): a
//! forge (native, or the Worker in workerd), three enrolled agents running a manifest on the
//! project's dockerd, and the complete environment of one witness host in the attacker's
//! hands. Every attempt the threat model forbids is refused with its 4xx, and the leader,
//! term and containers do not change; then the legitimate operator's switchover and deploy
//! still succeed (a check that refused everything would prove nothing). Run by
//! `tests/tests/stolen_host.rs` (native) and `tests/tests/stolen_host_workerd.rs`.
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::federation::*;
use brh_shared::keys::node_key;
use brh_shared::replay::Nonce;
use brh_shared::sign::{sign_for, sign_request, Audience};
use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(20);
/// `id image state` of every container of the env, sorted.
fn containers(env: &str) -> Vec<String> {
    let filter = format!("label=brh.env={env}");
    let format = "{{.ID}} {{.Image}} {{.State}}";
    let mut v: Vec<String> = docker(&["ps", "-a", "--filter", &filter, "--format", format])
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

fn leader_view(forge: SocketAddr, env: &str) -> Value {
    http_get(forge, &format!("/federation/leader?env={env}")).unwrap_or(Value::Null)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("?")
}

/// The attack list against the forge at `forge` (native or the Worker in workerd), with agents
/// of env `env` on the project's dockerd. `dir` is the test's scratch directory.
pub fn attack_list(dir: &Path, seal: &str, forge: SocketAddr, env: &str) {
    // The agents inherit it: the engine the tests start (scripts/dockerd.sh).
    std::env::set_var("DOCKER_HOST", docker_host());
    remove_env_containers(env);
    let manifest = dir.join("bridge.runtime.yaml");
    std::fs::write(
        &manifest,
        format!(
            "provider: {{ kind: docker, network: brh_{env}_net }}\n\
             services:\n\
             \x20 web:\n\
             \x20   image: brh-test/web:1\n\
             \x20   health: {{ http: \"http://{{ip}}:8080/health\", interval: 100ms, timeout: 1s, retries: 50 }}\n"
        ),
    )
    .unwrap();
    let seal = seal.to_string();
    let web = format!("brh_{env}_web_1");
    let (restart, drain) = (format!("/restart/{web}"), format!("/drain/{web}"));
    let opts = |prio: i32| AgentOpts {
        priority: prio,
        env: Some(env.into()),
        args: vec![
            "--config".into(),
            manifest.display().to_string(),
            "--stop-timeout".into(),
            "2s".into(),
        ],
        ..AgentOpts::default()
    };
    // s1 first, leading before the others join: three agents started together race for a
    // fresh env's first grant (whoever's first beat reaches a cold Worker first wins), and the
    // attacks below need a known leader.
    let s1 = Agent::start(dir, "s1", &seal, forge, opts(10));
    wait_until(SETTLE, || agreed_leader(&[&s1]).filter(|(l, _)| l == "s1"))
        .expect("s1 leads alone");
    let mut agents = vec![
        s1,
        Agent::start(dir, "s2", &seal, forge, opts(5)),
        Agent::start(dir, "s3", &seal, forge, opts(0)),
    ];
    let refs: Vec<&Agent> = agents.iter().collect();
    let (leader, term) = wait_until(SETTLE, || agreed_leader(&refs)).expect("a leader");
    assert_eq!(leader, "s1");
    let running = wait_until(SETTLE, || {
        let c = containers(env);
        (c.len() == 1 && c[0].ends_with("brh-test/web:1 running")).then_some(c)
    })
    .expect("the leader runs the manifest");
    let leader_api = agents[0].api;
    let root = root_for_env(&seal, forge, env);

    // What the attacker holds: the witness s3's whole environment, as `enroll` gave it.
    let stolen: Vec<(&str, String)> = host_keys(&seal, env, "s3")
        .into_iter()
        .chain([
            ("BRH_NODE_ID", "s3".to_string()),
            ("FORGE_DOMINION_ROOT", root.clone()),
            ("BRH_env", env.to_string()),
        ])
        .collect();
    assert!(stolen.iter().all(|(k, _)| *k != "DOMINION_SEAL"));
    let s3_key = node_key(seal.as_bytes(), env, "s3");
    let unchanged = |what: &str| {
        let v = leader_view(forge, env);
        assert_eq!(
            (v["leader"].as_str(), v["term"].as_u64()),
            (Some("s1"), Some(term)),
            "after {what}: {v}"
        );
        assert_eq!(
            containers(env),
            running,
            "after {what}: the containers changed"
        );
    };

    // 1. Speak for the leader at the forge: a second agent with --node-id s1.
    let mut imposter = Command::new(bin("brh-agent"))
        .args(["run", "--node-id", "s1", "--listen", "127.0.0.1:0"])
        .args(["--heartbeat-interval=1000ms", "--lease-ttl=3000ms"])
        .env_remove("DOMINION_SEAL")
        .env_remove("BRH_NODE_ID")
        .envs(stolen.iter().filter(|(k, _)| *k != "BRH_NODE_ID").cloned())
        .env("BRH_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let _ = imposter.kill();
    let out = imposter.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("bad_signature"), "{log}");
    assert!(!log.contains("PROMOTE"), "{log}");
    unchanged("an imposter agent as s1");

    // 2. Resign the leader's term in its name, or heartbeat as it, signed with s3's key.
    for (path, body) in [
        (
            "/federation/resign",
            format!(r#"{{"env":"{env}","term":{term},"successor":"s3"}}"#),
        ),
        ("/federation/heartbeat", format!(r#"{{"env":"{env}"}}"#)),
    ] {
        let h = sign_request(
            &s3_key,
            "POST",
            path,
            "s1",
            wall_ms(),
            Nonce::new("evil", 1),
            body.as_bytes(),
        );
        let (status, v) = http_post(forge, path, &signed_headers(h), body.as_bytes());
        assert_eq!((status, code(&v)), (401, "bad_signature"), "{path}: {v}");
    }
    unchanged("a resign in the leader's name");

    // 3. Switchover, deploy, restart, drain at the leader: the CLI has nothing to sign with,
    //    and a request signed with the node key is no operator's.
    for args in [
        vec!["switchover", "--to", "s3"],
        vec!["deploy", "--service", "web", "--image", "brh-test/web:2"],
        vec!["restart", &web],
        vec!["drain", &web],
    ] {
        let out = agent_cli(&args, &stolen);
        assert!(!out.status.success(), "{args:?}: {}", output_text(&out));
        assert!(
            output_text(&out).contains("BRH_OPERATOR_CREDENTIAL"),
            "{args:?}: {}",
            output_text(&out)
        );
    }
    for (i, (path, body)) in [
        ("/switchover", r#"{"to":"s3"}"#.to_string()),
        (
            "/deploy",
            r#"{"service":"web","image":"brh-test/web:2","pull":"never"}"#.to_string(),
        ),
        (restart.as_str(), String::new()),
        (drain.as_str(), String::new()),
    ]
    .into_iter()
    .enumerate()
    {
        let h = sign_for(
            Audience::Agent("s1"),
            &s3_key,
            "POST",
            path,
            "s3",
            wall_ms(),
            Nonce::new("evil", i as u64 + 10),
            body.as_bytes(),
        );
        let (status, v) = http_post(leader_api, path, &signed_headers(h), body.as_bytes());
        assert_eq!((status, code(&v)), (403, "forbidden"), "{path}: {v}");
    }
    unchanged("operator requests signed with a node key");

    // 4. Mint a root: nothing to sign it with; one signed with the node key as a "seal" is
    //    refused by every enrolled host's `root verify` and `run`.
    let out = agent_cli(
        &["root", "generate", "--host", "evil.example:1", "--env", env],
        &stolen,
    );
    assert!(!out.status.success(), "{}", output_text(&out));
    let forged = brh_shared::root::DominionRoot::sign(
        &brh_shared::keys::forge_signing_key(&s3_key),
        brh_shared::root::SCHEME_HTTP,
        "evil.example:1",
        env,
        wall_ms() / 1000,
    )
    .unwrap()
    .to_string();
    let victim: Vec<(&str, String)> = host_keys(&seal, env, "s2")
        .into_iter()
        .chain([("BRH_NODE_ID", "s2".to_string())])
        .collect();
    let out = agent_cli(&["root", "verify", &forged], &victim);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("signature"),
        "{}",
        output_text(&out)
    );
    let mut with_forged = victim.clone();
    with_forged.push(("FORGE_DOMINION_ROOT", forged));
    let out = agent_cli(&["run", "--listen", "127.0.0.1:0"], &with_forged);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("FORGE_DOMINION_ROOT"),
        "{}",
        output_text(&out)
    );
    unchanged("a minted root");

    // 5. The legitimate operator: a scoped credential without the scope is forbidden; with
    //    it, and as the top operator, switchover and deploy succeed.
    let operator = vec![
        ("DOMINION_SEAL", seal.clone()),
        ("FORGE_DOMINION_ROOT", root.clone()),
    ];
    let out = agent_cli(
        &[
            "operator",
            "issue",
            "--name",
            "carol",
            "--scopes",
            "switchover",
            "--env",
            env,
            "--ttl",
            "10m",
        ],
        &operator,
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let credential = text
        .lines()
        .find_map(|l| l.strip_prefix("BRH_OPERATOR_CREDENTIAL="))
        .expect("a credential line")
        .trim_matches('\'')
        .to_string();
    let carol = vec![
        ("BRH_OPERATOR_CREDENTIAL", credential),
        ("FORGE_DOMINION_ROOT", root.clone()),
    ];
    let out = agent_cli(
        &["deploy", "--service", "web", "--image", "brh-test/web:2"],
        &carol,
    );
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("403 forbidden"),
        "{}",
        output_text(&out)
    );
    unchanged("a scoped operator without the containers scope");

    let (ok, said) = cli_deploy(
        &seal,
        env,
        leader_api,
        "brh-test/web:2",
        &["--service", "web", "--pull", "never"],
    );
    assert!(ok, "{said}");
    let deployed = wait_until(SETTLE, || {
        let c = containers(env);
        (c.len() == 1 && c[0].ends_with("brh-test/web:2 running")).then_some(c)
    });
    assert!(
        deployed.is_some(),
        "deploy did not roll out: {:?}",
        containers(env)
    );

    let out = agent_cli(&["switchover", "--to", "s2"], &carol);
    assert!(out.status.success(), "{}", output_text(&out));
    let v = leader_view(forge, env);
    assert_eq!(
        (v["leader"].as_str(), v["term"].as_u64()),
        (Some("s2"), Some(term + 1)),
        "{v}"
    );
    finish_and_check(&mut agents);
    remove_env_containers(env);
}
