//! Request signing (agent → forge) and leader-view signing (forge → agent).
//!
//! Keys (see `keys`): a request to the forge is signed with the node's own key; the forge's
//! answers and pushes to a node are HMACs under that node's key; public views are Ed25519
//! under the forge key.
//!
//! Signed request string:
//! `brh-v1\n{METHOD}\n{PATH}\n{node}\n{ts}\n{nonce}\n{hex(sha256(body))}`;
//! to an agent's API: `brh-v1-agent\n{to}\n…` with the same lines after (see [`Audience`]).
//! Decimal fields are canonical (no leading zeros) and no header may be sent twice.
//! Signed view string:
//! `brh-v1-view\n{env}\n{leader or ""}\n{term}\n{expires_at_ms or 0}\n{issued_at_ms}\n{you.node or ""}\n{you.role or ""}`.
//! On the stream, a view's basis (the request it follows): `brh-v1-basis\n{node}\n{nonce}\n{view.sig}`.
use alloc::format;
use alloc::string::String;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::hex;
use crate::ids::validate_id;
use crate::replay::Nonce;
use crate::wire::LeaderView;
use serde::{Deserialize, Serialize};

type HmacSha256 = Hmac<Sha256>;

pub const HEADER_NODE: &str = "x-brh-node";
pub const HEADER_TS: &str = "x-brh-ts";
pub const HEADER_NONCE: &str = "x-brh-nonce";
pub const HEADER_SIG: &str = "x-brh-sig";
/// The generation of the node key a request is signed with (`keys::node_key_gen`); absent
/// for generation 0. Not signed itself: it only chooses the key, so a changed value fails the
/// signature.
pub const HEADER_KEY_GEN: &str = "x-brh-key-gen";
/// On the forge's answer to a signed request over HTTP: the request's nonce, and
/// [`sign_basis`] over it and the view's signature — the binding a stream answer carries in
/// its body (`basis`, `basis_sig`).
pub const HEADER_BASIS: &str = "x-brh-basis";
pub const HEADER_BASIS_SIG: &str = "x-brh-basis-sig";

/// Default accepted distance between the sender's timestamp and the forge's clock.
pub const DEFAULT_SKEW_MS: u64 = 30_000;

pub use crate::mac::hmac_sha256;

/// HMAC-SHA256 as 64 lowercase hex digits.
pub fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    hex::encode(&hmac_sha256(key, msg))
}

/// Constant-time check of a hex HMAC. Malformed hex is simply a mismatch.
pub fn verify_hmac_hex(key: &[u8], msg: &[u8], sig_hex: &str) -> bool {
    let Some(sig) = hex::decode32(sig_hex) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.verify_slice(&sig).is_ok()
}

/// Who a signed request is for. The forge checks requests signed with the key of the node
/// they name; an agent's API checks operator requests (Ed25519, `operator::verify_request`)
/// *naming that agent*, so a request captured at one agent is refused by every other (each
/// keeps its own nonce memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience<'a> {
    /// `brh-v1\n{METHOD}\n{PATH}\n{node}\n{ts}\n{nonce}\n{hex(sha256(body))}`.
    Forge,
    /// `brh-v1-agent\n{to}\n{METHOD}\n{PATH}\n{caller}\n{ts}\n{nonce}\n{hex(sha256(body))}`,
    /// `to` being the receiving agent's node id.
    Agent(&'a str),
}

/// The canonical string signed for one request to `audience`.
pub fn canonical_for(
    audience: Audience<'_>,
    method: &str,
    path: &str,
    node: &str,
    ts_ms: u64,
    nonce: &Nonce,
    body: &[u8],
) -> String {
    let digest = hex::encode(&Sha256::digest(body));
    let head = match audience {
        Audience::Forge => String::from(crate::PROTOCOL),
        Audience::Agent(to) => format!("{}-agent\n{}", crate::PROTOCOL, to),
    };
    format!("{head}\n{method}\n{path}\n{node}\n{ts_ms}\n{nonce}\n{digest}")
}

