//! Wire types of protocol v1 (docs/design.md §3). Field names are the contract; unknown fields are
//! ignored, missing required ones fail to parse.
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::ids::validate_id;
use crate::json::{FromJson, Json, JsonError};

/// Largest request body the forge reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Parses a request body, which must be a JSON object. serde's derived structs also accept
/// an array of the fields in order (`["prod",0,false]`); the contract names fields, so a
/// body that does not is refused rather than read by position.
pub fn from_json_object<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(String::from("the body must be a JSON object"));
    }
    serde_json::from_slice(body).map_err(|e| format!("{e}"))
}

/// [`from_json_object`] for the forge: the same contract read with [`crate::json`] (no serde
/// visitors in the Worker's Wasm), error texts naming the field path.
pub fn read_object<T: FromJson>(body: &[u8]) -> Result<T, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(String::from("the body must be a JSON object"));
    }
    crate::json::from_json(body).map_err(|e| format!("{e}"))
}

/// `POST /federation/heartbeat`. The node id travels in the `x-brh-node` header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub env: String,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub draining: bool,
    #[serde(default)]
    pub uptime_s: u64,
    #[serde(default)]
    pub version: String,
    /// Where the agent's API listens, for dashboards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

impl Heartbeat {
    pub fn validate(&self) -> Result<(), String> {
        check_env(&self.env)?;
        if self.version.len() > 64 {
            return Err("version is longer than 64 characters".into());
        }
        if let Some(api) = &self.api {
            if api.len() > 256 || api.chars().any(|c| c.is_control()) {
                return Err("api must be a URL of at most 256 printable characters".into());
            }
        }
        Ok(())
    }
}

/// `POST /federation/resign`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResignRequest {
    pub env: String,
    pub term: u64,
    /// The node is stopping: the forge never grants it the lease again (until it comes back
    /// with a new boot) and shows it as not alive.
    #[serde(default)]
    pub leaving: bool,
    /// Switchover: hand the lease to this live candidate and to no one else. Refused with
    /// 409 `not_candidate` (nothing changes) when it is not a live, non-draining peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successor: Option<String>,
}

impl ResignRequest {
    pub fn validate(&self) -> Result<(), String> {
        check_env(&self.env)?;
        if let Some(s) = &self.successor {
            validate_id(s).map_err(|e| format!("successor {e}"))?;
        }
        Ok(())
    }
}

/// `POST /federation/consensus`: a node's own view of the leader. Never sets the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsensusReport {
    pub env: String,
    pub leader: Option<String>,
    #[serde(default)]
    pub term: u64,
    #[serde(default)]
    pub peers: Vec<String>,
    #[serde(default)]
    pub epoch: u64,
}

/// `POST /federation/revoke` (an operator's): refuse every key generation of `node` in
/// `env` up to `generation` (0, the first enrolment, by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    pub env: String,
    pub node: String,
    #[serde(default)]
    pub generation: u32,
}

impl RevokeRequest {
    pub fn validate(&self) -> Result<(), String> {
        check_env(&self.env)?;
        validate_id(&self.node).map_err(|e| format!("node {e}"))
    }
}

impl ConsensusReport {
    pub fn validate(&self) -> Result<(), String> {
        check_env(&self.env)?;
        if let Some(l) = &self.leader {
            validate_id(l).map_err(|e| format!("leader {e}"))?;
        }
        if self.peers.len() > 256 {
            return Err("peers has more than 256 entries".into());
        }
        for p in &self.peers {
            validate_id(p).map_err(|e| format!("peers entry {e}"))?;
        }
        Ok(())
    }
}

fn check_env(env: &str) -> Result<(), String> {
    validate_id(env).map_err(|e| format!("env {e}"))
}

/// A node's role as the forge sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Witness,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Witness => "witness",
        }
    }
}

/// The lease as shown on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub holder: String,
    pub term: u64,
    pub expires_at_ms: u64,
    pub ttl_ms: u64,
}

/// The caller's own standing, in answers to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct You {
    pub node: String,
    pub role: Role,
}

/// The signed leader view: heartbeat and resign answers, and `GET /federation/leader`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderView {
    pub env: String,
    pub leader: Option<String>,
    pub term: u64,
    pub lease: Option<LeaseInfo>,
    /// The forge's unix seconds (kept for compatibility with the original).
    pub epoch: u64,
    pub issued_at_ms: u64,
    pub peers_alive: u32,
    pub mode: String,
    /// The forge's heartbeat interval: the forge is the one timing authority (docs/design.md
    /// §4.3) and agents follow it. Not part of the signed string, which stays the view string of
    /// docs/design.md §3.5: it only schedules beats. An agent's deadline comes from the signed
    /// `expires_at_ms − issued_at_ms`, so a forged value can change when an agent beats and
    /// shrink its margin (a tenth of the ttl it adopts, ≥ 30 ms by the timing rule), never move
    /// its deadline past `sent + (expires_at_ms − issued_at_ms)`. 0 from a forge without it:
    /// the agent keeps its own timing.
    #[serde(default)]
    pub heartbeat_interval_ms: u64,
    /// The forge's lease ttl (see `heartbeat_interval_ms`), also when there is no lease.
    #[serde(default)]
    pub lease_ttl_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub you: Option<You>,
    #[serde(default)]
    pub sig: String,
    /// In an answer or push to the lease holder: a lease token (`token::mint_lease`) for its
    /// containers. Signed by itself (Ed25519, forge key), so outside `sig`'s string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<String>,
}

