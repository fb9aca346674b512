//! The core, natively: every endpoint and every error class, and that refused requests leave
//! the stored state exactly as it was.
use super::*;
use crate::store::MemoryStore;
use brh_shared::keys::{forge_signing_key, node_key};
use brh_shared::replay::Nonce;
use brh_shared::sign::{sign_request, verify_public_view, verify_view};
use brh_shared::wire::{ErrorBody, LeaderView, Role};
use brh_shared::Timing;
use std::cell::Cell;

const SEAL: &[u8] = b"core-test-seal";
const T0: u64 = 1_763_900_000_000;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

struct Harness {
    forge: Forge<MemoryStore>,
    seq: Cell<u64>,
}

impl Harness {
    fn new() -> Self {
        let mut cfg = ForgeConfig::new(Some(SEAL.to_vec()), "native");
        cfg.election = ElectionConfig::new(Timing::DEFAULT);
        Harness {
            forge: Forge::new(cfg, MemoryStore::default()),
            seq: Cell::new(0),
        }
    }

    fn signed(&self, path: &str, node: &str, body: &str, ts: u64) -> Request {
        self.seq.set(self.seq.get() + 1);
        self.signed_with(
            path,
            node,
            body,
            ts,
            Nonce::new("boot", self.seq.get()),
            SEAL,
        )
    }

    fn signed_with(
        &self,
        path: &str,
        node: &str,
        body: &str,
        ts: u64,
        nonce: Nonce,
        seal: &[u8],
    ) -> Request {
        // The node's own key, for the env its body names (what `brh-agent enroll` hands it).
        let env = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["env"].as_str().map(String::from))
            .unwrap_or_else(|| "dev".into());
        let key = node_key(seal, &env, node);
        let h = sign_request(&key, "POST", path, node, ts, nonce, body.as_bytes());
        let mut r = Request::new("POST", path);
        r.headers.insert("x-brh-node".into(), h.node);
        r.headers.insert("x-brh-ts".into(), h.ts_ms.to_string());
        r.headers.insert("x-brh-nonce".into(), h.nonce.to_string());
        r.headers.insert("x-brh-sig".into(), h.sig);
        r.body = body.as_bytes().to_vec();
        r
    }

    fn send(&self, req: &Request, now: u64) -> Response {
        block_on(self.forge.handle(req, now)).response
    }

    fn beat(&self, node: &str, now: u64) -> LeaderView {
        let r = self.send(
            &self.signed(
                "/federation/heartbeat",
                node,
                r#"{"env":"dev","version":"t"}"#,
                now,
            ),
            now,
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v: LeaderView = serde_json::from_slice(&r.body).unwrap();
        assert!(verify_view(&node_key(SEAL, "dev", node), &v));
        assert!(
            !verify_view(&node_key(SEAL, "dev", "someone-else"), &v),
            "an answer for {node} must not verify for another node"
        );
        v
    }

    fn get(&self, path_q: &str, now: u64) -> Response {
        self.send(&Request::new("GET", path_q), now)
    }

    fn snapshot(&self) -> String {
        format!("{:?}", self.forge.store.envs)
    }
}

fn error_code(r: &Response) -> ErrorCode {
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice::<ErrorBody>(&r.body)
        .unwrap()
        .error
        .code
}

#[test]
fn heartbeat_grants_and_answers_signed_view_with_role() {
    let h = Harness::new();
    let v = h.beat("n1", T0);
    assert_eq!(v.leader.as_deref(), Some("n1"));
    assert_eq!(v.term, 1);
    assert_eq!(v.mode, "native");
    assert_eq!(v.you.as_ref().unwrap().role, Role::Leader);
    assert_eq!(v.epoch, T0 / 1000);
    let v = h.beat("n2", T0 + 1);
    assert_eq!(v.you.unwrap().role, Role::Witness);
    assert_eq!(v.peers_alive, 2);
}

