//! Helpers shared by the fuzz targets (included with `#[path]`, not a crate).
#![allow(dead_code)]

/// The seal every target signs and verifies with: the one of shared/src/sign.rs's tests, so
/// the seed corpus can hold that file's real test vectors.
pub const SEAL: &[u8] = b"test-seal";

/// Splits `data` into `n` lines at `\n`, then the rest (which may hold more newlines).
/// Missing lines are `None`. Lines are decoded lossily, so any input reaches the code under
/// test.
pub fn lines(data: &[u8], n: usize) -> (Vec<Option<String>>, &[u8]) {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    for _ in 0..n {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                out.push(Some(String::from_utf8_lossy(&rest[..i]).into_owned()));
                rest = &rest[i + 1..];
            }
            None if !rest.is_empty() => {
                out.push(Some(String::from_utf8_lossy(rest).into_owned()));
                rest = &[];
            }
            None => out.push(None),
        }
    }
    (out, rest)
}

/// A cheap deterministic mix of the input, to pick positions and values from it.
pub fn mix(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}
