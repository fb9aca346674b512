//! The lease and the guard: what a verified view grants, measured from the send time of the
//! request it follows, and the guard every mutating action passes.
use brh_shared::wire::{LeaderView, Role};
use brh_shared::Timing;

use super::{DemoteReason, RoleState, Transition, VerifiedView};

/// The guard's refusal: the original's `NotLeaderError`, now enforced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("This BRH is not the elected leader; orchestration denied ({reason})")]
pub struct NotLeader {
    pub leader: Option<String>,
    pub reason: &'static str,
}

/// A leadership the agent may act on: the term (fencing token) and its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub term: u64,
    pub deadline_ms: u64,
}

/// What the agent does when the forge's timing differs from its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimingSource {
    /// Nothing was set explicitly: follow the forge (docs/design.md §4.3, one timing authority).
    Forge,
    /// The operator pinned interval or ttl: a forge with other values is a setup error.
    Pinned,
}

/// A change of timing caused by a forge answer, for the keeper to log and act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimingChange {
    /// Following the forge: beats, margin and request timeouts now use `to`.
    Adopted { from: Timing, to: Timing },
    /// Pinned to `ours` but the forge runs `forge`: the agent must stop (it is never granted
    /// on such an answer).
    Conflict { ours: Timing, forge: Timing },
}

impl RoleState {
    /// Applies the forge's timing from `v`. Returns false when the answer must not grant:
    /// a pinned agent never leads on a forge whose lease it does not agree with.
    fn follow_timing(&mut self, v: &LeaderView) -> bool {
        let Some(forge) = v.timing() else {
            // An older forge: keep ours (the deadline still comes from the signed lease).
            return true;
        };
        if forge == self.timing {
            return true;
        }
        match self.timing_source {
            TimingSource::Forge => {
                self.timing_change = Some(TimingChange::Adopted {
                    from: self.timing,
                    to: forge,
                });
                self.timing = forge;
                true
            }
            TimingSource::Pinned => {
                self.timing_change = Some(TimingChange::Conflict {
                    ours: self.timing,
                    forge,
                });
                false
            }
        }
    }

    /// The leadership held as of `now` (deadline not yet reached).
    pub fn held(&self, now_ms: u64) -> Option<Held> {
        self.held
            .filter(|h| now_ms < h.deadline_ms && !self.stopped)
    }

    /// The orchestration guard: `Ok(term)` only while this node holds an unexpired lease.
    /// Every mutating action must pass it, with the current monotonic time.
    pub fn guard(&self, now_ms: u64) -> Result<u64, NotLeader> {
        if self.stopped {
            return Err(NotLeader {
                leader: self.leader.clone(),
                reason: "shutting down",
            });
        }
        match self.held {
            Some(h) if now_ms < h.deadline_ms => Ok(h.term),
            Some(_) => Err(NotLeader {
                leader: None,
                reason: "lease deadline passed without renewal",
            }),
            // Stepped down for a switchover whose resign is not answered yet.
            None if self.switchover.is_some() => Err(NotLeader {
                leader: None,
                reason: "handing the lease over",
            }),
            None => Err(NotLeader {
                leader: self.leader.clone(),
                reason: "witness",
            }),
        }
    }

    /// Demotes at the deadline ([`RoleState::handle_timeout`]). The guard does not depend on
    /// it running on time.
    pub(super) fn expire(&mut self, now_ms: u64) -> Option<Transition> {
        let h = self.held?;
        if now_ms < h.deadline_ms {
            return None;
        }
        self.held = None;
        Some(Transition::Demote {
            term: h.term,
            leader: None,
            reason: DemoteReason::Deadline,
            at_ms: h.deadline_ms,
        })
    }

    /// A heartbeat sent at `sent_ms` failed (unreachable, timeout, refused or unverifiable
    /// answer). The role is unchanged; the deadline alone decides demotion.
    pub(super) fn record_failure(&mut self, sent_ms: u64, now_ms: u64) -> Option<Transition> {
        self.last_attempt_ms = Some(sent_ms);
        self.nudged = false;
        self.failures = self.failures.saturating_add(1);
        self.expire(now_ms)
    }