#[test]
fn leader_endpoint_is_public_signed_and_uncached() {
    let h = Harness::new();
    h.beat("n1", T0);
    let r = h.get("/federation/leader?env=dev", T0 + 5);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v: LeaderView = serde_json::from_slice(&r.body).unwrap();
    assert!(verify_public_view(
        &forge_signing_key(SEAL).verifying_key(),
        &v
    ));
    assert!(
        !verify_view(SEAL, &v),
        "a public view is not an HMAC under the seal"
    );
    assert!(v.you.is_none());
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    for key in [
        "leader",
        "lease",
        "epoch",
        "term",
        "issued_at_ms",
        "peers_alive",
        "sig",
    ] {
        assert!(j.get(key).is_some(), "{key}");
    }
    // Default env is dev.
    assert_eq!(h.get("/federation/leader", T0).status, 200);
}

#[test]
fn resign_hands_over_and_wrong_holder_is_409() {
    let h = Harness::new();
    h.beat("n1", T0);
    h.beat("n2", T0 + 1);
    let r = h.send(
        &h.signed(
            "/federation/resign",
            "n2",
            r#"{"env":"dev","term":1}"#,
            T0 + 2,
        ),
        T0 + 2,
    );
    assert_eq!((r.status, error_code(&r)), (409, ErrorCode::NotHolder));
    let handled = block_on(h.forge.handle(
        &h.signed(
            "/federation/resign",
            "n1",
            r#"{"env":"dev","term":1}"#,
            T0 + 3,
        ),
        T0 + 3,
    ));
    assert_eq!(handled.response.status, 200);
    let v: LeaderView = serde_json::from_slice(&handled.response.body).unwrap();
    assert_eq!((v.leader.as_deref(), v.term), (Some("n2"), 2));
    assert_eq!(v.you.unwrap().role, Role::Witness);
    let reasons: Vec<_> = handled
        .leader_changes
        .iter()
        .map(|c| c.entry.reason.as_str())
        .collect();
    assert_eq!(reasons, ["resigned", "resigned"]);
}

#[test]
fn consensus_is_accepted_never_sets_leader_and_counts_alarms() {
    let h = Harness::new();
    h.beat("n1", T0);
    h.beat("n2", T0);
    let r = h.send(
        &h.signed(
            "/federation/consensus",
            "n2",
            r#"{"env":"dev","leader":"n2","term":1,"peers":["n1","n2"],"epoch":1}"#,
            T0 + 1,
        ),
        T0 + 1,
    );
    assert_eq!(r.status, 202);
    let v: LeaderView = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v.leader.as_deref(), Some("n1"));
    let m = String::from_utf8(h.get("/metrics", T0 + 2).body).unwrap();
    assert!(
        m.contains(r#"brh_forge_split_brain_alarms_total{env="dev"} 1"#),
        "{m}"
    );
    let r = h.send(
        &h.signed(
            "/federation/consensus",
            "ghost",
            r#"{"env":"dev","leader":null}"#,
            T0 + 1,
        ),
        T0 + 1,
    );
    assert_eq!((r.status, error_code(&r)), (404, ErrorCode::NotFound));
}

