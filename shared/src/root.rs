//! The dominion root URI: `dominion://host[:port]?env=<env>&epoch=<unix s>&sig=<hex>`.
//!
//! The signature covers `"{scheme}://{host[:port]}|{env}|{epoch}"`. A root is signed by the
//! forge key (Ed25519, 128 hex digits), so a host, which holds only the forge's public key,
//! can check a root and cannot make one. The original's form (64 hex digits, HMAC-SHA256
//! keyed by the seal) is still read, and checked only by a holder of the seal
//! ([`RootKey::Seal`]). `dominion://` means HTTPS to the
//! host; `dominion+http://` is the explicit plain-HTTP form for a local forge (its scheme is
//! part of the signed string, so a signed HTTPS root cannot be downgraded).
use alloc::format;
use alloc::string::String;
use core::fmt;

use crate::decimal::parse_u64;
use crate::ids::validate_id;
use crate::sign::{hmac_hex, verify_hmac_hex};

/// What a root's signature is checked with.
#[derive(Debug, Clone, Copy)]
pub enum RootKey<'a> {
    /// The forge's public key: roots signed by the forge (128 hex digits).
    Forge(&'a ed25519_dalek::VerifyingKey),
    /// The seal: also accepts the original's HMAC form (64 hex digits). Only the forge and the
    /// operator hold it.
    Seal(&'a [u8]),
}

pub const SCHEME_HTTPS: &str = "dominion";
pub const SCHEME_HTTP: &str = "dominion+http";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DominionRoot {
    pub scheme: String,
    /// `host[:port]`.
    pub authority: String,
    pub env: String,
    pub epoch: u64,
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootError {
    Malformed(String),
    BadSignature,
    EpochSkew { delta_s: i64, allowed_s: u64 },
}

impl fmt::Display for RootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootError::Malformed(m) => write!(f, "malformed dominion root: {m}"),
            RootError::BadSignature => f.write_str("dominion root signature invalid"),
            RootError::EpochSkew { delta_s, allowed_s } => write!(
                f,
                "dominion root epoch skew too large (delta={delta_s}s, allowed={allowed_s}s)"
            ),
        }
    }
}

fn bad(m: &str) -> RootError {
    RootError::Malformed(m.into())
}

/// Decodes `%XX` and `+` (as a space, like the original's `parse_qs`).
fn percent_decode(s: &str) -> Result<String, RootError> {
    let b = s.as_bytes();
    let mut out = alloc::vec::Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3).ok_or_else(|| bad("bad %-escape"))?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad("bad %-escape"))?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad("query is not UTF-8"))
}

impl DominionRoot {
    /// The string whose HMAC is the root's signature.
    pub fn signing_string(scheme: &str, authority: &str, env: &str, epoch: u64) -> String {
        format!("{scheme}://{authority}|{env}|{epoch}")
    }

    /// Makes a root signed by the forge key (what `brh-agent root generate` prints).
    pub fn sign(
        forge: &ed25519_dalek::SigningKey,
        scheme: &str,
        authority: &str,
        env: &str,
        epoch: u64,
    ) -> Result<Self, RootError> {
        Self::signed_with(scheme, authority, env, epoch, |msg| {
            crate::keys::sign_hex(forge, msg)
        })
    }

    /// Makes a root in the original's form: HMAC-SHA256 keyed by the seal.
    pub fn sign_legacy(
        seal: &[u8],
        scheme: &str,
        authority: &str,
        env: &str,
        epoch: u64,
    ) -> Result<Self, RootError> {
        Self::signed_with(scheme, authority, env, epoch, |msg| hmac_hex(seal, msg))
    }

    fn signed_with(
        scheme: &str,
        authority: &str,
        env: &str,
        epoch: u64,
        sign: impl FnOnce(&[u8]) -> String,
    ) -> Result<Self, RootError> {
        let mut root = DominionRoot {
            scheme: scheme.into(),
            authority: authority.into(),
            env: env.into(),
            epoch,
            sig: String::new(),
        };
        root.check_parts()?;
        root.sig = sign(Self::signing_string(scheme, authority, env, epoch).as_bytes());
        Ok(root)
    }

    /// Whether the root is in the original's form (an HMAC under the seal).
    pub fn is_legacy(&self) -> bool {
        self.sig.len() == 64
    }