/// The canonical string an agent signs for one request to the forge.
pub fn canonical_request(
    method: &str,
    path: &str,
    node: &str,
    ts_ms: u64,
    nonce: &Nonce,
    body: &[u8],
) -> String {
    canonical_for(Audience::Forge, method, path, node, ts_ms, nonce, body)
}

/// The four authentication headers of one signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub node: String,
    pub ts_ms: u64,
    pub nonce: Nonce,
    pub sig: String,
}

/// Signs a request to the forge with the node's key (`keys::node_key`); the caller puts the
/// result in the `x-brh-*` headers.
pub fn sign_request(
    node_key: &[u8],
    method: &str,
    path: &str,
    node: &str,
    ts_ms: u64,
    nonce: Nonce,
    body: &[u8],
) -> SignedHeaders {
    sign_for(
        Audience::Forge,
        node_key,
        method,
        path,
        node,
        ts_ms,
        nonce,
        body,
    )
}

/// Signs a request to `audience` with `key`.
#[allow(clippy::too_many_arguments)]
pub fn sign_for(
    audience: Audience<'_>,
    key: &[u8],
    method: &str,
    path: &str,
    node: &str,
    ts_ms: u64,
    nonce: Nonce,
    body: &[u8],
) -> SignedHeaders {
    let msg = canonical_for(audience, method, path, node, ts_ms, &nonce, body);
    SignedHeaders {
        node: node.into(),
        ts_ms,
        sig: hmac_hex(key, msg.as_bytes()),
        nonce,
    }
}

/// The raw header values as received; `None` when a header is absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawAuth<'a> {
    pub node: Option<&'a str>,
    pub ts: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub sig: Option<&'a str>,
}

/// Why a request failed authentication. Each maps to one wire error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// A header is missing or malformed (400 `bad_request`).
    Malformed(String),
    /// The HMAC does not match (401 `bad_signature`).
    BadSignature,
    /// The timestamp is outside the skew window (401 `stale_timestamp`).
    StaleTimestamp { delta_ms: i64, allowed_ms: u64 },
}

/// A request whose signature and timestamp checked out. Replay is checked later, against the
/// node's stored nonce, by the election state (it needs the env's state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub node: String,
    pub ts_ms: u64,
    pub nonce: Nonce,
    /// Which of the node's keys signed it.
    pub key: KeyId,
}

/// Which key of a node signed a request: its generation (`keys::node_key_gen`; the election
/// refuses revoked ones) and, while the forge rotates its root secret, whether it was derived
/// from the previous seal (the forge answers each node under the key it used).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyId {
    pub generation: u32,
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub previous_seal: bool,
}

crate::from_json_struct!(KeyId {
    generation: req,
    previous_seal: or_default,
});

impl KeyId {
    pub fn is_default(&self) -> bool {
        *self == KeyId::default()
    }
}

/// Verifies a request to the forge with the key of the node it claims to come from: see
/// [`verify_for`].
pub fn verify_request(
    node_key: &[u8],
    method: &str,
    path: &str,
    raw: RawAuth<'_>,
    body: &[u8],
    now_ms: u64,
    skew_ms: u64,
) -> Result<Authenticated, AuthError> {
    verify_for(
        Audience::Forge,
        node_key,
        method,
        path,
        raw,
        body,
        now_ms,
        skew_ms,
    )
}

/// The four headers' values, checked for form only (no key, no body): present, sent once,
/// canonical. Cheap, so an edge can refuse a request before it reads the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFields<'a> {
    pub node: &'a str,
    pub ts_ms: u64,
    pub nonce: Nonce,
    pub sig: &'a str,
}

