//! Canonical decimal numbers in signed fields.
//!
//! A signed field must have exactly one spelling: if `0042` and `42` both parsed, one
//! signature would authenticate several distinct header values (and a nonce memory keyed by
//! the text would see two different nonces). So only the canonical form is accepted.

/// `0` or `[1-9][0-9]*`, fitting in a u64. No sign, no spaces, no leading zeros.
pub fn parse_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let canonical = match b {
        [] => false,
        [b'0'] => true,
        [b'0', ..] => false,
        _ => b.len() <= 20 && b.iter().all(u8::is_ascii_digit),
    };
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::parse_u64;

    #[test]
    fn only_the_canonical_spelling() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("278"), Some(278));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "00",
            "0278",
            "0001795495328133",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1e3",
            "0x10",
            "١",
            "18446744073709551616",
            "1,2",
        ] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
    }
}
