//! `brh_shared::sign::verify_request` on arbitrary header values and body, plus the request
//! signing round trip and the nonce parser.
//!
//! Input (text, so seeds are readable): seven lines, then the body:
//! `METHOD\nPATH\nnode\nts\nnonce\nsig\nnow_ms skew_ms\nBODY…`. A header line that is exactly
//! `!` (or missing) is an absent header. The seal is `common::SEAL`.
//!
//! Properties:
//! 1. `verify_request` never panics.
//! 2. When it accepts, the header strings are exactly the canonical spellings of what it
//!    returns (one signature authenticates one header set: no leading zeros, no second form).
//! 3. Round trip: a request signed by `sign_request` for this method, path, body and the
//!    fuzzed node/ts/nonce (when they are valid) verifies at its own timestamp with skew 0,
//!    and is refused with any body byte flipped, with a non-canonical timestamp or sequence
//!    spelling, with an uppercase signature, or outside the skew window.
//! 4. A nonce that parses prints back to the same text, and a printed nonce parses back.
#![no_main]

use brh_shared::replay::Nonce;
use brh_shared::sign::{sign_request, verify_request, AuthError, RawAuth};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use common::{lines, mix, SEAL};

fuzz_target!(|data: &[u8]| {
    let (l, body) = lines(data, 7);
    let header = |i: usize| l[i].as_deref().filter(|v| *v != "!");
    let method = l[0].as_deref().unwrap_or("POST");
    let path = l[1].as_deref().unwrap_or("/federation/heartbeat");
    let (node, ts, nonce, sig) = (header(2), header(3), header(4), header(5));
    let mut clock = l[6].as_deref().unwrap_or("").split(' ');
    let now_ms: u64 = clock.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let skew_ms: u64 = clock.next().and_then(|s| s.parse().ok()).unwrap_or(30_000);

    // 1 + 2: arbitrary headers.
    let raw = RawAuth {
        node,
        ts,
        nonce,
        sig,
    };
    if let Ok(a) = verify_request(SEAL, method, path, raw, body, now_ms, skew_ms) {
        assert_eq!(
            Some(a.node.as_str()),
            node,
            "accepted node differs from its header"
        );
        assert_eq!(
            Some(a.ts_ms.to_string().as_str()),
            ts,
            "accepted a non-canonical timestamp spelling"
        );
        assert_eq!(
            Some(a.nonce.to_string().as_str()),
            nonce,
            "accepted a non-canonical nonce spelling"
        );
        assert!(
            a.ts_ms.abs_diff(now_ms) <= skew_ms,
            "accepted outside the skew window"
        );
    }

    // 4: the nonce parser.
    if let Some(text) = nonce {
        if let Ok(n) = text.parse::<Nonce>() {
            assert_eq!(n.to_string(), text, "nonce does not print back to its text");
        }
    }

    // 3: sign → verify round trip with the fuzzed values, where they are valid.
    let node = node
        .filter(|n| brh_shared::ids::validate_id(n).is_ok())
        .unwrap_or("n1");
    let ts_ms: u64 = ts.and_then(|t| t.parse().ok()).unwrap_or(now_ms);
    let n: Nonce = nonce
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| Nonce::new("boot1", mix(data)));
    assert_eq!(
        n.to_string().parse::<Nonce>().as_ref(),
        Ok(&n),
        "printed nonce does not parse"
    );
    let h = sign_request(SEAL, method, path, node, ts_ms, n.clone(), body);
    let (ts_s, nonce_s) = (h.ts_ms.to_string(), h.nonce.to_string());
    let ok = RawAuth {
        node: Some(&h.node),
        ts: Some(&ts_s),
        nonce: Some(&nonce_s),
        sig: Some(&h.sig),
    };
    let verify = |r: RawAuth<'_>, body: &[u8], now: u64, skew: u64| {
        verify_request(SEAL, method, path, r, body, now, skew)
    };
    let a = verify(ok, body, ts_ms, 0).expect("a freshly signed request must verify");
    assert_eq!((a.node.as_str(), a.ts_ms, &a.nonce), (node, ts_ms, &n));

    if !body.is_empty() {
        let m = mix(data);
        let mut flipped = body.to_vec();
        flipped[(m % body.len() as u64) as usize] ^= ((m >> 32) as u8) | 1;
        assert_eq!(
            verify(ok, &flipped, ts_ms, 0),
            Err(AuthError::BadSignature),
            "a flipped body byte still verifies"
        );
    }
    let zero_ts = format!("0{ts_s}");
    assert!(
        verify(
            RawAuth {
                ts: Some(&zero_ts),
                ..ok
            },
            body,
            ts_ms,
            0
        )
        .is_err(),
        "a leading zero on the timestamp still verifies"
    );
    let zero_seq = format!("{}:0{}", n.boot_id, n.seq);
    assert!(
        verify(
            RawAuth {
                nonce: Some(&zero_seq),
                ..ok
            },
            body,
            ts_ms,
            0
        )
        .is_err(),
        "a leading zero on the nonce sequence still verifies"
    );
    let upper = h.sig.to_uppercase();
    assert!(
        verify(
            RawAuth {
                sig: Some(&upper),
                ..ok
            },
            body,
            ts_ms,
            0
        )
        .is_err(),
        "an uppercase signature still verifies"
    );
    if let Some(late) = ts_ms.checked_add(1) {
        assert!(
            matches!(
                verify(ok, body, late, 0),
                Err(AuthError::StaleTimestamp { .. })
            ),
            "a request 1 ms old passed a zero skew window"
        );
    }
    assert!(verify(ok, body, ts_ms.saturating_sub(skew_ms), skew_ms).is_ok());
    assert!(verify(ok, body, ts_ms.saturating_add(skew_ms), skew_ms).is_ok());
});
