//! The threat model, tried as an attacker on real processes (README "Security model"): a
//! native forge, three enrolled agents running a manifest on the project's dockerd, and the
//! complete environment of one witness host in the attacker's hands. Every attempt the
//! threat model forbids is refused with its 4xx, and the leader, term and containers do not
//! change; then the legitimate operator's switchover and deploy still succeed (a check that
//! refused everything would prove nothing).
use std::process::Command;
use std::time::Duration;

use brh_shared::keys::node_key;
use brh_shared::replay::Nonce;
use brh_shared::sign::{sign_for, sign_request, Audience};
use brh_tests::federation::*;
use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(20);
const ENV: &str = "stolen";
const SOCK: &str = "unix:///var/tmp/brh-docker/docker.sock";

fn docker(args: &[&str]) -> String {
    let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| SOCK.into());
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `id image state` of every container of the env, sorted.
fn containers() -> Vec<String> {
    let filter = format!("label=brh.env={ENV}");
    let format = "{{.ID}} {{.Image}} {{.State}}";
    let mut v: Vec<String> = docker(&["ps", "-a", "--filter", &filter, "--format", format])
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

fn cleanup() {
    let filter = format!("label=brh.env={ENV}");
    for id in docker(&["ps", "-aq", "--filter", &filter]).lines() {
        docker(&["rm", "-f", id]);
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("?")
}

#[test]
fn a_stolen_witness_host_cannot_change_who_leads_or_what_runs() {
    cleanup();
    let dir = scratch("stolen-host");
    let manifest = dir.join("bridge.runtime.yaml");
    std::fs::write(
        &manifest,
        "provider: { kind: docker, network: brh_stolen_net }\n\
         services:\n\
         \x20 web:\n\
         \x20   image: brh-test/web:1\n\
         \x20   health: { http: \"http://{ip}:8080/health\", interval: 100ms, timeout: 1s, retries: 50 }\n",
    )
    .unwrap();
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    let opts = |prio: i32| AgentOpts {
        priority: prio,
        env: Some(ENV.into()),
        args: vec![
            "--config".into(),
            manifest.display().to_string(),
            "--stop-timeout".into(),
            "2s".into(),
        ],
        ..AgentOpts::default()
    };
    let mut agents = vec![
        Agent::start(&dir, "s1", &seal, forge.addr, opts(10)),
        Agent::start(&dir, "s2", &seal, forge.addr, opts(5)),
        Agent::start(&dir, "s3", &seal, forge.addr, opts(0)),
    ];
    let refs: Vec<&Agent> = agents.iter().collect();
    let (leader, term) = wait_until(SETTLE, || agreed_leader(&refs)).expect("a leader");
    assert_eq!(leader, "s1");
    let running = wait_until(SETTLE, || {
        let c = containers();
        (c.len() == 1 && c[0].ends_with("brh-test/web:1 running")).then_some(c)
    })
    .expect("the leader runs the manifest");
    let leader_api = agents[0].api;
    let root = root_for_env(&seal, forge.addr, ENV);

    // What the attacker holds: the witness s3's whole environment, as `enroll` gave it.
    let stolen: Vec<(&str, String)> = host_keys(&seal, ENV, "s3")
        .into_iter()
        .chain([
            ("BRH_NODE_ID", "s3".to_string()),
            ("FORGE_DOMINION_ROOT", root.clone()),
            ("BRH_ENV", ENV.to_string()),
        ])
        .collect();
    assert!(stolen.iter().all(|(k, _)| *k != "DOMINION_SEAL"));
    let s3_key = node_key(seal.as_bytes(), ENV, "s3");
    let unchanged = |what: &str| {
        let v = forge.get(&format!("/federation/leader?env={ENV}"));
        assert_eq!(
            (v["leader"].as_str(), v["term"].as_u64()),
            (Some("s1"), Some(term)),
            "after {what}: {v}"
        );
        assert_eq!(
            containers(),
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
            format!(r#"{{"env":"{ENV}","term":{term},"successor":"s3"}}"#),
        ),
        ("/federation/heartbeat", format!(r#"{{"env":"{ENV}"}}"#)),
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
        let (status, v) = http_post(forge.addr, path, &signed_headers(h), body.as_bytes());
        assert_eq!((status, code(&v)), (401, "bad_signature"), "{path}: {v}");
    }
    unchanged("a resign in the leader's name");

    // 3. Switchover, deploy, restart, drain at the leader: the CLI has nothing to sign with,
    //    and a request signed with the node key is no operator's.
    for args in [
        vec!["switchover", "--to", "s3"],
        vec!["deploy", "--service", "web", "--image", "brh-test/web:2"],
        vec!["restart", "brh_stolen_web_1"],
        vec!["drain", "brh_stolen_web_1"],
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
        ("/restart/brh_stolen_web_1", String::new()),
        ("/drain/brh_stolen_web_1", String::new()),
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
        assert_eq!((status, code(&v)), (401, "unauthorized"), "{path}: {v}");
    }
    unchanged("operator requests signed with a node key");

    // 4. Mint a root: nothing to sign it with; one signed with the node key as a "seal" is
    //    refused by every enrolled host's `root verify` and `run`.
    let out = agent_cli(
        &["root", "generate", "--host", "evil.example:1", "--env", ENV],
        &stolen,
    );
    assert!(!out.status.success(), "{}", output_text(&out));
    let forged = brh_shared::root::DominionRoot::sign(
        &brh_shared::keys::forge_signing_key(&s3_key),
        brh_shared::root::SCHEME_HTTP,
        "evil.example:1",
        ENV,
        wall_ms() / 1000,
    )
    .unwrap()
    .to_string();
    let victim: Vec<(&str, String)> = host_keys(&seal, ENV, "s2")
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
            ENV,
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
        ENV,
        leader_api,
        "brh-test/web:2",
        &["--service", "web", "--pull", "never"],
    );
    assert!(ok, "{said}");
    let deployed = wait_until(SETTLE, || {
        let c = containers();
        (c.len() == 1 && c[0].ends_with("brh-test/web:2 running")).then_some(c)
    });
    assert!(
        deployed.is_some(),
        "deploy did not roll out: {:?}",
        containers()
    );

    let out = agent_cli(&["switchover", "--to", "s2"], &carol);
    assert!(out.status.success(), "{}", output_text(&out));
    let v = forge.get(&format!("/federation/leader?env={ENV}"));
    assert_eq!(
        (v["leader"].as_str(), v["term"].as_u64()),
        (Some("s2"), Some(term + 1)),
        "{v}"
    );
    finish_and_check(&mut agents);
    cleanup();
}
