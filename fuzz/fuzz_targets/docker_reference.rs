//! `brh_agent::containers::reference::validate` on arbitrary text.
//!
//! Properties:
//! 1. `validate` never panics.
//! 2. An accepted reference is at most 255 bytes of `[A-Za-z0-9._:/@+-]` (nothing a shell, a
//!    URL or a label would need to escape), with at most one `@`.
//! 3. Adding a valid tag to an accepted name without tag or digest, or a digest to an accepted
//!    reference without one, is still accepted (when the result fits in 255 bytes).
#![no_main]

use brh_agent::containers::reference::validate;
use libfuzzer_sys::fuzz_target;

const DIGEST: &str = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let Ok(r) = std::str::from_utf8(data) else {
        return;
    };
    if validate(r).is_err() {
        return;
    }
    assert!(!r.is_empty() && r.len() <= 255);
    assert!(
        r.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._:/@+-".contains(&c)),
        "accepted {r:?}"
    );
    assert!(r.matches('@').count() <= 1);
    if !r.contains('@') {
        if r.len() + DIGEST.len() <= 255 {
            let d = format!("{r}{DIGEST}");
            assert_eq!(validate(&d), Ok(()), "{d:?}");
        }
        let last = &r[r.rfind('/').map_or(0, |i| i + 1)..];
        if !last.contains(':') && r.len() + 7 <= 255 {
            let t = format!("{r}:latest");
            assert_eq!(validate(&t), Ok(()), "{t:?}");
        }
    }
});
