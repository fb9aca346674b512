//! What reading the forge's JSON costs per operation, natively: serde's derived readers (what
//! the forge used before, and what the agent uses) next to `brh_shared::json` (what the forge
//! uses now), for a heartbeat body and for a stored env of 10 and 100 peers (a cold load).
//! Prints a table of medians and their ratio.
//!
//!     cargo run --release -p brh-shared --example json_cost
use std::hint::black_box;
#[path = "common/median.rs"]
mod median;
use median::median_ns;

use brh_shared::election::{EnvState, Lease, Peer};
use brh_shared::replay::NonceMark;
use brh_shared::sign::KeyId;
use brh_shared::wire::Heartbeat;

fn env_with(peers: usize) -> String {
    let mut s = EnvState::default();
    s.term = 7;
    s.lease = Some(Lease {
        holder: "node-0".into(),
        term: 7,
        granted_at_ms: 1_764_000_000_000,
        expires_at_ms: 1_764_000_015_000,
        ttl_ms: 15_000,
    });
    for i in 0..peers {
        s.peers.insert(
            format!("node-{i}"),
            Peer {
                joined_at_ms: 1_764_000_000_000 + i as u64,
                last_seen_ms: 1_764_000_010_000,
                priority: (i % 3) as i32,
                draining: false,
                uptime_s: 86_400,
                version: "0.1.0".into(),
                api: Some(format!("https://10.0.0.{i}:8443")),
                nonce: NonceMark {
                    boot_id: "3f9a0c1e".into(),
                    seq: 1234 + i as u64,
                    ts_ms: 1_764_000_010_000,
                    retired: vec![],
                },
                reported: Some((Some("node-0".into()), 7)),
                leaving: false,
                key: KeyId::default(),
            },
        );
    }
    serde_json::to_string(&s).unwrap()
}

fn main() {
    let hb = br#"{"env":"prod","priority":10,"draining":false,"uptime_s":86400,"version":"0.1.0","api":"https://10.0.0.7:8443"}"#;
    let env10 = env_with(10);
    let env100 = env_with(100);
    println!("| read (native, median of 15 runs) | bytes | serde µs | brh_shared::json µs | json / serde |");
    println!("|---|---:|---:|---:|---:|");
    let row = |name: &str, bytes: usize, serde: f64, ours: f64| {
        println!(
            "| {name} | {bytes} | {:.2} | {:.2} | {:.2} |",
            serde / 1000.0,
            ours / 1000.0,
            ours / serde
        );
    };
    let s = median_ns(
        || {
            drop(black_box(serde_json::from_slice::<Heartbeat>(black_box(
                hb,
            ))))
        },
        20_000,
    );
    let o = median_ns(
        || {
            drop(black_box(brh_shared::wire::read_object::<Heartbeat>(
                black_box(hb),
            )))
        },
        20_000,
    );
    row("heartbeat body", hb.len(), s, o);
    for (name, doc, iters) in [
        ("env, 10 peers", &env10, 2_000),
        ("env, 100 peers", &env100, 200),
    ] {
        let s = median_ns(
            || drop(black_box(serde_json::from_str::<EnvState>(black_box(doc)))),
            iters,
        );
        let o = median_ns(
            || {
                drop(black_box(brh_shared::json::from_json::<EnvState>(
                    black_box(doc.as_bytes()),
                )))
            },
            iters,
        );
        row(name, doc.len(), s, o);
    }
}
