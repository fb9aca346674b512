//! Operator rights: who may ask an agent to change what runs or who leads.
//!
//! An agent's mutating API (`/deploy`, `/restart`, `/drain`, `/switchover`) takes requests
//! signed with Ed25519, so an agent checks them with public keys only and a host that is
//! stolen cannot sign one. Two kinds of signer:
//!
//! - the **top operator**: whoever holds the seal; signs with `keys::operator_signing_key`,
//!   every scope, every env. Agents hold its public key (`BRH_OPERATOR_KEY`).
//! - a **scoped operator**: a person given a credential by the top operator
//!   (`brh-agent operator issue`). The credential is a certificate — name, env, scopes,
//!   expiry and the person's own public key, signed by the top operator — plus the person's
//!   secret seed. Requests carry the certificate in `x-brh-operator` and are signed with the
//!   person's key.
//!
//! Certificate (`x-brh-operator`): `brhop1:{name}:{env}:{scopes}:{expires_s}:{key}:{sig}`,
//! `scopes` joined with `+` (a comma would read as a repeated header at the edge), `key` the
//! person's public key (64 hex), `sig` the top operator's Ed25519 signature (128 hex) of
//! `brh-v1-operator-cert\n{name}\n{env}\n{scopes}\n{expires_s}\n{key}`.
//! Credential (secret, what the person holds): the certificate, then `:{seed}` (64 hex).
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::decimal::parse_u64;
use crate::hex;
use crate::ids::validate_id;
use crate::keys;
use crate::replay::Nonce;
use crate::sign::{canonical_for, parse_auth, Audience, AuthError, RawAuth};

pub const HEADER_OPERATOR: &str = "x-brh-operator";

/// What an operator may do at an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Reads. Agent reads are open today; the scope is reserved for the day they are not.
    Read,
    /// `POST /switchover`.
    Switchover,
    /// `POST /deploy`, `/restart/{name}`, `/drain/{name}`.
    Containers,
    /// The forge's `POST /federation/revoke`: revoke a node's credential.
    Nodes,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::Read,
        Scope::Switchover,
        Scope::Containers,
        Scope::Nodes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Switchover => "switchover",
            Scope::Containers => "containers",
            Scope::Nodes => "nodes",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A checked operator certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub name: String,
    pub env: String,
    /// Sorted, no repeats.
    pub scopes: Vec<Scope>,
    pub expires_s: u64,
    pub key: VerifyingKey,
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertError {
    Malformed(String),
    /// Not signed by the top operator.
    BadSignature,
    Expired,
}

impl core::fmt::Display for CertError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CertError::Malformed(m) => write!(f, "malformed operator certificate: {m}"),
            CertError::BadSignature => {
                f.write_str("the operator certificate is not signed by the top operator")
            }
            CertError::Expired => f.write_str("the operator certificate has expired"),
        }
    }
}

fn malformed(m: &str) -> CertError {
    CertError::Malformed(m.into())
}

fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

/// Parses `switchover+containers` (or with commas, as typed on a command line).
pub fn parse_scopes(s: &str) -> Result<Vec<Scope>, String> {
    let mut out = Vec::new();
    for part in s.split(['+', ',']).map(str::trim).filter(|p| !p.is_empty()) {
        let scope = Scope::parse(part).ok_or_else(|| {
            format!("unknown scope {part:?} (known: read, switchover, containers, nodes)")
        })?;
        out.push(scope);
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err("no scope given (known: read, switchover, containers, nodes)".into());
    }
    Ok(out)
}

fn signing_string(name: &str, env: &str, scopes: &str, expires_s: u64, key: &str) -> String {
    format!("brh-v1-operator-cert\n{name}\n{env}\n{scopes}\n{expires_s}\n{key}")
}

