//! The one MAC primitive: HMAC-SHA256. Key derivation (`keys`) and request signing (`sign`)
//! both build on it, so it sits below both.
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `msg` keyed by `key`, as 32 raw bytes.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // `new_from_slice` accepts keys of any length for HMAC; it cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}
