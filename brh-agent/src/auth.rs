//! Authentication of the agent's mutating API endpoints: operator requests.
//!
//! Scheme (README "Security model"): a request is signed like an agent → forge request, but
//! with Ed25519 by an operator's key, so the agent checks it with public keys only and a
//! stolen host cannot sign one. Headers `x-brh-node` (the caller's name), `x-brh-ts` (unix
//! ms, ±30 s), `x-brh-nonce` (`<random>:<seq>`, each accepted once), `x-brh-sig` (128 hex)
//! over `brh-v1-agent\n{to}\n{METHOD}\n{PATH}\n{caller}\n{ts}\n{nonce}\n{hex(sha256(body))}`
//! where `to` is the receiving agent's node id (its public `GET /health` says it): each
//! agent keeps its own nonce memory, so without it a request captured at one agent could be
//! replayed at another within the skew window. The signer is the top operator (its public
//! key is `BRH_OPERATOR_KEY`) or a scoped operator whose certificate rides in
//! `x-brh-operator` (`brh_shared::operator`); the route's scope is checked by the handler.
use std::collections::HashMap;
use std::sync::Mutex;

use brh_shared::operator::{Certificate, Operator, RequestError};
use brh_shared::replay::Nonce;
use brh_shared::sign::{
    canonical_for, parse_auth, Audience, AuthError, RawAuth, SignedHeaders, DEFAULT_SKEW_MS,
};
use ed25519_dalek::{SigningKey, VerifyingKey};

/// Bound on remembered nonces; beyond it new requests are refused until old ones age out.
pub const MAX_REMEMBERED: usize = 4096;

/// What an operator signs agent requests with: the top operator's key (derived from the
/// seal), or a scoped operator's key and certificate (`BRH_OPERATOR_CREDENTIAL`).
pub struct OperatorSigner {
    pub key: SigningKey,
    pub cert: Option<Certificate>,
}

impl OperatorSigner {
    pub fn top(seal: &[u8]) -> Self {
        OperatorSigner {
            key: brh_shared::keys::operator_signing_key(seal),
            cert: None,
        }
    }

    pub fn scoped(credential: brh_shared::operator::Credential) -> Self {
        OperatorSigner {
            key: credential.key,
            cert: Some(credential.cert),
        }
    }

    /// The certificate's name, which a scoped operator's requests must carry.
    pub fn name(&self) -> Option<&str> {
        self.cert.as_ref().map(|c| c.name.as_str())
    }
}

/// Signs a client request to the agent whose node id is `to` with an operator's key.
#[allow(clippy::too_many_arguments)]
pub fn sign_api_request(
    key: &SigningKey,
    to: &str,
    method: &str,
    path: &str,
    caller: &str,
    ts_ms: u64,
    nonce: Nonce,
    body: &[u8],
) -> SignedHeaders {
    let msg = canonical_for(
        Audience::Agent(to),
        method,
        path,
        caller,
        ts_ms,
        &nonce,
        body,
    );
    SignedHeaders {
        node: caller.into(),
        ts_ms,
        sig: brh_shared::keys::sign_hex(key, msg.as_bytes()),
        nonce,
    }
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
    #[error("{0}")]
    Certificate(String),
    /// Signed with an HMAC key (64 hex digits: a node's key, or the seal used as one). A
    /// host's credential never authorises an operator request (403, not 401: the refusal is
    /// of the kind of credential, whoever holds it).
    #[error(
        "signed with a node key (an HMAC): a host's credential cannot authorise operator \
         requests; sign with an operator credential (BRH_OPERATOR_CREDENTIAL) or the top \
         operator's key (DOMINION_SEAL)"
    )]
    NodeCredential,
}

impl ApiAuthError {
    /// Whether the refusal is of the kind of credential (403) rather than of its proof (401).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, ApiAuthError::NodeCredential)
    }
}

fn api_error(e: AuthError) -> ApiAuthError {
    match e {
        AuthError::Malformed(m) => ApiAuthError::Malformed(m),
        AuthError::BadSignature => ApiAuthError::BadSignature,
        AuthError::StaleTimestamp { .. } => ApiAuthError::Stale,
    }
}

/// An HMAC-SHA256 signature's form: 64 lowercase hex digits (operators sign with Ed25519:
/// 128).
fn is_hmac(sig: Option<&str>) -> bool {
    sig.is_some_and(|s| brh_shared::hex::decode32(s).is_some())
}