impl Certificate {
    /// Issues a certificate for `key`, signed by the top operator.
    pub fn issue(
        top: &SigningKey,
        name: &str,
        env: &str,
        scopes: &[Scope],
        expires_s: u64,
        key: VerifyingKey,
    ) -> Result<Self, CertError> {
        validate_id(name).map_err(|e| CertError::Malformed(format!("name {e}")))?;
        validate_id(env).map_err(|e| CertError::Malformed(format!("env {e}")))?;
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(malformed("no scope"));
        }
        let msg = signing_string(
            name,
            env,
            &scopes_text(&scopes),
            expires_s,
            &keys::public_hex(&key),
        );
        Ok(Certificate {
            name: name.into(),
            env: env.into(),
            scopes,
            expires_s,
            key,
            sig: keys::sign_hex(top, msg.as_bytes()),
        })
    }

    /// Parses the header form. Never panics.
    pub fn parse(s: &str) -> Result<Self, CertError> {
        let f: Vec<&str> = s.trim().split(':').collect();
        let [tag, name, env, scopes, exp, key, sig] = f.as_slice() else {
            return Err(malformed("want brhop1:name:env:scopes:expires:key:sig"));
        };
        if *tag != "brhop1" {
            return Err(malformed("not a brhop1 certificate"));
        }
        validate_id(name).map_err(|e| CertError::Malformed(format!("name {e}")))?;
        validate_id(env).map_err(|e| CertError::Malformed(format!("env {e}")))?;
        let parsed = parse_scopes(scopes).map_err(CertError::Malformed)?;
        // One spelling per certificate: the signed string is built from the parsed scopes.
        if scopes_text(&parsed) != *scopes {
            return Err(malformed(
                "scopes must be sorted, joined with +, no repeats",
            ));
        }
        let expires_s = parse_u64(exp).ok_or_else(|| malformed("expires must be unix seconds"))?;
        // Exactly 64 lowercase hex digits (no trimming: one spelling per certificate).
        let key = hex::decode32(key)
            .and_then(|k| VerifyingKey::from_bytes(&k).ok())
            .ok_or_else(|| malformed("key must be 64 lowercase hex digits"))?;
        if hex::decode64(sig).is_none() {
            return Err(malformed("sig must be 128 lowercase hex digits"));
        }
        Ok(Certificate {
            name: (*name).into(),
            env: (*env).into(),
            scopes: parsed,
            expires_s,
            key,
            sig: (*sig).into(),
        })
    }

    /// Checks the top operator's signature and the expiry (`now_s < expires_s`).
    pub fn verify(&self, top: &VerifyingKey, now_s: u64) -> Result<(), CertError> {
        let msg = signing_string(
            &self.name,
            &self.env,
            &scopes_text(&self.scopes),
            self.expires_s,
            &keys::public_hex(&self.key),
        );
        if !keys::verify_hex(top, msg.as_bytes(), &self.sig) {
            return Err(CertError::BadSignature);
        }
        if now_s >= self.expires_s {
            return Err(CertError::Expired);
        }
        Ok(())
    }

    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

impl core::fmt::Display for Certificate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "brhop1:{}:{}:{}:{}:{}:{}",
            self.name,
            self.env,
            scopes_text(&self.scopes),
            self.expires_s,
            keys::public_hex(&self.key),
            self.sig
        )
    }
}

/// A scoped operator's credential: the certificate and the secret seed of its key.
#[derive(Debug, Clone)]
pub struct Credential {
    pub cert: Certificate,
    pub key: SigningKey,
}

impl Credential {
    /// `{certificate}:{seed}`.
    pub fn parse(s: &str) -> Result<Self, CertError> {
        let (cert, seed) = s
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| malformed("want the certificate, then :seed"))?;
        let seed = hex::decode32(seed).ok_or_else(|| malformed("seed must be 64 hex digits"))?;
        let cert = Certificate::parse(cert)?;
        let key = SigningKey::from_bytes(&seed);
        if key.verifying_key() != cert.key {
            return Err(malformed(
                "the seed does not belong to the certificate's key",
            ));
        }
        Ok(Credential { cert, key })
    }

    pub fn to_text(&self) -> String {
        let mut s = self.cert.to_string();
        s.push(':');
        s.push_str(&hex::encode(self.key.as_bytes()));
        s
    }
}

/// Who signed an operator request, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// The top operator: every scope.
    Top,
    /// A certificate's holder.
    Scoped(alloc::boxed::Box<Certificate>),
}

impl Operator {
    pub fn allows(&self, scope: Scope, env: &str) -> bool {
        match self {
            Operator::Top => true,
            Operator::Scoped(c) => c.env == env && c.allows(scope),
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Operator::Top => None,
            Operator::Scoped(c) => Some(&c.name),
        }
    }
}

impl core::fmt::Display for Operator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Operator::Top => f.write_str("the top operator"),
            Operator::Scoped(c) => write!(f, "operator {} ({})", c.name, scopes_text(&c.scopes)),
        }
    }
}

/// Why an operator request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Headers, signature or timestamp (the same answers as a node request's).
    Auth(AuthError),
    /// The certificate is malformed, expired, not the top operator's, or not the caller's.
    Certificate(String),
}