    /// A verified answer to a heartbeat sent at `sent_ms`, received at `received_ms`.
    pub(super) fn record_answer(
        &mut self,
        sent_ms: u64,
        received_ms: u64,
        view: &VerifiedView,
    ) -> Vec<Transition> {
        self.last_attempt_ms = Some(sent_ms);
        self.nudged = false;
        self.last_ok_ms = Some(sent_ms);
        self.failures = 0;
        self.apply_view(sent_ms, received_ms, view)
    }

    /// A view the forge pushed on its stream after a leader change, bound (`basis`) to our
    /// request sent at `basis_sent_ms`, received at `received_ms`. Measured like an answer to
    /// that request — a grant's deadline counts from the request's send time, so a push that
    /// arrives late only shortens it — but it leaves the beat schedule alone. A push older
    /// than a view already applied (lower term, or same term issued earlier on the forge's
    /// clock) is ignored: pushes and answers travel apart and may cross.
    pub fn handle_push(&mut self, basis_sent_ms: u64, received_ms: u64, view: &VerifiedView) {
        let v = view.view();
        if self
            .newest_view
            .is_some_and(|newest| (v.term, v.issued_at_ms) < newest)
        {
            return;
        }
        let ts = self.apply_view(basis_sent_ms, received_ms, view);
        self.transitions.extend(ts);
    }

    /// What a verified view says, measured from `sent_ms` (when the request it follows left).
    fn apply_view(
        &mut self,
        sent_ms: u64,
        received_ms: u64,
        view: &VerifiedView,
    ) -> Vec<Transition> {
        let v = view.view();
        let received_ms = received_ms.max(sent_ms);
        let stamp = (v.term, v.issued_at_ms);
        self.newest_view = Some(self.newest_view.map_or(stamp, |n| n.max(stamp)));
        self.leader.clone_from(&v.leader);
        self.term = v.term;
        let mut out = Vec::new();
        // The old leadership first ends at its own deadline if that has passed: a late
        // answer never extends it.
        out.extend(self.expire(received_ms));

        let remaining = v.lease_remaining_ms();
        let timing_ok = self.follow_timing(v);
        let granted = !self.stopped
            && timing_ok
            && v.you.as_ref().is_some_and(|y| y.role == Role::Leader)
            && v.leader.as_deref() == Some(self.node.as_str())
            && v.lease.is_some()
            && !self.predates_handover(v.term, sent_ms);
        if granted {
            self.other_expiry_ms = None;
            let deadline = sent_ms
                .saturating_add(remaining)
                .saturating_sub(self.timing.safety_margin_ms());
            if deadline <= received_ms {
                // The answer took so long that the grant is already unusable. Stay a witness;
                // the next regular beat renews it and is measured afresh.
                if let Some(h) = self.held.take() {
                    out.push(self.demote(h, DemoteReason::Deadline, received_ms));
                }
                return out;
            }
            match self.held {
                Some(h) if h.term == v.term => {
                    self.held = Some(Held {
                        term: h.term,
                        deadline_ms: h.deadline_ms.max(deadline),
                    });
                }
                Some(h) => {
                    out.push(self.demote(h, DemoteReason::TermChanged, received_ms));
                    self.promote(v.term, deadline, received_ms, &mut out);
                }
                None => self.promote(v.term, deadline, received_ms, &mut out),
            }
        } else {
            if let Some(h) = self.held.take() {
                out.push(self.demote(h, DemoteReason::Forge, received_ms));
            }
            // Someone else's lease ends on the forge no later than `received + remaining` on
            // our clock (the forge issued the view before we received it).
            self.other_expiry_ms = v
                .lease
                .as_ref()
                .map(|_| received_ms.saturating_add(remaining));
        }
        out
    }

    /// Whether a grant of `term` measured from a request sent at `sent_ms` may be one the
    /// forge gave before it handled our switchover's resign (see `handed_over`).
    fn predates_handover(&self, term: u64, sent_ms: u64) -> bool {
        self.handed_over
            .is_some_and(|(t, at)| term <= t && sent_ms <= at)
    }

    fn promote(&mut self, term: u64, deadline_ms: u64, at_ms: u64, out: &mut Vec<Transition>) {
        self.held = Some(Held { term, deadline_ms });
        out.push(Transition::Promote { term, at_ms });
    }

    pub(super) fn demote(&self, h: Held, reason: DemoteReason, at_ms: u64) -> Transition {
        Transition::Demote {
            term: h.term,
            leader: self.leader.clone().filter(|l| *l != self.node),
            reason,
            at_ms: at_ms.min(h.deadline_ms),
        }
    }
}
