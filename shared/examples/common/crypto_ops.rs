//! The operations `crypto_cost` (native) and `crypto_wasm` (Wasm) time: one list, so the two
//! tables are of the same work.
use brh_shared::keys;
use brh_shared::replay::Nonce;
use brh_shared::sign::{self, RawAuth};
use brh_shared::wire::{LeaderView, LeaseInfo, Role, You};

pub struct Fixture {
    pub seal: Vec<u8>,
    pub node_key: [u8; 32],
    pub forge: ed25519_dalek::SigningKey,
    pub forge_pub: ed25519_dalek::VerifyingKey,
    pub body: Vec<u8>,
    pub headers: sign::SignedHeaders,
    pub seal_headers: sign::SignedHeaders,
    pub view: LeaderView,
    pub public: LeaderView,
}

pub const NOW: u64 = 1_763_900_000_000;

impl Fixture {
    pub fn new() -> Fixture {
        let seal = b"0123456789abcdef0123456789abcdef".to_vec();
        let node_key = keys::node_key(&seal, "production", "brh-node-02");
        let forge = keys::forge_signing_key(&seal);
        let body = br#"{"env":"production","priority":0,"draining":false,"uptime_s":12,"version":"0.1.0","api":"http://10.0.0.2:7878"}"#.to_vec();
        let sign_with = |key: &[u8]| {
            sign::sign_request(
                key,
                "POST",
                "/federation/heartbeat",
                "brh-node-02",
                NOW,
                Nonce::new("5b1fb007", 42),
                &body,
            )
        };
        let mut view = LeaderView {
            env: "production".into(),
            leader: Some("brh-node-01".into()),
            term: 7,
            lease: Some(LeaseInfo {
                holder: "brh-node-01".into(),
                term: 7,
                expires_at_ms: NOW + 15_000,
                ttl_ms: 15_000,
            }),
            epoch: NOW / 1000,
            issued_at_ms: NOW,
            peers_alive: 3,
            mode: "native".into(),
            heartbeat_interval_ms: 5_000,
            lease_ttl_ms: 15_000,
            you: Some(You {
                node: "brh-node-02".into(),
                role: Role::Witness,
            }),
            sig: String::new(),
            lease_token: None,
        };
        let mut public = view.clone();
        public.you = None;
        sign::sign_public_view(&forge, &mut public);
        sign::sign_view(&node_key, &mut view);
        Fixture {
            headers: sign_with(&node_key),
            seal_headers: sign_with(&seal),
            forge_pub: forge.verifying_key(),
            seal,
            node_key,
            forge,
            body,
            view,
            public,
        }
    }

    fn raw<'a>(&self, h: &'a sign::SignedHeaders, ts: &'a str, n: &'a str) -> RawAuth<'a> {
        RawAuth {
            node: Some(&h.node),
            ts: Some(ts),
            nonce: Some(n),
            sig: Some(&h.sig),
        }
    }

    fn verify(&self, key: &[u8], h: &sign::SignedHeaders) -> bool {
        let (ts, n) = (h.ts_ms.to_string(), h.nonce.to_string());
        sign::verify_request(
            key,
            "POST",
            "/federation/heartbeat",
            self.raw(h, &ts, &n),
            &self.body,
            NOW,
            30_000,
        )
        .is_ok()
    }
}

fn node_view(key: &[u8], v: &LeaderView) -> (String, String) {
    let mut v = v.clone();
    sign::sign_view(key, &mut v);
    let b = sign::sign_basis(key, "brh-node-02", "5b1fb007:42", &v.sig);
    (v.sig, b)
}

type Op = fn(&Fixture) -> bool;

/// (name, operation, iterations per sample)
pub const OPS: &[(&str, Op, u32)] = &[
    (
        "forge, before: verify a heartbeat + sign view + binding (seal)",
        |f| f.verify(&f.seal, &f.seal_headers) && !node_view(&f.seal, &f.view).0.is_empty(),
        2_000,
    ),
    (
        "forge, now: derive node key + verify + sign view + binding",
        |f| {
            let k = keys::node_key(&f.seal, "production", &f.headers.node);
            f.verify(&k, &f.headers) && !node_view(&k, &f.view).0.is_empty()
        },
        2_000,
    ),
    (
        "  of which: derive a node key",
        |f| keys::node_key(&f.seal, "production", "brh-node-02")[0] != 1,
        10_000,
    ),
    (
        "agent: check an answer (view + binding, node key)",
        |f| {
            sign::verify_view(&f.node_key, &f.view)
                && !sign::verify_basis(&f.node_key, "x", "y", &f.view.sig, "00")
        },
        5_000,
    ),
    (
        "forge: sign a public view (Ed25519)",
        |f| {
            let mut v = f.public.clone();
            sign::sign_public_view(&f.forge, &mut v);
            !v.sig.is_empty()
        },
        200,
    ),
    (
        "reader: check a public view (Ed25519)",
        |f| sign::verify_public_view(&f.forge_pub, &f.public),
        200,
    ),
    (
        "forge start-up: derive the forge key (once per process/isolate)",
        |f| keys::forge_signing_key(&f.seal).verifying_key().as_bytes()[0] != 1,
        200,
    ),
];