/// Parses the headers' form. Edges join a header sent several times with `", "` (as the
/// Fetch API does), and no field's grammar admits a comma, so a repeated header is refused
/// here rather than resolved to its first or last copy.
pub fn parse_auth(raw: RawAuth<'_>) -> Result<AuthFields<'_>, AuthError> {
    fn field<'a>(name: &str, v: Option<&'a str>) -> Result<&'a str, AuthError> {
        let v = v.ok_or_else(|| AuthError::Malformed(format!("missing header {name}")))?;
        if v.contains(',') {
            return Err(AuthError::Malformed(format!(
                "header {name} was sent more than once"
            )));
        }
        Ok(v)
    }
    let node = field(HEADER_NODE, raw.node)?;
    let ts = field(HEADER_TS, raw.ts)?;
    let nonce = field(HEADER_NONCE, raw.nonce)?;
    let sig = field(HEADER_SIG, raw.sig)?;
    validate_id(node).map_err(|e| AuthError::Malformed(format!("{HEADER_NODE} {e}")))?;
    let ts_ms = crate::decimal::parse_u64(ts).ok_or_else(|| {
        AuthError::Malformed(format!(
            "{HEADER_TS} must be unix milliseconds in canonical decimal (no leading zeros)"
        ))
    })?;
    let nonce: Nonce = nonce.parse().map_err(|_| {
        AuthError::Malformed(format!(
            "{HEADER_NONCE} must be <boot_id>:<seq> (seq in canonical decimal)"
        ))
    })?;
    // The signature's form is judged with its value: anything but 64 lowercase hex digits
    // is simply a mismatch (401 `bad_signature`).
    Ok(AuthFields {
        node,
        ts_ms,
        nonce,
        sig,
    })
}

/// The key generation a request names ([`HEADER_KEY_GEN`]): absent is 0; present, a
/// canonical decimal ≥ 1 (one spelling per value).
pub fn parse_key_gen(v: Option<&str>) -> Result<u32, AuthError> {
    let Some(v) = v else { return Ok(0) };
    crate::decimal::parse_u64(v)
        .and_then(|g| u32::try_from(g).ok())
        .filter(|g| *g > 0)
        .ok_or_else(|| {
            AuthError::Malformed(format!(
                "{HEADER_KEY_GEN} must be a key generation ≥ 1 in canonical decimal \
                 (omit it for generation 0)"
            ))
        })
}

/// Verifies the signature first (so an unauthenticated caller learns nothing about clocks),
/// then the timestamp window. Never panics on any input.
#[allow(clippy::too_many_arguments)]
pub fn verify_for(
    audience: Audience<'_>,
    key: &[u8],
    method: &str,
    path: &str,
    raw: RawAuth<'_>,
    body: &[u8],
    now_ms: u64,
    skew_ms: u64,
) -> Result<Authenticated, AuthError> {
    let f = parse_auth(raw)?;
    let msg = canonical_for(audience, method, path, f.node, f.ts_ms, &f.nonce, body);
    if !verify_hmac_hex(key, msg.as_bytes(), f.sig) {
        return Err(AuthError::BadSignature);
    }
    let delta_ms = f.ts_ms as i128 - now_ms as i128;
    if delta_ms.unsigned_abs() > skew_ms as u128 {
        return Err(AuthError::StaleTimestamp {
            delta_ms: delta_ms.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            allowed_ms: skew_ms,
        });
    }
    Ok(Authenticated {
        node: f.node.into(),
        ts_ms: f.ts_ms,
        nonce: f.nonce,
        key: KeyId::default(),
    })
}

/// The canonical string of a leader view (its `sig` field excluded).
pub fn canonical_view(view: &LeaderView) -> String {
    let (you_node, you_role) = match &view.you {
        Some(you) => (you.node.as_str(), you.role.as_str()),
        None => ("", ""),
    };
    format!(
        "brh-v1-view\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        view.env,
        view.leader.as_deref().unwrap_or(""),
        view.term,
        view.lease.as_ref().map_or(0, |l| l.expires_at_ms),
        view.issued_at_ms,
        you_node,
        you_role
    )
}

/// The string binding a stream view to the request it follows (see `wire::StreamMessage`).
pub fn canonical_basis(node: &str, basis: &str, view_sig: &str) -> String {
    format!("brh-v1-basis\n{node}\n{basis}\n{view_sig}")
}

/// `basis_sig` of a view for `node` that follows the request with nonce `basis`, under that
/// node's key.
pub fn sign_basis(node_key: &[u8], node: &str, basis: &str, view_sig: &str) -> String {
    hmac_hex(node_key, canonical_basis(node, basis, view_sig).as_bytes())
}

