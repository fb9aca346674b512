//! Role keeping, sans-IO (design §4, the agent's side).
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
use brh_shared::sign::{verify_basis, verify_public_view, verify_view};
use brh_shared::wire::{LeaderView, Role, StreamMessage};
use brh_shared::Timing;

/// How long after the (upper bound of the) lease's end a witness probes the forge.
pub const PROBE_SLACK_MS: u64 = 5;
/// First retry delay after a failed heartbeat; doubles per failure, capped at the interval.
pub const RETRY_BASE_MS: u64 = 100;
/// Least time between a heartbeat and one brought forward by a nudge. Nudges carry no
/// credential (anyone who reaches the API can send one), so this bounds what a flood can
/// cost: at most four extra beats a second per agent. A successor on the stream learns of a
/// handover from the forge's push, not from a nudge.
pub const NUDGE_GAP_MS: u64 = 250;

/// A leader view whose signature, env and addressee were checked. Only [`VerifiedView::check`]
/// makes one, so role decisions can never be fed an unverified grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedView(LeaderView);

/// Why a forge answer was not accepted as a view. All of these are treated like an
/// unreachable forge, never as a grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("the forge's answer is not signed for this node (or, if public, by the forge key)")]
    BadSignature,
    #[error("the forge's answer is for env {got:?}, not {want:?}")]
    WrongEnv { got: String, want: String },
    #[error("the forge's answer is addressed to {got:?}, not to this node")]
    WrongNode { got: Option<String> },
    #[error("the forge's answer is not bound to our request (basis, basis_sig)")]
    Unbound,
}

/// What an agent checks the forge's word with. Neither key lets its holder sign for anyone
/// else: the node key makes views only this node accepts (the forge derives it; see
/// `brh_shared::keys`), the forge key is public.
#[derive(Clone)]
pub struct ViewKeys {
    /// This node and its key: answers and pushes to it are HMACs under that key. `None` for a
    /// reader that is no node (`brh-agent status`): it accepts public views only.
    pub node: Option<(String, [u8; 32])>,
    /// The forge's public key: public views (`GET /federation/leader`) are Ed25519 under it.
    pub forge: ed25519_dalek::VerifyingKey,
}

impl std::fmt::Debug for ViewKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewKeys")
            .field("node", &self.node.as_ref().map(|(n, _)| n))
            .field("forge", &brh_shared::keys::public_hex(&self.forge))
            .finish()
    }
}

impl ViewKeys {
    fn node_key(&self) -> &[u8] {
        self.node.as_ref().map_or(&[], |(_, k)| k.as_slice())
    }

    /// A view addressed to a node (`you`) must be addressed to us and signed with our key; a
    /// public view must carry the forge's signature.
    fn verify(&self, view: &LeaderView) -> bool {
        match (&view.you, &self.node) {
            (Some(you), Some((me, key))) => you.node == *me && verify_view(key, view),
            (Some(_), None) => false,
            (None, _) => verify_public_view(&self.forge, view),
        }
    }
}

impl VerifiedView {
    /// Verifies `view` for `node` in `env`. With `node = None` (a public `GET` answer) the
    /// `you` field is not required.
    pub fn check(
        keys: &ViewKeys,
        env: &str,
        node: Option<&str>,
        view: LeaderView,
    ) -> Result<Self, ViewError> {
        if !keys.verify(&view) {
            return Err(ViewError::BadSignature);
        }
        if view.env != env {
            return Err(ViewError::WrongEnv {
                got: view.env,
                want: env.into(),
            });
        }
        if let Some(node) = node {
            if view.you.as_ref().map(|y| y.node.as_str()) != Some(node) {
                return Err(ViewError::WrongNode {
                    got: view.you.map(|y| y.node),
                });
            }
        }
        Ok(VerifiedView(view))
    }

    /// Verifies a view that came on the forge's stream for `node`, bound to our request
    /// `nonce` (an answer's, or a push's basis): the view's own checks, then `basis_sig`,
    /// which the forge computed over the node, the nonce and the view's signature. Without
    /// it an on-path attacker could relabel an old grant as the answer to a newer request.
    pub fn check_bound(
        keys: &ViewKeys,
        env: &str,
        node: &str,
        m: &StreamMessage,
        nonce: &str,
    ) -> Result<Self, ViewError> {
        let view = m.view.clone().ok_or(ViewError::Unbound)?;
        let (basis, basis_sig) = (m.basis.as_deref(), m.basis_sig.as_deref());
        Self::check_answer(keys, env, node, view, basis, basis_sig, nonce)
    }

    /// Verifies the view answering our request `nonce` over HTTP, bound to it by the
    /// answer's `x-brh-basis` / `x-brh-basis-sig` headers: the same binding as
    /// [`Self::check_bound`]. Plain HTTP ties nothing else to the request, so without it a
    /// captured grant could be replayed as the answer to a later heartbeat and be measured
    /// from that heartbeat's send time.
    pub fn check_answer(
        keys: &ViewKeys,
        env: &str,
        node: &str,
        view: LeaderView,
        basis: Option<&str>,
        basis_sig: Option<&str>,
        nonce: &str,
    ) -> Result<Self, ViewError> {
        let bound = basis == Some(nonce)
            && basis_sig.is_some_and(|s| verify_basis(keys.node_key(), node, nonce, &view.sig, s));
        if !bound {
            return Err(ViewError::Unbound);
        }
        Self::check(keys, env, Some(node), view)
    }