/// Verifies operator signatures made for this agent (`me`) and remembers nonces for the
/// skew window.
pub struct ApiAuth {
    /// The top operator's public key (replaced by a credentials reload).
    operator: Mutex<VerifyingKey>,
    me: String,
    seen: Mutex<HashMap<String, u64>>,
}

impl ApiAuth {
    pub fn new(operator: VerifyingKey, me: impl Into<String>) -> Self {
        ApiAuth {
            operator: Mutex::new(operator),
            me: me.into(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Trusts `operator` as the top operator from now on (a credentials reload).
    pub fn set_operator(&self, operator: VerifyingKey) {
        *self.operator.lock().unwrap_or_else(|p| p.into_inner()) = operator;
    }

    /// The checks that need neither a key nor the body: headers present, sent once,
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

    /// Checks the signature (by the top operator, or by the holder of `cert`, which the top
    /// operator must have signed and which must name the caller), then the timestamp, then
    /// the nonce. Returns who signed; the caller checks the route's scope.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        raw: RawAuth<'_>,
        cert: Option<&str>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<(String, Operator), ApiAuthError> {
        let top = *self.operator.lock().unwrap_or_else(|p| p.into_inner());
        let (caller, nonce, operator) = brh_shared::operator::verify_request(
            &top,
            Audience::Agent(&self.me),
            method,
            path,
            raw,
            cert,
            body,
            now_ms,
            DEFAULT_SKEW_MS,
        )
        .map_err(|e| match e {
            RequestError::Auth(AuthError::BadSignature) if is_hmac(raw.sig) => {
                ApiAuthError::NodeCredential
            }
            RequestError::Auth(e) => api_error(e),
            RequestError::Certificate(m) => ApiAuthError::Certificate(m),
        })?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        // A nonce older than the window cannot be replayed anyway (its ts would be stale).
        seen.retain(|_, ts| ts.abs_diff(now_ms) <= 2 * DEFAULT_SKEW_MS);
        let remembered = format!("{caller}\n{nonce}");
        if seen.contains_key(&remembered) {
            return Err(ApiAuthError::Replay);
        }
        if seen.len() >= MAX_REMEMBERED {
            return Err(ApiAuthError::Busy);
        }
        seen.insert(remembered, now_ms);
        Ok((caller, operator))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brh_shared::keys::{node_key, operator_signing_key};
    use brh_shared::operator::{issue_credential, Scope};

    fn raw<'a>(caller: &'a str, ts: &'a str, n: &'a str, sig: &'a str) -> RawAuth<'a> {
        RawAuth {
            node: Some(caller),
            ts: Some(ts),
            nonce: Some(n),
            sig: Some(sig),
        }
    }

    #[test]
    fn accepts_once_and_rejects_tampering() {
        let top = operator_signing_key(b"seal");
        let auth = ApiAuth::new(top.verifying_key(), "n1");
        let body = br#"{"image":"nginx"}"#;
        let h = sign_api_request(
            &top,
            "n1",
            "POST",
            "/deploy",
            "ops",
            1000,
            Nonce::new("c1", 1),
            body,
        );
        let (ts, n) = (h.ts_ms.to_string(), h.nonce.to_string());
        let r = raw("ops", &ts, &n, &h.sig);
        assert_eq!(
            auth.check("POST", "/deploy", r, None, body, 1000),
            Ok(("ops".into(), Operator::Top))
        );
        assert_eq!(
            auth.check("POST", "/deploy", r, None, body, 1000),
            Err(ApiAuthError::Replay)
        );
        assert_eq!(
            auth.check("POST", "/drain/x", r, None, body, 1000),
            Err(ApiAuthError::BadSignature)
        );
        assert_eq!(
            auth.check("POST", "/deploy", r, None, body, 100_000),
            Err(ApiAuthError::Stale)
        );
        assert!(matches!(
            auth.check("POST", "/deploy", RawAuth::default(), None, body, 1000),
            Err(ApiAuthError::Malformed(_))
        ));
        let other = ApiAuth::new(operator_signing_key(b"other").verifying_key(), "n1");
        assert_eq!(
            other.check("POST", "/deploy", r, None, body, 1000),
            Err(ApiAuthError::BadSignature)
        );
        // Captured at n1, replayed at n2 (its own nonce memory has never seen it).
        let n2 = ApiAuth::new(top.verifying_key(), "n2");
        assert_eq!(
            n2.check("POST", "/deploy", r, None, body, 1000),
            Err(ApiAuthError::BadSignature)
        );
        assert_eq!(auth.precheck(r, 1000), Ok(()));
        assert_eq!(auth.precheck(r, 100_000), Err(ApiAuthError::Stale));
        let padded = format!("0{ts}");
        assert!(matches!(
            auth.precheck(
                RawAuth {
                    ts: Some(&padded),
                    ..r
                },
                1000
            ),
            Err(ApiAuthError::Malformed(_))
        ));
    }

    /// What a stolen host holds — its node key — signs nothing an agent's API accepts.
    #[test]
    fn a_node_key_is_no_operator_credential() {
        let auth = ApiAuth::new(operator_signing_key(b"seal").verifying_key(), "n1");
        let key = node_key(b"seal", "dev", "n2");
        let h = brh_shared::sign::sign_for(
            Audience::Agent("n1"),
            &key,
            "POST",
            "/switchover",
            "n2",
            1000,
            Nonce::new("x", 1),
            b"{}",
        );
        let (ts, n) = (h.ts_ms.to_string(), h.nonce.to_string());
        assert_eq!(
            auth.check(
                "POST",
                "/switchover",
                raw("n2", &ts, &n, &h.sig),
                None,
                b"{}",
                1000
            ),
            Err(ApiAuthError::NodeCredential)
        );
    }

    #[test]
    fn scoped_operators_sign_with_their_own_key() {
        let top = operator_signing_key(b"seal");
        let auth = ApiAuth::new(top.verifying_key(), "n1");
        let alice =
            issue_credential(&top, "alice", "dev", &[Scope::Switchover], 2, [5; 32]).unwrap();
        let cert = alice.cert.to_string();
        let sign = |key: &SigningKey, caller: &str, seq: u64| {
            sign_api_request(
                key,
                "n1",
                "POST",
                "/switchover",
                caller,
                1000,
                Nonce::new("a", seq),
                b"{}",
            )
        };
        let h = sign(&alice.key, "alice", 1);
        let (ts, n) = (h.ts_ms.to_string(), h.nonce.to_string());
        let (who, op) = auth
            .check(
                "POST",
                "/switchover",
                raw("alice", &ts, &n, &h.sig),
                Some(&cert),
                b"{}",
                1000,
            )
            .unwrap();
        assert_eq!(who, "alice");
        assert!(op.allows(Scope::Switchover, "dev"));
        assert!(!op.allows(Scope::Containers, "dev"));
        // Without the certificate, alice's signature is not the top operator's.
        let h = sign(&alice.key, "alice", 2);
        let (ts, n) = (h.ts_ms.to_string(), h.nonce.to_string());
        assert_eq!(
            auth.check(
                "POST",
                "/switchover",
                raw("alice", &ts, &n, &h.sig),
                None,
                b"{}",
                1000
            ),
            Err(ApiAuthError::BadSignature)
        );
        // Someone else's name on alice's certificate; an expired certificate; a certificate
        // the top operator of another federation signed.
        let h = sign(&alice.key, "mallory", 3);
        let (ts, n) = (h.ts_ms.to_string(), h.nonce.to_string());
        let r = raw("mallory", &ts, &n, &h.sig);
        assert!(matches!(
            auth.check("POST", "/switchover", r, Some(&cert), b"{}", 1000),
            Err(ApiAuthError::Certificate(_))
        ));
        let h = sign(&alice.key, "alice", 4);
        let (ts, n) = (h.ts_ms.to_string(), h.nonce.to_string());
        let r = raw("alice", &ts, &n, &h.sig);
        assert!(matches!(
            auth.check("POST", "/switchover", r, Some(&cert), b"{}", 2_000),
            Err(ApiAuthError::Certificate(_)) | Err(ApiAuthError::Stale)
        ));
        let foreign = issue_credential(
            &operator_signing_key(b"other"),
            "alice",
            "dev",
            &[Scope::Switchover],
            2,
            [5; 32],
        )
        .unwrap();
        assert!(matches!(
            auth.check(
                "POST",
                "/switchover",
                r,
                Some(&foreign.cert.to_string()),
                b"{}",
                1000
            ),
            Err(ApiAuthError::Certificate(_))
        ));
    }
}