/// Checks `basis_sig` in constant time.
pub fn verify_basis(
    node_key: &[u8],
    node: &str,
    basis: &str,
    view_sig: &str,
    basis_sig: &str,
) -> bool {
    verify_hmac_hex(
        node_key,
        canonical_basis(node, basis, view_sig).as_bytes(),
        basis_sig,
    )
}

/// Fills in `view.sig` for one node: HMAC under that node's key (`keys::node_key`), so only
/// the forge and that node can make it, and no other node accepts it. Answers and pushes are
/// signed this way (one HMAC, no public-key operation per heartbeat).
pub fn sign_view(node_key: &[u8], view: &mut LeaderView) {
    view.sig = hmac_hex(node_key, canonical_view(view).as_bytes());
}

/// Checks a node's `view.sig` in constant time. A view whose lease disagrees with its
/// `leader` field is refused too: the lease holder and term are not all in the signed string,
/// so they must be consistent with the fields that are.
pub fn verify_view(node_key: &[u8], view: &LeaderView) -> bool {
    view_consistent(view) && verify_hmac_hex(node_key, canonical_view(view).as_bytes(), &view.sig)
}

/// Fills in `view.sig` of a public view (`GET /federation/leader`): Ed25519 under the forge
/// key, so anyone with the forge's public key can check it and nobody else can make one.
pub fn sign_public_view(forge: &ed25519_dalek::SigningKey, view: &mut LeaderView) {
    view.sig = crate::keys::sign_hex(forge, canonical_view(view).as_bytes());
}

/// Checks a public view's Ed25519 signature (and the same consistency as [`verify_view`]).
pub fn verify_public_view(forge: &ed25519_dalek::VerifyingKey, view: &LeaderView) -> bool {
    view_consistent(view)
        && crate::keys::verify_hex(forge, canonical_view(view).as_bytes(), &view.sig)
}