    fn check_parts(&self) -> Result<(), RootError> {
        if self.scheme != SCHEME_HTTPS && self.scheme != SCHEME_HTTP {
            return Err(bad("scheme must be dominion:// or dominion+http://"));
        }
        let a = &self.authority;
        if a.is_empty()
            || a.len() > 255
            || !a
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']'))
        {
            return Err(bad("host must be host[:port]"));
        }
        validate_id(&self.env).map_err(|e| RootError::Malformed(format!("env {e}")))
    }

    /// Parses a root. A path other than `/` is refused (the original silently dropped it).
    pub fn parse(s: &str) -> Result<Self, RootError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("no scheme://"))?;
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = before_query.strip_suffix('/').unwrap_or(before_query);
        if authority.contains('/') {
            return Err(bad("a path is not allowed after the host"));
        }
        let (mut env, mut epoch, mut sig) = (None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v)?;
            // First value wins, like parse_qs(...)[k][0].
            match k {
                "env" if env.is_none() => env = Some(v),
                "epoch" if epoch.is_none() => epoch = Some(v),
                "sig" if sig.is_none() => sig = Some(v),
                _ => {}
            }
        }
        let env = env.ok_or_else(|| bad("missing env="))?;
        let epoch = epoch.ok_or_else(|| bad("missing epoch="))?;
        let epoch = parse_u64(&epoch).ok_or_else(|| bad("epoch must be unix seconds"))?;
        let sig = sig.ok_or_else(|| bad("missing sig="))?;
        // Only a form that can verify, so a parsed root prints back as itself (a `+` or a
        // space in a free-form sig would not survive Display → parse).
        if !matches!(sig.len(), 64 | 128)
            || !sig.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad(
                "sig must be 128 lowercase hex digits (or 64 in the original's form)",
            ));
        }
        let root = DominionRoot {
            scheme: scheme.into(),
            authority: authority.into(),
            env,
            epoch,
            sig,
        };
        root.check_parts()?;
        Ok(root)
    }

    /// Checks the signature, then that the epoch is not more than `future_skew_s` ahead of
    /// `now_s` and, when `max_age_s` is set, not older than that.
    pub fn verify(
        &self,
        key: RootKey<'_>,
        now_s: u64,
        future_skew_s: u64,
        max_age_s: Option<u64>,
    ) -> Result<(), RootError> {
        let msg = Self::signing_string(&self.scheme, &self.authority, &self.env, self.epoch);
        let ok = match key {
            RootKey::Forge(pk) => crate::keys::verify_hex(pk, msg.as_bytes(), &self.sig),
            RootKey::Seal(seal) if self.is_legacy() => {
                verify_hmac_hex(seal, msg.as_bytes(), &self.sig)
            }
            RootKey::Seal(seal) => crate::keys::verify_hex(
                &crate::keys::forge_signing_key(seal).verifying_key(),
                msg.as_bytes(),
                &self.sig,
            ),
        };
        if !ok {
            return Err(RootError::BadSignature);
        }
        let delta = self.epoch as i128 - now_s as i128;
        let clamp = |d: i128| d.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        if delta > future_skew_s as i128 {
            return Err(RootError::EpochSkew {
                delta_s: clamp(delta),
                allowed_s: future_skew_s,
            });
        }
        if let Some(max_age) = max_age_s {
            if -delta > max_age as i128 {
                return Err(RootError::EpochSkew {
                    delta_s: clamp(delta),
                    allowed_s: max_age,
                });
            }
        }
        Ok(())
    }

    /// The forge's base URL: `https://host` for `dominion://`, `http://host` for
    /// `dominion+http://`. Paths are appended to this, never after a query string.
    pub fn forge_base_url(&self) -> String {
        let proto = if self.scheme == SCHEME_HTTP {
            "http"
        } else {
            "https"
        };
        format!("{proto}://{}", self.authority)
    }
}

