//! Operator certificates and credentials (`brh_shared::operator`): `Certificate::parse`,
//! `Credential::parse`, `verify`, and the issue round trip.
//!
//! Input: line 1 a certificate (or credential) text, line 2 an optional `now_s`.
//!
//! Properties:
//! 1. Parsing and verifying never panic.
//! 2. A parsed certificate prints back to exactly its text (one spelling per certificate).
//! 3. A certificate that verifies under the top operator's key was issued by it: re-issuing its
//!    claims for its key gives the same signature; under another federation's key it fails.
//! 4. Issuing the parsed claims round-trips through text, verifies before expiry, is `Expired`
//!    from `expires_s` on, and any widened scope, other env or later expiry breaks it.
#![no_main]

use brh_shared::keys::operator_signing_key;
use brh_shared::operator::{issue_credential, CertError, Certificate, Credential, Scope};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use common::{lines, mix, SEAL};

fuzz_target!(|data: &[u8]| {
    let (l, _) = lines(data, 2);
    let text = l[0].as_deref().unwrap_or("");
    let now: u64 = l[1]
        .as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| mix(data) >> 40);
    let top = operator_signing_key(SEAL);
    let other = operator_signing_key(b"another-seal").verifying_key();
    let _ = Credential::parse(text);
    let Ok(cert) = Certificate::parse(text) else {
        return;
    };
    assert_eq!(cert.to_string(), text.trim(), "a certificate has one spelling");
    if cert.verify(&top.verifying_key(), now).is_ok() {
        let again = Certificate::issue(
            &top,
            &cert.name,
            &cert.env,
            &cert.scopes,
            cert.expires_s,
            cert.key,
        )
        .expect("verified claims can be issued");
        assert_eq!(again.sig, cert.sig, "verified a certificate the top key did not make");
    }
    assert!(cert.verify(&other, now).is_err());

    let seed: [u8; 32] = core::array::from_fn(|i| (mix(data) >> (i % 8)) as u8 ^ i as u8);
    let c = issue_credential(&top, &cert.name, &cert.env, &cert.scopes, cert.expires_s, seed)
        .expect("parsed claims can be issued");
    let back = Credential::parse(&c.to_text()).expect("an issued credential parses");
    assert_eq!(back.cert, c.cert);
    let pk = top.verifying_key();
    if cert.expires_s > 0 {
        assert_eq!(c.cert.verify(&pk, cert.expires_s - 1), Ok(()));
    }
    assert_eq!(c.cert.verify(&pk, cert.expires_s), Err(CertError::Expired));
    let header = c.cert.to_string();
    let widen = |t: String| {
        if t != header {
            if let Ok(t) = Certificate::parse(&t) {
                assert!(t.verify(&pk, 0).is_err(), "tampered certificate verifies: {t}");
            }
        }
    };
    if !c.cert.allows(Scope::Containers) {
        let mut s = c.cert.scopes.clone();
        s.push(Scope::Containers);
        s.sort();
        let txt: Vec<&str> = s.iter().map(|x| x.as_str()).collect();
        let old: Vec<&str> = c.cert.scopes.iter().map(|x| x.as_str()).collect();
        widen(header.replacen(&format!(":{}:", old.join("+")), &format!(":{}:", txt.join("+")), 1));
    }
    widen(header.replacen(&format!(":{}:", c.cert.expires_s), &format!(":{}:", c.cert.expires_s.wrapping_add(1)), 1));
    widen(header.replacen(&format!(":{}:", c.cert.env), ":another-env:", 1));
});