/// Checks an operator's signed request to `audience`, statelessly: signed by the top
/// operator (`top`), or by the holder of `cert`, which `top` must have signed and which must
/// name the caller; then the timestamp window. Returns who signed; the caller checks the
/// route's scope and, where a replay would matter, the nonce.
#[allow(clippy::too_many_arguments)]
pub fn verify_request(
    top: &VerifyingKey,
    audience: Audience<'_>,
    method: &str,
    path: &str,
    raw: RawAuth<'_>,
    cert: Option<&str>,
    body: &[u8],
    now_ms: u64,
    skew_ms: u64,
) -> Result<(String, Nonce, Operator), RequestError> {
    let f = parse_auth(raw).map_err(RequestError::Auth)?;
    let (key, operator) = match cert {
        None => (*top, Operator::Top),
        Some(text) => {
            let cert =
                Certificate::parse(text).map_err(|e| RequestError::Certificate(e.to_string()))?;
            cert.verify(top, now_ms / 1000)
                .map_err(|e| RequestError::Certificate(e.to_string()))?;
            if cert.name != f.node {
                return Err(RequestError::Certificate(format!(
                    "the operator certificate is {:?}'s, the request names {:?}",
                    cert.name, f.node
                )));
            }
            (cert.key, Operator::Scoped(alloc::boxed::Box::new(cert)))
        }
    };
    let msg = canonical_for(audience, method, path, f.node, f.ts_ms, &f.nonce, body);
    if !keys::verify_hex(&key, msg.as_bytes(), f.sig) {
        return Err(RequestError::Auth(AuthError::BadSignature));
    }
    let delta_ms = f.ts_ms as i128 - now_ms as i128;
    if delta_ms.unsigned_abs() > skew_ms as u128 {
        return Err(RequestError::Auth(AuthError::StaleTimestamp {
            delta_ms: delta_ms.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            allowed_ms: skew_ms,
        }));
    }
    Ok((f.node.to_string(), f.nonce, operator))
}

/// Mints a fresh scoped credential from a 32-byte seed the caller drew at random.
pub fn issue_credential(
    top: &SigningKey,
    name: &str,
    env: &str,
    scopes: &[Scope],
    expires_s: u64,
    seed: [u8; 32],
) -> Result<Credential, CertError> {
    let key = SigningKey::from_bytes(&seed);
    let cert = Certificate::issue(top, name, env, scopes, expires_s, key.verifying_key())?;
    Ok(Credential { cert, key })
}

/// For error messages: the scopes an operator holds.
pub fn describe_scopes(scopes: &[Scope]) -> String {
    if scopes.is_empty() {
        return "none".to_string();
    }
    scopes_text(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top() -> SigningKey {
        keys::operator_signing_key(b"root")
    }

    #[test]
    fn issue_parse_verify_round_trip() {
        let c = issue_credential(
            &top(),
            "alice",
            "dev",
            &[Scope::Containers, Scope::Switchover, Scope::Containers],
            2_000,
            [9; 32],
        )
        .unwrap();
        let text = c.to_text();
        let back = Credential::parse(&text).unwrap();
        assert_eq!(back.cert, c.cert);
        let header = c.cert.to_string();
        assert!(header.starts_with("brhop1:alice:dev:switchover+containers:2000:"));
        let cert = Certificate::parse(&header).unwrap();
        assert_eq!(cert.verify(&top().verifying_key(), 1_999), Ok(()));
        assert_eq!(
            cert.verify(&top().verifying_key(), 2_000),
            Err(CertError::Expired)
        );
        let other = keys::operator_signing_key(b"other").verifying_key();
        assert_eq!(cert.verify(&other, 1), Err(CertError::BadSignature));
        let op = Operator::Scoped(alloc::boxed::Box::new(cert));
        assert!(op.allows(Scope::Switchover, "dev"));
        assert!(!op.allows(Scope::Switchover, "prod"));
        assert!(!op.allows(Scope::Read, "dev"));
        assert!(Operator::Top.allows(Scope::Containers, "prod"));
    }

    #[test]
    fn tampered_or_malformed_certificates_are_refused() {
        let c = issue_credential(&top(), "bob", "dev", &[Scope::Read], 10, [1; 32]).unwrap();
        let header = c.cert.to_string();
        let pk = top().verifying_key();
        // Widened scope, other env, later expiry: the signature no longer matches.
        for t in [
            header.replace(":read:", ":containers:"),
            header.replace(":dev:", ":prod:"),
            header.replace(":10:", ":99:"),
        ] {
            let cert = Certificate::parse(&t).unwrap();
            assert_eq!(cert.verify(&pk, 1), Err(CertError::BadSignature), "{t}");
        }
        for bad in [
            "",
            "brhop1",
            "brhop2:bob:dev:read:10:00:00",
            &header.replace(":read:", ":containers+read:"),
            &header.replace(":read:", ":read+read:"),
            &header.replace(":read:", ":root:"),
            &header.replace(":10:", ":010:"),
            &format!("{header}:extra"),
            &header.replacen(
                &keys::public_hex(&c.cert.key),
                &format!("\r{}", keys::public_hex(&c.cert.key)),
                1,
            ),
        ] {
            assert!(Certificate::parse(bad).is_err(), "{bad}");
        }
        // A seed that is not the certificate's.
        let wrong = format!("{header}:{}", hex::encode(&[2; 32]));
        assert!(Credential::parse(&wrong).is_err());
        assert_eq!(parse_scopes("containers, switchover").unwrap().len(), 2);
        assert!(parse_scopes("").is_err());
    }
}
