//! The beat schedule: when the next heartbeat is due — at the interval, retries backed off
//! with jitter, a witness's probe just after the current lease ends, and a nudge's early beat.
use super::RoleState;

/// How long after the (upper bound of the) lease's end a witness probes the forge.
pub const PROBE_SLACK_MS: u64 = 5;

/// First retry delay after a failed heartbeat; doubles per failure, capped at the interval.
pub const RETRY_BASE_MS: u64 = 100;

/// Least time between a heartbeat and one brought forward by a nudge. Nudges carry no
/// credential (anyone who reaches the API can send one), so this bounds what a flood can
/// cost: at most four extra beats a second per agent. A successor on the stream learns of a
/// handover from the forge's push, not from a nudge.
pub const NUDGE_GAP_MS: u64 = 250;

impl RoleState {
    /// A peer announced that it resigned: beat early to pick the lease up. The early beat
    /// keeps [`NUDGE_GAP_MS`] after the previous attempt and a nudge counts once, so nudges
    /// cannot make an agent flood the forge.
    pub fn nudge(&mut self) {
        if !self.stopped {
            self.nudged = true;
        }
    }

    /// When to send the next heartbeat. `jitter_permille` (0..1000, random) spreads retries.
    pub(super) fn next_beat_at(&self, now_ms: u64, jitter_permille: u64) -> u64 {
        let interval = self.timing.heartbeat_interval_ms;
        let Some(last) = self.last_attempt_ms else {
            return now_ms;
        };
        if self.failures > 0 {
            // Exponential backoff with ±20 % jitter, capped at the interval: a leader keeps
            // several chances to renew before its deadline (ttl ≥ 3 × interval).
            let exp = self.failures.saturating_sub(1).min(20);
            let backoff = RETRY_BASE_MS.saturating_mul(1 << exp).min(interval);
            let jitter = 800 + jitter_permille.min(999) * 400 / 1000;
            return last.saturating_add(backoff * jitter / 1000);
        }
        let regular = last.saturating_add(interval);
        let planned = match self.other_expiry_ms {
            // Reach the forge just after the current lease ends, but never beat more than
            // ten times an interval while waiting for it.
            Some(exp) => regular.min(
                exp.saturating_add(PROBE_SLACK_MS)
                    .max(last.saturating_add(interval / 10)),
            ),
            None => regular,
        };
        if self.nudged {
            // The forge granted the lease when the peer resigned; this beat is what tells
            // us. Waiting a tenth of an interval here was most of a planned handover.
            planned.min(last.saturating_add(NUDGE_GAP_MS))
        } else {
            planned
        }
    }
}
