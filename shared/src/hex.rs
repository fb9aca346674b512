//! Lowercase hex, the only encoding signatures use on the wire.
use alloc::string::String;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Encodes bytes as lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    s
}

/// Decodes exactly 64 lowercase hex digits into 32 bytes. Uppercase is refused on purpose:
/// the wire format is lowercase, and accepting two spellings would make signatures malleable.
pub fn decode32(s: &str) -> Option<[u8; 32]> {
    decode_exact(s)
}

/// Decodes exactly 128 lowercase hex digits into 64 bytes (an Ed25519 signature).
pub fn decode64(s: &str) -> Option<[u8; 64]> {
    decode_exact(s)
}

fn decode_exact<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes: [u8; 32] = core::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(decode32(&encode(&bytes)), Some(bytes));
    }

    #[test]
    fn refuses_uppercase_and_wrong_length() {
        let s = encode(&[0xab; 32]);
        assert!(decode32(&s.to_uppercase()).is_none());
        assert!(decode32(&s[..62]).is_none());
        assert!(decode32("zz").is_none());
    }
}
