//! Routing and handlers: the same code serves the Worker, the Durable Object and the native
//! forge. Every handler follows one shape: check the request completely, load the env state,
//! apply one event of the `brh-shared` state machine, save, answer. A refused request is
//! answered before anything is saved, so bad input never changes state.
use brh_shared::election::{Change, ElectionConfig, ElectionError, EnvState};
use brh_shared::ids::validate_id;
use brh_shared::json::FromJson;
use brh_shared::operator::{RequestError, Scope};
use brh_shared::route::{self, Endpoint, Route};
use brh_shared::sign::{self, AuthError, AuthFields, Authenticated, KeyId, RawAuth};
use brh_shared::wire::{
    ConsensusReport, ErrorCode, Heartbeat, HistoryEntry, LeaderView, ResignRequest, RevokeRequest,
    MAX_BODY_BYTES,
};
use serde::Serialize;

use crate::dashboard;
use crate::http::{Request, Response};
use crate::metrics::{Metrics, RequestLabel};
use crate::store::{StepError, Store, StoreError};

/// A signed request's auth headers, checked for form ([`Forge::authenticate`]).
struct AuthHeaders<'r> {
    raw: RawAuth<'r>,
    fields: AuthFields<'r>,
    generation: u32,
}

/// The env used when a GET names none (the original's default `BRH_ENV`).
pub const DEFAULT_ENV: &str = "dev";

#[derive(Debug, Clone)]
pub struct ForgeConfig {
    /// `DOMINION_SEAL`, the root secret: the forge derives each node's key from it per request
    /// (`keys::node_key`, one HMAC, no lookup). Without it the forge serves no federation
    /// endpoint (503 `no_seal`).
    pub seal: Option<Vec<u8>>,
    /// The forge key (`keys::forge_signing_key(seal)`), derived once: it signs public views,
    /// so anyone with its public key can check them.
    pub forge_key: Option<ed25519_dalek::SigningKey>,
    /// The top operator's public key (`keys::operator_signing_key(seal)`): checks operator
    /// requests to the forge (`POST /federation/revoke`).
    pub operator_key: Option<ed25519_dalek::VerifyingKey>,
    /// While the root secret is rotated (`DOMINION_SEAL_PREVIOUS`): the previous seal's keys.
    /// Requests signed with a node key derived from it are accepted, and answered under that
    /// key with lease tokens of the previous forge key, so hosts not yet re-enrolled keep
    /// working; everything public is signed with the current forge key.
    pub previous: Option<SealKeys>,
    pub election: ElectionConfig,
    /// Accepted distance between a request's `x-brh-ts` and the forge's clock.
    pub skew_ms: u64,
    /// One release of compatibility, off by default: also accept requests signed with the
    /// seal (agents of the previous release) and answer them under the seal (the native forge
    /// warns at start). Whoever holds the seal can then speak for any node — as before.
    pub legacy_seal_signatures: bool,
    /// `native`, `kv` or `durable-object`: shown in views and on the dashboard.
    pub mode: String,
    /// `FORGE_DOMINION_ROOT`, echoed by `/manifest/resolve` (seed compatibility).
    pub dominion_root: Option<String>,
    /// Whether `/metrics` reads every env's state for its gauges. Off for the Worker in
    /// durable-object mode: the registers hold the state (`/metrics?env=`), and a KV list per
    /// scrape would cost more than the scrape is worth.
    pub env_gauges: bool,
}

/// What the forge derives from one seal, once per process.
#[derive(Debug, Clone)]
pub struct SealKeys {
    pub seal: Vec<u8>,
    pub forge_key: ed25519_dalek::SigningKey,
    pub operator_key: ed25519_dalek::VerifyingKey,
}

impl SealKeys {
    pub fn derive(seal: &[u8]) -> Self {
        SealKeys {
            seal: seal.to_vec(),
            forge_key: brh_shared::keys::forge_signing_key(seal),
            operator_key: brh_shared::keys::operator_signing_key(seal).verifying_key(),
        }
    }
}

impl ForgeConfig {
    pub fn new(seal: Option<Vec<u8>>, mode: &str) -> Self {
        let seal = seal.filter(|s| !s.is_empty());
        ForgeConfig {
            forge_key: seal.as_deref().map(brh_shared::keys::forge_signing_key),
            operator_key: seal
                .as_deref()
                .map(|s| brh_shared::keys::operator_signing_key(s).verifying_key()),
            previous: None,
            seal,
            legacy_seal_signatures: false,
            election: ElectionConfig::default(),
            skew_ms: sign::DEFAULT_SKEW_MS,
            mode: mode.into(),
            dominion_root: None,
            env_gauges: true,
        }
    }

    /// Starts a rotation's overlap window: `previous` is the seal being replaced. Empty, or
    /// equal to the current seal, means no rotation.
    pub fn with_previous_seal(mut self, previous: Option<Vec<u8>>) -> Self {
        self.previous = previous
            .filter(|p| !p.is_empty() && Some(p) != self.seal.as_ref())
            .map(|p| SealKeys::derive(&p));
        self
    }

    /// The forge key whose lease tokens a node signing with `key` can check.
    fn forge_key_for(&self, key: KeyId) -> Option<&ed25519_dalek::SigningKey> {
        match (&self.previous, key.previous_seal) {
            (Some(p), true) => Some(&p.forge_key),
            _ => self.forge_key.as_ref(),
        }
    }