    pub fn view(&self) -> &LeaderView {
        &self.0
    }

    /// For tests of the pure logic: wraps a view without checking it.
    #[cfg(test)]
    pub fn assume_verified(view: LeaderView) -> Self {
        VerifiedView(view)
    }
}

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
    /// Nothing was set explicitly: follow the forge (design §4, one timing authority).
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
    /// acted on. Requests leave in nonce order and the forge admits only rising nonces, so a
    /// grant measured from a later request is the forge's word after the resign was handled
    /// or refused.
    handed_over: Option<(u64, u64)>,
}

/// A switchover in flight: the resign naming `to` is due (`sent == false`) or awaits its
/// answer.
#[derive(Debug, Clone)]
struct Handover {
    term: u64,
    to: String,
    sent: bool,
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

/// The shutdown plan: resign (with retries) or a farewell beat, within a budget.
#[derive(Debug, Clone)]
struct Shutdown {
    /// `(term, failed attempts, next attempt at)`.
    resign: Option<(u64, u32, u64)>,
    /// The term whose resign failed every attempt.
    abandoned: Option<u64>,
    farewell: bool,
    until_ms: u64,
}

/// Resign attempts before giving up (the lease then expires on its own).
pub const RESIGN_ATTEMPTS: u32 = 4;

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

    /// The timing in force: the forge's once an answer carried it, unless pinned.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The last timing change an answer caused, once.
    pub fn take_timing_change(&mut self) -> Option<TimingChange> {
        self.timing_change.take()
    }

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

    /// The orchestration guard: `Ok(term)` only while this node holds an unexpired lease.
    /// Every mutating action must pass it, with the current monotonic time.
    pub fn guard(&self, now_ms: u64) -> Result<u64, NotLeader> {
        if self.stopped {
            return Err(NotLeader {
                leader: self.leader.clone(),
                reason: "shutting down",
            });
        }
        if self.switchover.is_some() {
            return Err(NotLeader {
                leader: None,
                reason: "handing the lease over",
            });
        }
        match self.held {
            Some(h) if now_ms < h.deadline_ms => Ok(h.term),
            Some(_) => Err(NotLeader {
                leader: None,
                reason: "lease deadline passed without renewal",
            }),
            None => Err(NotLeader {
                leader: self.leader.clone(),
                reason: "witness",
            }),
        }
    }

