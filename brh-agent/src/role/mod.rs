//! Role keeping, sans-IO (docs/design.md §4.4, the agent's side).
//!
//! [`RoleState`] is fed with monotonic milliseconds and *verified* leader views and returns
//! decisions: role transitions, the guard's answer, and when to send the next heartbeat. It
//! never reads a clock and never does I/O, so every rule below is unit- and property-tested;
//! `keeper.rs` only moves bytes and time into it.
//!
//! The rules (Patroni's: stand down before the lease can pass to someone else):
//! - A grant is measured from the moment the renewing heartbeat was **sent**, on the agent's
//!   own monotonic clock: `deadline = sent_at + (expires_at − issued_at) − margin`. The forge
//!   received the request after `sent_at`, so its lease cannot end before our deadline
//!   (up to clock-rate drift, which the margin absorbs).
//! - At the deadline the agent is a witness, whatever the forge later says. A later fresh
//!   grant starts a new leadership interval; a late answer never extends the old one.
//! - The guard checks role, term and deadline against the current time on every call, so a
//!   process that was paused past its deadline refuses before it has learnt anything new.
//! - A witness that knows when the current lease ends times a heartbeat to reach the forge
//!   just after that end, so failover costs about one round trip, not a heartbeat interval.
//! - A resign ends the lease on the forge early, so shutdown and switchover close the guard
//!   before the resign leaves; after a switchover, a grant of the handed-over term measured
//!   from a request sent before the step-down is never acted on.
//!
//! One driving surface, in the manner of quinn-proto: the driver (the keeper, or the
//! simulation) feeds in [`RoleState::handle_answer`] (how an action ended),
//! [`RoleState::handle_push`] (a view the forge pushed), [`RoleState::handle_timeout`] (time
//! passed), [`RoleState::nudge`], [`RoleState::handle_switchover_request`] and
//! [`RoleState::begin_shutdown`]; and takes out [`RoleState::poll_action`] (what to send now,
//! one at a time), [`RoleState::poll_timeout`] (when to call again) and
//! [`RoleState::poll_transition`] (role changes, in order). The guard ([`RoleState::guard`],
//! [`RoleState::held`]) may be read at any time.
//!
//! By concern: `verify.rs` (a forge answer becomes a [`VerifiedView`]), `lease.rs` (what a
//! view grants; the guard), `schedule.rs` (when the next beat is due), `handover.rs`
//! (shutdown, resign and switchover).
mod handover;
mod lease;
mod schedule;
mod verify;

use brh_shared::Timing;

pub use handover::RESIGN_ATTEMPTS;
use handover::{Handover, Shutdown};
pub use lease::{Held, NotLeader, TimingChange, TimingSource};
pub use schedule::{NUDGE_GAP_MS, PROBE_SLACK_MS, RETRY_BASE_MS};
pub use verify::{VerifiedView, ViewError, ViewKeys};

/// Why the agent stopped leading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoteReason {
    /// The lease deadline passed without a renewal.
    Deadline,
    /// The forge answered that someone else leads (or nobody).
    Forge,
    /// A grant for a different term arrived while leading: the old term ends first.
    TermChanged,
    /// Shutdown or an operator's resign.
    Shutdown,
    /// An operator's switchover: this node hands the lease to a named successor.
    Switchover,
}

impl DemoteReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DemoteReason::Deadline => "deadline",
            DemoteReason::Forge => "forge",
            DemoteReason::TermChanged => "term-changed",
            DemoteReason::Shutdown => "shutdown",
            DemoteReason::Switchover => "switchover",
        }
    }
}

/// A role change. `at_ms` is the monotonic time when acting started or stopped (for a
/// deadline demotion: the deadline itself, when the guard began refusing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Promote {
        term: u64,
        at_ms: u64,
    },
    Demote {
        term: u64,
        leader: Option<String>,
        reason: DemoteReason,
        at_ms: u64,
    },
}

