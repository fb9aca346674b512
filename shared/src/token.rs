//! Container tokens: what a managed container receives as `BRH_TOKEN`.
//!
//! `brh1:{env}:{subject}:{expires_at_s}:{hex hmac}` where the HMAC, keyed by the seal, covers
//! `brh-v1-token\n{env}\n{subject}\n{expires_at_s}`. The original's token was deterministic
//! and never expired; this one names its env and service and carries its own expiry.
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

#[cfg(test)]
mod tests {
    use super::*;

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
