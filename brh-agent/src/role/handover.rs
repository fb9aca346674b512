//! Giving the lease up: shutdown (resign with retries, or a witness's farewell beat, within a
//! budget) and an operator's switchover (step down, then resign naming the successor). In
//! both the guard closes before the resign leaves.
use super::{DemoteReason, NotLeader, Outcome, RoleState, Transition, RETRY_BASE_MS};

/// A switchover in flight: the resign naming `to` is due (`sent == false`) or awaits its
/// answer.
#[derive(Debug, Clone)]
pub(super) struct Handover {
    pub(super) term: u64,
    pub(super) to: String,
    pub(super) sent: bool,
}

/// The shutdown plan: resign (with retries) or a farewell beat, within a budget.
#[derive(Debug, Clone)]
pub(super) struct Shutdown {
    /// `(term, failed attempts, next attempt at)`.
    pub(super) resign: Option<(u64, u32, u64)>,
    /// The term whose resign failed every attempt.
    pub(super) abandoned: Option<u64>,
    pub(super) farewell: bool,
    pub(super) until_ms: u64,
}

/// Resign attempts before giving up (the lease then expires on its own).
pub const RESIGN_ATTEMPTS: u32 = 4;

impl RoleState {
    /// Stops leading for good (shutdown). Returns the demotion and the term to resign, if
    /// this node held one (even an expired one: resigning it is harmless and hands over
    /// sooner if the forge still counts it).
    pub(super) fn stop_leading(&mut self, now_ms: u64) -> (Option<Transition>, Option<u64>) {
        self.stopped = true;
        let Some(h) = self.held.take() else {
            // Not acting, but the forge may still count us as the holder (a deadline that
            // passed, or an answer we refused to act on): resign that term too.
            let ours = self.leader.as_deref() == Some(self.node.as_str());
            return (None, ours.then_some(self.term));
        };
        let t = self.demote(h, DemoteReason::Shutdown, now_ms);
        (Some(t), Some(h.term))
    }

    /// An operator's switchover to `to` (the driver chose it from the forge's peers). The
    /// guard closes now, before the resign leaves (the demotion is the next transition); the
    /// next [`RoleState::poll_action`] is [`Action::Switchover`] and its answer goes to
    /// [`RoleState::handle_answer`]. Returns the term handed over, or why this node cannot
    /// hand over (not leading, its deadline passed, shutting down, or a switchover already in
    /// flight). Unlike shutdown the node stays a candidate: when the forge refuses, our lease
    /// is intact and the next heartbeat (sent after this step-down) promotes us afresh.
    pub fn handle_switchover_request(
        &mut self,
        to: impl Into<String>,
        now_ms: u64,
    ) -> Result<u64, NotLeader> {
        self.guard(now_ms)?;
        let Some(h) = self.held.take() else {
            unreachable!("the guard admits only a lease held")
        };
        let t = self.demote(h, DemoteReason::Switchover, now_ms);
        self.transitions.push_back(t);
        self.handed_over = Some((h.term, now_ms));
        self.switchover = Some(Handover {
            term: h.term,
            to: to.into(),
            sent: false,
        });
        Ok(h.term)
    }

    /// The answer to a shutdown's resign of `term`: done when the forge took it (or has moved
    /// on); after a failure, retried with backoff until [`RESIGN_ATTEMPTS`] are spent.
    pub(super) fn resign_answered(
        &mut self,
        term: u64,
        received_ms: u64,
        outcome: Outcome<'_>,
        jitter_permille: u64,
    ) {
        let Some(sd) = self.shutdown.as_mut() else {
            return;
        };
        if !matches!(outcome, Outcome::Failed) {
            sd.resign = None;
            return;
        }
        let failed = sd.resign.map_or(0, |(_, n, _)| n) + 1;
        // Backoff 100, 200, 400 ms plus up to as much again in jitter.
        let delay = RETRY_BASE_MS << (failed - 1).min(10);
        let delay = delay + delay * jitter_permille.min(999) / 1000;
        if failed < RESIGN_ATTEMPTS {
            sd.resign = Some((term, failed, received_ms.saturating_add(delay)));
        } else {
            sd.resign = None;
            sd.abandoned = Some(term);
        }
    }

    /// The answer to a switchover's resign. The forge's view after it (the successor leads)
    /// is the newest word on the lease. A refusal or a failure changes nothing here: a lease
    /// still ours is renewed, and measured afresh, by the next heartbeat.
    pub(super) fn switchover_answered(
        &mut self,
        sent_ms: u64,
        received_ms: u64,
        outcome: Outcome<'_>,
    ) {
        self.switchover = None;
        if let Outcome::View(v) = outcome {
            let ts = self.record_answer(sent_ms, received_ms, v);
            self.transitions.extend(ts);
        }
    }

    /// Shutdown: stop acting now (the demotion is the next transition), then resign the term
    /// the forge may still count as ours, or — a witness — say farewell. Bounded by the lease
    /// ttl (at most 10 s): past it the lease is left to expire. Returns the term to resign.
    pub fn begin_shutdown(&mut self, now_ms: u64) -> Option<u64> {
        let (t, term) = self.stop_leading(now_ms);
        self.transitions.extend(t);
        self.shutdown = Some(Shutdown {
            resign: term.map(|t| (t, 0, now_ms)),
            abandoned: None,
            farewell: term.is_none() && self.heartbeats,
            until_ms: now_ms.saturating_add(self.timing.lease_ttl_ms.min(10_000)),
        });
        term
    }

    /// The term a shutdown still meant to resign when it stopped trying (budget or attempts
    /// spent): that lease is left to expire on its own.
    pub fn resign_abandoned(&self) -> Option<u64> {
        self.shutdown
            .as_ref()
            .and_then(|sd| sd.abandoned.or(sd.resign.map(|(t, _, _)| t)))
    }

    /// Whether shutdown has nothing left to send (done, given up, or out of budget).
    pub fn shutdown_finished(&self, now_ms: u64) -> bool {
        self.shutdown
            .as_ref()
            .is_some_and(|sd| now_ms >= sd.until_ms || (sd.resign.is_none() && !sd.farewell))
    }
}
