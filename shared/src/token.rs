//! Tokens a managed container receives.
//!
//! **Lease tokens** (`BRH_LEASE_TOKEN`, and `BRH_TOKEN` when the forge gave one): the fencing
//! token Kleppmann describes, signed by the forge so anyone can check it offline with the
//! forge's public key: `brhlt1:{env}:{holder}:{term}:{expires_at_s}:{ed25519 hex}` over
//! `brh-v1-lease-token\n{env}\n{holder}\n{term}\n{expires_at_s}`. The forge mints one in
//! every answer to the lease holder; a service in front of the containers keeps the highest
//! term it has seen per env and refuses lower ones ([`FencingGate`]), so a deposed leader's
//! writes are refused once its successor's have arrived.
//!
//! **Node tokens** (the original's form, kept for agents whose forge gives no lease token):
//! `brh1:{env}:{subject}:{expires_at_s}:{hex hmac}` where the HMAC, keyed by the minter's
//! secret (the agent uses its node key), covers `brh-v1-token\n{env}\n{subject}\n{expires_at_s}`.
//! Unlike the original's deterministic token that never expired, it names its env and service
//! and carries its own expiry (docs/design.md §6.8).
use alloc::format;
use alloc::string::String;

use crate::decimal::parse_u64;
use crate::ids::validate_id;
use crate::sign::{hmac_hex, verify_hmac_hex};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    pub env: String,
    pub subject: String,
    pub expires_at_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
}

fn signing_string(env: &str, subject: &str, expires_at_s: u64) -> String {
    format!("brh-v1-token\n{env}\n{subject}\n{expires_at_s}")
}

/// Mints a token; `env` and `subject` must be ids (see [`validate_id`]).
pub fn mint(
    seal: &[u8],
    env: &str,
    subject: &str,
    expires_at_s: u64,
) -> Result<String, TokenError> {
    validate_id(env).map_err(|_| TokenError::Malformed)?;
    validate_id(subject).map_err(|_| TokenError::Malformed)?;
    let sig = hmac_hex(seal, signing_string(env, subject, expires_at_s).as_bytes());
    Ok(format!("brh1:{env}:{subject}:{expires_at_s}:{sig}"))
}

/// Verifies signature then expiry (`now_s < expires_at_s`).
pub fn verify(seal: &[u8], token: &str, now_s: u64) -> Result<TokenClaims, TokenError> {
    let mut parts = token.split(':');
    let (Some("brh1"), Some(env), Some(subject), Some(exp), Some(sig), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    let expires_at_s = parse_u64(exp).ok_or(TokenError::Malformed)?;
    if !verify_hmac_hex(
        seal,
        signing_string(env, subject, expires_at_s).as_bytes(),
        sig,
    ) {
        return Err(TokenError::BadSignature);
    }
    if now_s >= expires_at_s {
        return Err(TokenError::Expired);
    }
    Ok(TokenClaims {
        env: env.into(),
        subject: subject.into(),
        expires_at_s,
    })
}

/// How long a lease token is valid: a container keeps the one it was created with, and the
/// term, not the expiry, is what fences a deposed leader.
pub const LEASE_TOKEN_TTL_S: u64 = 3 * 3600;

/// What a lease token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseClaims {
    pub env: String,
    pub holder: String,
    pub term: u64,
    pub expires_at_s: u64,
}

fn lease_string(env: &str, holder: &str, term: u64, expires_at_s: u64) -> String {
    format!("brh-v1-lease-token\n{env}\n{holder}\n{term}\n{expires_at_s}")
}

/// Mints a lease token with the forge key.
pub fn mint_lease(
    forge: &ed25519_dalek::SigningKey,
    env: &str,
    holder: &str,
    term: u64,
    expires_at_s: u64,
) -> Result<String, TokenError> {
    validate_id(env).map_err(|_| TokenError::Malformed)?;
    validate_id(holder).map_err(|_| TokenError::Malformed)?;
    let sig = crate::keys::sign_hex(
        forge,
        lease_string(env, holder, term, expires_at_s).as_bytes(),
    );
    Ok(format!("brhlt1:{env}:{holder}:{term}:{expires_at_s}:{sig}"))
}