    /// A node's key as the forge derives it for `id` (from the previous seal during a
    /// rotation's overlap, when `id` says so).
    pub(crate) fn node_key(&self, env: &str, node: &str, id: KeyId) -> Option<NodeKey> {
        let seal = match (&self.previous, id.previous_seal) {
            (Some(p), true) => &p.seal,
            (_, true) => return None,
            (_, false) => self.seal.as_ref()?,
        };
        Some(NodeKey(
            brh_shared::keys::node_key_gen(seal, env, node, id.generation).to_vec(),
            id,
        ))
    }
}

/// The JSON answers the handlers build, as typed structs rather than `json!` values (no
/// `serde_json::Value` and its map in the Wasm). Fields are in alphabetical order: the text is
/// the one `json!` wrote (its map sorts its keys), and so are the peer and history rows'
/// ([`Sorted`]).
mod answer {
    use super::Serialize;
    use brh_shared::wire::{HistoryEntry, PeerSummary};
    use serde::ser::{SerializeStruct, Serializer};

    /// Rows serialized with their keys sorted, as `json!` (through `serde_json::Value`) wrote
    /// them: not in the order of the struct's fields.
    pub struct Sorted<'a, T>(pub &'a [T]);

    struct SortedPeer<'a>(&'a PeerSummary);
    struct SortedEntry<'a>(&'a HistoryEntry);

    impl Serialize for Sorted<'_, PeerSummary> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().map(SortedPeer))
        }
    }

    impl Serialize for Sorted<'_, HistoryEntry> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().map(SortedEntry))
        }
    }

    impl Serialize for SortedPeer<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let p = self.0;
            let mut m = s.serialize_struct("PeerSummary", 10)?;
            m.serialize_field("alive", &p.alive)?;
            // `skip_serializing_if = "Option::is_none"`, as the derived impl.
            if let Some(api) = &p.api {
                m.serialize_field("api", api)?;
            }
            m.serialize_field("draining", &p.draining)?;
            m.serialize_field("joined_at_ms", &p.joined_at_ms)?;
            m.serialize_field("last_seen_ms", &p.last_seen_ms)?;
            m.serialize_field("leaving", &p.leaving)?;
            m.serialize_field("node", &p.node)?;
            m.serialize_field("priority", &p.priority)?;
            m.serialize_field("uptime_s", &p.uptime_s)?;
            m.serialize_field("version", &p.version)?;
            m.end()
        }
    }

    impl Serialize for SortedEntry<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let e = self.0;
            let mut m = s.serialize_struct("HistoryEntry", 4)?;
            m.serialize_field("at_ms", &e.at_ms)?;
            m.serialize_field("leader", &e.leader)?;
            m.serialize_field("reason", &e.reason)?;
            m.serialize_field("term", &e.term)?;
            m.end()
        }
    }

    #[derive(Serialize)]
    pub struct Health<'a> {
        pub mode: &'a str,
        pub seal: bool,
        pub status: &'static str,
        pub version: &'static str,
    }

    #[derive(Serialize)]
    pub struct Revoked<'a> {
        pub accepted_from: u32,
        pub by: &'a str,
        pub env: &'a str,
        pub node: &'a str,
    }

    #[derive(Serialize)]
    pub struct Peers<'a> {
        pub env: &'a str,
        pub peers: Sorted<'a, PeerSummary>,
    }

    #[derive(Serialize)]
    pub struct History<'a> {
        pub env: &'a str,
        pub history: Sorted<'a, HistoryEntry>,
        pub next: &'a Option<String>,
    }

    #[derive(Serialize)]
    pub struct Envs<'a> {
        pub envs: &'a [String],
    }

    #[derive(Serialize)]
    pub struct Manifest<'a> {
        pub epoch: u64,
        pub forge_epoch: u64,
        pub forge_root: &'a Option<String>,
        pub forge_sig: &'a str,
        pub forge_status: &'static str,
        pub target: &'a str,
    }

    #[cfg(test)]
    mod tests {
        //! Each answer's text is the one `json!` wrote for the same values.
        use super::*;
        use serde_json::json;

        fn same<T: Serialize>(typed: &T, value: serde_json::Value) {
            assert_eq!(
                serde_json::to_string(typed).unwrap(),
                serde_json::to_string(&value).unwrap()
            );
        }

        #[test]
        fn answers_are_the_json_macro_text() {
            same(
                &Health {
                    mode: "kv",
                    seal: true,
                    status: "ok",
                    version: "0.1.0",
                },
                json!({"status": "ok", "mode": "kv", "seal": true, "version": "0.1.0"}),
            );
            same(
                &Revoked {
                    accepted_from: 3,
                    by: "top",
                    env: "prod",
                    node: "n\"1",
                },
                json!({"env": "prod", "node": "n\"1", "accepted_from": 3u32, "by": "top"}),
            );
            let peer = |api: Option<&str>, leaving: bool| PeerSummary {
                node: "n1".into(),
                alive: !leaving,
                last_seen_ms: 17,
                joined_at_ms: 3,
                priority: -2,
                draining: leaving,
                uptime_s: u64::MAX,
                version: "1.2".into(),
                api: api.map(String::from),
                leaving,
            };
            for peers in [
                Vec::new(),
                vec![peer(Some("http://x"), false)],
                vec![peer(None, true), peer(Some(""), false)],
            ] {
                same(
                    &Peers {
                        env: "e",
                        peers: Sorted(peers.as_slice()),
                    },
                    json!({"env": "e", "peers": peers}),
                );
            }
            let history = vec![
                HistoryEntry {
                    term: 4,
                    leader: Some("n1".into()),
                    reason: "elected".into(),
                    at_ms: 1_700_000_000_000,
                },
                HistoryEntry {
                    term: 5,
                    leader: None,
                    reason: "expired".into(),
                    at_ms: 0,
                },
            ];
            for next in [None, Some("kv.abc".to_string())] {
                same(
                    &History {
                        env: "e",
                        history: Sorted(history.as_slice()),
                        next: &next,
                    },
                    json!({"env": "e", "history": history, "next": next}),
                );
            }
            let envs = vec!["a".to_string(), "b".to_string()];
            same(&Envs { envs: &envs }, json!({"envs": envs}));
            for root in [None, Some("/r".to_string())] {
                same(
                    &Manifest {
                        epoch: 9,
                        forge_epoch: 9,
                        forge_root: &root,
                        forge_sig: "ab",
                        forge_status: "active",
                        target: "default",
                    },
                    json!({
                        "forge_root": root,
                        "epoch": 9u64,
                        "target": "default",
                        "forge_status": "active",
                        "forge_epoch": 9u64,
                        "forge_sig": "ab",
                    }),
                );
            }
        }
    }
}

