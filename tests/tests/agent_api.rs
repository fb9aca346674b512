//! Real processes: the agent's local API (auth, guard, error shapes) and start-up refusals.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use brh_tests::federation::*;
use serde_json::Value;

fn raw_post(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let code = buf[9..12].parse().unwrap();
    let body = buf.split_once("\r\n\r\n").unwrap().1;
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn deploy(seal: &str, api: SocketAddr, image: &str) -> (bool, String) {
    cli_deploy(seal, "dev", api, image, &[])
}

#[test]
fn api_authenticates_guards_and_answers_json_errors() {
    let dir = scratch("api");
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    let mut agents: Vec<Agent> = ["n1", "n2"]
        .iter()
        .map(|n| Agent::start(&dir, n, &seal, forge.addr, AgentOpts::default()))
        .collect();
    let refs: Vec<&Agent> = agents.iter().collect();
    let (leader, term) =
        wait_until(Duration::from_secs(15), || agreed_leader(&refs)).expect("no leader");
    drop(refs);
    let l = agents.iter().find(|a| a.node == leader).unwrap();
    let w = agents.iter().find(|a| a.node != leader).unwrap();

    // Reads are open.
    let st = l.status().unwrap();
    assert_eq!(st["role"], "leader");
    assert_eq!(st["term"].as_u64(), Some(term));
    assert!(st["lease_remaining_ms"].as_u64().unwrap() > 0);
    assert_eq!(st["forge"]["reachable"], true);
    assert!(st["version"].is_string());
    assert_eq!(http_get(l.api, "/health").unwrap()["status"], "ok");
    let fs = http_get(w.api, "/federation/state").unwrap();
    assert_eq!(fs["leader"].as_str(), Some(leader.as_str()));
    assert_eq!(fs["peers"].as_array().unwrap().len(), 2);
    let ev = http_get(l.api, "/events").unwrap();
    assert!(ev.as_array().unwrap().iter().any(|e| e["message"]
        .as_str()
        .unwrap()
        .starts_with("PROMOTION: node promoted to leader")));
    assert_eq!(
        http_get(l.api, "/nope").unwrap()["error"]["code"],
        "not_found"
    );

    // Mutations need the seal-derived signature.
    let (code, j) = raw_post(l.api, "/deploy", r#"{"image":"nginx"}"#);
    assert_eq!(code, 401);
    assert_eq!(j["error"]["code"], "unauthorized");
    let (code, _) = raw_post(l.api, "/restart/web", "");
    assert_eq!(code, 401);
    let (ok, out) = deploy("wrong-seal", l.api, "nginx:1");
    assert!(!ok && out.contains("401"), "{out}");

    // Witness: the original's answer. Leader without a manifest: nothing to deploy (409,
    // a request the caller can fix, never a 5xx).
    let (ok, out) = deploy(&seal, w.api, "nginx:1");
    assert!(!ok && out.contains(r#""reason":"not-leader""#), "{out}");
    let (ok, out) = deploy(&seal, l.api, "nginx:1");
    assert!(
        !ok && out.contains("409") && out.contains("no manifest with services"),
        "{out}"
    );
    let (ok, out) = deploy(&seal, l.api, "bad;image");
    assert!(!ok && out.contains("invalid --image"), "{out}");

    // Metrics.
    let mut s = TcpStream::connect(l.api).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut m = String::new();
    s.read_to_string(&mut m).unwrap();
    assert!(m.contains("brh_agent_is_leader 1"), "{m}");
    assert!(
        m.contains("brh_agent_heartbeats_total{result=\"ok\"}"),
        "{m}"
    );
    // Base units: seconds, within the fast profile's 3 s lease.
    let left: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("brh_agent_lease_remaining_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no lease_remaining_seconds: {m}"));
    assert!(left > 0.0 && left <= 3.0, "{left}");
    assert!(
        m.contains(&format!(
            "brh_agent_info{{node=\"{leader}\",env=\"dev\",version=\""
        )),
        "{m}"
    );
    finish_and_check(&mut agents);
}

#[test]
fn unsafe_settings_stop_start_up_with_one_line_naming_the_setting() {
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(bin("brh-agent"));
        c.arg("run")
            .args(args)
            .env_remove("DOMINION_SEAL")
            .env_remove("FORGE_DOMINION_ROOT");
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert_eq!(err.lines().count(), 1, "one line expected: {err}");
        err
    };
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let root = root_for("s3cret", addr);
    let e = run(
        &[("BRH_NODE_ID", "n1"), ("FORGE_DOMINION_ROOT", &root)],
        &[],
    );
    assert!(e.contains("BRH_NODE_KEY") && e.contains("enroll"), "{e}");
    // The seal on a host: refused unless asked for by name.
    let e = run(
        &[
            ("BRH_NODE_ID", "n1"),
            ("DOMINION_SEAL", "s3cret"),
            ("FORGE_DOMINION_ROOT", &root),
        ],
        &[],
    );
    assert!(
        e.contains("BRH_NODE_KEY") && e.contains("--legacy-seal"),
        "{e}"
    );
    let e = run(
        &[
            ("BRH_NODE_ID", "n1"),
            ("DOMINION_SEAL", "other"),
            ("BRH_LEGACY_SEAL", "true"),
            ("FORGE_DOMINION_ROOT", &root),
        ],
        &[],
    );
    assert!(
        e.contains("FORGE_DOMINION_ROOT") && e.contains("signature"),
        "{e}"
    );
    // Another federation's keys do not accept this root.
    let theirs = host_keys("other", "dev", "n1");
    let mut env: Vec<(&str, &str)> = theirs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([("BRH_NODE_ID", "n1"), ("FORGE_DOMINION_ROOT", &root)]);
    let e = run(&env, &[]);
    assert!(
        e.contains("FORGE_DOMINION_ROOT") && e.contains("signature"),
        "{e}"
    );
    let ours = host_keys("s3cret", "dev", "n1");
    let mut env: Vec<(&str, &str)> = ours.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([("BRH_NODE_ID", "n1"), ("FORGE_DOMINION_ROOT", &root)]);
    let e = run(&env, &["--heartbeat-interval", "5", "--lease-ttl", "10"]);
    assert!(e.contains("BRH_LEASE_TTL"), "{e}");
    assert!(
        !e.contains(&ours[0].1),
        "the node key must never be printed"
    );
    let e = run(
        &[
            ("BRH_NODE_ID", "n1"),
            ("DOMINION_SEAL", "s3cret"),
            ("BRH_LEGACY_SEAL", "1"),
            ("FORGE_DOMINION_ROOT", root.as_str()),
        ],
        &["--heartbeat-interval", "5", "--lease-ttl", "10"],
    );
    assert!(e.contains("BRH_LEASE_TTL"), "{e}");
    assert!(!e.contains("s3cret"), "the seal must never be printed");
}