/// Verifies a lease token's form, the forge's signature, then expiry (`now_s < expires`).
pub fn verify_lease(
    forge: &ed25519_dalek::VerifyingKey,
    token: &str,
    now_s: u64,
) -> Result<LeaseClaims, TokenError> {
    let mut parts = token.trim().split(':');
    let (Some("brhlt1"), Some(env), Some(holder), Some(term), Some(exp), Some(sig), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    validate_id(env).map_err(|_| TokenError::Malformed)?;
    validate_id(holder).map_err(|_| TokenError::Malformed)?;
    let term = parse_u64(term).ok_or(TokenError::Malformed)?;
    let expires_at_s = parse_u64(exp).ok_or(TokenError::Malformed)?;
    if !crate::keys::verify_hex(
        forge,
        lease_string(env, holder, term, expires_at_s).as_bytes(),
        sig,
    ) {
        return Err(TokenError::BadSignature);
    }
    if now_s >= expires_at_s {
        return Err(TokenError::Expired);
    }
    Ok(LeaseClaims {
        env: env.into(),
        holder: holder.into(),
        term,
        expires_at_s,
    })
}

/// What a downstream service keeps to fence deposed leaders: the highest term seen. A token
/// of a lower term is refused; equal or higher is admitted (and raises the mark).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FencingGate {
    pub highest_term: u64,
}

/// A fenced write: its token's term is below one already seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fenced {
    pub term: u64,
    pub highest_term: u64,
}

impl FencingGate {
    pub fn admit(&mut self, claims: &LeaseClaims) -> Result<(), Fenced> {
        if claims.term < self.highest_term {
            return Err(Fenced {
                term: claims.term,
                highest_term: self.highest_term,
            });
        }
        self.highest_term = claims.term;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_tokens_check_offline_and_fence_lower_terms() {
        let forge = crate::keys::forge_signing_key(b"root");
        let pk = forge.verifying_key();
        let t1 = mint_lease(&forge, "dev", "n1", 1, 100).unwrap();
        let t2 = mint_lease(&forge, "dev", "n2", 2, 100).unwrap();
        assert!(t1.starts_with("brhlt1:dev:n1:1:100:"));
        let c1 = verify_lease(&pk, &t1, 99).unwrap();
        let c2 = verify_lease(&pk, &t2, 99).unwrap();
        assert_eq!((c1.holder.as_str(), c1.term), ("n1", 1));
        assert_eq!(verify_lease(&pk, &t1, 100), Err(TokenError::Expired));
        let other = crate::keys::forge_signing_key(b"other").verifying_key();
        assert_eq!(verify_lease(&other, &t1, 0), Err(TokenError::BadSignature));
        for forged in [
            t1.replace("brhlt1:dev:n1:1:", "brhlt1:dev:n1:3:"),
            t1.replace(":n1:", ":n2:"),
            t1.replace(":100:", ":999:"),
        ] {
            assert_eq!(verify_lease(&pk, &forged, 0), Err(TokenError::BadSignature));
        }
        for bad in [
            "",
            "brhlt1:dev:n1:1:100",
            "brhlt1:dev:n1:01:100:00",
            "brh1:a:b:1:x",
        ] {
            assert_eq!(
                verify_lease(&pk, bad, 0),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
        // The fencing rule: once term 2 was seen, term 1 is refused; 2 again is fine.
        let mut gate = FencingGate::default();
        assert_eq!(gate.admit(&c1), Ok(()));
        assert_eq!(gate.admit(&c2), Ok(()));
        assert_eq!(
            gate.admit(&c1),
            Err(Fenced {
                term: 1,
                highest_term: 2
            })
        );
        assert_eq!(gate.admit(&c2), Ok(()));
    }

    #[test]
    fn mint_verify_expire() {
        let t = mint(b"k", "dev", "api", 100).unwrap();
        assert!(t.starts_with("brh1:dev:api:100:"));
        let c = verify(b"k", &t, 99).unwrap();
        assert_eq!(c.subject, "api");
        assert_eq!(verify(b"k", &t, 100), Err(TokenError::Expired));
        assert_eq!(verify(b"x", &t, 0), Err(TokenError::BadSignature));
        let forged = t.replace(":100:", ":999:");
        assert_eq!(verify(b"k", &forged, 0), Err(TokenError::BadSignature));
        let other = t.replace(":api:", ":web:");
        assert_eq!(verify(b"k", &other, 0), Err(TokenError::BadSignature));
        assert_eq!(verify(b"k", "brh1:a:b:1", 0), Err(TokenError::Malformed));
        assert_eq!(
            verify(b"k", &alloc::format!("{t}:x"), 0),
            Err(TokenError::Malformed)
        );
        assert_eq!(mint(b"k", "a:b", "s", 1), Err(TokenError::Malformed));
    }
}