/// A change of leader, for the ledger and for logs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaderChange {
    pub env: String,
    #[serde(flatten)]
    pub entry: HistoryEntry,
}

/// A response plus the leader changes the request caused and, if it was refused, why (typed,
/// so a transport that relays the answer counts it without parsing the body).
#[derive(Debug)]
pub struct Handled {
    pub response: Response,
    pub leader_changes: Vec<LeaderChange>,
    pub refusal: Option<ErrorCode>,
}

impl Handled {
    fn refused(code: ErrorCode, response: Response) -> Self {
        Handled {
            response,
            leader_changes: Vec::new(),
            refusal: Some(code),
        }
    }
}

impl From<Response> for Handled {
    fn from(response: Response) -> Self {
        Handled {
            response,
            leader_changes: Vec::new(),
            refusal: None,
        }
    }
}

pub struct Forge<S> {
    pub cfg: ForgeConfig,
    pub store: S,
    pub metrics: Metrics,
}

/// A request refused with a wire error.
pub(crate) struct Refusal(ErrorCode, String);

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal(code, message.into())
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal(ErrorCode::StoreUnavailable, e.to_string())
    }
}

/// Seconds a client should wait after `store_unavailable`.
pub const STORE_RETRY_AFTER_S: &str = "2";

type Result<T> = std::result::Result<T, Refusal>;

impl<S: Store> Forge<S> {
    pub fn new(cfg: ForgeConfig, store: S) -> Self {
        Forge {
            cfg,
            store,
            metrics: Metrics::default(),
        }
    }

    /// Answers one request at `now_ms` (the forge's unix clock).
    pub async fn handle(&self, req: &Request, now_ms: u64) -> Handled {
        let path = req.path.as_str();
        if req.method == "OPTIONS" {
            return Response::text(204, "text/plain", "")
                .readable()
                .with_header("access-control-allow-methods", "GET, POST, OPTIONS")
                .with_header(
                    "access-control-allow-headers",
                    "content-type, x-brh-node, x-brh-ts, x-brh-nonce, x-brh-sig",
                )
                .into();
        }
        let method = match req.method.as_str() {
            "HEAD" => "GET",
            m => m,
        };
        let Some(route) = route::route(path) else {
            self.metrics.reject(ErrorCode::NotFound.as_str());
            return Handled::refused(
                ErrorCode::NotFound,
                Response::error(ErrorCode::NotFound, format!("no endpoint {path}")).readable(),
            );
        };
        if method != route.method {
            self.metrics.reject(ErrorCode::MethodNotAllowed.as_str());
            return Handled::refused(
                ErrorCode::MethodNotAllowed,
                Response::error(
                    ErrorCode::MethodNotAllowed,
                    format!("{path} takes {}", route.method),
                )
                .with_header("allow", route.method),
            );
        }
        self.count_request(route, false);
        let mut changes = Vec::new();
        let result = match route.endpoint {
            Endpoint::Dashboard => match dashboard::PAGE {
                Some(page) => Ok(Response::text(200, "text/html; charset=utf-8", page)
                    .with_header("cache-control", "no-store")),
                // The Worker: the page is a static asset served before the Worker runs, so
                // reaching here means the deployment lacks it.
                None => Err(Refusal::new(
                    ErrorCode::NotFound,
                    "the dashboard is a static asset of the Worker (wrangler.toml [assets], \
                     build/assets/index.html): rebuild with scripts/build-worker.sh and deploy",
                )),
            },
            Endpoint::Health => Ok(Response::json(
                200,
                &answer::Health {
                    mode: &self.cfg.mode,
                    seal: self.cfg.seal.is_some(),
                    status: "ok",
                    version: env!("CARGO_PKG_VERSION"),
                },
            )),
            Endpoint::Metrics => self.metrics_text(now_ms).await,
            Endpoint::Heartbeat | Endpoint::Resign | Endpoint::Consensus => self
                .node_write(route, req, None, now_ms, &mut changes)
                .await
                .map(|w| w.response(route)),
            Endpoint::Revoke => self.revoke(req, now_ms, &mut changes).await,
            Endpoint::Leader => self.leader(req, now_ms).await,
            Endpoint::Peers => self.peers(req, now_ms).await,
            Endpoint::History => self.history(req, now_ms).await,
            Endpoint::Envs => self.env_list().await,
            Endpoint::ManifestResolve => self.manifest(req, now_ms),
        };
        let mut refused = None;
        let mut response = match result {
            Ok(response) => response,
            Err(refusal) => {
                let (code, message) = self.refused(refusal);
                refused = Some(code);
                let response = Response::error(code, message);
                if code == ErrorCode::StoreUnavailable {
                    response.with_header("retry-after", STORE_RETRY_AFTER_S)
                } else {
                    response
                }
            }
        };
        if route.open_read {
            response = response.readable_once();
        } else if response.header("cache-control").is_none() {
            response = response.with_header("cache-control", "no-store");
        }
        Handled {
            response,
            leader_changes: changes,
            refusal: refused,
        }
    }

