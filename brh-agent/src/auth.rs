//! Authentication of the agent's mutating API endpoints.
//!
//! Scheme (documented in the README): the API key is derived from the federation seal,
//! `api_key = HMAC-SHA256(DOMINION_SEAL, "brh-v1-agent-api\n{env}")` (32 bytes, shown as 64
//! hex by `brh-agent api-key`), so an operator can be handed the key of one env without the
//! seal itself. A request is signed exactly like an agent → forge request (design §3), with
//! the API key in place of the seal: headers `x-brh-node` (the caller's name), `x-brh-ts`
//! (unix ms, ±30 s), `x-brh-nonce` (`<random>:<seq>`, each accepted once) and `x-brh-sig`
//! over `brh-v1-agent\n{to}\n{METHOD}\n{PATH}\n{caller}\n{ts}\n{nonce}\n{hex(sha256(body))}`
//! where `to` is the receiving agent's node id (its public `GET /health` says it). Naming the
//! receiver matters because each agent keeps its own nonce memory: without it, a request
//! captured at one agent could be replayed at another of the env within the skew window.
//! `brh-agent deploy` is a client of it.
use std::collections::HashMap;
use std::sync::Mutex;

use brh_shared::replay::Nonce;
use brh_shared::sign::{
    hmac_sha256, parse_auth, sign_for, verify_for, Audience, AuthError, RawAuth, SignedHeaders,
    DEFAULT_SKEW_MS,
};

/// Bound on remembered nonces; beyond it new requests are refused until old ones age out.
pub const MAX_REMEMBERED: usize = 4096;

pub fn derive_api_key(seal: &[u8], env: &str) -> [u8; 32] {
    hmac_sha256(seal, format!("brh-v1-agent-api\n{env}").as_bytes())
}

/// Signs a client request to the agent whose node id is `to`.
#[allow(clippy::too_many_arguments)]
pub fn sign_api_request(
    key: &[u8; 32],
    to: &str,
    method: &str,
    path: &str,
    caller: &str,
    ts_ms: u64,
    nonce: Nonce,
    body: &[u8],
) -> SignedHeaders {
    sign_for(
        Audience::Agent(to),
        key,
        method,
        path,
        caller,
        ts_ms,
        nonce,
        body,
    )
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiAuthError {
    #[error("authentication required: {0}")]
    Malformed(String),
    #[error("bad signature")]
    BadSignature,
    #[error("timestamp outside the ±30 s window")]
    Stale,
    #[error("nonce already used")]
    Replay,
    #[error("too many recent requests")]
    Busy,
}

fn api_error(e: AuthError) -> ApiAuthError {
    match e {
        AuthError::Malformed(m) => ApiAuthError::Malformed(m),
        AuthError::BadSignature => ApiAuthError::BadSignature,
        AuthError::StaleTimestamp { .. } => ApiAuthError::Stale,
    }
}

/// Verifies signatures made for this agent (`me`) and remembers nonces for the skew window.
pub struct ApiAuth {
    key: [u8; 32],
    me: String,
    seen: Mutex<HashMap<String, u64>>,
}

impl ApiAuth {
    pub fn new(key: [u8; 32], me: impl Into<String>) -> Self {
        ApiAuth {
            key,
            me: me.into(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The checks that need neither the key nor the body: headers present, sent once,
    /// canonical, timestamp in the window. Run before the body is read, so a client without
    /// a plausible request cannot make the agent wait for (or buffer) a body. The leader
    /// view publishes the forge's clock anyway, so the window reveals nothing.
    pub fn precheck(&self, raw: RawAuth<'_>, now_ms: u64) -> Result<(), ApiAuthError> {
        let f = parse_auth(raw).map_err(api_error)?;
        if f.ts_ms.abs_diff(now_ms) > DEFAULT_SKEW_MS {
            return Err(ApiAuthError::Stale);
        }
        Ok(())
    }

    pub fn check(
        &self,
        method: &str,
        path: &str,
        raw: RawAuth<'_>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<String, ApiAuthError> {
        let a = verify_for(
            Audience::Agent(&self.me),
            &self.key,
            method,
            path,
            raw,
            body,
            now_ms,
            DEFAULT_SKEW_MS,
        )
        .map_err(api_error)?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        // A nonce older than the window cannot be replayed anyway (its ts would be stale).
        seen.retain(|_, ts| ts.abs_diff(now_ms) <= 2 * DEFAULT_SKEW_MS);
        let key = format!("{}\n{}", a.node, a.nonce);
        if seen.contains_key(&key) {
            return Err(ApiAuthError::Replay);
        }
        if seen.len() >= MAX_REMEMBERED {
            return Err(ApiAuthError::Busy);
        }
        seen.insert(key, a.ts_ms);
        Ok(a.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_once_and_rejects_tampering() {
        let key = derive_api_key(b"seal", "dev");
        assert_ne!(key, derive_api_key(b"seal", "prod"));
        let auth = ApiAuth::new(key, "n1");
        let body = br#"{"image":"nginx"}"#;
        let h = sign_api_request(
            &key,
            "n1",
            "POST",
            "/deploy",
            "ops",
            1000,
            Nonce::new("c1", 1),
            body,
        );
        let (ts, n) = (h.ts_ms.to_string(), h.nonce.to_string());
        let raw = RawAuth {
            node: Some("ops"),
            ts: Some(&ts),
            nonce: Some(&n),
            sig: Some(&h.sig),
        };
        assert_eq!(
            auth.check("POST", "/deploy", raw, body, 1000),
            Ok("ops".into())
        );
        assert_eq!(
            auth.check("POST", "/deploy", raw, body, 1000),
            Err(ApiAuthError::Replay)
        );
        assert_eq!(
            auth.check("POST", "/drain/x", raw, body, 1000),
            Err(ApiAuthError::BadSignature)
        );
        assert_eq!(
            auth.check("POST", "/deploy", raw, body, 100_000),
            Err(ApiAuthError::Stale)
        );
        assert!(matches!(
            auth.check("POST", "/deploy", RawAuth::default(), body, 1000),
            Err(ApiAuthError::Malformed(_))
        ));
        let other = ApiAuth::new(derive_api_key(b"other", "dev"), "n1");
        assert_eq!(
            other.check("POST", "/deploy", raw, body, 1000),
            Err(ApiAuthError::BadSignature)
        );
        // Captured at n1, replayed at n2 (its own nonce memory has never seen it).
        let n2 = ApiAuth::new(key, "n2");
        assert_eq!(
            n2.check("POST", "/deploy", raw, body, 1000),
            Err(ApiAuthError::BadSignature)
        );
        assert_eq!(auth.precheck(raw, 1000), Ok(()));
        assert_eq!(auth.precheck(raw, 100_000), Err(ApiAuthError::Stale));
        let padded = format!("0{ts}");
        assert!(matches!(
            auth.precheck(
                RawAuth {
                    ts: Some(&padded),
                    ..raw
                },
                1000
            ),
            Err(ApiAuthError::Malformed(_))
        ));
    }
}