impl LeaderView {
    /// The forge's timing, when the answer carries a valid one.
    pub fn timing(&self) -> Option<crate::Timing> {
        let t = crate::Timing {
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            lease_ttl_ms: self.lease_ttl_ms,
        };
        t.validate().ok().map(|()| t)
    }

    /// Milliseconds of lease left as of `issued_at_ms`, on the forge's clock.
    pub fn lease_remaining_ms(&self) -> u64 {
        self.lease
            .as_ref()
            .map_or(0, |l| l.expires_at_ms.saturating_sub(self.issued_at_ms))
    }
}

/// One row of `GET /federation/peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSummary {
    pub node: String,
    pub alive: bool,
    pub last_seen_ms: u64,
    pub joined_at_ms: u64,
    pub priority: i32,
    pub draining: bool,
    pub uptime_s: u64,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// It resigned because it is stopping: gone (never elected) until it returns with a new
    /// boot. `alive` is false while this holds.
    #[serde(default)]
    pub leaving: bool,
}

/// One leader change in `GET /federation/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub term: u64,
    pub leader: Option<String>,
    pub reason: String,
    pub at_ms: u64,
}

/// Every error the forge (and the agent API) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadSignature,
    StaleTimestamp,
    Replay,
    TooLarge,
    BadRequest,
    NotHolder,
    /// A switchover named a node that is not a live, non-draining candidate.
    NotCandidate,
    NotFound,
    MethodNotAllowed,
    NoSeal,
    Unauthorized,
    /// Authenticated, but the credential does not allow this (a scoped operator without the
    /// scope, or for another env).
    Forbidden,
    /// Signed with a node key the operator revoked: the host must be re-enrolled.
    Revoked,
    NotLeader,
    /// The agent has no manifest with services, so there is nothing to deploy or manage.
    NotConfigured,
    /// The request (headers or body) did not arrive within the server's read timeout.
    Timeout,
    /// The server is at its connection limit; retry after `Retry-After`.
    Busy,
    /// The forge's storage failed; nothing was changed. Retry after `Retry-After`.
    StoreUnavailable,
    /// Agent API: the forge could not be reached to complete the request; nothing changed.
    ForgeUnreachable,
    /// Agent API: the container belongs to a newer term (another leader's); left alone.
    Fenced,
    /// Agent API: the Docker engine reported a conflict (a name in use, a container busy).
    Conflict,
    /// Agent API: the replacement container did not pass its health check; rolled back.
    Unhealthy,
    /// Agent API: the Docker engine cannot be reached.
    EngineUnavailable,
    /// Agent API: the Docker engine refused the operation.
    EngineRefused,
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::BadSignature,
        ErrorCode::StaleTimestamp,
        ErrorCode::Replay,
        ErrorCode::TooLarge,
        ErrorCode::BadRequest,
        ErrorCode::NotHolder,
        ErrorCode::NotCandidate,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::NoSeal,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::Revoked,
        ErrorCode::NotLeader,
        ErrorCode::NotConfigured,
        ErrorCode::Timeout,
        ErrorCode::Busy,
        ErrorCode::StoreUnavailable,
        ErrorCode::ForgeUnreachable,
        ErrorCode::Fenced,
        ErrorCode::Conflict,
        ErrorCode::Unhealthy,
        ErrorCode::EngineUnavailable,
        ErrorCode::EngineRefused,
        ErrorCode::Internal,
    ];

    /// The code with wire name `s`.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::StaleTimestamp => "stale_timestamp",
            ErrorCode::Replay => "replay",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotHolder => "not_holder",
            ErrorCode::NotCandidate => "not_candidate",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::NoSeal => "no_seal",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Revoked => "revoked",
            ErrorCode::NotLeader => "not_leader",
            ErrorCode::NotConfigured => "not_configured",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Busy => "busy",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::ForgeUnreachable => "forge_unreachable",
            ErrorCode::Fenced => "fenced",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unhealthy => "unhealthy",
            ErrorCode::EngineUnavailable => "engine_unavailable",
            ErrorCode::EngineRefused => "engine_refused",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadSignature
            | ErrorCode::StaleTimestamp
            | ErrorCode::Unauthorized
            | ErrorCode::Revoked => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::Replay
            | ErrorCode::NotHolder
            | ErrorCode::NotCandidate
            | ErrorCode::NotLeader
            | ErrorCode::NotConfigured
            | ErrorCode::Fenced
            | ErrorCode::Conflict => 409,
            ErrorCode::Unhealthy => 422,
            ErrorCode::EngineRefused => 502,
            ErrorCode::Timeout => 408,
            ErrorCode::TooLarge => 413,
            ErrorCode::BadRequest => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::NoSeal
            | ErrorCode::StoreUnavailable
            | ErrorCode::Busy
            | ErrorCode::ForgeUnreachable
            | ErrorCode::EngineUnavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