impl fmt::Display for DominionRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}?env={}&epoch={}&sig={}",
            self.scheme, self.authority, self.env, self.epoch, self.sig
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    // printf 'dominion://sovereign.bridge|dev|1700000000' | openssl dgst -sha256 -hmac test-seal
    const ORIGINAL_VECTOR: &str =
        "02caf100e40d1bae4eb5f1014d86b583f63d0bef1443d84f1a86274f999926aa";

    #[test]
    fn compatible_with_original_signature() {
        let r = DominionRoot::sign_legacy(
            b"test-seal",
            "dominion",
            "sovereign.bridge",
            "dev",
            1_700_000_000,
        )
        .unwrap();
        assert_eq!(r.sig, ORIGINAL_VECTOR);
        let text = r.to_string();
        assert_eq!(
            text,
            alloc::format!(
                "dominion://sovereign.bridge?env=dev&epoch=1700000000&sig={ORIGINAL_VECTOR}"
            )
        );
        let parsed = DominionRoot::parse(&text).unwrap();
        assert_eq!(parsed, r);
        assert_eq!(
            parsed.verify(RootKey::Seal(b"test-seal"), 1_700_000_000, 300, None),
            Ok(())
        );
        assert_eq!(parsed.forge_base_url(), "https://sovereign.bridge");
        // The original's form proves nothing to a host: only the seal checks it.
        let pk = crate::keys::forge_signing_key(b"test-seal").verifying_key();
        assert_eq!(
            parsed.verify(RootKey::Forge(&pk), 1_700_000_000, 300, None),
            Err(RootError::BadSignature)
        );
    }

    fn sk(k: &[u8]) -> ed25519_dalek::SigningKey {
        crate::keys::forge_signing_key(k)
    }

    #[test]
    fn forge_signed_root_checks_with_the_public_key_only() {
        let r = DominionRoot::sign(&sk(b"k"), SCHEME_HTTP, "127.0.0.1:8787", "dev", 10).unwrap();
        assert_eq!(r.sig.len(), 128);
        let p = DominionRoot::parse(&r.to_string()).unwrap();
        assert_eq!(p, r);
        let pk = sk(b"k").verifying_key();
        assert_eq!(p.verify(RootKey::Forge(&pk), 10, 0, None), Ok(()));
        assert_eq!(p.verify(RootKey::Seal(b"k"), 10, 0, None), Ok(()));
        let other = sk(b"other").verifying_key();
        assert_eq!(
            p.verify(RootKey::Forge(&other), 10, 0, None),
            Err(RootError::BadSignature)
        );
    }

    #[test]
    fn plain_http_form_and_port() {
        let r = DominionRoot::sign(&sk(b"k"), SCHEME_HTTP, "127.0.0.1:8787", "dev", 10).unwrap();
        let p = DominionRoot::parse(&r.to_string()).unwrap();
        assert_eq!(p.forge_base_url(), "http://127.0.0.1:8787");
        assert_eq!(p.verify(RootKey::Seal(b"k"), 10, 0, None), Ok(()));
        // The scheme is signed: rewriting https to http breaks the signature.
        let mut down = DominionRoot::sign(&sk(b"k"), SCHEME_HTTPS, "h", "dev", 10).unwrap();
        down.scheme = SCHEME_HTTP.into();
        assert_eq!(
            down.verify(RootKey::Seal(b"k"), 10, 0, None),
            Err(RootError::BadSignature)
        );
    }

    #[test]
    fn epoch_window() {
        let r = DominionRoot::sign(&sk(b"k"), "dominion", "h", "dev", 1000).unwrap();
        assert!(r.verify(RootKey::Seal(b"k"), 700, 300, None).is_ok());
        assert_eq!(
            r.verify(RootKey::Seal(b"k"), 699, 300, None),
            Err(RootError::EpochSkew {
                delta_s: 301,
                allowed_s: 300
            })
        );
        assert!(r.verify(RootKey::Seal(b"k"), 1_000_000, 300, None).is_ok());
        assert!(r.verify(RootKey::Seal(b"k"), 4600, 300, Some(3600)).is_ok());
        assert!(r
            .verify(RootKey::Seal(b"k"), 4601, 300, Some(3600))
            .is_err());
    }

    #[test]
    fn tampering_and_malformed() {
        let r = DominionRoot::sign(&sk(b"k"), "dominion", "h", "dev", 5).unwrap();
        for (field, t) in [
            (
                "env",
                DominionRoot {
                    env: "prod".into(),
                    ..r.clone()
                },
            ),
            (
                "epoch",
                DominionRoot {
                    epoch: 6,
                    ..r.clone()
                },
            ),
            (
                "host",
                DominionRoot {
                    authority: "g".into(),
                    ..r.clone()
                },
            ),
        ] {
            assert_eq!(
                t.verify(RootKey::Seal(b"k"), 5, 0, None),
                Err(RootError::BadSignature),
                "{field}"
            );
        }
        for bad in [
            "",
            "https://h?env=dev&epoch=1&sig=x",
            "dominion://h/path?env=dev&epoch=1&sig=x",
            "dominion://h?epoch=1&sig=x",
            "dominion://h?env=dev&epoch=x&sig=x",
            "dominion://h?env=dev&epoch=1",
            "dominion://?env=dev&epoch=1&sig=x",
            "dominion://h?env=a%2&epoch=1&sig=x",
        ] {
            assert!(DominionRoot::parse(bad).is_err(), "{bad}");
        }
        let hex = "ab".repeat(32);
        let p = DominionRoot::parse(&format!(
            "dominion://h/?env=dev&epoch=1&sig={hex}&env=other"
        ))
        .unwrap();
        assert_eq!(p.env, "dev");
        // A sig that cannot verify is refused at parse, so a parsed root prints back as itself.
        for sig in ["x", "%2b+x", " ", &hex.to_uppercase()] {
            let r = format!("dominion://h?env=dev&epoch=1&sig={sig}");
            assert!(DominionRoot::parse(&r).is_err(), "{r}");
        }
        let s = p.to_string();
        assert_eq!(DominionRoot::parse(&s).unwrap(), p);
    }
}