fn view_consistent(view: &LeaderView) -> bool {
    match (&view.leader, &view.lease) {
        (None, None) => true,
        // An empty leader would sign the same string as no leader: refused.
        (Some(leader), Some(lease)) => {
            !leader.is_empty() && *leader == lease.holder && lease.term == view.term
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{LeaseInfo, Role, You};
    use alloc::string::ToString;

    const SEAL: &[u8] = b"test-seal";

    fn nonce() -> Nonce {
        "boot1:7".parse().unwrap()
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            hmac_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn canonical_request_layout() {
        let s = canonical_request("POST", "/federation/heartbeat", "n1", 42, &nonce(), b"");
        assert_eq!(
            s,
            "brh-v1\nPOST\n/federation/heartbeat\nn1\n42\nboot1:7\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn request_vector_matches_openssl() {
        // Computed independently with:
        // printf 'brh-v1\nPOST\n/federation/heartbeat\nn1\n1763900000000\nboot1:7\n%s' \
        //   "$(printf '{"env":"dev"}' | sha256sum | cut -d' ' -f1)" \
        //   | openssl dgst -sha256 -hmac test-seal
        let h = sign_request(
            SEAL,
            "POST",
            "/federation/heartbeat",
            "n1",
            1_763_900_000_000,
            nonce(),
            br#"{"env":"dev"}"#,
        );
        assert_eq!(h.sig, REQUEST_VECTOR);
    }
    const REQUEST_VECTOR: &str = "6885cb141b946b54a936a742dcd524c75cca18896cd72e0b52ccdf30f1d43940";

    fn raw(h: &SignedHeaders) -> (String, String, String) {
        (h.ts_ms.to_string(), h.nonce.to_string(), h.sig.clone())
    }

    #[test]
    fn one_signature_authenticates_one_spelling() {
        // Leading zeros would let one signature stand for several header values.
        let body = br#"{"env":"dev"}"#;
        let h = sign_request(SEAL, "POST", "/p", "n1", 1_795_495_328_133, nonce(), body);
        let (ts, n, sig) = raw(&h);
        let ok = RawAuth {
            node: Some("n1"),
            ts: Some(&ts),
            nonce: Some(&n),
            sig: Some(&sig),
        };
        let now = 1_795_495_328_133;
        assert!(verify_request(SEAL, "POST", "/p", ok, body, now, 30_000).is_ok());
        let padded_ts = format!("000{ts}");
        let joined_sig = format!("{sig}, {sig}");
        let joined_node = "n1, n1";
        for (what, r) in [
            (
                "padded ts",
                RawAuth {
                    ts: Some(&padded_ts),
                    ..ok
                },
            ),
            (
                "padded seq",
                RawAuth {
                    nonce: Some("boot1:007"),
                    ..ok
                },
            ),
            (
                "repeated sig",
                RawAuth {
                    sig: Some(&joined_sig),
                    ..ok
                },
            ),
            (
                "repeated node",
                RawAuth {
                    node: Some(joined_node),
                    ..ok
                },
            ),
        ] {
            assert!(
                matches!(
                    verify_request(SEAL, "POST", "/p", r, body, now, 30_000),
                    Err(AuthError::Malformed(_))
                ),
                "{what} accepted"
            );
        }
    }

    #[test]
    fn agent_requests_name_their_receiver() {
        let key = [7u8; 32];
        let body = b"{}";
        let h = sign_for(
            Audience::Agent("n2"),
            &key,
            "POST",
            "/federation/nudge",
            "ops",
            1000,
            nonce(),
            body,
        );
        let (ts, n, sig) = raw(&h);
        let r = RawAuth {
            node: Some("ops"),
            ts: Some(&ts),
            nonce: Some(&n),
            sig: Some(&sig),
        };
        let at = |who| {
            verify_for(
                who,
                &key,
                "POST",
                "/federation/nudge",
                r,
                body,
                1000,
                30_000,
            )
        };
        assert!(at(Audience::Agent("n2")).is_ok());
        assert_eq!(at(Audience::Agent("n3")), Err(AuthError::BadSignature));
        assert_eq!(at(Audience::Forge), Err(AuthError::BadSignature));
        assert!(
            canonical_for(Audience::Agent("n2"), "POST", "/x", "ops", 1, &nonce(), b"")
                .starts_with("brh-v1-agent\nn2\nPOST\n/x\nops\n1\nboot1:7\n")
        );
    }

    #[test]
    fn verify_accepts_then_rejects_each_tamper() {
        let body = br#"{"env":"dev"}"#;
        let h = sign_request(SEAL, "POST", "/p", "n1", 1000, nonce(), body);
        let (ts, n, sig) = raw(&h);
        let ok = RawAuth {
            node: Some("n1"),
            ts: Some(&ts),
            nonce: Some(&n),
            sig: Some(&sig),
        };
        let a = verify_request(SEAL, "POST", "/p", ok, body, 1000, 30_000).unwrap();
        assert_eq!(a.node, "n1");
        assert_eq!(a.nonce, nonce());
        let bad = |r| verify_request(SEAL, "POST", "/p", r, body, 1000, 30_000);
        assert_eq!(
            verify_request(b"other", "POST", "/p", ok, body, 1000, 30_000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_request(SEAL, "GET", "/p", ok, body, 1000, 30_000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_request(SEAL, "POST", "/q", ok, body, 1000, 30_000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_request(SEAL, "POST", "/p", ok, b"{}", 1000, 30_000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            bad(RawAuth {
                node: Some("n2"),
                ..ok
            }),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            bad(RawAuth {
                ts: Some("1001"),
                ..ok
            }),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            bad(RawAuth {
                nonce: Some("boot1:8"),
                ..ok
            }),
            Err(AuthError::BadSignature)
        );
        let upper = sig.to_uppercase();
        assert_eq!(
            bad(RawAuth {
                sig: Some(&upper),
                ..ok
            }),
            Err(AuthError::BadSignature)
        );
        assert!(matches!(
            bad(RawAuth { sig: None, ..ok }),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            bad(RawAuth {
                ts: Some("-5"),
                ..ok
            }),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            bad(RawAuth {
                node: Some("bad node"),
                ..ok
            }),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            bad(RawAuth {
                nonce: Some("nocolon"),
                ..ok
            }),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn skew_window_is_symmetric() {
        let h = sign_request(SEAL, "POST", "/p", "n1", 100_000, nonce(), b"");
        let (ts, n, sig) = raw(&h);
        let r = RawAuth {
            node: Some("n1"),
            ts: Some(&ts),
            nonce: Some(&n),
            sig: Some(&sig),
        };
        assert!(verify_request(SEAL, "POST", "/p", r, b"", 130_000, 30_000).is_ok());
        assert!(verify_request(SEAL, "POST", "/p", r, b"", 70_000, 30_000).is_ok());
        assert_eq!(
            verify_request(SEAL, "POST", "/p", r, b"", 130_001, 30_000),
            Err(AuthError::StaleTimestamp {
                delta_ms: -30_001,
                allowed_ms: 30_000
            })
        );
        assert!(matches!(
            verify_request(SEAL, "POST", "/p", r, b"", 69_999, 30_000),
            Err(AuthError::StaleTimestamp { .. })
        ));
    }

    fn view() -> LeaderView {
        LeaderView {
            env: "production".into(),
            leader: Some("brh-node-01".into()),
            term: 7,
            lease: Some(LeaseInfo {
                holder: "brh-node-01".into(),
                term: 7,
                expires_at_ms: 1_763_900_015_000,
                ttl_ms: 15_000,
            }),
            epoch: 1_763_900_000,
            issued_at_ms: 1_763_900_000_000,
            peers_alive: 3,
            mode: "native".into(),
            heartbeat_interval_ms: 1_000,
            lease_ttl_ms: 3_000,
            you: Some(You {
                node: "brh-node-02".into(),
                role: Role::Witness,
            }),
            sig: String::new(),
            lease_token: None,
        }
    }

    #[test]
    fn view_vector_matches_openssl() {
        // printf 'brh-v1-view\nproduction\nbrh-node-01\n7\n1763900015000\n1763900000000\nbrh-node-02\nwitness' \
        //   | openssl dgst -sha256 -hmac test-seal
        let mut v = view();
        sign_view(SEAL, &mut v);
        assert_eq!(v.sig, VIEW_VECTOR);
        assert!(verify_view(SEAL, &v));
    }
    const VIEW_VECTOR: &str = "24ea00c45222b663056e15499c5e03cae70deaba94735643d923873b1df3d91a";

    #[test]
    fn view_tampering_is_detected() {
        let mut v = view();
        sign_view(SEAL, &mut v);
        let mut t = v.clone();
        t.leader = Some("brh-node-02".into());
        assert!(!verify_view(SEAL, &t));
        let mut t = v.clone();
        t.lease.as_mut().unwrap().holder = "x".into();
        assert!(!verify_view(SEAL, &t), "lease holder must match leader");
        let mut t = v.clone();
        t.you.as_mut().unwrap().role = Role::Leader;
        assert!(!verify_view(SEAL, &t));
        assert!(!verify_view(b"other", &v));
    }

    #[test]
    fn public_views_check_with_the_forge_key_only() {
        let forge = crate::keys::forge_signing_key(SEAL);
        let mut v = view();
        v.you = None;
        sign_public_view(&forge, &mut v);
        assert_eq!(v.sig.len(), 128);
        assert!(verify_public_view(&forge.verifying_key(), &v));
        let other = crate::keys::forge_signing_key(b"other").verifying_key();
        assert!(!verify_public_view(&other, &v));
        let mut t = v.clone();
        t.term += 1;
        assert!(!verify_public_view(&forge.verifying_key(), &t));
        // A node's HMAC view is not a public view, and the other way round.
        let mut h = view();
        sign_view(
            &crate::keys::node_key(SEAL, "production", "brh-node-02"),
            &mut h,
        );
        assert!(!verify_public_view(&forge.verifying_key(), &h));
        assert!(!verify_view(SEAL, &v));
    }

    #[test]
    fn a_view_for_one_node_is_refused_by_another() {
        let (a, b) = (
            crate::keys::node_key(SEAL, "production", "brh-node-02"),
            crate::keys::node_key(SEAL, "production", "brh-node-03"),
        );
        let mut v = view();
        sign_view(&a, &mut v);
        assert!(verify_view(&a, &v));
        assert!(!verify_view(&b, &v));
        let bs = sign_basis(&a, "brh-node-02", "b1:1", &v.sig);
        assert!(!verify_basis(&b, "brh-node-02", "b1:1", &v.sig, &bs));
    }
}