/// `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }
}

/// Path of the streaming channel (`GET`, WebSocket upgrade, `?env=`).
pub const STREAM_PATH: &str = "/federation/stream";

/// The method line of a request sent on the stream: a signature made for the stream is never
/// valid over HTTP (no HTTP route takes `WS`), nor the other way round.
pub const STREAM_METHOD: &str = "WS";

/// A signed request on the stream (agent → forge, one text frame): the four authentication
/// headers of an HTTP request as fields, the body as the exact string that was signed
/// (`brh-v1\nWS\n{path}\n{node}\n{ts}\n{nonce}\n{hex(sha256(body))}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRequest {
    pub path: String,
    pub node: String,
    pub ts: u64,
    pub nonce: String,
    pub sig: String,
    pub body: String,
    /// The generation of the node key that signed it (`x-brh-key-gen` over HTTP); absent
    /// for generation 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_gen: Option<String>,
}

/// A frame from the forge on the stream: the answer to one request (`reply_to` = its nonce)
/// or, with `reply_to` absent, a push after a leader change. Exactly one of `view` and
/// `error` is set.
///
/// `basis` is the newest request of this socket's node the forge had processed when it
/// signed `view` (for an answer: that request), and `basis_sig` binds the two:
/// `HMAC(node key, "brh-v1-basis\n{node}\n{basis}\n{view.sig}")` (docs/design.md §3.6). An
/// agent measures a lease granted by the view from the *send* time of the request named by
/// `basis` — never later than the forge's grant — and ignores a view whose basis it did not
/// send or whose `basis_sig` does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<LeaderView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis_sig: Option<String>,
}

// What the forge reads, with the same fields and defaults as the serde attributes above
// (checked against serde in `tests`).
crate::from_json_struct!(Heartbeat {
    env: req,
    priority: or_default,
    draining: or_default,
    uptime_s: or_default,
    version: or_default,
    api: or_default,
});
crate::from_json_struct!(ResignRequest {
    env: req,
    term: req,
    leaving: or_default,
    successor: or_default,
});
crate::from_json_struct!(ConsensusReport {
    env: req,
    leader: req,
    term: or_default,
    peers: or_default,
    epoch: or_default,
});
crate::from_json_struct!(RevokeRequest deny_unknown {
    env: req,
    node: req,
    generation: or_default,
});
crate::from_json_struct!(HistoryEntry {
    term: req,
    leader: req,
    reason: req,
    at_ms: req,
});
crate::from_json_struct!(StreamRequest {
    path: req,
    node: req,
    ts: req,
    nonce: req,
    sig: req,
    body: req,
    key_gen: or_default,
});

impl FromJson for ErrorCode {
    fn from_json(v: &Json) -> Result<Self, JsonError> {
        let s = String::from_json(v)?;
        ErrorCode::parse(&s).ok_or_else(|| JsonError::unknown_variant(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_defaults_and_unknown_fields() {
        let hb: Heartbeat = serde_json::from_str(r#"{"env":"dev","extra":1}"#).unwrap();
        assert_eq!(hb.priority, 0);
        assert!(!hb.draining);
        assert!(hb.validate().is_ok());
        assert!(serde_json::from_str::<Heartbeat>(r#"{"priority":1}"#).is_err());
        assert!(serde_json::from_str::<Heartbeat>(r#"{"env":"dev","priority":"x"}"#).is_err());
        let bad: Heartbeat = serde_json::from_str(r#"{"env":"a b"}"#).unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn view_json_shape() {
        let v = LeaderView {
            env: "dev".into(),
            leader: None,
            term: 3,
            lease: None,
            epoch: 1,
            issued_at_ms: 1000,
            peers_alive: 0,
            mode: "native".into(),
            heartbeat_interval_ms: 1_000,
            lease_ttl_ms: 3_000,
            you: None,
            sig: "s".into(),
            lease_token: None,
        };
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["leader"], serde_json::Value::Null);
        assert_eq!(j["lease"], serde_json::Value::Null);
        assert_eq!(j["term"], 3);
        assert!(j.get("you").is_none());
    }

    #[test]
    fn error_body_shape() {
        let j = serde_json::to_string(&ErrorBody::new(ErrorCode::NotHolder, "m")).unwrap();
        assert_eq!(j, r#"{"error":{"code":"not_holder","message":"m"}}"#);
        assert_eq!(ErrorCode::Replay.http_status(), 409);
        assert_eq!(ErrorCode::NoSeal.http_status(), 503);
    }

    #[test]
    fn consensus_validation() {
        let r: ConsensusReport =
            serde_json::from_str(r#"{"env":"dev","leader":"n1","term":2,"peers":["n1","n2"]}"#)
                .unwrap();
        assert!(r.validate().is_ok());
        let r: ConsensusReport =
            serde_json::from_str(r#"{"env":"dev","leader":"n 1","peers":[]}"#).unwrap();
        assert!(r.validate().is_err());
    }
}
