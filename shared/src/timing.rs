//! Heartbeat and lease timing, and the rule that keeps them safe together.
use serde::{Deserialize, Serialize};

/// How often agents heartbeat and how long a lease lasts.
///
/// The rule, in the spirit of Kubernetes' `LeaseDuration > RenewDeadline > 1.2 × RetryPeriod`
/// and Patroni's `loop_wait + 2 × retry_timeout ≤ ttl`: the lease must outlive at least three
/// heartbeat intervals, so a leader can lose two beats in a row and still renew in time; and
/// the agent stops acting a safety margin before its lease ends, to absorb clock-rate drift
/// between its monotonic clock and the forge's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    pub heartbeat_interval_ms: u64,
    pub lease_ttl_ms: u64,
}

/// Why a timing configuration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimingError {
    HeartbeatTooShort { min_ms: u64 },
    LeaseTooShort { min_ms: u64 },
    LeaseTooLong { max_ms: u64 },
}

impl core::fmt::Display for TimingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TimingError::HeartbeatTooShort { min_ms } => {
                write!(f, "heartbeat interval must be at least {min_ms} ms")
            }
            TimingError::LeaseTooShort { min_ms } => write!(
                f,
                "lease ttl must be at least 3 x heartbeat interval ({min_ms} ms)"
            ),
            TimingError::LeaseTooLong { max_ms } => {
                write!(f, "lease ttl must be at most {max_ms} ms")
            }
        }
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing::DEFAULT
    }
}

impl Timing {
    /// Heartbeat 5 s, lease 15 s.
    pub const DEFAULT: Timing = Timing {
        heartbeat_interval_ms: 5_000,
        lease_ttl_ms: 15_000,
    };
    /// Heartbeat 1 s, lease 3 s: for a local network.
    pub const FAST: Timing = Timing {
        heartbeat_interval_ms: 1_000,
        lease_ttl_ms: 3_000,
    };

    pub const MIN_HEARTBEAT_MS: u64 = 100;
    pub const MAX_LEASE_MS: u64 = 24 * 3600 * 1000;

    pub fn validate(&self) -> Result<(), TimingError> {
        if self.heartbeat_interval_ms < Self::MIN_HEARTBEAT_MS {
            return Err(TimingError::HeartbeatTooShort {
                min_ms: Self::MIN_HEARTBEAT_MS,
            });
        }
        let min = self.heartbeat_interval_ms.saturating_mul(3);
        if self.lease_ttl_ms < min {
            return Err(TimingError::LeaseTooShort { min_ms: min });
        }
        if self.lease_ttl_ms > Self::MAX_LEASE_MS {
            return Err(TimingError::LeaseTooLong {
                max_ms: Self::MAX_LEASE_MS,
            });
        }
        Ok(())
    }

    /// How long before the lease's end an agent stops acting as leader: a tenth of the ttl
    /// (1.5 s by default). Clock-rate drift between two quartz clocks is parts per million, so
    /// this is generous; it also covers scheduling delay between the deadline check and an
    /// action.
    pub fn safety_margin_ms(&self) -> u64 {
        self.lease_ttl_ms / 10
    }

    /// How long after its last heartbeat a peer counts as dead.
    pub fn peer_dead_after_ms(&self) -> u64 {
        self.lease_ttl_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_valid() {
        assert_eq!(Timing::DEFAULT.validate(), Ok(()));
        assert_eq!(Timing::FAST.validate(), Ok(()));
        assert_eq!(Timing::DEFAULT.safety_margin_ms(), 1_500);
    }

    #[test]
    fn rule() {
        let t = Timing {
            heartbeat_interval_ms: 5_000,
            lease_ttl_ms: 14_999,
        };
        assert_eq!(
            t.validate(),
            Err(TimingError::LeaseTooShort { min_ms: 15_000 })
        );
        let t = Timing {
            heartbeat_interval_ms: 50,
            lease_ttl_ms: 1_000,
        };
        assert!(matches!(
            t.validate(),
            Err(TimingError::HeartbeatTooShort { .. })
        ));
        let t = Timing {
            heartbeat_interval_ms: u64::MAX,
            lease_ttl_ms: u64::MAX,
        };
        assert!(t.validate().is_err());
    }
}