#[test]
fn every_error_class_is_4xx_json_and_changes_nothing() {
    let h = Harness::new();
    h.beat("n1", T0);
    let before = h.snapshot();
    let hb = r#"{"env":"dev"}"#;
    let now = T0 + 10;
    let mut cases: Vec<(&str, Request, u16, ErrorCode)> = Vec::new();

    let mut bad_sig = h.signed("/federation/heartbeat", "n1", hb, now);
    bad_sig.headers.insert("x-brh-sig".into(), "0".repeat(64));
    cases.push(("bad signature", bad_sig, 401, ErrorCode::BadSignature));
    cases.push((
        "wrong seal",
        h.signed_with(
            "/federation/heartbeat",
            "n1",
            hb,
            now,
            Nonce::new("boot", 900),
            b"other",
        ),
        401,
        ErrorCode::BadSignature,
    ));
    let mut tampered = h.signed("/federation/heartbeat", "n1", hb, now);
    tampered.body = br#"{"env":"dev","priority":99}"#.to_vec();
    cases.push(("tampered body", tampered, 401, ErrorCode::BadSignature));
    cases.push((
        "stale",
        h.signed("/federation/heartbeat", "n1", hb, now - 30_001),
        401,
        ErrorCode::StaleTimestamp,
    ));
    cases.push((
        "future",
        h.signed("/federation/heartbeat", "n1", hb, now + 30_001),
        401,
        ErrorCode::StaleTimestamp,
    ));
    cases.push((
        "replay",
        h.signed_with(
            "/federation/heartbeat",
            "n1",
            hb,
            now,
            Nonce::new("boot", 1),
            SEAL,
        ),
        409,
        ErrorCode::Replay,
    ));
    let big = format!(
        r#"{{"env":"dev","version":"{}"}}"#,
        "x".repeat(MAX_BODY_BYTES)
    );
    cases.push((
        "too large",
        h.signed("/federation/heartbeat", "n1", &big, now),
        413,
        ErrorCode::TooLarge,
    ));
    cases.push((
        "malformed json",
        h.signed("/federation/heartbeat", "n1", "{not json", now),
        400,
        ErrorCode::BadRequest,
    ));
    cases.push((
        "fields by position (an array, not an object)",
        h.signed(
            "/federation/heartbeat",
            "n1",
            r#"["dev",0,false,1,"e2e"]"#,
            now,
        ),
        400,
        ErrorCode::BadRequest,
    ));
    cases.push((
        "missing env",
        h.signed("/federation/heartbeat", "n1", r#"{"priority":1}"#, now),
        400,
        ErrorCode::BadRequest,
    ));
    cases.push((
        "wrong type",
        h.signed(
            "/federation/heartbeat",
            "n1",
            r#"{"env":"dev","priority":"high"}"#,
            now,
        ),
        400,
        ErrorCode::BadRequest,
    ));
    cases.push((
        "bad env",
        h.signed("/federation/heartbeat", "n1", r#"{"env":"../etc"}"#, now),
        400,
        ErrorCode::BadRequest,
    ));
    cases.push((
        "bad node",
        h.signed("/federation/heartbeat", "bad node", hb, now),
        400,
        ErrorCode::BadRequest,
    ));
    let mut no_headers = Request::new("POST", "/federation/heartbeat");
    no_headers.body = hb.as_bytes().to_vec();
    cases.push(("unsigned", no_headers, 401, ErrorCode::Unauthorized));
    cases.push((
        "resign unknown",
        h.signed("/federation/resign", "n9", r#"{"env":"dev","term":1}"#, now),
        409,
        ErrorCode::NotHolder,
    ));
    cases.push((
        "resign bad body",
        h.signed(
            "/federation/resign",
            "n1",
            r#"{"env":"dev","term":-1}"#,
            now,
        ),
        400,
        ErrorCode::BadRequest,
    ));
    cases.push((
        "bad cursor",
        Request::new("GET", "/federation/history?env=dev&cursor=abc"),
        400,
        ErrorCode::BadRequest,
    ));
    cases.push((
        "unknown env peers",
        Request::new("GET", "/federation/peers?env=nowhere"),
        404,
        ErrorCode::NotFound,
    ));
    cases.push((
        "invalid env",
        Request::new("GET", "/federation/leader?env=a%20b"),
        400,
        ErrorCode::BadRequest,
    ));
    cases.push((
        "bad limit",
        Request::new("GET", "/federation/history?env=dev&limit=0"),
        400,
        ErrorCode::BadRequest,
    ));
    cases.push((
        "wrong method",
        Request::new("GET", "/federation/heartbeat"),
        405,
        ErrorCode::MethodNotAllowed,
    ));
    cases.push((
        "wrong method 2",
        Request::new("POST", "/federation/leader"),
        405,
        ErrorCode::MethodNotAllowed,
    ));
    cases.push((
        "unknown path",
        Request::new("GET", "/nope"),
        404,
        ErrorCode::NotFound,
    ));
    cases.push((
        "bad target",
        Request::new("GET", "/manifest/resolve?target=a/b"),
        400,
        ErrorCode::BadRequest,
    ));

    for (name, req, status, code) in cases {
        let r = h.send(&req, now);
        assert_eq!(
            r.status,
            status,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(error_code(&r), code, "{name}");
        assert_eq!(h.snapshot(), before, "{name} changed state");
        if req.method == "GET" && req.path != "/nope" && req.path != "/federation/heartbeat" {
            assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{name}");
            assert_eq!(r.header("cache-control"), Some("no-store"), "{name}");
        }
    }
    let r = h.get("/federation/heartbeat", now);
    assert_eq!(r.header("allow"), Some("POST"));
}

#[test]
fn no_seal_is_503_for_federation_but_health_and_dashboard_serve() {
    let forge = Forge::new(ForgeConfig::new(None, "kv"), MemoryStore::default());
    let r = block_on(forge.handle(&Request::new("POST", "/federation/heartbeat"), T0)).response;
    assert_eq!((r.status, error_code(&r)), (503, ErrorCode::NoSeal));
    let r = block_on(forge.handle(&Request::new("GET", "/federation/leader"), T0)).response;
    assert_eq!(r.status, 503);
    assert_eq!(
        block_on(forge.handle(&Request::new("GET", "/health"), T0))
            .response
            .status,
        200
    );
    let r = block_on(forge.handle(&Request::new("GET", "/"), T0)).response;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8(r.body).unwrap().contains("BRH forge"));
    assert_eq!(
        ForgeConfig::new(Some(vec![]), "kv").seal,
        None,
        "an empty seal is no seal"
    );
}

#[test]
fn peers_history_envs_manifest_health_dashboard() {
    let h = Harness::new();
    h.beat("n1", T0);
    h.beat("n2", T0 + 1);
    // n1 dies; the sweep hands over after the ttl.
    let changes = block_on(h.forge.sweep(T0 + 15_000)).unwrap();
    assert_eq!(changes.len(), 2);
    let r = h.get("/federation/peers?env=dev", T0 + 15_000);
    assert_eq!(r.status, 200);
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["peers"].as_array().unwrap().len(), 2);
    assert_eq!(j["peers"][0]["node"], "n1");
    assert_eq!(j["peers"][0]["alive"], false);

    let r = h.get("/federation/history?env=dev&limit=2", T0 + 15_000);
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let rows = j["history"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["term"].as_u64(), rows[0]["leader"].as_str()),
        (Some(2), Some("n2"))
    );
    assert_eq!(rows[1]["reason"], "expired");
    let next = j["next"].as_str().unwrap();
    let r = h.get(
        &format!("/federation/history?env=dev&limit=2&cursor={next}"),
        T0 + 15_000,
    );
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["history"][0]["leader"], "n1");
    assert_eq!(j["next"], serde_json::Value::Null);

    let j: serde_json::Value = serde_json::from_slice(&h.get("/federation/envs", T0).body).unwrap();
    assert_eq!(j["envs"], serde_json::json!(["dev"]));

    let r = h.get("/manifest/resolve?target=ledger", T0 + 15_000);
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let signed = format!("ledger:{}", (T0 + 15_000) / 1000);
    assert!(brh_shared::keys::verify_hex(
        &forge_signing_key(SEAL).verifying_key(),
        signed.as_bytes(),
        j["forge_sig"].as_str().unwrap()
    ));
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let r = h.send(&Request::new("OPTIONS", "/federation/leader"), T0);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let m = String::from_utf8(h.get("/metrics", T0 + 15_000).body).unwrap();
    for needle in [
        r#"brh_forge_heartbeats_total{env="dev"} 2"#,
        r#"brh_forge_leader_changes_total{env="dev"} 2"#,
        r#"brh_forge_term{env="dev"} 2"#,
        r#"brh_forge_peers_alive{env="dev"} 1"#,
    ] {
        assert!(m.contains(needle), "missing {needle} in\n{m}");
    }
}