    pub(crate) fn count_request(&self, route: &Route, stream: bool) {
        self.metrics
            .requests
            .get_or_create(&RequestLabel {
                path: route.path.into(),
                transport: if stream { "stream" } else { "http" }.into(),
            })
            .inc();
    }

    /// A refusal as the caller sees it, counted once: the code and the message (a store
    /// failure says nothing changed and when to retry).
    pub(crate) fn refused(&self, Refusal(code, message): Refusal) -> (ErrorCode, String) {
        self.metrics.reject(code.as_str());
        if code != ErrorCode::StoreUnavailable {
            return (code, message);
        }
        self.metrics.store_failures.inc();
        let detail = sanitize(&message);
        let message = format!(
            "the forge's storage is unavailable ({detail}); nothing was changed, retry after \
             {STORE_RETRY_AFTER_S} s"
        );
        (code, message)
    }

    pub(crate) fn seal_bytes(&self) -> Option<&[u8]> {
        self.cfg.seal.as_deref()
    }

    fn seal(&self) -> Result<&[u8]> {
        self.cfg.seal.as_deref().ok_or_else(|| {
            Refusal::new(
                ErrorCode::NoSeal,
                "the forge has no DOMINION_SEAL configured; set the secret and restart",
            )
        })
    }

    /// The four authentication headers; a missing one is a 401 naming it (not a malformed
    /// request: the client did not authenticate).
    fn raw_auth(req: &Request) -> Result<RawAuth<'_>> {
        let raw = RawAuth {
            node: req.header(sign::HEADER_NODE),
            ts: req.header(sign::HEADER_TS),
            nonce: req.header(sign::HEADER_NONCE),
            sig: req.header(sign::HEADER_SIG),
        };
        let missing: Vec<&str> = [
            (sign::HEADER_NODE, raw.node),
            (sign::HEADER_TS, raw.ts),
            (sign::HEADER_NONCE, raw.nonce),
            (sign::HEADER_SIG, raw.sig),
        ]
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(h, _)| *h)
        .collect();
        if !missing.is_empty() {
            return Err(Refusal::new(
                ErrorCode::Unauthorized,
                format!("missing authentication header(s): {}", missing.join(", ")),
            ));
        }
        Ok(raw)
    }

    /// Size, header form, JSON (for the env, which must be `expect_env` on a stream), then
    /// the signature under the key of the node the
    /// request claims to come from, then the timestamp: everything that needs no state. A
    /// node's key opens only its own requests in its own env, so a host cannot speak for
    /// another node, or in another env.
    fn authenticate<T: FromJson + Addressed>(
        &self,
        req: &Request,
        expect_env: Option<&str>,
        now_ms: u64,
    ) -> Result<(Authenticated, T, NodeKey)> {
        // Only the body's parse depends on `T`: the checks before and after it are compiled
        // once, not once per body type.
        let headers = self.auth_headers(req)?;
        let body: T = brh_shared::wire::read_object(&req.body)
            .map_err(|e| Refusal::new(ErrorCode::BadRequest, format!("body: {e}")))?;
        let (auth, key) = self.auth_check(req, headers, body.env(), expect_env, now_ms)?;
        Ok((auth, body, key))
    }

    /// What `authenticate` checks before the body: the seal, the size, the auth headers.
    #[inline(never)]
    fn auth_headers<'r>(&self, req: &'r Request) -> Result<AuthHeaders<'r>> {
        self.seal()?;
        if req.body.len() > MAX_BODY_BYTES {
            return Err(Refusal::new(
                ErrorCode::TooLarge,
                format!("body is larger than {MAX_BODY_BYTES} bytes"),
            ));
        }
        let raw = Self::raw_auth(req)?;
        let fields = sign::parse_auth(raw).map_err(auth_refusal)?;
        let generation =
            sign::parse_key_gen(req.header(sign::HEADER_KEY_GEN)).map_err(auth_refusal)?;
        Ok(AuthHeaders {
            raw,
            fields,
            generation,
        })
    }

    /// What `authenticate` checks after the body: the env the body names, the signature.
    #[inline(never)]
    fn auth_check(
        &self,
        req: &Request,
        headers: AuthHeaders<'_>,
        env: &str,
        expect_env: Option<&str>,
        now_ms: u64,
    ) -> Result<(Authenticated, NodeKey)> {
        let seal = self.seal()?;
        let AuthHeaders {
            raw,
            fields,
            generation,
        } = headers;
        if let Some(expected) = expect_env.filter(|e| *e != env) {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                format!("this stream is for env {expected}, the body names {env}"),
            ));
        }
        let verify = |key: &[u8]| {
            sign::verify_request(
                key,
                &req.method,
                &req.path,
                raw,
                &req.body,
                now_ms,
                self.cfg.skew_ms,
            )
        };
        // The current seal's key; during a rotation, the previous seal's; for one release
        // (`legacy_seal_signatures`), the seal itself. Each is one HMAC, no state.
        for previous_seal in [false, true] {
            let id = KeyId {
                generation,
                previous_seal,
            };
            let Some(key) = self.cfg.node_key(env, fields.node, id) else {
                continue;
            };
            match verify(&key.0) {
                Err(AuthError::BadSignature) => {}
                r => {
                    let mut auth = r.map_err(auth_refusal)?;
                    auth.key = id;
                    return Ok((auth, key));
                }
            }
        }
        if self.cfg.legacy_seal_signatures && generation == 0 {
            // An agent of the previous release signs with the seal and checks the answer
            // with it.
            let auth = verify(seal).map_err(auth_refusal)?;
            let key = NodeKey(seal.to_vec(), KeyId::default());
            return Ok((auth, key));
        }
        Err(auth_refusal(AuthError::BadSignature))
    }

    /// Runs an election event on the env's state; the store persists what it requires.
    /// `answer` builds the reply from the state after the event.
    async fn apply<T>(
        &self,
        env: &str,
        now_ms: u64,
        changes_out: &mut Vec<LeaderChange>,
        event: impl FnOnce(&mut EnvState) -> std::result::Result<Vec<Change>, ElectionError>,
        answer: impl FnOnce(&EnvState) -> T,
    ) -> Result<T> {
        let stepped = self
            .store
            .step(env, now_ms, Box::new(event), Box::new(answer))
            .await
            .map_err(|e| match e {
                StepError::Store(e) => Refusal::from(e),
                StepError::Refused(ElectionError::Replay) => Refusal::new(
                    ErrorCode::Replay,
                    "nonce is not newer than the last one accepted from this node",
                ),
                StepError::Refused(ElectionError::NotHolder { holder, term }) => Refusal::new(
                    ErrorCode::NotHolder,
                    format!(
                        "you do not hold that lease (holder {}, term {term})",
                        holder.as_deref().unwrap_or("none")
                    ),
                ),
                StepError::Refused(ElectionError::NotCandidate { node, why }) => Refusal::new(
                    ErrorCode::NotCandidate,
                    format!("cannot hand the lease to {node}: {why}"),
                ),
                StepError::Refused(ElectionError::UnknownNode) => Refusal::new(
                    ErrorCode::NotFound,
                    "unknown node in this env: heartbeat first",
                ),
                StepError::Refused(ElectionError::Revoked {
                    key_gen,
                    accepted_from,
                }) => Refusal::new(
                    ErrorCode::Revoked,
                    format!(
                        "this node's key (generation {key_gen}) was revoked: re-enrol the \
                         host (`brh-agent enroll NODE --key-generation {accepted_from}`)"
                    ),
                ),
            })?;
        self.metrics.count_outcome(&stepped.outcome);
        self.record(env, &stepped.changes, now_ms, changes_out);
        Ok(stepped.answer)
    }

    fn record(&self, env: &str, changes: &[Change], now_ms: u64, out: &mut Vec<LeaderChange>) {
        let label = Metrics::env(env);
        for c in changes {
            match c {
                Change::Granted { .. } => {
                    self.metrics.leader_changes.get_or_create(&label).inc();
                }
                Change::SplitBrain { .. } => {
                    self.metrics.split_brain_alarms.get_or_create(&label).inc();
                }
                _ => {}
            }
            if let Some(entry) = c.history_entry(now_ms) {
                out.push(LeaderChange {
                    env: env.into(),
                    entry,
                });
            }
        }
    }

    /// The view of `state` at `now_ms`, signed: for a node with that node's key, so no other
    /// node accepts it; the public view with the forge key. Pure, so it can run inside a store
    /// step.
    pub(crate) fn signed_view(
        cfg: &ForgeConfig,
        state: &EnvState,
        env: &str,
        now_ms: u64,
        to: ViewFor<'_>,
    ) -> LeaderView {
        let you = match to {
            ViewFor::Node(node, _) => Some(node),
            ViewFor::Public => None,
        };
        let mut view = state.view(env, now_ms, &cfg.election.timing, &cfg.mode, you);
        match (to, &cfg.forge_key) {
            (ViewFor::Node(node, key), _) => {
                let forge = cfg.forge_key_for(key.1);
                sign::sign_view(&key.0, &mut view);
                // The holder's containers get a fencing token anyone can check offline:
                // one Ed25519 signature per answer to the holder (not to witnesses).
                let holds = view.lease.as_ref().is_some_and(|l| l.holder == node);
                if let (true, Some(forge)) = (holds, forge) {
                    view.lease_token = brh_shared::token::mint_lease(
                        forge,
                        env,
                        node,
                        view.term,
                        now_ms / 1000 + brh_shared::token::LEASE_TOKEN_TTL_S,
                    )
                    .ok();
                }
            }
            (ViewFor::Public, Some(forge)) => sign::sign_public_view(forge, &mut view),
            // `forge_key` is derived from the seal whenever there is one, and no view is
            // built without a seal (`seal()` refuses first).
            (ViewFor::Public, None) => {}
        }
        view
    }

    /// The answer to an authenticated request: its view, bound to the request by
    /// `x-brh-basis` (the request's nonce) and `x-brh-basis-sig` (`sign_basis` over the node,
    /// the nonce and the view's signature) — what a stream answer carries in its body. The
    /// agent measures a grant from the send time of the request the answer is bound to, so a
    /// captured answer replayed as the answer to a later request (plain HTTP has nothing
    /// else that ties the two) grants nothing.
    /// A node's signed write (heartbeat, resign, consensus report), the one path all three
    /// take on both transports: authenticate (size, headers, signature under the node's key,
    /// timestamp), validate the body (and, on a stream, that it names the socket's env
    /// `expect_env`), apply its election event, and sign the view of the state after it for
    /// that node, bound to its request. A refusal at any step changes nothing.
    pub(crate) async fn node_write(
        &self,
        route: &Route,
        req: &Request,
        expect_env: Option<&str>,
        now_ms: u64,
        out: &mut Vec<LeaderChange>,
    ) -> Result<Written> {
        let step = StepInput {
            req,
            expect_env,
            now_ms,
        };
        match route.endpoint {
            Endpoint::Heartbeat => {
                let w = self.signed_step::<Heartbeat>(step, out).await?;
                self.metrics
                    .heartbeats
                    .get_or_create(&Metrics::env(&w.view.env))
                    .inc();
                Ok(w)
            }
            Endpoint::Resign => self.signed_step::<ResignRequest>(step, out).await,
            Endpoint::Consensus => self.signed_step::<ConsensusReport>(step, out).await,
            _ => Err(Refusal::new(
                ErrorCode::NotFound,
                format!("{} is not a node's write", route.path),
            )),
        }
    }

    async fn signed_step<B: NodeCommand>(
        &self,
        StepInput {
            req,
            expect_env,
            now_ms,
        }: StepInput<'_>,
        out: &mut Vec<LeaderChange>,
    ) -> Result<Written> {
        let (auth, body, key): (_, B, _) = self.authenticate(req, expect_env, now_ms)?;
        body.validate()
            .map_err(|m| Refusal::new(ErrorCode::BadRequest, m))?;
        let cfg = &self.cfg;
        let env = body.env();
        let view = self
            .apply(
                env,
                now_ms,
                out,
                |s| body.step(s, &cfg.election, &auth, now_ms),
                |s| Self::signed_view(cfg, s, env, now_ms, ViewFor::Node(&auth.node, &key)),
            )
            .await?;
        let basis = auth.nonce.to_string();
        let basis_sig = sign::sign_basis(&key.0, &auth.node, &basis, &view.sig);
        Ok(Written {
            view,
            basis,
            basis_sig,
        })
    }

    /// An operator revokes a node's credential: every key generation of the node up to
    /// `generation` is refused from the next request on (401 `revoked`), durably on every
    /// runtime (the revocations ride in the env's lease record), and the node leaves the
    /// table. Signed like a node request but with Ed25519 by the top operator or a scoped
    /// operator with the `nodes` scope for the env (certificate in `x-brh-operator`).
    /// Idempotent, so a replay within the skew window changes nothing.
    async fn revoke(
        &self,
        req: &Request,
        now_ms: u64,
        out: &mut Vec<LeaderChange>,
    ) -> Result<Response> {
        self.seal()?;
        if req.body.len() > MAX_BODY_BYTES {
            return Err(Refusal::new(
                ErrorCode::TooLarge,
                format!("body is larger than {MAX_BODY_BYTES} bytes"),
            ));
        }
        let raw = Self::raw_auth(req)?;
        let cert = req.header(brh_shared::operator::HEADER_OPERATOR);
        // During a rotation the previous operator key still speaks, like the previous seal's
        // node keys.
        let keys = self
            .cfg
            .operator_key
            .iter()
            .chain(self.cfg.previous.as_ref().map(|p| &p.operator_key));
        let mut verdict = Err(RequestError::Auth(AuthError::BadSignature));
        for key in keys {
            verdict = brh_shared::operator::verify_request(
                key,
                sign::Audience::Forge,
                &req.method,
                &req.path,
                raw,
                cert,
                &req.body,
                now_ms,
                self.cfg.skew_ms,
            );
            if !matches!(
                verdict,
                Err(RequestError::Auth(AuthError::BadSignature) | RequestError::Certificate(_))
            ) {
                break;
            }
        }
        let (caller, _, operator) = verdict.map_err(|e| match e {
            RequestError::Auth(AuthError::BadSignature) => Refusal::new(
                ErrorCode::BadSignature,
                "not signed by an operator: revoking a node needs the top operator's key \
                 (DOMINION_SEAL) or an operator credential with the nodes scope",
            ),
            RequestError::Auth(e) => auth_refusal(e),
            RequestError::Certificate(m) => Refusal::new(ErrorCode::Unauthorized, m),
        })?;
        let r: RevokeRequest = brh_shared::wire::read_object(&req.body)
            .map_err(|e| Refusal::new(ErrorCode::BadRequest, format!("body: {e}")))?;
        r.validate()
            .map_err(|m| Refusal::new(ErrorCode::BadRequest, m))?;
        if !operator.allows(Scope::Nodes, &r.env) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("{operator} may not revoke nodes in env {}", r.env),
            ));
        }
        let accepted_from = r.generation.checked_add(1).ok_or_else(|| {
            Refusal::new(ErrorCode::BadRequest, "generation is the largest there is")
        })?;
        let cfg = &self.cfg;
        let now_accepted = self
            .apply(
                &r.env,
                now_ms,
                out,
                |s| Ok(s.revoke(&cfg.election, &r.node, accepted_from, now_ms)),
                |s| s.accepted_from(&r.node),
            )
            .await?;
        Ok(Response::json(
            200,
            &answer::Revoked {
                accepted_from: now_accepted,
                by: &caller,
                env: &r.env,
                node: &r.node,
            },
        ))
    }

    fn env_param(req: &Request) -> Result<String> {
        let env = req.query_param("env").unwrap_or_else(|| DEFAULT_ENV.into());
        validate_id(&env).map_err(|e| Refusal::new(ErrorCode::BadRequest, format!("env {e}")))?;
        Ok(env)
    }

    fn unknown_env(env: &str) -> Refusal {
        Refusal::new(
            ErrorCode::NotFound,
            format!("unknown env {env}: no node has heartbeated in it"),
        )
    }

    /// The leader view. An env nobody has joined yet answers like a vacant one (term 0, no
    /// leader): dashboards poll before nodes join.
    async fn leader(&self, req: &Request, now_ms: u64) -> Result<Response> {
        self.seal()?;
        let cfg = &self.cfg;
        let env = Self::env_param(req)?;
        let view = self
            .store
            .read(
                &env,
                now_ms,
                Box::new(|s| Self::signed_view(cfg, s, &env, now_ms, ViewFor::Public)),
            )
            .await?;
        let view = match view {
            Some(v) => v,
            None => Self::signed_view(cfg, &EnvState::default(), &env, now_ms, ViewFor::Public),
        };
        Ok(Response::json(200, &view))
    }

    async fn peers(&self, req: &Request, now_ms: u64) -> Result<Response> {
        self.seal()?;
        let env = Self::env_param(req)?;
        let timing = self.cfg.election.timing;
        let peers = self
            .store
            .read(
                &env,
                now_ms,
                Box::new(|s| s.peer_summaries(now_ms, &timing)),
            )
            .await?
            .ok_or_else(|| Self::unknown_env(&env))?;
        Ok(Response::json(
            200,
            &answer::Peers {
                env: &env,
                peers: answer::Sorted(peers.as_slice()),
            },
        ))
    }

    async fn history(&self, req: &Request, now_ms: u64) -> Result<Response> {
        self.seal()?;
        let env = Self::env_param(req)?;
        let limit = match req.query_param("limit") {
            None => 50,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=500).contains(l))
                .ok_or_else(|| Refusal::new(ErrorCode::BadRequest, "limit must be 1..=500"))?,
        };
        let cursor = req.query_param("cursor");
        if let Some(c) = cursor.as_deref() {
            if !self.store.valid_history_cursor(c) {
                return Err(Refusal::new(
                    ErrorCode::BadRequest,
                    "cursor must be a value of `next` from a previous page",
                ));
            }
        }
        self.store
            .read(&env, now_ms, Box::new(|_| ()))
            .await?
            .ok_or_else(|| Self::unknown_env(&env))?;
        let page = self.store.history(&env, cursor.as_deref(), limit).await?;
        Ok(Response::json(
            200,
            &answer::History {
                env: &env,
                history: answer::Sorted(page.entries.as_slice()),
                next: &page.next,
            },
        ))
    }

    async fn env_list(&self) -> Result<Response> {
        self.seal()?;
        let envs = self.store.envs().await?;
        Ok(Response::json(200, &answer::Envs { envs: &envs }))
    }

    /// Seed compatibility: `{forge_root, epoch, target, forge_status, forge_epoch, forge_sig}`
    /// with `forge_sig` the forge key's Ed25519 signature of `"{target}:{epoch}"` (the
    /// original's was a truncated HMAC under the seal: an open endpoint that signed with the
    /// root secret).
    fn manifest(&self, req: &Request, now_ms: u64) -> Result<Response> {
        self.seal()?;
        let forge = self.cfg.forge_key.as_ref().ok_or_else(|| {
            Refusal::new(
                ErrorCode::NoSeal,
                "the forge has no DOMINION_SEAL configured",
            )
        })?;
        let target = req
            .query_param("target")
            .unwrap_or_else(|| "default".into());
        validate_id(&target)
            .map_err(|e| Refusal::new(ErrorCode::BadRequest, format!("target {e}")))?;
        let epoch = now_ms / 1000;
        let sig = brh_shared::keys::sign_hex(forge, format!("{target}:{epoch}").as_bytes());
        Ok(Response::json(
            200,
            &answer::Manifest {
                epoch,
                forge_epoch: epoch,
                forge_root: &self.cfg.dominion_root,
                forge_sig: &sig,
                forge_status: "active",
                target: &target,
            },
        ))
    }

    async fn metrics_text(&self, now_ms: u64) -> Result<Response> {
        let timing = self.cfg.election.timing;
        let envs = if self.cfg.env_gauges {
            self.store.envs().await?
        } else {
            Vec::new()
        };
        for env in envs {
            let counts = self
                .store
                .read(
                    &env,
                    now_ms,
                    Box::new(|s| {
                        (
                            s.peers_alive(now_ms, &timing),
                            s.term,
                            s.valid_lease(now_ms).is_some(),
                        )
                    }),
                )
                .await?;
            if let Some((alive, term, present)) = counts {
                let label = Metrics::env(&env);
                self.metrics
                    .peers_alive
                    .get_or_create(&label)
                    .set(alive as i64);
                self.metrics.term.get_or_create(&label).set(term as i64);
                self.metrics
                    .leader_present
                    .get_or_create(&label)
                    .set(present as i64);
            }
        }
        Ok(Response::text(
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            self.metrics.encode(),
        ))
    }

    /// The cron sweep over every env: expire leases, elect, forget long-dead peers.
    pub async fn sweep(&self, now_ms: u64) -> std::result::Result<Vec<LeaderChange>, StoreError> {
        let mut out = Vec::new();
        let cfg = self.cfg.election;
        for env in self.store.envs().await? {
            match self
                .apply(
                    &env,
                    now_ms,
                    &mut out,
                    |s| Ok(s.sweep(&cfg, now_ms)),
                    |_| (),
                )
                .await
            {
                Ok(_) => {}
                Err(Refusal(_, m)) => return Err(StoreError(m)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;

/// The key of the node a request claims to come from, derived for that request (or, with
/// `legacy_seal_signatures`, the seal an agent of the previous release signed with).
pub(crate) struct NodeKey(pub(crate) Vec<u8>, pub(crate) KeyId);

/// Whom a view is signed for.
#[derive(Clone, Copy)]
pub(crate) enum ViewFor<'a> {
    /// One node: its key, so only it accepts the view.
    Node(&'a str, &'a NodeKey),
    /// Anyone: the forge key.
    Public,
}

/// A signed request body names its env: the node's key is derived for that env.
pub(crate) trait Addressed {
    fn env(&self) -> &str;
}

/// The body of a node's signed write and the election event it is.
trait NodeCommand: FromJson + Addressed {
    fn validate(&self) -> core::result::Result<(), String>;
    fn step(
        &self,
        state: &mut EnvState,
        cfg: &ElectionConfig,
        auth: &Authenticated,
        now_ms: u64,
    ) -> core::result::Result<Vec<Change>, ElectionError>;
}

macro_rules! node_command {
    ($body:ty, |$self_:ident, $s:ident, $cfg:ident, $auth:ident, $now:ident| $step:expr) => {
        impl Addressed for $body {
            fn env(&self) -> &str {
                &self.env
            }
        }
        impl NodeCommand for $body {
            fn validate(&self) -> core::result::Result<(), String> {
                <$body>::validate(self)
            }
            fn step(
                &$self_,
                $s: &mut EnvState,
                $cfg: &ElectionConfig,
                $auth: &Authenticated,
                $now: u64,
            ) -> core::result::Result<Vec<Change>, ElectionError> {
                $step
            }
        }
    };
}

node_command!(Heartbeat, |self, s, cfg, auth, now| s
    .heartbeat(cfg, auth, self, now));
node_command!(ResignRequest, |self, s, cfg, auth, now| s
    .resign(cfg, auth, self, now));
node_command!(ConsensusReport, |self, s, _cfg, auth, now| s
    .consensus(auth, self, now));

#[derive(Clone, Copy)]
struct StepInput<'a> {
    req: &'a Request,
    expect_env: Option<&'a str>,
    now_ms: u64,
}

/// A node's write, applied: the view for that node, bound to its request (`basis` = the
/// request's nonce, `basis_sig` under the node's key). HTTP carries the binding in headers, a
/// stream answer in its frame.
pub(crate) struct Written {
    pub view: LeaderView,
    pub basis: String,
    pub basis_sig: String,
}

impl Written {
    fn response(&self, route: &Route) -> Response {
        Response::json(route.success, &self.view)
            .with_header("cache-control", "no-store")
            .with_header(sign::HEADER_BASIS, &self.basis)
            .with_header(sign::HEADER_BASIS_SIG, &self.basis_sig)
    }
}

fn auth_refusal(e: AuthError) -> Refusal {
    match e {
        AuthError::Malformed(m) => Refusal::new(ErrorCode::BadRequest, m),
        AuthError::BadSignature => Refusal::new(
            ErrorCode::BadSignature,
            "request signature does not match the key of the node it names",
        ),
        AuthError::StaleTimestamp {
            delta_ms,
            allowed_ms,
        } => Refusal::new(
            ErrorCode::StaleTimestamp,
            format!("timestamp is {delta_ms} ms from the forge's clock (allowed ±{allowed_ms} ms)"),
        ),
    }
}

/// A store error for a message: one line of printable ASCII (never a stack trace in a body).
fn sanitize(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(200)
        .collect()
}
