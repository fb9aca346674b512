//! Leader views: JSON bytes → `LeaderView` → `verify_view` (a node's HMAC view) and
//! `verify_public_view` (the forge's Ed25519 view), and both signing round trips.
//!
//! Properties:
//! 1. Parsing and `verify_view` never panic.
//! 2. A view `verify_view` accepts has a lease consistent with its `leader` and `term`.
//! 3. After `sign_view`, a consistent view verifies, also after a JSON round trip (which gives
//!    back an equal view); it fails under another seal, with a changed signature, and with any
//!    signed field changed (env, leader, term, lease expiry, issued_at, addressee, role).
#![no_main]

use brh_shared::keys::forge_signing_key;
use brh_shared::sign::{sign_public_view, sign_view, verify_public_view, verify_view};
use brh_shared::wire::{LeaderView, Role, You};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use common::SEAL;

fn consistent(v: &LeaderView) -> bool {
    match (&v.leader, &v.lease) {
        (None, None) => true,
        (Some(l), Some(lease)) => *l == lease.holder && lease.term == v.term,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(view) = serde_json::from_slice::<LeaderView>(data) else {
        return;
    };
    let _ = view.lease_remaining_ms();
    if verify_view(SEAL, &view) {
        assert!(consistent(&view), "verified an inconsistent view");
    }
    let forge = forge_signing_key(SEAL);
    let pk = forge.verifying_key();
    if verify_public_view(&pk, &view) {
        assert!(consistent(&view), "verified an inconsistent public view");
    }
    let mut public = view.clone();
    sign_public_view(&forge, &mut public);
    assert_eq!(verify_public_view(&pk, &public), consistent(&public));
    assert!(!verify_view(SEAL, &public), "a public view passed as a node's view");
    let mut moved = public.clone();
    moved.issued_at_ms ^= 1;
    assert!(!verify_public_view(&pk, &moved), "a tampered public view verifies");
    assert!(!verify_public_view(
        &forge_signing_key(b"another-seal").verifying_key(),
        &public
    ));

    let mut signed = view.clone();
    sign_view(SEAL, &mut signed);
    if !consistent(&signed) {
        assert!(!verify_view(SEAL, &signed), "verified an inconsistent view");
        return;
    }
    assert!(
        verify_view(SEAL, &signed),
        "a freshly signed view does not verify"
    );
    let json = serde_json::to_vec(&signed).expect("a view serializes");
    let back: LeaderView = serde_json::from_slice(&json).expect("a serialized view parses");
    assert_eq!(back, signed, "JSON round trip changed the view");
    assert!(verify_view(SEAL, &back));
    assert!(!verify_view(b"another-seal", &signed));

    let refused = |what: &str, f: &dyn Fn(&mut LeaderView)| {
        let mut t = signed.clone();
        f(&mut t);
        if t != signed {
            assert!(!verify_view(SEAL, &t), "tampered {what} still verifies");
        }
    };
    refused("sig", &|t| {
        // Change one hex digit.
        let mut b = t.sig.clone().into_bytes();
        b[0] = if b[0] == b'0' { b'1' } else { b'0' };
        t.sig = String::from_utf8(b).unwrap();
    });
    refused("env", &|t| t.env.push('x'));
    refused("issued_at_ms", &|t| t.issued_at_ms ^= 1);
    refused("term", &|t| {
        t.term ^= 1;
        if let Some(l) = &mut t.lease {
            l.term = t.term;
        }
    });
    refused("lease expiry", &|t| {
        if let Some(l) = &mut t.lease {
            l.expires_at_ms ^= 1;
        }
    });
    refused("leader", &|t| {
        if let (Some(leader), Some(l)) = (&mut t.leader, &mut t.lease) {
            leader.push('x');
            l.holder.push('x');
        }
    });
    refused("addressee", &|t| match &mut t.you {
        Some(y) => y.node.push('x'),
        None => {
            t.you = Some(You {
                node: "n1".into(),
                role: Role::Witness,
            })
        }
    });
    refused("role", &|t| {
        if let Some(y) = &mut t.you {
            y.role = match y.role {
                Role::Leader => Role::Witness,
                Role::Witness => Role::Leader,
            };
        }
    });
});