/// The agent's role, fed by the keeper.
#[derive(Debug, Clone)]
pub struct RoleState {
    node: String,
    timing: Timing,
    timing_source: TimingSource,
    /// Set by an answer that changed (or conflicts with) the timing; taken by the keeper.
    timing_change: Option<TimingChange>,
    held: Option<Held>,
    /// Leader and term of the last verified view.
    leader: Option<String>,
    term: u64,
    /// Upper bound, on our monotonic clock, of when someone else's lease ends.
    other_expiry_ms: Option<u64>,
    /// Send time of the last attempt (successful or not).
    last_attempt_ms: Option<u64>,
    /// Send time of the last answered attempt.
    last_ok_ms: Option<u64>,
    /// Consecutive failed attempts.
    failures: u32,
    /// After shutdown the agent never leads again.
    stopped: bool,
    /// A nudge arrived since the last attempt.
    nudged: bool,
    /// Heartbeats (lease requests) or, when disabled, leader polls that never grant.
    heartbeats: bool,
    /// Consensus reports: every this many ms, the next one due at `next_consensus_ms`.
    consensus_every_ms: Option<u64>,
    next_consensus_ms: Option<u64>,
    /// Role changes not yet taken by the driver (`poll_transition`).
    transitions: std::collections::VecDeque<Transition>,
    shutdown: Option<Shutdown>,
    /// Random spread (0..1000) of the next retry, drawn once per answer so that the time the
    /// driver sleeps until and the time the action falls due agree.
    jitter_permille: u64,
    /// `(term, issued_at_ms)` of the newest view applied: older pushes are ignored.
    newest_view: Option<(u64, u64)>,
    /// A switchover asked for and not yet answered.
    switchover: Option<Handover>,
    /// `(term, at_ms)` of the last leadership this node stepped down from to hand it over.
    /// A grant of that term (or an older one) measured from a request sent at or before
    /// `at_ms` may predate the resign on the forge, which ends the lease early: it is never
    /// acted on — neither while the resign is in flight (another copy of the grant that
    /// promoted us, still on the wire) nor after it failed. Requests leave in nonce order and
    /// the forge admits only rising nonces, so a grant measured from a later request is the
    /// forge's word after the resign was handled or refused.
    handed_over: Option<(u64, u64)>,
}

/// What the driver must do now: the sans-IO output, as in quinn-proto's `poll_transmit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A heartbeat: the lease request and the leader poll in one.
    Heartbeat,
    /// Heartbeats are off: read the leader; never granted.
    LeaderPoll,
    /// The consensus report (seed compatibility; it never elects).
    Consensus,
    /// Shutdown: give the lease up for good.
    Resign { term: u64 },
    /// Shutdown of a witness: one last beat marked draining, so that the forge does not elect
    /// a node that is going away.
    Farewell,
    /// An operator's switchover: resign `term` naming `to`, the only node the forge may then
    /// grant the lease to for one ttl. This node stays a candidate.
    Switchover { term: u64, to: String },
}

/// How an action ended, as the driver saw it.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    View(&'a VerifiedView),
    /// The forge said we do not hold that lease (a resign after it moved on).
    NotHolder,
    /// Unreachable, timed out, refused or unverifiable.
    Failed,
}

impl RoleState {
    pub fn new(node: impl Into<String>, timing: Timing) -> Self {
        RoleState {
            node: node.into(),
            timing,
            timing_source: TimingSource::Forge,
            timing_change: None,
            held: None,
            leader: None,
            term: 0,
            other_expiry_ms: None,
            last_attempt_ms: None,
            last_ok_ms: None,
            failures: 0,
            stopped: false,
            nudged: false,
            heartbeats: true,
            consensus_every_ms: None,
            next_consensus_ms: None,
            transitions: std::collections::VecDeque::new(),
            newest_view: None,
            shutdown: None,
            jitter_permille: 500,
            switchover: None,
            handed_over: None,
        }
    }

    /// Whether the timing follows the forge's answers (the default) or is pinned.
    pub fn with_timing_source(mut self, source: TimingSource) -> Self {
        self.timing_source = source;
        self
    }

    /// What the driver does besides heartbeats: leader polls instead of heartbeats when
    /// `heartbeats` is false, and consensus reports every `consensus_every_ms` (the first two
    /// heartbeat intervals after `now_ms`).
    pub fn with_schedule(
        mut self,
        heartbeats: bool,
        consensus_every_ms: Option<u64>,
        now_ms: u64,
    ) -> Self {
        self.heartbeats = heartbeats;
        self.consensus_every_ms = consensus_every_ms;
        self.next_consensus_ms = consensus_every_ms
            .map(|_| now_ms.saturating_add(2 * self.timing.heartbeat_interval_ms));
        self
    }