#[test]
fn envs_are_isolated() {
    let h = Harness::new();
    h.beat("n1", T0);
    let r = h.send(
        &h.signed("/federation/heartbeat", "n2", r#"{"env":"prod"}"#, T0),
        T0,
    );
    let v: LeaderView = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (v.leader.as_deref(), v.term, v.env.as_str()),
        (Some("n2"), 1, "prod")
    );
    let dev: LeaderView =
        serde_json::from_slice(&h.get("/federation/leader?env=dev", T0).body).unwrap();
    assert_eq!(dev.leader.as_deref(), Some("n1"));
}

#[test]
fn leader_of_an_env_nobody_joined_is_vacant_term_0_with_read_headers() {
    let h = Harness::new();
    let r = h.get("/federation/leader?env=nowhere", T0);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v: LeaderView = serde_json::from_slice(&r.body).unwrap();
    assert_eq!((&v.leader, &v.lease, v.term), (&None, &None, 0));
    assert!(verify_public_view(
        &forge_signing_key(SEAL).verifying_key(),
        &v
    ));
    // Reading does not create the env.
    assert_eq!(h.snapshot(), "{}");
}

#[test]
fn renewals_are_volatile_steps() {
    let h = Harness::new();
    h.beat("n1", T0);
    h.beat("n2", T0 + 10);
    for i in 1..20 {
        h.beat("n1", T0 + i * 1000);
    }
    let text = String::from_utf8(h.get("/metrics", T0 + 30_000).body).unwrap();
    assert!(
        text.contains(r#"brh_forge_steps_total{durability="volatile"} 19"#),
        "{text}"
    );
    assert!(text.contains(r#"brh_forge_steps_total{durability="sync"} 1"#));
    assert!(text.contains(r#"brh_forge_steps_total{durability="write"} 1"#));
}

/// A store whose every operation fails, as KV over quota or a broken disk would.
struct BrokenStore;

impl Store for BrokenStore {
    async fn step<T>(
        &self,
        _env: &str,
        _now_ms: u64,
        _event: crate::store::Event<'_>,
        _answer: crate::store::Answer<'_, T>,
    ) -> std::result::Result<crate::store::Stepped<T>, StepError> {
        Err(StepError::Store(StoreError(
            "kv put env/dev/lease: Error: KV PUT failed: 429\n    at stack (worker.js:1:2)".into(),
        )))
    }
    async fn read<T>(
        &self,
        _env: &str,
        _now_ms: u64,
        _f: crate::store::Answer<'_, T>,
    ) -> std::result::Result<Option<T>, StoreError> {
        Err(StoreError("kv get: down".into()))
    }
    async fn history(
        &self,
        _env: &str,
        _cursor: Option<&str>,
        _limit: usize,
    ) -> std::result::Result<crate::store::HistoryPage, StoreError> {
        Err(StoreError("kv list: down".into()))
    }
    async fn envs(&self) -> std::result::Result<Vec<String>, StoreError> {
        Err(StoreError("kv list: down".into()))
    }
}

#[test]
fn a_store_failure_is_503_store_unavailable_with_retry_after_and_no_stack() {
    let good = Harness::new();
    let mut cfg = ForgeConfig::new(Some(SEAL.to_vec()), "kv");
    cfg.election = ElectionConfig::new(Timing::DEFAULT);
    let forge = Forge::new(cfg, BrokenStore);
    let req = good.signed("/federation/heartbeat", "n1", r#"{"env":"dev"}"#, T0);
    for req in [req, Request::new("GET", "/federation/leader?env=dev")] {
        let r = block_on(forge.handle(&req, T0)).response;
        assert_eq!(r.status, 503);
        assert_eq!(error_code(&r), ErrorCode::StoreUnavailable);
        assert_eq!(r.header("retry-after"), Some(STORE_RETRY_AFTER_S));
        let body = String::from_utf8(r.body).unwrap();
        assert!(
            !body.contains("worker.js") && !body.contains("\\n"),
            "{body}"
        );
    }
    let text = block_on(forge.handle(&Request::new("GET", "/metrics"), T0)).response;
    assert_eq!(text.status, 503, "metrics read the store too");
    assert_eq!(forge.metrics.store_failures.get(), 3);
}

#[test]
fn a_node_key_speaks_only_for_its_own_node_and_env() {
    let h = Harness::new();
    h.beat("n1", T0);
    h.beat("n2", T0 + 1);
    let before = h.snapshot();
    // n2's key (what a stolen n2 holds), used to speak as n1 or in another env.
    let n2 = node_key(SEAL, "dev", "n2");
    let forged = |path: &str, node: &str, body: &str, seq: u64| {
        let hd = sign_request(
            &n2,
            "POST",
            path,
            node,
            T0 + 2,
            Nonce::new("evil", seq),
            body.as_bytes(),
        );
        let mut r = Request::new("POST", path);
        r.headers.insert("x-brh-node".into(), hd.node);
        r.headers.insert("x-brh-ts".into(), hd.ts_ms.to_string());
        r.headers.insert("x-brh-nonce".into(), hd.nonce.to_string());
        r.headers.insert("x-brh-sig".into(), hd.sig);
        r.body = body.as_bytes().to_vec();
        r
    };
    for (what, req) in [
        (
            "heartbeat as n1",
            forged("/federation/heartbeat", "n1", r#"{"env":"dev"}"#, 1),
        ),
        (
            "resign in n1's name",
            forged(
                "/federation/resign",
                "n1",
                r#"{"env":"dev","term":1,"successor":"n2"}"#,
                2,
            ),
        ),
        (
            "n2 in another env",
            forged("/federation/heartbeat", "n2", r#"{"env":"prod"}"#, 3),
        ),
    ] {
        let r = h.send(&req, T0 + 2);
        assert_eq!(
            r.status,
            401,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(error_code(&r), ErrorCode::BadSignature, "{what}");
    }
    assert_eq!(h.snapshot(), before, "refused requests changed nothing");
    // n2's key still speaks for n2.
    let ok = h.send(
        &forged("/federation/heartbeat", "n2", r#"{"env":"dev"}"#, 4),
        T0 + 3,
    );
    assert_eq!(ok.status, 200);
}

#[test]
fn the_holder_gets_a_lease_token_witnesses_do_not() {
    let h = Harness::new();
    let v = h.beat("n1", T0);
    let w = h.beat("n2", T0 + 1);
    assert!(w.lease_token.is_none(), "a witness got a lease token");
    let pk = forge_signing_key(SEAL).verifying_key();
    let t = v
        .lease_token
        .expect("the holder's answer carries a lease token");
    let c = brh_shared::token::verify_lease(&pk, &t, T0 / 1000).unwrap();
    assert_eq!(
        (c.env.as_str(), c.holder.as_str(), c.term),
        ("dev", "n1", v.term)
    );
    assert_eq!(
        c.expires_at_s,
        T0 / 1000 + brh_shared::token::LEASE_TOKEN_TTL_S
    );
    let public: LeaderView =
        serde_json::from_slice(&h.get("/federation/leader?env=dev", T0 + 2).body).unwrap();
    assert!(
        public.lease_token.is_none(),
        "a public view carries no token"
    );
}

#[test]
fn seal_signatures_only_behind_the_compatibility_flag() {
    // An agent of the previous release: signs with the seal, checks answers with it.
    let old_agent = |h: &Harness, seq: u64| {
        let body = r#"{"env":"dev","version":"old"}"#;
        let hd = sign_request(
            SEAL,
            "POST",
            "/federation/heartbeat",
            "n1",
            T0,
            Nonce::new("old", seq),
            body.as_bytes(),
        );
        let mut r = Request::new("POST", "/federation/heartbeat");
        r.headers.insert("x-brh-node".into(), hd.node);
        r.headers.insert("x-brh-ts".into(), hd.ts_ms.to_string());
        r.headers.insert("x-brh-nonce".into(), hd.nonce.to_string());
        r.headers.insert("x-brh-sig".into(), hd.sig);
        r.body = body.as_bytes().to_vec();
        h.send(&r, T0)
    };
    let h = Harness::new();
    let r = old_agent(&h, 1);
    assert_eq!((r.status, error_code(&r)), (401, ErrorCode::BadSignature));
    let mut h = Harness::new();
    h.forge.cfg.legacy_seal_signatures = true;
    let r = old_agent(&h, 1);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: LeaderView = serde_json::from_slice(&r.body).unwrap();
    assert!(
        verify_view(SEAL, &v),
        "the old agent checks the answer with the seal"
    );
    let basis = r.header("x-brh-basis-sig").unwrap();
    assert!(brh_shared::sign::verify_basis(
        SEAL, "n1", "old:1", &v.sig, basis
    ));
    // Enrolled agents are answered under their own key as ever.
    h.beat("n2", T0 + 1);
}

/// An operator's request to the forge: Ed25519 over the forge's canonical string.
fn operator_request(
    key: &ed25519_dalek::SigningKey,
    cert: Option<&str>,
    caller: &str,
    body: &str,
    ts: u64,
) -> Request {
    let nonce = Nonce::new("ops", ts);
    let path = "/federation/revoke";
    let msg = brh_shared::sign::canonical_for(
        brh_shared::sign::Audience::Forge,
        "POST",
        path,
        caller,
        ts,
        &nonce,
        body.as_bytes(),
    );
    let mut r = Request::new("POST", path);
    r.headers.insert("x-brh-node".into(), caller.into());
    r.headers.insert("x-brh-ts".into(), ts.to_string());
    r.headers.insert("x-brh-nonce".into(), nonce.to_string());
    r.headers.insert(
        "x-brh-sig".into(),
        brh_shared::keys::sign_hex(key, msg.as_bytes()),
    );
    if let Some(c) = cert {
        r.headers.insert("x-brh-operator".into(), c.into());
    }
    r.body = body.as_bytes().to_vec();
    r
}

#[test]
fn a_revoked_node_is_refused_from_its_next_request_and_a_new_generation_is_not() {
    let h = Harness::new();
    h.beat("a", T0);
    h.beat("b", T0 + 1);
    let body = r#"{"env":"dev","node":"b"}"#;
    // A node's own key is no operator credential (an HMAC is no Ed25519 signature).
    let key = node_key(SEAL, "dev", "b");
    let mut forged = operator_request(&forge_signing_key(b"x"), None, "b", body, T0 + 2);
    let hs = sign_request(
        &key,
        "POST",
        "/federation/revoke",
        "b",
        T0 + 2,
        Nonce::new("ops", 1),
        body.as_bytes(),
    );
    forged.headers.insert("x-brh-sig".into(), hs.sig);
    forged
        .headers
        .insert("x-brh-nonce".into(), hs.nonce.to_string());
    let r = h.send(&forged, T0 + 2);
    assert_eq!((r.status, error_code(&r)), (401, ErrorCode::BadSignature));
    // A scoped operator without the nodes scope: 403, nothing changes.
    let top = brh_shared::keys::operator_signing_key(SEAL);
    let scoped = brh_shared::operator::issue_credential(
        &top,
        "alice",
        "dev",
        &[brh_shared::operator::Scope::Switchover],
        T0 / 1000 + 3600,
        [7; 32],
    )
    .unwrap();
    let cert = scoped.cert.to_string();
    let r = h.send(
        &operator_request(&scoped.key, Some(&cert), "alice", body, T0 + 3),
        T0 + 3,
    );
    assert_eq!((r.status, error_code(&r)), (403, ErrorCode::Forbidden));
    h.beat("b", T0 + 4);
    // The top operator revokes it.
    let r = h.send(&operator_request(&top, None, "ops", body, T0 + 5), T0 + 5);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["accepted_from"], 1);
    let r = h.send(
        &h.signed(
            "/federation/heartbeat",
            "b",
            r#"{"env":"dev","version":"t"}"#,
            T0 + 6,
        ),
        T0 + 6,
    );
    assert_eq!((r.status, error_code(&r)), (401, ErrorCode::Revoked));
    let peers = h.send(&Request::new("GET", "/federation/peers"), T0 + 7);
    assert!(!String::from_utf8_lossy(&peers.body).contains("\"b\""));
    // Generation 1 of its key, named in x-brh-key-gen, is accepted and answered under it.
    let body = r#"{"env":"dev","version":"t"}"#;
    let k1 = brh_shared::keys::node_key_gen(SEAL, "dev", "b", 1);
    let hs = sign_request(
        &k1,
        "POST",
        "/federation/heartbeat",
        "b",
        T0 + 8,
        Nonce::new("new", 1),
        body.as_bytes(),
    );
    let mut req = Request::new("POST", "/federation/heartbeat");
    req.headers.insert("x-brh-node".into(), hs.node);
    req.headers.insert("x-brh-ts".into(), hs.ts_ms.to_string());
    req.headers
        .insert("x-brh-nonce".into(), hs.nonce.to_string());
    req.headers.insert("x-brh-sig".into(), hs.sig);
    req.body = body.as_bytes().to_vec();
    let r = h.send(&req, T0 + 8);
    assert_eq!(
        (r.status, error_code(&r)),
        (401, ErrorCode::BadSignature),
        "generation 1 without its header"
    );
    req.headers.insert("x-brh-key-gen".into(), "1".into());
    let r = h.send(&req, T0 + 8);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: LeaderView = serde_json::from_slice(&r.body).unwrap();
    assert!(verify_view(&k1, &v));
    req.headers.insert("x-brh-key-gen".into(), "01".into());
    let r = h.send(&req, T0 + 9);
    assert_eq!((r.status, error_code(&r)), (400, ErrorCode::BadRequest));
}

#[test]
fn during_a_rotation_both_seals_speak_and_each_node_is_answered_under_its_own() {
    let mut h = Harness::new();
    const NEW: &[u8] = b"the-new-seal";
    h.forge.cfg =
        ForgeConfig::new(Some(NEW.to_vec()), "native").with_previous_seal(Some(SEAL.to_vec()));
    h.forge.cfg.election = ElectionConfig::new(Timing::DEFAULT);
    // An old host (SEAL's node key) is answered under that key, with a lease token of the
    // old forge key; a re-enrolled one under the new key.
    let r = h.send(
        &h.signed(
            "/federation/heartbeat",
            "old",
            r#"{"env":"dev","version":"t"}"#,
            T0,
        ),
        T0,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: LeaderView = serde_json::from_slice(&r.body).unwrap();
    assert!(verify_view(&node_key(SEAL, "dev", "old"), &v));
    let token = v.lease_token.expect("the holder gets a token");
    let old_forge = forge_signing_key(SEAL).verifying_key();
    assert!(brh_shared::token::verify_lease(&old_forge, &token, T0 / 1000).is_ok());
    let body = r#"{"env":"dev","version":"t"}"#;
    let req = h.signed_with(
        "/federation/heartbeat",
        "new",
        body,
        T0 + 1,
        Nonce::new("b", 1),
        NEW,
    );
    let r = h.send(&req, T0 + 1);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: LeaderView = serde_json::from_slice(&r.body).unwrap();
    assert!(verify_view(&node_key(NEW, "dev", "new"), &v));
    // Public views: the new forge key.
    let r = h.send(&Request::new("GET", "/federation/leader"), T0 + 2);
    let v: LeaderView = serde_json::from_slice(&r.body).unwrap();
    assert!(verify_public_view(
        &forge_signing_key(NEW).verifying_key(),
        &v
    ));
    // Without the previous seal, the old host is refused.
    let mut cfg = ForgeConfig::new(Some(NEW.to_vec()), "native");
    cfg.election = ElectionConfig::new(Timing::DEFAULT);
    h.forge.cfg = cfg;
    let r = h.send(
        &h.signed(
            "/federation/heartbeat",
            "old",
            r#"{"env":"dev","version":"t"}"#,
            T0 + 3,
        ),
        T0 + 3,
    );
    assert_eq!((r.status, error_code(&r)), (401, ErrorCode::BadSignature));
}
