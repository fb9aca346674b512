//! Lease tokens on a real forge: the holder's answers carry a forge-signed fencing token, a
//! witness's do not; after a handover the successor's token has the higher term; and a
//! service that keeps the highest term it has seen refuses the deposed leader's token —
//! shown with `brh-agent token verify --min-term`, the check a service runs (README
//! "Containers": fencing a downstream service).
use std::time::Duration;

use brh_shared::keys::node_key;
use brh_shared::replay::Nonce;
use brh_shared::sign::sign_request;
use brh_tests::federation::*;
use serde_json::Value;

fn beat(forge: &Forge, seal: &str, node: &str, seq: u64, path: &str, body: &str) -> Value {
    let key = node_key(seal.as_bytes(), "dev", node);
    let h = sign_request(
        &key,
        "POST",
        path,
        node,
        wall_ms(),
        Nonce::new("lt", seq),
        body.as_bytes(),
    );
    let (status, v) = http_post(forge.addr, path, &signed_headers(h), body.as_bytes());
    assert_eq!(status, 200, "{path} as {node}: {v}");
    v
}

#[test]
fn the_holder_gets_a_fencing_token_and_a_service_refuses_the_deposed_one() {
    let dir = scratch("lease-token");
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    let hb = r#"{"env":"dev","version":"t"}"#;
    let v1 = beat(&forge, &seal, "n1", 1, "/federation/heartbeat", hb);
    let w = beat(&forge, &seal, "n2", 1, "/federation/heartbeat", hb);
    assert_eq!(v1["leader"], "n1", "{v1}");
    assert!(w.get("lease_token").is_none(), "a witness got a token: {w}");
    let t1 = v1["lease_token"]
        .as_str()
        .expect("the holder's token")
        .to_string();
    let term1 = v1["term"].as_u64().unwrap();

    // Handover: n1 resigns naming n2; n2's next answer carries the higher term's token.
    let body = format!(r#"{{"env":"dev","term":{term1},"successor":"n2"}}"#);
    beat(&forge, &seal, "n1", 2, "/federation/resign", &body);
    let v2 = wait_until(Duration::from_secs(5), || {
        let v = beat(
            &forge,
            &seal,
            "n2",
            2 + wall_ms() % 1_000_000,
            "/federation/heartbeat",
            hb,
        );
        (v["leader"] == "n2").then_some(v)
    })
    .expect("n2 took over");
    let t2 = v2["lease_token"]
        .as_str()
        .expect("the new holder's token")
        .to_string();
    let term2 = v2["term"].as_u64().unwrap();
    assert!(term2 > term1);

    // A service checks tokens offline with the forge's public key alone.
    let service = host_keys(&seal, "dev", "svc")
        .into_iter()
        .filter(|(k, _)| *k == "BRH_FORGE_KEY")
        .collect::<Vec<_>>();
    let out = agent_cli(&["token", "verify", &t1], &service);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains(&format!("of n1 in env dev, term {term1}")),
        "{}",
        output_text(&out)
    );
    // Having seen the successor's term, it refuses the deposed leader's token ...
    let seen = term2.to_string();
    let out = agent_cli(&["token", "verify", "--min-term", &seen, &t1], &service);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("fenced"),
        "{}",
        output_text(&out)
    );
    // ... and takes the successor's.
    let out = agent_cli(&["token", "verify", "--min-term", &seen, &t2], &service);
    assert!(out.status.success(), "{}", output_text(&out));
    // Another federation's key, or a tampered token: refused.
    let other = host_keys(&fresh_seal(), "dev", "svc")
        .into_iter()
        .filter(|(k, _)| *k == "BRH_FORGE_KEY")
        .collect::<Vec<_>>();
    let out = agent_cli(&["token", "verify", &t2], &other);
    assert!(!out.status.success(), "{}", output_text(&out));
    let tampered = t1.replacen(&format!(":{term1}:"), &format!(":{}:", term2 + 1), 1);
    let out = agent_cli(&["token", "verify", &tampered], &service);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("not signed by this forge"),
        "{}",
        output_text(&out)
    );
}
