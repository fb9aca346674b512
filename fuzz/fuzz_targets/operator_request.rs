//! The parsers and verifiers of revocation (docs/design.md §8.6): `keys::parse_node_credential`
//! (`BRH_NODE_KEY`), `sign::parse_key_gen` (`x-brh-key-gen`) and
//! `operator::verify_request` (an operator's Ed25519-signed request, the forge's
//! `POST /federation/revoke`), on arbitrary input.
//!
//! Input (text): five lines, then the body: `credential\nkey_gen\nnode ts nonce\nsig\ncert\nBODY…`
//! (`!` = an absent header).
//!
//! Properties:
//! 1. Nothing panics.
//! 2. One spelling: an accepted node credential formats back to its (trimmed) text, and an
//!    accepted key generation prints back to its header.
//! 3. An operator request verifies only when signed by the top operator key (or a certificate
//!    it signed that names the caller): a request signed with a node key (HMAC) never does;
//!    the round trip of a real signature verifies, and with one body byte flipped it does not.
#![no_main]

use brh_shared::keys::{format_node_credential, operator_signing_key, parse_node_credential};
use brh_shared::operator::verify_request;
use brh_shared::replay::Nonce;
use brh_shared::sign::{canonical_for, parse_key_gen, Audience, RawAuth};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use common::{lines, SEAL};

fuzz_target!(|data: &[u8]| {
    let (l, body) = lines(data, 5);
    let field = |i: usize| l[i].as_deref().filter(|v| *v != "!");

    if let Some(text) = field(0) {
        if let Some((g, key)) = parse_node_credential(text) {
            assert_eq!(format_node_credential(g, &key), text.trim(), "two spellings");
        }
    }
    if let Ok(g) = parse_key_gen(field(1)) {
        match field(1) {
            None => assert_eq!(g, 0),
            Some(v) => assert_eq!(g.to_string(), v, "a non-canonical key generation"),
        }
    }

    let top = operator_signing_key(SEAL);
    let public = top.verifying_key();
    let mut parts = field(2).unwrap_or("").splitn(3, ' ');
    let (node, ts, nonce) = (parts.next(), parts.next(), parts.next());
    let raw = RawAuth {
        node,
        ts,
        nonce,
        sig: field(3),
    };
    let now = ts.and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    let path = "/federation/revoke";
    let verdict = verify_request(
        &public,
        Audience::Forge,
        "POST",
        path,
        raw,
        field(4),
        body,
        now,
        30_000,
    );
    if let (Ok(_), Some(sig)) = (&verdict, field(3)) {
        assert_eq!(sig.len(), 128, "accepted a signature that is no Ed25519 one");
    }

    // Round trip with valid header values: the top operator's signature verifies; a node's
    // HMAC of the same string, or a flipped body byte, does not.
    let (Some(node), Some(Ok(ts)), Some(Ok(nonce))) = (
        node,
        ts.map(str::parse::<u64>),
        nonce.map(str::parse::<Nonce>),
    ) else {
        return;
    };
    if brh_shared::ids::validate_id(node).is_err() {
        return;
    }
    let msg = canonical_for(Audience::Forge, "POST", path, node, ts, &nonce, body);
    let (ts_s, nonce_s) = (ts.to_string(), nonce.to_string());
    let check = |sig: &str, body: &[u8]| {
        let raw = RawAuth {
            node: Some(node),
            ts: Some(&ts_s),
            nonce: Some(&nonce_s),
            sig: Some(sig),
        };
        verify_request(&public, Audience::Forge, "POST", path, raw, None, body, ts, 0)
    };
    let good = brh_shared::keys::sign_hex(&top, msg.as_bytes());
    assert!(check(&good, body).is_ok(), "the top operator's signature refused");
    let hmac = brh_shared::sign::hmac_hex(
        &brh_shared::keys::node_key(SEAL, "dev", node),
        msg.as_bytes(),
    );
    assert!(check(&hmac, body).is_err(), "a node key signed an operator request");
    if !body.is_empty() {
        let mut flipped = body.to_vec();
        flipped[0] ^= 1;
        assert!(check(&good, &flipped).is_err(), "a changed body still verifies");
    }
});