    /// Demotes at the deadline. The keeper calls this from a timer, but the guard does not
    /// depend on it running on time.
    pub fn tick(&mut self, now_ms: u64) -> Option<Transition> {
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
    pub fn on_failure(&mut self, sent_ms: u64, now_ms: u64) -> Option<Transition> {
        self.last_attempt_ms = Some(sent_ms);
        self.nudged = false;
        self.failures = self.failures.saturating_add(1);
        self.tick(now_ms)
    }

    /// A verified answer to a heartbeat sent at `sent_ms`, received at `received_ms`.
    pub fn on_view(
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
        out.extend(self.tick(received_ms));

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

    fn demote(&self, h: Held, reason: DemoteReason, at_ms: u64) -> Transition {
        Transition::Demote {
            term: h.term,
            leader: self.leader.clone().filter(|l| *l != self.node),
            reason,
            at_ms: at_ms.min(h.deadline_ms),
        }
    }

    /// Stops leading for good (shutdown). Returns the demotion and the term to resign, if
    /// this node held one (even an expired one: resigning it is harmless and hands over
    /// sooner if the forge still counts it).
    pub fn stop(&mut self, now_ms: u64) -> (Option<Transition>, Option<u64>) {
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

    /// The next role change to act on (log, events, hooks), in order.
    pub fn poll_transition(&mut self) -> Option<Transition> {
        self.transitions.pop_front()
    }

    /// Time passed: a lease deadline may have been reached.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let t = self.tick(now_ms);
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
                let ts = self.on_view(sent_ms, received_ms, v);
                self.transitions.extend(ts);
            }
            (Action::Heartbeat | Action::LeaderPoll, _) => {
                let t = self.on_failure(sent_ms, received_ms);
                self.transitions.extend(t);
            }
            (Action::Resign { .. }, Outcome::View(_) | Outcome::NotHolder) => {
                if let Some(sd) = self.shutdown.as_mut() {
                    sd.resign = None;
                }
            }
            (Action::Resign { term }, Outcome::Failed) => {
                let term = *term;
                if let Some(sd) = self.shutdown.as_mut() {
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
            }
            (Action::Switchover { .. }, outcome) => {
                self.switchover = None;
                // The forge's view after the resign (the successor leads) is the newest word
                // on the lease. A refusal or a failure changes nothing here: a lease still
                // ours is renewed, and measured afresh, by the next heartbeat.
                if let Outcome::View(v) = outcome {
                    let ts = self.on_view(sent_ms, received_ms, v);
                    self.transitions.extend(ts);
                }
            }
            (Action::Consensus | Action::Farewell, _) => {}
        }
    }

    /// Shutdown: stop acting now (the demotion is the next transition), then resign the term
    /// the forge may still count as ours, or — a witness — say farewell. Bounded by the lease
    /// ttl (at most 10 s): past it the lease is left to expire. Returns the term to resign.
    pub fn begin_shutdown(&mut self, now_ms: u64) -> Option<u64> {
        let (t, term) = self.stop(now_ms);
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

    /// A peer announced that it resigned: beat early to pick the lease up. The early beat
    /// keeps [`NUDGE_GAP_MS`] after the previous attempt and a nudge counts once, so nudges
    /// cannot make an agent flood the forge.
    pub fn nudge(&mut self) {
        if !self.stopped {
            self.nudged = true;
        }
    }

    /// When to send the next heartbeat. `jitter_permille` (0..1000, random) spreads retries.
    pub fn next_beat_at(&self, now_ms: u64, jitter_permille: u64) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use brh_shared::sign::sign_view;
    use brh_shared::wire::{LeaseInfo, You};
    use proptest::prelude::*;

    const T: Timing = Timing::FAST; // 1 s / 3 s, margin 300 ms

    fn view(leader: Option<&str>, term: u64, issued: u64, expires: u64, me: &str) -> LeaderView {
        LeaderView {
            env: "dev".into(),
            leader: leader.map(Into::into),
            term,
            lease: leader.map(|l| LeaseInfo {
                holder: l.into(),
                term,
                expires_at_ms: expires,
                ttl_ms: 3000,
            }),
            epoch: 0,
            issued_at_ms: issued,
            peers_alive: 2,
            mode: "native".into(),
            heartbeat_interval_ms: 1_000,
            lease_ttl_ms: 3_000,
            you: Some(You {
                node: me.into(),
                role: if leader == Some(me) {
                    Role::Leader
                } else {
                    Role::Witness
                },
            }),
            sig: String::new(),
            lease_token: None,
        }
    }

    fn vv(leader: Option<&str>, term: u64, issued: u64, expires: u64) -> VerifiedView {
        VerifiedView::assume_verified(view(leader, term, issued, expires, "a"))
    }

    /// The keys node `me` of env dev holds, from the federation seal `seal`.
    pub(crate) fn keys_of(seal: &[u8], me: &str) -> ViewKeys {
        ViewKeys {
            node: Some((me.into(), brh_shared::keys::node_key(seal, "dev", me))),
            forge: brh_shared::keys::forge_signing_key(seal).verifying_key(),
        }
    }

    #[test]
    fn verification_rejects_bad_answers() {
        let mut v = view(Some("a"), 1, 0, 3000, "a");
        sign_view(&brh_shared::keys::node_key(b"seal", "dev", "a"), &mut v);
        let a = keys_of(b"seal", "a");
        assert!(VerifiedView::check(&a, "dev", Some("a"), v.clone()).is_ok());
        assert!(VerifiedView::check(&a, "dev", None, v.clone()).is_ok());
        assert_eq!(
            VerifiedView::check(&keys_of(b"other", "a"), "dev", Some("a"), v.clone()),
            Err(ViewError::BadSignature)
        );
        // Node b cannot be handed a's view, nor a view signed with a's key for b.
        assert_eq!(
            VerifiedView::check(&keys_of(b"seal", "b"), "dev", None, v.clone()),
            Err(ViewError::BadSignature)
        );
        let mut for_b = view(Some("b"), 1, 0, 3000, "b");
        sign_view(&brh_shared::keys::node_key(b"seal", "dev", "a"), &mut for_b);
        assert_eq!(
            VerifiedView::check(&keys_of(b"seal", "b"), "dev", Some("b"), for_b),
            Err(ViewError::BadSignature)
        );
        // A reader with no node key accepts only the forge's public views.
        let reader = ViewKeys {
            node: None,
            forge: a.forge,
        };
        assert_eq!(
            VerifiedView::check(&reader, "dev", None, v.clone()),
            Err(ViewError::BadSignature)
        );
        let mut public = v.clone();
        public.you = None;
        brh_shared::sign::sign_public_view(
            &brh_shared::keys::forge_signing_key(b"seal"),
            &mut public,
        );
        assert!(VerifiedView::check(&reader, "dev", None, public.clone()).is_ok());
        assert!(VerifiedView::check(&a, "dev", None, public).is_ok());
        assert!(matches!(
            VerifiedView::check(&a, "prod", Some("a"), v.clone()),
            Err(ViewError::WrongEnv { .. })
        ));
        let mut unsigned = v;
        unsigned.sig.clear();
        assert_eq!(
            VerifiedView::check(&a, "dev", Some("a"), unsigned),
            Err(ViewError::BadSignature)
        );
    }

    /// The flapping of issue 11: an agent at the default profile (5 s / 15 s, margin 1.5 s)
    /// on a fast forge (1 s / 3 s) promoted and hit its deadline 1.5 s later, every 5 s.
    /// Following the forge, it beats at the forge's interval with the forge's margin.
    #[test]
    fn an_agent_follows_the_forges_timing() {
        let mut r = RoleState::new("a", Timing::DEFAULT);
        let t = r.on_view(1000, 1010, &vv(Some("a"), 1, 50_000, 53_000));
        assert_eq!(
            t,
            vec![Transition::Promote {
                term: 1,
                at_ms: 1010
            }]
        );
        assert_eq!(r.timing(), T);
        assert_eq!(
            r.take_timing_change(),
            Some(TimingChange::Adopted {
                from: Timing::DEFAULT,
                to: T
            })
        );
        assert_eq!(r.take_timing_change(), None);
        // The forge's margin (300 ms), not the default's 1.5 s: deadline 1000 + 3000 − 300.
        assert_eq!(r.held(0).unwrap().deadline_ms, 3700);
        // And the forge's interval: next beat 1 s after the last, long before the deadline.
        assert_eq!(r.next_beat_at(1010, 500), 2000);
        // Renewals keep the lease: no demotion across many beats.
        let mut sent = 2000;
        for i in 1..20u64 {
            let issued = 50_000 + i * 1000;
            let t = r.on_view(sent, sent + 10, &vv(Some("a"), 1, issued, issued + 3000));
            assert!(t.is_empty(), "{t:?}");
            assert!(r.tick(sent + 999).is_none());
            sent = r.next_beat_at(sent + 10, 500);
        }
        assert_eq!(r.take_timing_change(), None);
    }

    #[test]
    fn a_pinned_agent_is_never_granted_on_another_timing() {
        let mut r = RoleState::new("a", Timing::DEFAULT).with_timing_source(TimingSource::Pinned);
        let t = r.on_view(1000, 1010, &vv(Some("a"), 1, 50_000, 53_000));
        assert!(t.is_empty(), "{t:?}");
        assert!(r.guard(1011).is_err());
        assert_eq!(r.timing(), Timing::DEFAULT);
        assert_eq!(
            r.take_timing_change(),
            Some(TimingChange::Conflict {
                ours: Timing::DEFAULT,
                forge: T
            })
        );
        // Same values: pinned agents run as before.
        let mut r = RoleState::new("a", T).with_timing_source(TimingSource::Pinned);
        let t = r.on_view(1000, 1010, &vv(Some("a"), 1, 50_000, 53_000));
        assert_eq!(t.len(), 1);
        assert_eq!(r.take_timing_change(), None);
    }

    #[test]
    fn an_answer_without_timing_keeps_ours() {
        let mut r = RoleState::new("a", Timing::DEFAULT);
        let mut v = view(Some("a"), 1, 50_000, 53_000, "a");
        v.heartbeat_interval_ms = 0;
        v.lease_ttl_ms = 0;
        r.on_view(1000, 1010, &VerifiedView::assume_verified(v));
        assert_eq!(r.timing(), Timing::DEFAULT);
        assert_eq!(r.take_timing_change(), None);
    }

    /// The driver interface: the keeper only asks what to do and when.
    #[test]
    fn the_schedule_drives_beats_deadlines_and_reports() {
        let mut r = RoleState::new("a", T).with_schedule(true, Some(60_000), 0);
        assert_eq!(r.poll_action(0), Some(Action::Heartbeat));
        let v = vv(Some("a"), 1, 10_000, 13_000);
        r.handle_answer(&Action::Heartbeat, 0, 5, Outcome::View(&v), 500);
        assert!(matches!(
            r.poll_transition(),
            Some(Transition::Promote { term: 1, .. })
        ));
        assert_eq!(r.poll_transition(), None);
        assert_eq!(r.poll_action(10), None);
        // Next: the beat at 1000 (before the deadline 2700 and the first report at 2000).
        assert_eq!(r.poll_timeout(10), Some(1000));
        assert_eq!(r.poll_action(1000), Some(Action::Heartbeat));
        r.handle_answer(&Action::Heartbeat, 1000, 1005, Outcome::Failed, 500);
        // Unanswered: the deadline (2700) passes at its time, whatever else happens.
        r.handle_timeout(2700);
        assert!(matches!(
            r.poll_transition(),
            Some(Transition::Demote {
                reason: DemoteReason::Deadline,
                ..
            })
        ));
        // The consensus report comes due two intervals after start, then every 60 s.
        let mut r = RoleState::new("a", T).with_schedule(true, Some(60_000), 0);
        r.handle_answer(&Action::Heartbeat, 0, 5, Outcome::View(&v), 500);
        let _ = r.poll_action(2_000); // the beat due at 1000
        r.handle_answer(&Action::Heartbeat, 2_000, 2_005, Outcome::View(&v), 500);
        assert_eq!(r.poll_action(2_010), Some(Action::Consensus));
        assert_eq!(r.poll_action(2_020), None);
        // Heartbeats off: leader polls, never a grant.
        let mut p = RoleState::new("a", T).with_schedule(false, None, 0);
        assert_eq!(p.poll_action(0), Some(Action::LeaderPoll));
    }

    #[test]
    fn an_answer_counts_only_bound_to_our_own_request() {
        use brh_shared::sign::{sign_basis, sign_view};
        let seal = b"unit-seal";
        let key = brh_shared::keys::node_key(seal, "dev", "a");
        let keys = keys_of(seal, "a");
        let mut v = view(Some("a"), 3, 1_000, 4_000, "a");
        sign_view(&key, &mut v);
        let sig = sign_basis(&key, "a", "b1:7", &v.sig);
        let check = |basis: Option<&str>, basis_sig: Option<&str>, nonce: &str| {
            VerifiedView::check_answer(&keys, "dev", "a", v.clone(), basis, basis_sig, nonce)
        };
        assert!(check(Some("b1:7"), Some(&sig), "b1:7").is_ok());
        // The same answer replayed as the answer to a later request of ours.
        assert_eq!(
            check(Some("b1:7"), Some(&sig), "b1:8"),
            Err(ViewError::Unbound)
        );
        // Relabelled to the later request without the seal.
        assert_eq!(
            check(Some("b1:8"), Some(&sig), "b1:8"),
            Err(ViewError::Unbound)
        );
        // Stripped of its binding.
        assert_eq!(check(None, None, "b1:7"), Err(ViewError::Unbound));
        assert_eq!(check(Some("b1:7"), None, "b1:7"), Err(ViewError::Unbound));
        // Bound for another node, or with another node's key.
        let theirs = sign_basis(&key, "b", "b1:7", &v.sig);
        assert_eq!(
            check(Some("b1:7"), Some(&theirs), "b1:7"),
            Err(ViewError::Unbound)
        );
        let b_key = brh_shared::keys::node_key(seal, "dev", "b");
        let theirs = sign_basis(&b_key, "a", "b1:7", &v.sig);
        assert_eq!(
            check(Some("b1:7"), Some(&theirs), "b1:7"),
            Err(ViewError::Unbound)
        );
    }

    #[test]
    fn shutdown_demotes_then_resigns_with_a_bounded_budget() {
        let mut r = RoleState::new("a", T).with_schedule(true, None, 0);
        let v = vv(Some("a"), 3, 10_000, 13_000);
        r.handle_answer(&Action::Heartbeat, 0, 5, Outcome::View(&v), 0);
        let _ = r.poll_transition();
        assert_eq!(r.begin_shutdown(100), Some(3));
        assert!(matches!(
            r.poll_transition(),
            Some(Transition::Demote {
                reason: DemoteReason::Shutdown,
                ..
            })
        ));
        assert!(
            r.guard(100).is_err(),
            "the guard closes before the resign leaves"
        );
        let mut at = 100;
        for attempt in 1..=RESIGN_ATTEMPTS {
            assert_eq!(
                r.poll_action(at),
                Some(Action::Resign { term: 3 }),
                "{attempt}"
            );
            r.handle_answer(&Action::Resign { term: 3 }, at, at + 1, Outcome::Failed, 0);
            if attempt < RESIGN_ATTEMPTS {
                let next = r.poll_timeout(at + 1).unwrap();
                assert_eq!(next - (at + 1), RETRY_BASE_MS << (attempt - 1), "backoff");
                assert_eq!(r.poll_action(at + 2), None, "not before the backoff");
                at = next;
            }
        }
        assert!(r.shutdown_finished(at + 10));
        assert_eq!(r.poll_timeout(at + 10), None);
        assert_eq!(r.resign_abandoned(), Some(3));
        // Success ends it at once; a witness says farewell once.
        let mut r = RoleState::new("a", T).with_schedule(true, None, 0);
        r.handle_answer(&Action::Heartbeat, 0, 5, Outcome::View(&v), 0);
        r.begin_shutdown(10);
        r.handle_answer(&Action::Resign { term: 3 }, 10, 11, Outcome::View(&v), 0);
        assert!(r.shutdown_finished(11));
        assert_eq!(r.resign_abandoned(), None);
        let mut w = RoleState::new("a", T).with_schedule(true, None, 0);
        assert_eq!(w.begin_shutdown(0), None);
        assert_eq!(w.poll_action(0), Some(Action::Farewell));
        assert_eq!(w.poll_action(1), None);
        assert!(w.shutdown_finished(1));
        // The budget: the ttl (3 s here), at most 10 s.
        let mut r = RoleState::new("a", T).with_schedule(true, None, 0);
        r.handle_answer(&Action::Heartbeat, 0, 5, Outcome::View(&v), 0);
        r.begin_shutdown(0);
        assert_eq!(r.poll_action(3_000), None);
        assert!(r.shutdown_finished(3_000));
    }

    #[test]
    fn a_switchover_steps_down_before_its_resign_and_ignores_older_grants() {
        let mut r = RoleState::new("a", T).with_schedule(true, None, 0);
        let v = vv(Some("a"), 3, 10_000, 13_000);
        r.handle_answer(&Action::Heartbeat, 0, 5, Outcome::View(&v), 0);
        let _ = r.poll_transition();
        assert_eq!(r.handle_switchover_request("b", 100), Ok(3));
        assert!(matches!(
            r.poll_transition(),
            Some(Transition::Demote {
                term: 3,
                reason: DemoteReason::Switchover,
                at_ms: 100,
                ..
            })
        ));
        assert!(r.guard(100).is_err(), "the guard closes before the resign leaves");
        assert_eq!(
            r.handle_switchover_request("c", 100),
            Err(NotLeader {
                leader: None,
                reason: "handing the lease over"
            })
        );
        let hand = Action::Switchover {
            term: 3,
            to: "b".into(),
        };
        assert_eq!(r.poll_action(100), Some(hand.clone()));
        assert_eq!(r.poll_action(5_000), None, "one action at a time");
        // A grant of the handed-over term that the forge gave before the resign (a push bound
        // to a beat sent before the step-down) is not acted on.
        r.handle_push(50, 120, &vv(Some("a"), 3, 10_100, 13_100));
        assert_eq!(r.poll_transition(), None);
        // The forge refused (or the resign was lost): our lease may be intact, and the next
        // heartbeat, sent after the step-down, promotes us afresh.
        r.handle_answer(&hand, 100, 130, Outcome::Failed, 0);
        assert!(r.guard(130).is_err());
        assert_eq!(r.poll_action(1_000), Some(Action::Heartbeat));
        r.handle_answer(&Action::Heartbeat, 1_000, 1_010, Outcome::View(&v), 0);
        assert_eq!(
            r.poll_transition(),
            Some(Transition::Promote {
                term: 3,
                at_ms: 1_010
            })
        );
        // Accepted: the answer names the successor; a witness cannot hand over.
        assert_eq!(r.handle_switchover_request("b", 1_100), Ok(3));
        let _ = r.poll_transition();
        assert_eq!(r.poll_action(1_100), Some(hand.clone()));
        let after = vv(Some("b"), 4, 11_200, 14_200);
        r.handle_answer(&hand, 1_100, 1_120, Outcome::View(&after), 0);
        assert_eq!(r.poll_transition(), None);
        assert_eq!(r.leader(), (Some("b"), 4));
        assert_eq!(
            r.handle_switchover_request("b", 1_200),
            Err(NotLeader {
                leader: Some("b".into()),
                reason: "witness"
            })
        );
        // Shutting down: no switchover.
        let mut s = RoleState::new("a", T).with_schedule(true, None, 0);
        s.handle_answer(&Action::Heartbeat, 0, 5, Outcome::View(&v), 0);
        s.begin_shutdown(10);
        assert!(s.handle_switchover_request("b", 10).is_err());
    }

    #[test]
    fn grant_deadline_counts_from_send_time() {
        let mut r = RoleState::new("a", T);
        // Sent at 1000, answered at 1400; forge clock says 3000 ms of lease are left.
        let t = r.on_view(1000, 1400, &vv(Some("a"), 5, 50_000, 53_000));
        assert_eq!(
            t,
            vec![Transition::Promote {
                term: 5,
                at_ms: 1400
            }]
        );
        // deadline = 1000 + 3000 - 300
        assert_eq!(
            r.held(1400),
            Some(Held {
                term: 5,
                deadline_ms: 3700
            })
        );
        assert_eq!(r.guard(3699), Ok(5));
        assert!(r.guard(3700).is_err());
        assert_eq!(
            r.tick(3750),
            Some(Transition::Demote {
                term: 5,
                leader: None,
                reason: DemoteReason::Deadline,
                at_ms: 3700
            })
        );
        assert_eq!(r.tick(3800), None);
    }

    #[test]
    fn renewal_extends_and_late_answer_does_not_resurrect() {
        let mut r = RoleState::new("a", T);
        r.on_view(0, 10, &vv(Some("a"), 1, 0, 3000));
        assert!(r
            .on_view(1000, 1010, &vv(Some("a"), 1, 1000, 4000))
            .is_empty());
        assert_eq!(r.held(1010).unwrap().deadline_ms, 3700);
        // An answer arriving after the deadline: demote at the deadline first, then the
        // fresh grant (measured from its own send time) starts a new interval.
        let t = r.on_view(3000, 3800, &vv(Some("a"), 1, 3000, 6000));
        assert_eq!(
            t,
            vec![
                Transition::Demote {
                    term: 1,
                    leader: None,
                    reason: DemoteReason::Deadline,
                    at_ms: 3700
                },
                Transition::Promote {
                    term: 1,
                    at_ms: 3800
                }
            ]
        );
        // A grant that is already unusable when it arrives is not acted on.
        let mut r = RoleState::new("a", T);
        assert!(r.on_view(0, 2800, &vv(Some("a"), 1, 0, 3000)).is_empty());
        assert!(r.guard(2800).is_err());
    }

    #[test]
    fn forge_saying_witness_demotes_and_term_change_refences() {
        let mut r = RoleState::new("a", T);
        r.on_view(0, 10, &vv(Some("a"), 1, 0, 3000));
        let t = r.on_view(500, 510, &vv(Some("a"), 2, 500, 3500));
        assert!(matches!(
            t[0],
            Transition::Demote {
                term: 1,
                reason: DemoteReason::TermChanged,
                ..
            }
        ));
        assert_eq!(
            t[1],
            Transition::Promote {
                term: 2,
                at_ms: 510
            }
        );
        let t = r.on_view(600, 610, &vv(Some("b"), 3, 600, 3600));
        assert_eq!(
            t,
            vec![Transition::Demote {
                term: 2,
                leader: Some("b".into()),
                reason: DemoteReason::Forge,
                at_ms: 610
            }]
        );
        assert_eq!(
            r.guard(620),
            Err(NotLeader {
                leader: Some("b".into()),
                reason: "witness"
            })
        );
    }

    #[test]
    fn failures_do_not_change_role_before_deadline() {
        let mut r = RoleState::new("a", T);
        r.on_view(0, 10, &vv(Some("a"), 1, 0, 3000));
        assert_eq!(r.on_failure(1000, 2000), None);
        assert_eq!(r.guard(2000), Ok(1));
        assert!(matches!(
            r.on_failure(2000, 2700),
            Some(Transition::Demote { .. })
        ));
        assert!(r.guard(2700).is_err());
    }

    #[test]
    fn stop_demotes_and_never_leads_again() {
        let mut r = RoleState::new("a", T);
        r.on_view(0, 10, &vv(Some("a"), 4, 0, 3000));
        let (t, term) = r.stop(100);
        assert!(matches!(
            t,
            Some(Transition::Demote {
                reason: DemoteReason::Shutdown,
                at_ms: 100,
                ..
            })
        ));
        assert_eq!(term, Some(4));
        assert!(r.on_view(200, 210, &vv(Some("a"), 4, 200, 3200)).is_empty());
        assert!(r.guard(220).is_err());
        let mut w = RoleState::new("a", T);
        assert_eq!(w.stop(0), (None, None));
        // Refused grant (pinned timing): not acting, but the forge's lease is handed back.
        let mut p = RoleState::new("a", Timing::DEFAULT).with_timing_source(TimingSource::Pinned);
        assert!(p.on_view(0, 10, &vv(Some("a"), 6, 0, 3000)).is_empty());
        assert_eq!(p.stop(20), (None, Some(6)));
    }

    #[test]
    fn witness_probes_just_after_the_lease_ends() {
        let mut r = RoleState::new("a", T);
        assert_eq!(r.next_beat_at(7, 0), 7, "first beat at once");
        // Leader b renewed long ago: 1200 ms left as of issue; we received at 1050.
        r.on_view(1000, 1050, &vv(Some("b"), 3, 9000, 10_200));
        // Regular beat would be 2000; the lease ends by 1050 + 1200 = 2250 → regular first.
        assert_eq!(r.next_beat_at(1100, 0), 2000);
        r.on_view(2000, 2040, &vv(Some("b"), 3, 10_000, 10_200));
        // Lease ends by 2040 + 200: beat at 2245 rather than at 3000.
        assert_eq!(r.next_beat_at(2050, 0), 2240 + PROBE_SLACK_MS);
        // If that probe was early (same lease still shown), wait at least interval / 10.
        r.on_view(2245, 2250, &vv(Some("b"), 3, 10_200, 10_200));
        assert_eq!(r.next_beat_at(2250, 0), 2345);
        // A vacant view: regular beats.
        r.on_view(2345, 2350, &vv(None, 3, 10_300, 0));
        assert_eq!(r.next_beat_at(2350, 0), 3345);
    }

    #[test]
    fn nudges_bring_the_next_beat_forward_but_keep_a_gap() {
        let mut r = RoleState::new("a", T);
        r.on_view(1000, 1010, &vv(Some("b"), 1, 0, 3000));
        assert_eq!(r.next_beat_at(1020, 0), 2000);
        r.nudge();
        assert_eq!(r.next_beat_at(1002, 0), 1000 + NUDGE_GAP_MS);
        assert_eq!(r.next_beat_at(1300, 0), 1250, "due at once");
        r.on_view(1300, 1310, &vv(None, 1, 0, 0));
        assert_eq!(r.next_beat_at(1320, 0), 2300, "a nudge counts once");
        r.stop(1400);
        r.nudge();
        assert_eq!(r.next_beat_at(1400, 0), 2300);
    }

    #[test]
    fn retries_back_off_with_jitter_up_to_the_interval() {
        let mut r = RoleState::new("a", T);
        r.on_failure(0, 0);
        assert_eq!(r.next_beat_at(0, 500), 100);
        assert_eq!(r.next_beat_at(0, 0), 80);
        assert_eq!(r.next_beat_at(0, 999), 119);
        for i in 1..10 {
            r.on_failure(i, i);
        }
        assert!(r.next_beat_at(9, 999) <= 9 + 1200);
    }

    #[test]
    fn a_push_grants_from_its_basis_send_time_and_stale_pushes_are_ignored() {
        let mut r = RoleState::new("a", T);
        // A push arriving 2.5 s after the beat it names: the deadline still counts from the
        // beat (1000 + 3000 − 300), not from the push.
        r.handle_push(1_000, 3_500, &vv(Some("a"), 4, 50, 3_050));
        assert_eq!(
            r.poll_transition(),
            Some(Transition::Promote {
                term: 4,
                at_ms: 3_500
            })
        );
        assert_eq!(r.guard(3_699), Ok(4));
        assert!(r.guard(3_700).is_err());
        // A push about term 3, crossing with the answer that granted term 4: ignored.
        r.handle_push(1_200, 3_600, &vv(Some("b"), 3, 40, 3_040));
        assert_eq!(r.poll_transition(), None);
        assert_eq!(r.guard(3_650), Ok(4));
        // A push of term 5 for b ends our leadership at once.
        r.handle_push(1_300, 3_650, &vv(Some("b"), 5, 60, 3_060));
        assert!(matches!(
            r.poll_transition(),
            Some(Transition::Demote {
                term: 4,
                reason: DemoteReason::Forge,
                ..
            })
        ));
        // A push leaves the beat schedule alone.
        assert_eq!(r.last_attempt_ms, None);
        // Arriving after its own deadline, a push grants nothing.
        let mut late = RoleState::new("a", T);
        late.handle_push(0, 2_800, &vv(Some("a"), 1, 0, 3_000));
        assert_eq!(late.poll_transition(), None);
        assert!(late.guard(2_800).is_err());
    }

    #[derive(Debug, Clone)]
    enum Ev {
        /// Heartbeat sent after `gap` ms, answered after `rtt` ms with a grant for `me` (or
        /// for `b`), the forge's lease running `rem` ms from the answer's issue.
        Answer {
            gap: u64,
            rtt: u64,
            me: bool,
            term_bump: bool,
            rem: u64,
        },
        Fail {
            gap: u64,
            rtt: u64,
        },
        Tick {
            gap: u64,
        },
        /// A push bound to a request sent `back` ms ago, arriving `delay` ms from now.
        Push {
            back: u64,
            delay: u64,
            me: bool,
            term_bump: bool,
            rem: u64,
        },
    }

    fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            (
                0u64..2000,
                0u64..3500,
                any::<bool>(),
                any::<bool>(),
                0u64..4000
            )
                .prop_map(|(gap, rtt, me, term_bump, rem)| Ev::Answer {
                    gap,
                    rtt,
                    me,
                    term_bump,
                    rem
                }),
            (0u64..2000, 0u64..3500).prop_map(|(gap, rtt)| Ev::Fail { gap, rtt }),
            (0u64..2000).prop_map(|gap| Ev::Tick { gap }),
            (
                0u64..4000,
                0u64..3500,
                any::<bool>(),
                any::<bool>(),
                0u64..4000
            )
                .prop_map(|(back, delay, me, term_bump, rem)| Ev::Push {
                    back,
                    delay,
                    me,
                    term_bump,
                    rem
                }),
        ]
    }

