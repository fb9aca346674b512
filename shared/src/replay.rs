//! Nonces and the per-node replay window.
//!
//! A nonce is `<boot_id>:<seq>`: the agent picks a fresh random `boot_id` at start and
//! increments `seq` on every request. The forge remembers, per node, the last accepted
//! `(boot_id, seq, ts)` and accepts a request only if it moves that mark forward.
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::decimal::parse_u64;

/// `<boot_id>:<seq>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nonce {
    pub boot_id: String,
    pub seq: u64,
}

impl Nonce {
    pub fn new(boot_id: impl Into<String>, seq: u64) -> Self {
        Nonce {
            boot_id: boot_id.into(),
            seq,
        }
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.boot_id, self.seq)
    }
}

/// The nonce is not of the form `<boot_id>:<seq>` with a boot id of 1–64 characters of
/// `[A-Za-z0-9._-]` and a decimal sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadNonce;

impl FromStr for Nonce {
    type Err = BadNonce;
    fn from_str(s: &str) -> Result<Self, BadNonce> {
        let (boot, seq) = s.rsplit_once(':').ok_or(BadNonce)?;
        let boot_ok = !boot.is_empty()
            && boot.len() <= 64
            && boot
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        if !boot_ok {
            return Err(BadNonce);
        }
        Ok(Nonce {
            boot_id: boot.into(),
            seq: parse_u64(seq).ok_or(BadNonce)?,
        })
    }
}

/// The last accepted nonce of one node, with the sender timestamp it came with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceMark {
    pub boot_id: String,
    pub seq: u64,
    pub ts_ms: u64,
    /// Boot ids this node has moved away from (newest last, at most [`RETIRED_BOOTS`]). An
    /// honest agent never goes back to an earlier boot, so their nonces are always replays.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<String>,
}

crate::from_json_struct!(NonceMark {
    boot_id: req,
    seq: req,
    ts_ms: req,
    retired: or_default,
});

/// How many earlier boot ids a [`NonceMark`] remembers.
pub const RETIRED_BOOTS: usize = 8;

/// The request reuses or goes back on an accepted nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay;

impl NonceMark {
    /// Whether `(nonce, ts_ms)` may follow this mark.
    ///
    /// Within one boot the sequence must strictly increase. A different boot id is a restart
    /// of the agent; it is accepted only with a timestamp strictly later than the last one
    /// accepted, so a captured request from an earlier boot cannot be replayed after a newer
    /// boot has spoken (and the skew window already bounds how old it can be).
    pub fn admits(&self, nonce: &Nonce, ts_ms: u64) -> Result<(), Replay> {
        let forward = if nonce.boot_id == self.boot_id {
            nonce.seq > self.seq
        } else {
            ts_ms > self.ts_ms && !self.retired.contains(&nonce.boot_id)
        };
        if forward {
            Ok(())
        } else {
            Err(Replay)
        }
    }

    /// Moves the mark to an admitted nonce. The timestamp kept is the highest seen, so that
    /// a request of an older boot cannot be admitted after a newer boot has spoken even if the
    /// newer boot's later requests carried smaller timestamps.
    pub fn advance(&mut self, nonce: &Nonce, ts_ms: u64) {
        if nonce.boot_id != self.boot_id {
            let old = core::mem::replace(&mut self.boot_id, nonce.boot_id.clone());
            if self.retired.len() == RETIRED_BOOTS {
                self.retired.remove(0);
            }
            self.retired.push(old);
        }
        self.seq = nonce.seq;
        self.ts_ms = self.ts_ms.max(ts_ms);
    }

    pub fn of(nonce: &Nonce, ts_ms: u64) -> Self {
        NonceMark {
            boot_id: nonce.boot_id.clone(),
            seq: nonce.seq,
            ts_ms,
            retired: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn parse_and_display() {
        let n: Nonce = "a1-b2:42".parse().unwrap();
        assert_eq!(n, Nonce::new("a1-b2", 42));
        assert_eq!(n.to_string(), "a1-b2:42");
        for bad in [
            "",
            ":1",
            "a:",
            "a:-1",
            "a:1x",
            "a b:1",
            "a:+1",
            &"x".repeat(65),
        ] {
            assert_eq!(bad.parse::<Nonce>(), Err(BadNonce), "{bad}");
        }
    }

    #[test]
    fn window() {
        let m = NonceMark::of(&Nonce::new("b1", 5), 1000);
        assert_eq!(m.admits(&Nonce::new("b1", 6), 900), Ok(()));
        assert_eq!(m.admits(&Nonce::new("b1", 5), 2000), Err(Replay));
        assert_eq!(m.admits(&Nonce::new("b1", 4), 2000), Err(Replay));
        assert_eq!(m.admits(&Nonce::new("b2", 0), 1001), Ok(()));
        assert_eq!(m.admits(&Nonce::new("b0", 99), 1000), Err(Replay));
        let mut m = m;
        m.advance(&Nonce::new("b1", 6), 500);
        assert_eq!(m.ts_ms, 1000, "the highest timestamp is kept");
        assert_eq!(m.admits(&Nonce::new("b2", 0), 900), Err(Replay));
        m.advance(&Nonce::new("b2", 0), 2000);
        assert_eq!(
            m.admits(&Nonce::new("b1", 99), 3000),
            Err(Replay),
            "retired boot"
        );
    }
}
