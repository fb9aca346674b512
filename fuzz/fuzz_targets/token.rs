//! Container tokens (`brh1:{env}:{subject}:{exp}:{sig}`): `token::verify` on arbitrary text and
//! the mint round trip.
//!
//! Input: line 1 is the token (also split as `env:subject:exp` for the mint round trip),
//! line 2 an optional `now_s`.
//!
//! Properties:
//! 1. `verify` never panics.
//! 2. A token that verifies is exactly what `mint` makes for its claims (one spelling per
//!    token) and `now_s < expires_at_s`.
//! 3. `mint` of valid ids verifies before expiry and is `Expired` from `expires_at_s` on.
//! 4. Lease tokens (`brhlt1:…`, Ed25519 under the forge key): `verify_lease` never panics; a
//!    token it accepts is exactly what `mint_lease` makes for its claims; a minted one
//!    verifies before expiry, not under another forge's key, and fences lower terms.
#![no_main]

use brh_shared::keys::forge_signing_key;
use brh_shared::token::{mint, mint_lease, verify, verify_lease, FencingGate, TokenError};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use common::{lines, SEAL};

fuzz_target!(|data: &[u8]| {
    let (l, _) = lines(data, 2);
    let text = l[0].clone().unwrap_or_default();
    let now_s: u64 = l[1].as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);

    if let Ok(c) = verify(SEAL, &text, now_s) {
        assert!(now_s < c.expires_at_s);
        assert_eq!(
            mint(SEAL, &c.env, &c.subject, c.expires_at_s).as_deref(),
            Ok(text.as_str()),
            "a verified token is not the minted spelling of its claims"
        );
    }

    let mut parts = text.trim_start_matches("brh1:").splitn(3, ':');
    let env = parts.next().unwrap_or("");
    let subject = parts.next().unwrap_or("");
    let exp: u64 = parts
        .next()
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    if let Ok(t) = mint(SEAL, env, subject, exp) {
        if exp > 0 {
            let c = verify(SEAL, &t, exp - 1).expect("a minted token verifies before expiry");
            assert_eq!(
                (c.env.as_str(), c.subject.as_str(), c.expires_at_s),
                (env, subject, exp)
            );
        }
        assert_eq!(verify(SEAL, &t, exp), Err(TokenError::Expired));
        assert_eq!(
            verify(b"another-seal", &t, 0),
            Err(TokenError::BadSignature)
        );
    }

    let forge = forge_signing_key(SEAL);
    let pk = forge.verifying_key();
    if let Ok(c) = verify_lease(&pk, &text, now_s) {
        assert!(now_s < c.expires_at_s);
        assert_eq!(
            mint_lease(&forge, &c.env, &c.holder, c.term, c.expires_at_s).as_deref(),
            Ok(text.trim()),
            "a verified lease token is not the minted spelling of its claims"
        );
    }
    let term = exp ^ now_s;
    if let Ok(t) = mint_lease(&forge, env, subject, term, exp) {
        if exp > 0 {
            let c = verify_lease(&pk, &t, exp - 1).expect("a minted lease token verifies");
            assert_eq!((c.env.as_str(), c.holder.as_str(), c.term), (env, subject, term));
            let mut gate = FencingGate::default();
            assert!(gate.admit(&c).is_ok());
            if term > 0 {
                let mut lower = c.clone();
                lower.term = term - 1;
                assert!(gate.admit(&lower).is_err(), "a lower term passed the gate");
            }
        }
        assert_eq!(verify_lease(&pk, &t, exp), Err(TokenError::Expired));
        let other = forge_signing_key(b"another-seal").verifying_key();
        assert_eq!(verify_lease(&other, &t, 0), Err(TokenError::BadSignature));
    }
});