    proptest! {
        /// Whatever the forge answers and however late: the guard only admits at times when
        /// the forge's lease (as the forge's clock would see it, the request having arrived
        /// no earlier than it was sent) is still valid for the guarded term, minus the margin;
        /// and transitions alternate Promote/Demote with Demote at or before the deadline.
        #[test]
        fn guard_never_outlives_the_forge_lease(evs in proptest::collection::vec(ev(), 1..60)) {
            let mut r = RoleState::new("a", T);
            let mut now = 0u64;
            let mut term = 1u64;
            // (term, latest forge-side expiry on our clock) of each grant we were given.
            let mut forge_expiry: Option<(u64, u64)> = None;
            let mut leading = false;
            for e in evs {
                let (sent, recv, trans) = match e {
                    Ev::Answer { gap, rtt, me, term_bump, rem } => {
                        if term_bump { term += 1; }
                        let sent = now + gap;
                        // The forge handled the request at some point in [sent, sent + rtt];
                        // take the worst case for safety: as early as possible.
                        let recv = sent + rtt;
                        let v = if me {
                            let e = sent + rem; // forge expiry on our clock, worst case
                            forge_expiry = Some(match forge_expiry {
                                Some((t, old)) if t == term => (t, old.max(e)),
                                _ => (term, e),
                            });
                            vv(Some("a"), term, 1_000_000, 1_000_000 + rem)
                        } else {
                            vv(Some("b"), term, 1_000_000, 1_000_000 + rem)
                        };
                        (sent, recv, r.on_view(sent, recv, &v))
                    }
                    Ev::Fail { gap, rtt } => {
                        let sent = now + gap;
                        (sent, sent + rtt, r.on_failure(sent, sent + rtt).into_iter().collect())
                    }
                    Ev::Tick { gap } => (now, now + gap, r.tick(now + gap).into_iter().collect()),
                    Ev::Push { back, delay, me, term_bump, rem } => {
                        if term_bump { term += 1; }
                        // The forge read the basis request no earlier than it was sent.
                        let basis = now.saturating_sub(back);
                        let recv = now + delay;
                        let holder = if me {
                            let e = basis + rem;
                            forge_expiry = Some(match forge_expiry {
                                Some((t, old)) if t == term => (t, old.max(e)),
                                _ => (term, e),
                            });
                            "a"
                        } else {
                            "b"
                        };
                        r.handle_push(basis, recv, &vv(Some(holder), term, 1_000_000, 1_000_000 + rem));
                        let trans: Vec<_> = std::iter::from_fn(|| r.poll_transition()).collect();
                        (basis, recv, trans)
                    }
                };
                let _ = sent;
                for t in &trans {
                    match t {
                        Transition::Promote { .. } => { prop_assert!(!leading); leading = true; }
                        Transition::Demote { .. } => { prop_assert!(leading); leading = false; }
                    }
                }
                now = recv;
                // Probe the guard across the whole span up to the next event.
                for probe in [now, now + 1, now + 299, now + 300, now + 2999, now + 4000] {
                    if let Ok(t) = r.guard(probe) {
                        let (ft, fe) = forge_expiry.expect("guard admits only after a grant");
                        prop_assert_eq!(t, ft);
                        prop_assert!(probe + T.safety_margin_ms() <= fe,
                            "guard admitted at {} but forge lease ends at {}", probe, fe);
                    }
                }
                prop_assert!(r.next_beat_at(now, 500) >= now.min(r.last_attempt_ms.unwrap_or(now)));
            }
        }
    }
}
