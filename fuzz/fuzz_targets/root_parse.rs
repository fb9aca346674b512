//! Dominion roots: `DominionRoot::parse(&str)`, `verify`, `Display`, and the sign round trip.
//!
//! Properties:
//! 1. `parse`, `verify`, `forge_base_url` and `Display` never panic.
//! 2. Every parsed root prints (`Display`) to a string that parses back to an equal root.
//!    (Once found false: `parse` kept any `sig` text and `Display` did not re-escape it; now
//!    `parse` accepts only 64 lowercase hex. Inputs in fuzz/regressions/root_parse/.)
//! 3. Re-signing the parsed parts (with the forge key, and in the original's HMAC form) gives
//!    a root that prints, parses back equal and verifies at its own epoch — with the forge's
//!    public key and with the seal, never with another federation's key; verification at the
//!    root's own epoch never reports epoch skew.
#![no_main]

use brh_shared::keys::forge_signing_key;
use brh_shared::root::{DominionRoot, RootError, RootKey};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use common::{mix, SEAL};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(root) = DominionRoot::parse(text) else {
        return;
    };
    let _ = root.forge_base_url();
    let printed = root.to_string();
    let now = mix(data);
    let forge = forge_signing_key(SEAL);
    let pk = forge.verifying_key();
    let _ = root.verify(RootKey::Seal(SEAL), now, now >> 48, Some(now >> 40));
    let _ = root.verify(RootKey::Forge(&pk), now, now >> 48, Some(now >> 40));

    let at_epoch = root.verify(RootKey::Forge(&pk), root.epoch, 0, Some(0));
    assert!(
        matches!(at_epoch, Ok(()) | Err(RootError::BadSignature)),
        "epoch skew at the root's own epoch: {at_epoch:?}"
    );
    assert_eq!(
        DominionRoot::parse(&printed).as_ref(),
        Ok(&root),
        "a parsed root does not re-parse from its Display form {printed:?}"
    );

    let other = forge_signing_key(b"another-seal").verifying_key();
    for resigned in [
        DominionRoot::sign(&forge, &root.scheme, &root.authority, &root.env, root.epoch),
        DominionRoot::sign_legacy(SEAL, &root.scheme, &root.authority, &root.env, root.epoch),
    ] {
        let resigned = resigned.expect("the parts of a parsed root can be signed");
        let again = DominionRoot::parse(&resigned.to_string()).expect("a signed root re-parses");
        assert_eq!(again, resigned);
        assert_eq!(again.verify(RootKey::Seal(SEAL), root.epoch, 0, Some(0)), Ok(()));
        // Only the forge's own roots check with its public key; the HMAC form never does.
        let by_key = again.verify(RootKey::Forge(&pk), root.epoch, 0, Some(0));
        assert_eq!(by_key.is_ok(), !again.is_legacy(), "{by_key:?}");
        assert_eq!(
            again.verify(RootKey::Seal(b"another-seal"), root.epoch, 0, None),
            Err(RootError::BadSignature)
        );
        assert_eq!(
            again.verify(RootKey::Forge(&other), root.epoch, 0, None),
            Err(RootError::BadSignature)
        );
    }
});