    /// The timing in force: the forge's once an answer carried it, unless pinned.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The last timing change an answer caused, once.
    pub fn take_timing_change(&mut self) -> Option<TimingChange> {
        self.timing_change.take()
    }

    /// Leader and term as last seen (this node when it holds the lease).
    pub fn leader(&self) -> (Option<&str>, u64) {
        (self.leader.as_deref(), self.term)
    }

    /// Upper bound (our monotonic clock) of when the current leader's lease ends, when that
    /// leader is someone else.
    pub fn other_lease_end_ms(&self) -> Option<u64> {
        self.other_expiry_ms
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Send time of the last answered heartbeat.
    pub fn last_ok_ms(&self) -> Option<u64> {
        self.last_ok_ms
    }

    /// The next role change to act on (log, events, hooks), in order.
    pub fn poll_transition(&mut self) -> Option<Transition> {
        self.transitions.pop_front()
    }

    /// Time passed: a lease deadline may have been reached.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let t = self.expire(now_ms);
        self.transitions.extend(t);
    }

    /// When the driver must call again (`handle_timeout`, `poll_action`), or `None` when the
    /// agent has nothing left to do (shutdown finished).
    pub fn poll_timeout(&self, now_ms: u64) -> Option<u64> {
        if let Some(sd) = &self.shutdown {
            if self.shutdown_finished(now_ms) {
                return None;
            }
            let next = match sd.resign {
                Some((_, _, at)) => at,
                None => now_ms,
            };
            return Some(next.min(sd.until_ms));
        }
        let mut wake = self.next_beat_at(now_ms, self.jitter_permille);
        if let Some(h) = self.held(now_ms) {
            wake = wake.min(h.deadline_ms);
        }
        if let Some(c) = self.next_consensus_ms {
            wake = wake.min(c);
        }
        Some(wake)
    }

    /// The action due now, if any. One at a time: the driver reports each with
    /// [`RoleState::handle_answer`] before it polls again.
    pub fn poll_action(&mut self, now_ms: u64) -> Option<Action> {
        if let Some(sd) = self.shutdown.as_mut() {
            if now_ms >= sd.until_ms {
                return None;
            }
            if sd.farewell {
                sd.farewell = false;
                return Some(Action::Farewell);
            }
            return match sd.resign {
                Some((term, _, at)) if now_ms >= at => Some(Action::Resign { term }),
                _ => None,
            };
        }
        if let Some(hand) = self.switchover.as_mut() {
            // One action at a time: nothing else leaves while the resign is in flight.
            if hand.sent {
                return None;
            }
            hand.sent = true;
            return Some(Action::Switchover {
                term: hand.term,
                to: hand.to.clone(),
            });
        }
        if now_ms >= self.next_beat_at(now_ms, self.jitter_permille) {
            return Some(if self.heartbeats {
                Action::Heartbeat
            } else {
                Action::LeaderPoll
            });
        }
        if let (Some(every), Some(next)) = (self.consensus_every_ms, self.next_consensus_ms) {
            if now_ms >= next {
                self.next_consensus_ms = Some(now_ms.saturating_add(every));
                return Some(Action::Consensus);
            }
        }
        None
    }

    /// The result of `action`, sent at `sent_ms` and finished at `received_ms`;
    /// `jitter_permille` (random, 0..1000) spreads the retries it may schedule.
    pub fn handle_answer(
        &mut self,
        action: &Action,
        sent_ms: u64,
        received_ms: u64,
        outcome: Outcome<'_>,
        jitter_permille: u64,
    ) {
        self.jitter_permille = jitter_permille.min(999);
        match (action, outcome) {
            (Action::Heartbeat | Action::LeaderPoll, Outcome::View(v)) => {
                let ts = self.record_answer(sent_ms, received_ms, v);
                self.transitions.extend(ts);
            }
            (Action::Heartbeat | Action::LeaderPoll, _) => {
                let t = self.record_failure(sent_ms, received_ms);
                self.transitions.extend(t);
            }
            (Action::Resign { term }, outcome) => {
                self.resign_answered(*term, received_ms, outcome, jitter_permille);
            }
            (Action::Switchover { .. }, outcome) => {
                self.switchover_answered(sent_ms, received_ms, outcome);
            }
            (Action::Consensus | Action::Farewell, _) => {}
        }
    }
}

#[cfg(test)]
mod tests;
