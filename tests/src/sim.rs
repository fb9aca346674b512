//! A deterministic simulation of a whole federation (docs/design.md §4.5), in the manner of
//! FoundationDB's and TigerBeetle's simulators: the real agent role keeping
//! (`brh_agent::role::RoleState`) and the real forge (`Forge::handle` over an in-memory store
//! that keeps what the forge's durability rule makes durable), real signing and real
//! verification, driven by one seeded random generator on a simulated true clock.
//!
//! Faults: message delay (so reordering), loss, duplication, misdelivery (an answer given
//! to another node) and stale replays (an answer captured earlier, delivered to another node
//! later), network partitions of one node, process pauses longer than the lease,
//! kill -9 and restart with a new boot id, forge restarts from its durable state, wall-clock
//! steps (past the forge's skew window too), and per-node clock-rate drift within the margin
//! the timing rule allows.
//!
//! Transports: most nodes beat over the forge's stream (`Forge::handle_stream`, frames signed
//! with the method line `WS`), the others over HTTP; after every leader change the forge
//! pushes `Forge::stream_view` to every node with a socket, bound to that node's newest
//! accepted frame. Pushes travel the same faulty wire (delayed, lost, duplicated, reordered)
//! and stale ones are replayed to their addressee later (`replay-push`); a node measures a
//! pushed grant from its basis beat's send time (`RoleState::handle_push`). Stream nodes also
//! send consensus reports now and then, and any accepted frame is a basis, as for the agent.
//!
//! Operators act on their own schedule (their own generator, outside the fault budget),
//! whatever faults are active: graceful shutdowns — a leader resigns, with retries, within the
//! shutdown budget; a witness says farewell with a draining beat — after which the process
//! exits and starts again with a new boot; and switchovers asked of the leader, to a named
//! node, to the best one (`switchover::choose_successor` over the forge's peers, as the agent
//! chooses), or to a named node that is killed before the resign reaches the forge.
//!
//! Each node is driven through exactly the surface the keeper drives (`RoleState::poll_action`,
//! `handle_answer`, `poll_timeout`, `handle_timeout`, `poll_transition`, `handle_push`,
//! `begin_shutdown`, `handle_switchover_request`), one action on the wire at a time.
//!
//! Checked after every step, on the true clock:
//! - **safety**: when a node starts acting (a promotion, or a pause ending with its guard
//!   still open), no other running node's guard is open — so no two acting intervals overlap;
//! - **terms**: the forge's term never decreases (restarts included), and promotions of
//!   different nodes come with strictly increasing terms;
//! - **liveness**: once no fault is active and a node is up, some node acts within
//!   ttl + one heartbeat + twice the largest delay + the margin.
//!
//! Forge replicas (`Sim::with_replicas`, docs/design.md §12): the single forge's restarts become
//! failovers between replicas over a linearizable store with leases. The active replica is
//! killed, paused (a zombie: what reaches it is read when it resumes, its proof checked then),
//! cut off from the store while nodes still reach it, or the store itself is out of reach; a
//! replica takes over once the store's lease has ended (its lessor up to 500 ms late, a poll
//! later), from the durable state with the restart rule, as a new generation. The zombie's
//! proof counts from the send time of its last answered keepalive (sometimes answered after a
//! stall longer than the lease), its writes are fenced, and nodes hold both addresses, moving
//! to the other one when theirs does not answer (a restarted node starts at either).
//!
//! A run is a pure function of its seed: a failure prints the seed and the last events, and
//! `Sim::new(seed, profile).run(…)` replays it exactly.
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use brh_agent::forge_stream::SentBeats;
use brh_agent::role::{
    Action, Outcome, RoleState, TimingSource, Transition, VerifiedView, ViewKeys,
};
use brh_agent::switchover::choose_successor;
use brh_shared::election::{ElectionConfig, EnvState};
use brh_shared::replay::Nonce;
use brh_shared::sign::{
    sign_request, HEADER_BASIS, HEADER_BASIS_SIG, HEADER_KEY_GEN, HEADER_NODE, HEADER_NONCE,
    HEADER_SIG, HEADER_TS,
};
use brh_shared::wire::{
    ConsensusReport, ErrorBody, ErrorCode, Heartbeat, LeaderView, ResignRequest, StreamMessage,
    StreamRequest, STREAM_METHOD,
};
use brh_shared::Timing;
use forge_worker::http::Request;
use forge_worker::store::{
    step_in_memory, Answer, EnvSlot, Event, HistoryPage, StepError, Stepped, StoreError,
};
use forge_worker::{Forge, ForgeConfig, Store};

const SEAL: &[u8] = b"simulation-seal-0123456789abcdef";
const ENV: &str = "sim";

/// splitmix64: small, fast, and the same on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi` (`lo` when empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo)
        }
    }
    /// True with probability `p_permille / 1000`.
    pub fn chance(&mut self, p_permille: u64) -> bool {
        self.next_u64() % 1000 < p_permille
    }
}

/// Polls a future that never waits (every store call here is synchronous) to completion.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the simulated store never waits"),
    }
}

/// The forge's store: the state in memory, plus exactly what each step's `Outcome` makes
/// durable. A restart keeps only the durable part and applies the restart rule.
#[derive(Default)]
pub struct SimStore {
    slot: std::cell::RefCell<Option<EnvSlot>>,
    durable: std::cell::RefCell<EnvState>,
    /// A deposed replica's store (`Sim::with_replicas`): every write fails (the transaction's
    /// condition on its generation, or the store out of reach), the env then leaves memory,
    /// and it cannot be read back.
    fenced: std::cell::Cell<bool>,
}

impl SimStore {
    fn restart(&self, cfg: &ElectionConfig, now_ms: u64) {
        let mut state = self.durable.borrow().clone();
        state.recover(cfg, now_ms);
        *self.slot.borrow_mut() = Some(EnvSlot {
            state,
            ..EnvSlot::default()
        });
    }
    fn term(&self) -> u64 {
        self.slot.borrow().as_ref().map_or(0, |s| s.state.term)
    }
    /// The lease holder the forge would name now (no step, no persistence), and the term.
    fn leader_term(&self, now_ms: u64, timing: &Timing) -> (Option<String>, u64) {
        match self.slot.borrow().as_ref() {
            Some(s) => {
                let v = s.state.view(ENV, now_ms, timing, "native", None);
                (v.leader, v.term)
            }
            None => (None, 0),
        }
    }
}

impl Store for SimStore {
    async fn step<T>(
        &self,
        _env: &str,
        now_ms: u64,
        event: Event<'_>,
        answer: Answer<'_, T>,
    ) -> Result<Stepped<T>, StepError> {
        let mut held = self.slot.borrow_mut();
        if self.fenced.get() && held.is_none() {
            return Err(StepError::Store(StoreError("the env left memory".into())));
        }
        let slot = held.get_or_insert_with(EnvSlot::default);
        let stepped = step_in_memory(slot, now_ms, event, answer).map_err(StepError::Refused)?;
        if self.fenced.get() && !stepped.outcome.records.is_empty() {
            // Not answered; what memory held is no longer trusted (`Resident`).
            *held = None;
            return Err(StepError::Store(StoreError("write fenced".into())));
        }
        let mut durable = self.durable.borrow_mut();
        for r in &stepped.outcome.records {
            durable.apply_record(r.clone());
        }
        Ok(stepped)
    }
    async fn read<T>(
        &self,
        _env: &str,
        _now_ms: u64,
        f: Answer<'_, T>,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.slot.borrow().as_ref().map(|s| f(&s.state)))
    }
    async fn history(
        &self,
        _env: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        Ok(self
            .slot
            .borrow()
            .as_ref()
            .map(|s| s.page(cursor, limit))
            .unwrap_or_default())
    }
    async fn envs(&self) -> Result<Vec<String>, StoreError> {
        Ok(vec![ENV.into()])
    }
}

/// The timing profiles the simulation runs (default, fast, sub-second).
pub fn profile(name: &str) -> Timing {
    match name {
        "default" => Timing::DEFAULT,
        "fast" => Timing::FAST,
        "subsecond" => Timing {
            heartbeat_interval_ms: 200,
            lease_ttl_ms: 1_000,
        },
        other => panic!("unknown profile {other} (default, fast, subsecond)"),
    }
}

/// Every kind of injected fault, counted.
pub const FAULT_KINDS: [&str; 22] = [
    "delay-reorder",
    "loss",
    "duplicate",
    "misdeliver",
    "replay-stale",
    "replay-own",
    "replay-push",
    "tamper-basis",
    "push-held",
    "partition",
    "pause",
    "kill-restart",
    "forge-restart",
    "clock-step",
    // The operator revokes a node's key (the leader too), then re-enrols it.
    "revoke",
    "drift",
    // The compromised node (n0): requests it signs with its own key in another node's name,
    // and answers it forges for another node with its own key (it is on every link).
    "forged-request",
    "forged-answer",
    // Forge replicas over a store with leases (`Sim::with_replicas`), in place of
    // "forge-restart": the active replica killed, paused (a zombie that resumes), cut off from
    // the store while nodes still reach it, or the store itself unavailable.
    "replica-kill",
    "replica-pause",
    "replica-cut",
    "store-outage",
];

/// What operators do, counted apart from the faults (they do not use up a run's fault
/// budget): graceful shutdowns — a leader resigns, a witness says farewell with a draining
/// beat — and switchovers, to a named node, to the best one, or to a named node that is
/// killed before the resign reaches the forge.
pub const ACTION_KINDS: [&str; 13] = [
    "shutdown",
    "resign",
    "resign-accepted",
    "resign-abandoned",
    "farewell",
    "switchover",
    "switchover-named",
    "switchover-best",
    "switchover-to-dying",
    // Asked of a node the moment it is promoted: the grant's other copies (its push, a
    // duplicate, a replay) are still on the wire when it steps down.
    "switchover-at-grant",
    // The successor the forge granted, as the answer to the resign names it.
    "switchover-handed",
    // Refused by the agent (not leading, no such candidate) or by the forge (`not_candidate`).
    "switchover-refused",
    // The resign was lost, timed out or was answered with something unverifiable.
    "switchover-failed",
];

/// The compromised node's attempts (outside the fault budget, see `Sim::total_faults`).
const ATTEMPTS: [&str; 2] = ["forged-request", "forged-answer"];

fn nonce_of(boot: u64, seq: u64) -> String {
    Nonce::new(format!("b{boot}"), seq).to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Up {
    Running,
    Paused { until: u64 },
    Dead { until: u64 },
}

struct Node {
    name: String,
    /// What `brh-agent enroll` gives this node: its own key, and the keys it checks the
    /// forge's word with. The simulation signs and checks with these, never the seal.
    key: [u8; 32],
    keys: ViewKeys,
    /// Its key's generation: moves on when the operator revokes it and re-enrols the node.
    key_gen: u32,
    role: RoleState,
    up: Up,
    boot: u64,
    seq: u64,
    /// Monotonic clock: `mono = mono_base + (t − t_base) × (1e6 + drift_ppm) / 1e6`.
    drift_ppm: i64,
    mono_base: u64,
    t_base: u64,
    /// Wall clock offset from the true clock (steps move it), ms.
    wall_offset: i64,
    /// The action on the wire, if any: the keeper has one at a time.
    outstanding: Option<Outstanding>,
    /// Shutting down (SIGTERM): the process exits once the role's shutdown is finished.
    stopping: bool,
    /// An operator's switchover the keeper has not started yet: (to, kill the successor).
    switchover_asked: Option<(Option<String>, bool)>,
    /// Answers and pushes that arrived while the process was paused: read when it resumes.
    inbox: Vec<Msg>,
    /// Heartbeats go over the stream (else HTTP), chosen per process.
    stream: bool,
    /// Send times of recent stream beats, by nonce (a push names one as its basis).
    sent_beats: SentBeats,
    partitioned_until: u64,
    jitter: u64,
}

impl Node {
    fn mono(&self, t: u64) -> u64 {
        let dt = (t - self.t_base) as i128;
        (self.mono_base as i128 + dt * (1_000_000 + self.drift_ppm as i128) / 1_000_000) as u64
    }
    /// The first true time at which the monotonic clock reads `m` or more.
    fn true_at(&self, m: u64) -> u64 {
        if m <= self.mono_base {
            return self.t_base;
        }
        let dm = (m - self.mono_base) as i128;
        let rate = 1_000_000 + self.drift_ppm as i128;
        self.t_base + ((dm * 1_000_000 + rate - 1) / rate) as u64
    }
    fn wall(&self, t: u64) -> u64 {
        (t as i64 + self.wall_offset).max(0) as u64
    }
    fn can_act(&self, t: u64) -> bool {
        self.up == Up::Running && self.role.guard(self.mono(t)).is_ok()
    }
    /// `body` for `path` as a stream frame with nonce `seq`, signed at `t`; remembered with
    /// its send time, since a push may name it as its basis (as the agent's `via_stream`).
    fn frame(&mut self, t: u64, seq: u64, path: &str, body: String) -> Vec<u8> {
        let nonce = Nonce::new(format!("b{}", self.boot), seq);
        let h = sign_request(
            &self.key,
            STREAM_METHOD,
            path,
            &self.name,
            self.wall(t),
            nonce,
            body.as_bytes(),
        );
        self.sent_beats.record(h.nonce.to_string(), self.mono(t));
        serde_json::to_vec(&StreamRequest {
            path: path.into(),
            node: h.node,
            ts: h.ts_ms,
            nonce: h.nonce.to_string(),
            sig: h.sig,
            body,
            key_gen: (self.key_gen > 0).then(|| self.key_gen.to_string()),
        })
        .unwrap()
    }
}

/// A request on the wire: the action the role asked for, sent as `seq` at monotonic `sent`;
/// given up at true time `timeout_t`.
#[derive(Debug, Clone)]
struct Outstanding {
    seq: u64,
    sent: u64,
    timeout_t: u64,
    action: Action,
}

#[derive(Clone)]
enum Msg {
    /// To the forge: a signed request from node `from` with sequence `seq`.
    Request {
        from: usize,
        seq: u64,
        req: Box<Request>,
    },
    /// To node `to`: the forge's answer to request `seq` of node `of` (boot `boot`), as a
    /// `StreamMessage` (over HTTP: the view and the `x-brh-basis` headers). `injected`: an
    /// on-path attacker's answer on an HTTP connection, read as the answer to whatever the
    /// node has outstanding (HTTP ties nothing else to the request).
    Answer {
        to: usize,
        of: usize,
        boot: u64,
        seq: u64,
        status: u16,
        body: Vec<u8>,
        stream: bool,
        injected: bool,
    },
    /// To the forge, on node `from`'s socket (boot `boot`): a signed frame.
    Frame {
        from: usize,
        boot: u64,
        seq: u64,
        frame: Vec<u8>,
    },
    /// To node `to`'s socket (boot `boot`): a pushed `StreamMessage`.
    Push { to: usize, boot: u64, body: Vec<u8> },
}

/// One simulated federation.
pub struct Sim {
    pub seed: u64,
    rng: Rng,
    /// Draws for what was added after the fault schedule settled (consensus reports, replays
    /// of a node's own HTTP answers): every seed keeps its schedule, and the mutation checks
    /// depend on particular seeds reaching their faults.
    late_rng: Rng,
    /// Draws of the compromised node (n0), apart for the same reason.
    evil_rng: Rng,
    /// Draws of the operators (shutdowns, switchovers), apart for the same reason.
    ops_rng: Rng,
    /// When the operators act next (`u64::MAX`: never).
    next_op: u64,
    pub actions: BTreeMap<&'static str, u64>,
    evil_seq: u64,
    pub t: u64,
    timing: Timing,
    forge: Forge<SimStore>,
    /// The forge's public key, as every node is enrolled with it.
    forge_key: ed25519_dalek::VerifyingKey,
    forge_down_until: u64,
    next_sweep: u64,
    nodes: Vec<Node>,
    /// (deliver_at, tiebreak, message)
    net: BTreeMap<(u64, u64), Msg>,
    msg_id: u64,
    max_delay: u64,
    /// End of the latest fault; liveness is checked only past it.
    calm_from: u64,
    /// Fault episode the schedule will start next.
    next_fault: u64,
    lossy_until: u64,
    /// Answers seen on the wire, for stale replays: (of, boot, seq, status, body, stream).
    captured: VecDeque<(usize, u64, u64, u16, Vec<u8>, bool)>,
    /// Pushes seen on the wire, for stale replays to their addressee.
    captured_pushes: VecDeque<Msg>,
    /// The forge's end of each node's socket: (boot, basis = newest accepted nonce). Gone
    /// when the forge restarts (the node reconnects on its next beat).
    sockets: Vec<Option<(u64, Option<String>)>>,
    /// Wall-clock steps to undo: (at, node, step).
    pending_unstep: Vec<(u64, usize, i64)>,
    /// Revoked nodes re-enrolled at `(time, node)`: their next key generation.
    pending_reenrol: Vec<(u64, usize)>,
    /// Revocations that hit the node acting as leader at that moment.
    pub revoked_leaders: u64,
    pub faults: BTreeMap<&'static str, u64>,
    /// The longest time from the end of the last fault to a node acting.
    pub worst_recovery_ms: u64,
    recovered: bool,
    /// Highest forge term seen, and the last promotion (node, term).
    max_term: u64,
    last_promotion: Option<(usize, u64)>,
    pub promotions: u64,
    /// Pushes a node verified and handed to its role.
    pub pushes_applied: u64,
    /// Consensus reports sent on the stream (each becomes its socket's basis).
    pub reports: u64,
    /// Promotions that a push caused (the rest came with heartbeat answers).
    pub promotions_by_push: u64,
    trace: VecDeque<String>,
    pub verbose: bool,
    /// Forge replicas over a store with leases, when `with_replicas`.
    replicas: Option<Replicas>,
}

/// The replica model (`Sim::with_replicas`, docs/design.md §12): `forge` is the active
/// replica — on standby until its takeover (`forge_down_until`), then started from the
/// durable state with the restart rule at that instant, as a new generation always is. The
/// replica that was active before, if it may still answer, is the zombie. Nodes hold both
/// addresses and move to the other one when theirs does not serve.
struct Replicas {
    /// Its own draws: seeds keep their schedules with the model off.
    rng: Rng,
    /// The store's lease on the active key (etcd's `--etcd-lease-ttl`).
    store_ttl_ms: u64,
    zombie: Option<Zombie>,
    /// Per node: whether it addresses the zombie now (else the active replica).
    at_zombie: Vec<bool>,
    pub takeovers: u64,
    /// Requests the zombie answered, and of those, how many after the takeover (while its
    /// proof still held: the store's lease had ended, its proof not yet).
    pub zombie_answers: u64,
    pub zombie_answers_late: u64,
}

struct Zombie {
    forge: Forge<SimStore>,
    /// It answers only before this: the send time of its last answered keepalive + the
    /// store's ttl − a margin (`forge_worker::native::replica`), on its own clock.
    proof_until: u64,
    up: Up,
    /// What reached it while paused, read when it resumes.
    inbox: Vec<Msg>,
}

/// The start of a body, for the trace.
fn brief(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(90).collect()
}

/// The proof's margin below the store lease's ttl (as `native/replica.rs`).
fn replica_margin(ttl_ms: u64) -> u64 {
    (ttl_ms / 5).max(200)
}

/// What a run found wrong.
#[derive(Debug)]
pub struct Violation {
    pub seed: u64,
    pub at_ms: u64,
    pub what: String,
    pub trace: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {}: at t={} ms: {}\nlast events (replay: Sim::new({}, profile).run(..)):",
            self.seed, self.at_ms, self.what, self.seed
        )?;
        for l in &self.trace {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

impl Sim {
    pub fn new(seed: u64, timing: Timing, nodes: usize) -> Sim {
        let mut rng = Rng::new(seed);
        let mut cfg = ForgeConfig::new(Some(SEAL.to_vec()), "native");
        cfg.election = ElectionConfig::new(timing);
        let forge = Forge::new(cfg, SimStore::default());
        // Delays: a LAN for the sub-second profile, a WAN-ish spread otherwise; always well
        // under the request timeout so most answers arrive.
        let max_delay = (timing.heartbeat_interval_ms / 8).clamp(5, 300);
        let mut faults = BTreeMap::new();
        for k in FAULT_KINDS {
            faults.insert(k, 0);
        }
        let actions = ACTION_KINDS.iter().map(|k| (*k, 0)).collect();
        let mut ops_rng = Rng::new(seed ^ 0x4f50_4552_4154_4f52);
        let next_op = ops_rng.range(2 * timing.lease_ttl_ms, 6 * timing.lease_ttl_ms);
        let mut sim = Sim {
            seed,
            rng: rng.clone(),
            t: 0,
            timing,
            forge,
            forge_key: brh_shared::keys::forge_signing_key(SEAL).verifying_key(),
            forge_down_until: 0,
            next_sweep: 500,
            nodes: Vec::new(),
            net: BTreeMap::new(),
            msg_id: 0,
            max_delay,
            calm_from: 0,
            next_fault: 0,
            lossy_until: 0,
            pending_unstep: Vec::new(),
            pending_reenrol: Vec::new(),
            revoked_leaders: 0,
            captured: VecDeque::new(),
            captured_pushes: VecDeque::new(),
            sockets: Vec::new(),
            faults,
            worst_recovery_ms: 0,
            recovered: true,
            max_term: 0,
            last_promotion: None,
            promotions: 0,
            pushes_applied: 0,
            reports: 0,
            late_rng: Rng::new(seed ^ 0x5245_504f_5254),
            evil_rng: Rng::new(seed ^ 0x4556_494c),
            evil_seq: 0,
            ops_rng,
            next_op,
            actions,
            promotions_by_push: 0,
            trace: VecDeque::new(),
            verbose: false,
            replicas: None,
        };
        for i in 0..nodes {
            let n = sim.fresh_node(format!("n{i}"), 0, 1, 0);
            sim.nodes.push(n);
            sim.sockets.push(None);
        }
        sim.next_fault = rng.range(timing.lease_ttl_ms, 3 * timing.lease_ttl_ms);
        sim.rng = rng;
        sim
    }

    /// Forge replicas over a store with leases (docs/design.md §12) in place of the single
    /// forge's restarts: the "forge-restart" fault becomes a failover — the active replica
    /// killed, paused past its lease (a zombie that resumes), cut off from the store while the
    /// nodes still reach it, or the store out of reach — after which another replica takes
    /// over from the durable state when the store's lease has run out.
    pub fn with_replicas(mut self) -> Sim {
        let ttl = self.timing.lease_ttl_ms;
        self.replicas = Some(Replicas {
            rng: Rng::new(self.seed ^ 0x5245_504c_4943_4153),
            // As an operator sets it: well under the agents' lease, at least etcd's 1 s.
            store_ttl_ms: (ttl / 5).max(1_000),
            zombie: None,
            at_zombie: vec![false; self.nodes.len()],
            takeovers: 0,
            zombie_answers: 0,
            zombie_answers_late: 0,
        });
        self
    }

    /// Takeovers by another replica so far, answers by the zombie replica, and those of them
    /// given after the takeover (`with_replicas`).
    pub fn replica_counts(&self) -> (u64, u64, u64) {
        self.replicas.as_ref().map_or((0, 0, 0), |r| {
            (r.takeovers, r.zombie_answers, r.zombie_answers_late)
        })
    }

    /// A failover of the active replica (`with_replicas`); returns when it is over (the new
    /// replica serves and the zombie, if any, has resumed).
    fn replica_failover(&mut self) -> u64 {
        let cfg = self.forge_cfg();
        let t0 = self.t;
        let agent_ttl = self.timing.lease_ttl_ms;
        let r = self.replicas.as_mut().expect("replica model");
        let ttl = r.store_ttl_ms;
        let rng = &mut r.rng;
        // The last keepalive the active replica had answered: sent at `k`, received by the
        // store `d1` later, answered `d2` after that — usually quickly, now and then after a
        // network stall (an answer can take longer than the lease itself).
        let slow = rng.chance(250);
        let (d1, d2) = if slow {
            (rng.range(0, ttl / 2 + 1), rng.range(0, 2 * ttl + 1))
        } else {
            (rng.range(0, ttl / 20 + 1), rng.range(0, ttl / 20 + 1))
        };
        let k = t0.saturating_sub(d1 + d2 + rng.range(0, ttl / 3 + 1));
        // The store ends the lease no earlier than ttl after it received the keepalive (its
        // lessor checks now and then: up to 500 ms late).
        let expiry = k + d1 + ttl + rng.range(0, 501);
        let kind = [
            "replica-kill",
            "replica-pause",
            "replica-cut",
            "store-outage",
        ][rng.range(0, 4) as usize];
        // When the replica reads the keepalive's answer: at once, or — paused just after
        // sending it — when it resumes.
        let mut answer_read = k + d1 + d2;
        let (up, store_back) = match kind {
            "replica-kill" => (Up::Dead { until: u64::MAX }, t0),
            "replica-pause" => {
                // Past the store's lease (the zombie case) or not.
                let until = t0 + rng.range(ttl / 4, 2 * ttl + agent_ttl);
                if rng.chance(500) {
                    answer_read = until;
                }
                (Up::Paused { until }, t0)
            }
            "replica-cut" => (Up::Running, t0),
            _ => (Up::Running, t0 + rng.range(ttl / 4, 2 * ttl + agent_ttl)),
        };
        // The proof counts from the keepalive's send, whenever its answer was read.
        let proof_until = k + ttl - replica_margin(ttl);
        // A standby sees the key gone on its next poll (ttl/6), once the store is back.
        let takeover = expiry.max(store_back) + rng.range(0, ttl / 6 + 1);
        for z in r.at_zombie.iter_mut() {
            // Most nodes were talking to the active replica; some had moved to the other.
            *z = rng.chance(800);
        }
        r.takeovers += 1;
        let mut forge_cfg = ForgeConfig::new(Some(SEAL.to_vec()), "native");
        forge_cfg.election = cfg;
        let old = std::mem::replace(&mut self.forge, Forge::new(forge_cfg, SimStore::default()));
        // The new generation starts from the store, never from memory (rule 3).
        *self.forge.store.durable.borrow_mut() = old.store.durable.borrow().clone();
        self.forge.store.restart(&cfg, takeover);
        old.store.fenced.set(true);
        let resumes = match up {
            Up::Paused { until } => until,
            _ => t0,
        };
        let r = self.replicas.as_mut().unwrap();
        r.zombie = Some(Zombie {
            forge: old,
            proof_until,
            up,
            inbox: Vec::new(),
        });
        self.forge_down_until = takeover;
        // Every socket breaks; nodes reconnect with their next beat.
        self.sockets.iter_mut().for_each(|s| *s = None);
        self.count(kind);
        self.log(format!(
            "FAULT {kind}: keepalive sent {k}, its answer read {answer_read}; proof until \
             {proof_until}, store lease ends {expiry}, store back {store_back}, takeover at \
             {takeover}, zombie {up:?}"
        ));
        // A node whose request was lost learns of it by its timeout, then tries the other.
        takeover.max(resumes) + self.timing.heartbeat_interval_ms
    }

    /// Whether node `i`'s requests reach the zombie replica.
    fn at_zombie(&self, i: usize) -> bool {
        self.replicas
            .as_ref()
            .is_some_and(|r| r.zombie.is_some() && r.at_zombie[i])
    }

    /// Node `i` did not get an answer where it asked: its next request goes to the other
    /// address (`brh_agent::forge_urls`).
    fn move_node(&mut self, i: usize) {
        if let Some(r) = self.replicas.as_mut() {
            if r.zombie.is_some() {
                r.at_zombie[i] = !r.at_zombie[i];
            }
        }
    }

    /// A request or a stream frame that reached the zombie replica (`resumed`: read from
    /// what it received while paused, whose senders have moved on already).
    fn zombie_receives(&mut self, m: Msg, resumed: bool) -> Result<(), Violation> {
        let from = match &m {
            Msg::Request { from, .. } | Msg::Frame { from, .. } => *from,
            _ => unreachable!("only requests reach a forge"),
        };
        let t = self.t;
        let z = self.replicas.as_mut().unwrap().zombie.as_mut().unwrap();
        match z.up {
            Up::Dead { .. } => {
                self.move_node(from);
                return Ok(());
            }
            Up::Paused { .. } => {
                z.inbox.push(m);
                self.move_node(from);
                return Ok(());
            }
            Up::Running => {}
        }
        let moves = !resumed;
        // The replica's own check, before it loads anything: past its proof it cannot know
        // whether another replica took over, so it answers nothing (503; the node moves on).
        if t >= z.proof_until {
            if moves {
                self.move_node(from);
            }
            return Ok(());
        }
        let late = t >= self.forge_down_until;
        let r = self.replicas.as_mut().unwrap();
        let z = r.zombie.as_mut().unwrap();
        match m {
            Msg::Request { from, seq, req } => {
                let handled = now(z.forge.handle(&req, t));
                if handled.response.status == 503 {
                    if moves {
                        self.move_node(from);
                    }
                    return Ok(());
                }
                r.zombie_answers += 1;
                r.zombie_answers_late += u64::from(late);
                self.log(format!(
                    "zombie forge <- {} seq={seq}: {}",
                    self.nodes[from].name, handled.response.status
                ));
                self.reply_http(from, seq, &handled.response, false)
            }
            Msg::Frame {
                from,
                boot,
                seq,
                frame,
            } => {
                let out = now(z.forge.handle_stream(ENV, None, &frame, t));
                r.zombie_answers += 1;
                r.zombie_answers_late += u64::from(late);
                let body = serde_json::to_vec(&out.message).unwrap();
                self.log(format!(
                    "zombie forge <= {} seq={seq}: {}",
                    self.nodes[from].name,
                    brief(&body)
                ));
                self.answer(from, boot, seq, 200, body, true);
                Ok(())
            }
            _ => unreachable!(),
        }
    }

    fn fresh_node(&mut self, name: String, t: u64, boot: u64, key_gen: u32) -> Node {
        // Drift within a tenth of the margin the timing rule leaves (margin = ttl / 10):
        // ±1000 ppm is far beyond real quartz (tens of ppm) and still safe.
        let drift_ppm = self.rng.range(0, 2001) as i64 - 1000;
        *self.faults.get_mut("drift").unwrap() += 1;
        let key = brh_shared::keys::node_key_gen(SEAL, ENV, &name, key_gen);
        Node {
            key_gen,
            role: RoleState::new(name.clone(), Timing::DEFAULT)
                .with_timing_source(TimingSource::Forge),
            key,
            keys: ViewKeys {
                node: Some((name.clone(), key)),
                forge: self.forge_key,
            },
            name,
            up: Up::Running,
            boot,
            seq: 0,
            drift_ppm,
            mono_base: self.rng.range(1_000, 1_000_000),
            t_base: t,
            wall_offset: self.rng.range(0, 2_001) as i64 - 1_000,
            outstanding: None,
            stopping: false,
            switchover_asked: None,
            inbox: Vec::new(),
            stream: self.rng.chance(750),
            sent_beats: SentBeats::default(),
            partitioned_until: 0,
            jitter: self.rng.range(0, 1000),
        }
    }

    fn log(&mut self, s: String) {
        if self.verbose {
            eprintln!("{:>9} {s}", self.t);
        }
        self.trace.push_back(format!("t={} {s}", self.t));
        if self.trace.len() > 60 {
            self.trace.pop_front();
        }
    }

    fn violation(&self, what: String) -> Violation {
        Violation {
            seed: self.seed,
            at_ms: self.t,
            what,
            trace: self.trace.iter().cloned().collect(),
        }
    }

    fn count(&mut self, kind: &'static str) {
        *self.faults.get_mut(kind).unwrap() += 1;
    }

    /// The schedule's faults. The compromised node's attempts are counted apart: refused,
    /// they change nothing, so they must not use up a run's fault budget.
    pub fn total_faults(&self) -> u64 {
        self.faults
            .iter()
            .filter(|(k, _)| !ATTEMPTS.contains(k))
            .map(|(_, v)| v)
            .sum()
    }

    fn send(&mut self, at: u64, msg: Msg) {
        // Loss, duplication and delay happen on the wire; the wire is lossy only in fault
        // episodes, so quiet stretches let liveness be checked.
        let lossy = self.t < self.lossy_until;
        if lossy && self.rng.chance(150) {
            self.count("loss");
            return;
        }
        let copies = if lossy && self.rng.chance(80) {
            self.count("duplicate");
            2
        } else {
            1
        };
        for _ in 0..copies {
            // Quiet wire: a quarter of the largest delay. Faulty wire: up to all of it, so
            // messages overtake each other.
            let d = if lossy {
                let d = self.rng.range(0, self.max_delay + 1);
                if d > self.max_delay / 4 {
                    self.count("delay-reorder");
                }
                d
            } else {
                self.rng.range(0, self.max_delay / 4 + 1)
            };
            self.msg_id += 1;
            let m = msg.clone();
            self.net.insert((at + d, self.msg_id), m);
        }
    }

    /// A consensus report on node `i`'s socket, as the agent sends one every
    /// `BRH_CONSENSUS_INTERVAL`: the forge accepts it, so it becomes the socket's basis and a
    /// push bound to it is measured from its send time. Its answer is informational: the node
    /// does not wait for it (a late one is dropped like any answer not outstanding).
    fn consensus_report(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.seq += 1;
        let seq = n.seq;
        let (leader, term) = {
            let (l, t) = n.role.leader();
            (l.map(String::from), t)
        };
        let body = serde_json::to_string(&ConsensusReport {
            env: ENV.into(),
            leader,
            term,
            peers: Vec::new(),
            epoch: n.wall(self.t) / 1000,
        })
        .unwrap();
        let frame = n.frame(self.t, seq, "/federation/consensus", body);
        let boot = n.boot;
        self.reports += 1;
        self.send(
            self.t,
            Msg::Frame {
                from: i,
                boot,
                seq,
                frame,
            },
        );
    }

    /// The action the role asked for as a signed request, as `exchange::perform` sends it:
    /// a heartbeat, the farewell (a heartbeat marked draining), a shutdown's resign, or a
    /// switchover's resign naming the successor.
    fn send_action(&mut self, i: usize, action: Action) {
        // One beat in twenty is preceded by a consensus report (far more often than the
        // agent's 180 s, so pushes bound to a report are common).
        if action == Action::Heartbeat && self.nodes[i].stream && self.late_rng.chance(50) {
            self.consensus_report(i);
        }
        let n = &mut self.nodes[i];
        n.seq += 1;
        let seq = n.seq;
        let mono = n.mono(self.t);
        let beat = |draining| Heartbeat {
            env: ENV.into(),
            priority: 0,
            draining,
            uptime_s: 1,
            version: "sim".into(),
            api: None,
        };
        let resign = |term, leaving, successor| ResignRequest {
            env: ENV.into(),
            term,
            leaving,
            successor,
        };
        let (path, body, what) = match &action {
            Action::Heartbeat => (
                "/federation/heartbeat",
                serde_json::to_vec(&beat(false)),
                "beat".to_string(),
            ),
            Action::Farewell => (
                "/federation/heartbeat",
                serde_json::to_vec(&beat(true)),
                "farewell beat".to_string(),
            ),
            Action::Resign { term } => (
                "/federation/resign",
                serde_json::to_vec(&resign(*term, true, None)),
                format!("resign term={term}"),
            ),
            Action::Switchover { term, to } => (
                "/federation/resign",
                serde_json::to_vec(&resign(*term, false, Some(to.clone()))),
                format!("switchover term={term} to={to}"),
            ),
            Action::LeaderPoll | Action::Consensus => {
                unreachable!("simulated nodes beat and never schedule reports")
            }
        };
        let body = body.unwrap();
        let boot = n.boot;
        let msg = if n.stream {
            let frame = n.frame(self.t, seq, path, String::from_utf8(body).unwrap());
            Msg::Frame {
                from: i,
                boot,
                seq,
                frame,
            }
        } else {
            let h = sign_request(
                &n.key,
                "POST",
                path,
                &n.name,
                n.wall(self.t),
                Nonce::new(format!("b{}", n.boot), seq),
                &body,
            );
            let mut req = Request::new("POST", path);
            req.add_header(HEADER_NODE, &h.node);
            req.add_header(HEADER_TS, &h.ts_ms.to_string());
            req.add_header(HEADER_NONCE, &h.nonce.to_string());
            req.add_header(HEADER_SIG, &h.sig);
            if n.key_gen > 0 {
                req.add_header(HEADER_KEY_GEN, &n.key_gen.to_string());
            }
            req.body = body;
            Msg::Request {
                from: i,
                seq,
                req: Box::new(req),
            }
        };
        // The keeper's request timeout: three quarters of the interval in force.
        let timeout = (n.role.timing().heartbeat_interval_ms * 3 / 4).max(100);
        let timeout_t = n.true_at(mono + timeout);
        n.outstanding = Some(Outstanding {
            seq,
            sent: mono,
            timeout_t,
            action,
        });
        let cut = n.partitioned_until > self.t;
        self.log(format!(
            "{} {what} seq={seq}{}",
            self.nodes[i].name,
            if cut { " (cut)" } else { "" }
        ));
        if !cut {
            self.send(self.t, msg);
        }
    }

    /// A frame on node `from`'s socket: the same checks as HTTP, the answer bound to it.
    fn forge_receives_frame(
        &mut self,
        from: usize,
        boot: u64,
        seq: u64,
        frame: &[u8],
    ) -> Result<(), Violation> {
        if self.at_zombie(from) {
            let m = Msg::Frame {
                from,
                boot,
                seq,
                frame: frame.to_vec(),
            };
            return self.zombie_receives(m, false);
        }
        if self.t < self.forge_down_until {
            // A replica on standby (before its takeover) does not serve: the node moves on.
            self.move_node(from);
            return Ok(());
        }
        // A socket from an earlier boot (or from before a forge restart) is a new socket.
        let (bound, basis) = match &self.sockets[from] {
            Some((b, basis)) if *b == boot => (Some(self.nodes[from].name.clone()), basis.clone()),
            _ => (None, None),
        };
        let out = now(self
            .forge
            .handle_stream(ENV, bound.as_deref(), frame, self.t));
        self.check_term()?;
        self.sockets[from] = Some((boot, out.accepted.clone().or(basis)));
        let body = serde_json::to_vec(&out.message).unwrap();
        self.log(format!(
            "forge <= {} seq={seq}: {}",
            self.nodes[from].name,
            brief(&body)
        ));
        let changed = !out.leader_changes.is_empty();
        self.answer(from, boot, seq, 200, body, true);
        if from != 0 && self.t < self.lossy_until && self.evil_rng.chance(120) {
            self.compromised_acts(from, boot, seq)?;
        }
        if changed {
            self.push_all();
        }
        Ok(())
    }

    /// After a leader change: every node with a socket gets the view as it sees it, bound to
    /// its newest accepted frame.
    fn push_all(&mut self) {
        for j in 0..self.nodes.len() {
            let Some((boot, basis)) = self.sockets[j].clone() else {
                continue;
            };
            let name = self.nodes[j].name.clone();
            let Some(m) = now(self
                .forge
                .stream_view(ENV, Some(&name), basis.as_deref(), self.t))
            else {
                continue;
            };
            let msg = Msg::Push {
                to: j,
                boot,
                body: serde_json::to_vec(&m).unwrap(),
            };
            self.captured_pushes.push_back(msg.clone());
            if self.captured_pushes.len() > 256 {
                self.captured_pushes.pop_front();
            }
            // A stale push, replayed to its own addressee (the one node it could mislead).
            if self.t < self.lossy_until && self.rng.chance(40) {
                let k = self.rng.range(0, self.captured_pushes.len() as u64) as usize;
                let old = self.captured_pushes[k].clone();
                self.count("replay-push");
                self.send(self.t, old);
            }
            // The attacker's favourite moment: cut a node off just as it is granted, before
            // any renewal can tell it something newer than this grant.
            let grants_j = serde_json::from_slice::<StreamMessage>(match &msg {
                Msg::Push { body, .. } => body,
                _ => unreachable!(),
            })
            .ok()
            .and_then(|m| m.view)
            .and_then(|v| v.leader)
            .is_some_and(|l| l == name);
            self.send(self.t, msg);
            if grants_j && self.nodes[j].partitioned_until <= self.t && self.rng.chance(20) {
                let ttl = self.timing.lease_ttl_ms;
                let d = self.rng.range(ttl, 3 * ttl);
                self.nodes[j].partitioned_until = self.t + d;
                self.calm_from = self.calm_from.max(self.t + d);
                self.recovered = false;
                self.count("partition");
                self.log(format!(
                    "FAULT partition {name} as it is granted, for {d} ms"
                ));
            }
            // An on-path attacker who cut a node off replays the last push it saw for it,
            // relabelled as following the node's newest beat (the basis is a plain field;
            // only basis_sig binds it): an old grant would look fresh.
            if self.nodes[j].partitioned_until > self.t && self.rng.chance(500) {
                self.tamper_replay(j);
            }
        }
    }

    fn tamper_replay(&mut self, j: usize) {
        let boot = self.nodes[j].boot;
        let Some(newest) = self.nodes[j].sent_beats.newest().map(String::from) else {
            return;
        };
        // The last push that granted it the lease: the one worth replaying.
        let name = self.nodes[j].name.clone();
        let last = self.captured_pushes.iter().rev().find_map(|m| match m {
            Msg::Push { to, boot: b, body } if *to == j && *b == boot => {
                serde_json::from_slice::<StreamMessage>(body)
                    .ok()
                    .filter(|m| m.view.as_ref().and_then(|v| v.leader.as_deref()) == Some(&name))
            }
            _ => None,
        });
        let Some(mut m) = last else {
            return;
        };
        if m.basis.as_deref() == Some(newest.as_str()) {
            return;
        }
        m.basis = Some(newest);
        self.count("tamper-basis");
        let body = serde_json::to_vec(&m).unwrap();
        self.send(self.t, Msg::Push { to: j, boot, body });
    }

    /// A push reaches node `to`.
    fn node_receives_push(&mut self, to: usize, boot: u64, body: &[u8]) -> Result<(), Violation> {
        let n = &self.nodes[to];
        if boot != n.boot {
            return Ok(()); // for a process that is gone
        }
        if n.partitioned_until > self.t {
            // The socket may outlive the partition (TCP retransmits): then the push arrives
            // when it heals, however old — the case a push must be safe in.
            if self.rng.chance(500) {
                self.count("push-held");
                self.nodes[to].inbox.push(Msg::Push {
                    to,
                    boot,
                    body: body.to_vec(),
                });
            }
            return Ok(());
        }
        match n.up {
            Up::Dead { .. } => return Ok(()),
            Up::Paused { .. } => {
                self.nodes[to].inbox.push(Msg::Push {
                    to,
                    boot,
                    body: body.to_vec(),
                });
                return Ok(());
            }
            Up::Running => {}
        }
        if self.nodes[to].stopping {
            return Ok(()); // the keeper reads no pushes once it is stopping
        }
        let Ok(m) = serde_json::from_slice::<StreamMessage>(body) else {
            return Ok(());
        };
        let Some(view) = self.verified_stream_view(to, &m, m.basis.as_deref()) else {
            return Ok(());
        };
        let n = &self.nodes[to];
        let Some(sent) = m.basis.as_deref().and_then(|b| n.sent_beats.sent_at(b)) else {
            return Ok(());
        };
        let recv = n.mono(self.t);
        self.log(format!(
            "{} push: leader={:?} term={}",
            n.name,
            view.view().leader,
            view.view().term
        ));
        let node = &mut self.nodes[to];
        node.role.handle_push(sent, recv, &view);
        let ts: Vec<_> = std::iter::from_fn(|| node.role.poll_transition()).collect();
        self.pushes_applied += 1;
        self.promotions_by_push += ts
            .iter()
            .filter(|t| matches!(t, Transition::Promote { .. }))
            .count() as u64;
        self.transitions(to, ts)
    }

    /// The agent's own check (`VerifiedView::check_bound`): the view's checks, then the
    /// binding to `nonce`.
    fn verified_stream_view(
        &self,
        to: usize,
        m: &StreamMessage,
        nonce: Option<&str>,
    ) -> Option<VerifiedView> {
        let n = &self.nodes[to];
        VerifiedView::check_bound(&n.keys, ENV, &n.name, m, nonce?).ok()
    }

    fn forge_receives(&mut self, from: usize, seq: u64, req: &Request) -> Result<(), Violation> {
        if self.at_zombie(from) {
            let m = Msg::Request {
                from,
                seq,
                req: Box::new(req.clone()),
            };
            return self.zombie_receives(m, false);
        }
        if self.t < self.forge_down_until {
            self.move_node(from);
            return Ok(());
        }
        let handled = now(self.forge.handle(req, self.t));
        self.check_term()?;
        let changed = !handled.leader_changes.is_empty();
        let r = handled.response;
        self.log(format!(
            "forge <- {} seq={seq}: {} {}",
            self.nodes[from].name,
            r.status,
            brief(&r.body)
        ));
        self.reply_http(from, seq, &r, changed)
    }

    /// Sends a forge's HTTP answer to request `seq` of `from`, as the agent reads it.
    fn reply_http(
        &mut self,
        from: usize,
        seq: u64,
        r: &forge_worker::http::Response,
        changed: bool,
    ) -> Result<(), Violation> {
        let boot = self.nodes[from].boot;
        let header = |name: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let m = StreamMessage {
            reply_to: None,
            view: serde_json::from_slice::<LeaderView>(&r.body)
                .ok()
                .filter(|_| r.status == 200),
            error: serde_json::from_slice::<ErrorBody>(&r.body)
                .ok()
                .filter(|_| r.status != 200)
                .map(|b| b.error),
            basis: header(HEADER_BASIS),
            basis_sig: header(HEADER_BASIS_SIG),
        };
        let body = serde_json::to_vec(&m).unwrap();
        self.answer(from, boot, seq, r.status, body, false);
        if from != 0 && self.t < self.lossy_until && self.evil_rng.chance(120) {
            self.compromised_acts(from, boot, seq)?;
        }
        if changed {
            self.push_all();
        }
        Ok(())
    }

    /// Sends the forge's answer to request `seq` of `from` (boot `boot`) over the faulty
    /// wire: misdelivered, or accompanied by a stale replay, in fault episodes.
    fn answer(
        &mut self,
        from: usize,
        boot: u64,
        seq: u64,
        status: u16,
        body: Vec<u8>,
        stream: bool,
    ) {
        // Misdelivery: the answer goes to another node (a broken proxy, a replay).
        let mut to = from;
        if self.t < self.lossy_until && self.nodes.len() > 1 && self.rng.chance(30) {
            to = (from + 1 + self.rng.range(0, self.nodes.len() as u64 - 1) as usize)
                % self.nodes.len();
            self.count("misdeliver");
        }
        if self.nodes[from].partitioned_until > self.t {
            return;
        }
        // A stale replay: an answer captured earlier goes to another node now.
        if self.t < self.lossy_until
            && self.nodes.len() > 1
            && !self.captured.is_empty()
            && self.rng.chance(40)
        {
            let k = self.rng.range(0, self.captured.len() as u64) as usize;
            let (of, b, sq, st, body, on_stream) = self.captured[k].clone();
            // Adversarial: to the node the old view names as leader, if that is not its
            // addressee (the one node a stale grant could mislead), else anywhere else.
            let named = serde_json::from_slice::<LeaderView>(&body)
                .ok()
                .or_else(|| {
                    serde_json::from_slice::<StreamMessage>(&body)
                        .ok()
                        .and_then(|m| m.view)
                })
                .and_then(|v| v.leader)
                .and_then(|l| self.nodes.iter().position(|n| n.name == l))
                .filter(|&l| l != of);
            let to = named.unwrap_or_else(|| {
                (of + 1 + self.rng.range(0, self.nodes.len() as u64 - 1) as usize)
                    % self.nodes.len()
            });
            self.count("replay-stale");
            self.send(
                self.t,
                Msg::Answer {
                    to,
                    of,
                    boot: b,
                    seq: sq,
                    status: st,
                    body,
                    stream: on_stream,
                    injected: false,
                },
            );
        }
        // An on-path attacker answers a node's HTTP request with an answer it captured from
        // that node earlier (a grant, typically): only the answer's binding to the request
        // (`x-brh-basis`, `x-brh-basis-sig`) tells the two apart.
        if self.t < self.lossy_until && self.late_rng.chance(30) {
            let own: Vec<usize> = (0..self.captured.len())
                .filter(|&k| self.captured[k].0 == from && !self.captured[k].5)
                .collect();
            if !own.is_empty() {
                let k = own[self.late_rng.range(0, own.len() as u64) as usize];
                let (of, b, sq, st, body, _) = self.captured[k].clone();
                self.count("replay-own");
                self.send(
                    self.t,
                    Msg::Answer {
                        to: of,
                        of,
                        boot: b,
                        seq: sq,
                        status: st,
                        body,
                        stream: false,
                        injected: true,
                    },
                );
            }
        }
        self.captured
            .push_back((from, boot, seq, status, body.clone(), stream));
        if self.captured.len() > 256 {
            self.captured.pop_front();
        }
        self.send(
            self.t,
            Msg::Answer {
                to,
                of: from,
                boot,
                seq,
                status,
                body,
                stream,
                injected: false,
            },
        );
    }

    /// The compromised node n0 holds its own key (and nothing else) and uses it against node
    /// `victim`, whose request `seq` the forge just answered: a request in the victim's (or
    /// the leader's) name straight to the forge — any 2xx is a violation at once — and a
    /// forged grant for the victim, bound to that request, that only the victim's own check
    /// can refuse (accepted, it is a violation at once).
    fn compromised_acts(&mut self, victim: usize, boot: u64, seq: u64) -> Result<(), Violation> {
        let key = self.nodes[0].key;
        let (leader, term) = self.forge.store.leader_term(self.t, &self.timing);
        // 1. Speak for another node: resign the leader's term naming n0, or beat as the victim.
        let (claimed, path, body) = match (&leader, self.evil_rng.chance(500)) {
            (Some(l), true) if *l != self.nodes[0].name => (
                l.clone(),
                "/federation/resign",
                format!(r#"{{"env":"{ENV}","term":{term},"successor":"n0"}}"#),
            ),
            _ => (
                self.nodes[victim].name.clone(),
                "/federation/heartbeat",
                format!(r#"{{"env":"{ENV}","version":"evil"}}"#),
            ),
        };
        self.evil_seq += 1;
        let h = sign_request(
            &key,
            "POST",
            path,
            &claimed,
            self.t,
            Nonce::new("evil", self.evil_seq),
            body.as_bytes(),
        );
        let mut req = Request::new("POST", path);
        req.add_header(HEADER_NODE, &h.node);
        req.add_header(HEADER_TS, &h.ts_ms.to_string());
        req.add_header(HEADER_NONCE, &h.nonce.to_string());
        req.add_header(HEADER_SIG, &h.sig);
        req.body = body.into_bytes();
        self.count("forged-request");
        let r = now(self.forge.handle(&req, self.t)).response;
        if (200..300).contains(&r.status) {
            return Err(self.violation(format!(
                "the forge accepted {path} in {claimed}'s name signed with n0's key: {}",
                r.status
            )));
        }
        // 2. A grant for the victim, signed and bound with n0's key, as the answer to the
        //    victim's request (n0 is on its link).
        let victim_name = self.nodes[victim].name.clone();
        let mut forged = LeaderView {
            env: ENV.into(),
            leader: Some(victim_name.clone()),
            term: term + 1,
            lease: Some(brh_shared::wire::LeaseInfo {
                holder: victim_name.clone(),
                term: term + 1,
                expires_at_ms: self.t + self.timing.lease_ttl_ms,
                ttl_ms: self.timing.lease_ttl_ms,
            }),
            epoch: self.t / 1000,
            issued_at_ms: self.t,
            peers_alive: self.nodes.len() as u32,
            mode: "native".into(),
            heartbeat_interval_ms: self.timing.heartbeat_interval_ms,
            lease_ttl_ms: self.timing.lease_ttl_ms,
            you: Some(brh_shared::wire::You {
                node: victim_name.clone(),
                role: brh_shared::wire::Role::Leader,
            }),
            sig: String::new(),
            lease_token: None,
        };
        brh_shared::sign::sign_view(&key, &mut forged);
        let nonce = nonce_of(boot, seq);
        let basis_sig = brh_shared::sign::sign_basis(&key, &victim_name, &nonce, &forged.sig);
        let m = StreamMessage {
            reply_to: None,
            view: Some(forged),
            error: None,
            basis: Some(nonce),
            basis_sig: Some(basis_sig),
        };
        self.count("forged-answer");
        // Checked at once by the victim's own check, with its own keys, as the answer to the
        // request it has outstanding: refused, it would be dropped like any bad answer, so the
        // run (and every seed's fault schedule) goes on exactly as without it.
        if self
            .verified_stream_view(victim, &m, Some(&nonce_of(boot, seq)))
            .is_some()
        {
            return Err(self.violation(format!(
                "{victim_name} accepted a grant n0 signed with its own key"
            )));
        }
        Ok(())
    }

    fn check_term(&mut self) -> Result<(), Violation> {
        let term = self.forge.store.term();
        if term < self.max_term {
            return Err(self.violation(format!(
                "the forge's term went back: {} -> {term}",
                self.max_term
            )));
        }
        self.max_term = term;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn node_receives(
        &mut self,
        to: usize,
        of: usize,
        boot: u64,
        seq: u64,
        status: u16,
        body: &[u8],
        stream: bool,
        injected: bool,
    ) -> Result<(), Violation> {
        let n = &self.nodes[to];
        if n.partitioned_until > self.t {
            return Ok(());
        }
        if of == to && boot != n.boot && !injected {
            return Ok(()); // an answer to the process before a restart: its socket is gone
        }
        match n.up {
            Up::Dead { .. } => return Ok(()),
            Up::Paused { .. } => {
                // In the socket's buffer until the process runs again.
                self.nodes[to].inbox.push(Msg::Answer {
                    to,
                    of,
                    boot,
                    seq,
                    status,
                    body: body.to_vec(),
                    stream,
                    injected,
                });
                return Ok(());
            }
            Up::Running => {}
        }
        let Some(Outstanding {
            seq: want,
            sent: sent_mono,
            ..
        }) = n.outstanding
        else {
            return Ok(());
        };
        // A late or duplicated answer to its own earlier request is dropped (the client has
        // moved on). An answer meant for another node is read as the answer to whatever is
        // outstanding: only its verification can tell.
        if of == to && want != seq && !injected {
            return Ok(());
        }
        let recv = n.mono(self.t);
        // Bound to the request outstanding, whatever it was meant for: the agent's check on
        // both transports (`VerifiedView::check_bound` / `check_answer`).
        let nonce = Nonce::new(format!("b{}", n.boot), want).to_string();
        let m = serde_json::from_slice::<StreamMessage>(body).ok();
        let view = m
            .as_ref()
            .filter(|_| stream || status == 200)
            .and_then(|m| self.verified_stream_view(to, m, Some(&nonce)));
        let refused = m.and_then(|m| m.error).map(|e| e.code);
        let outcome = match (&view, refused) {
            (Some(v), _) => Outcome::View(v),
            (None, Some(ErrorCode::NotHolder)) => Outcome::NotHolder,
            (None, _) => Outcome::Failed,
        };
        let Some(o) = self.nodes[to].outstanding.take() else {
            return Ok(());
        };
        self.count_answer(&o.action, &outcome, refused);
        let node = &mut self.nodes[to];
        node.role
            .handle_answer(&o.action, sent_mono, recv, outcome, node.jitter);
        self.take_transitions(to)
    }

    /// Counts how an operator's action ended.
    fn count_answer(&mut self, action: &Action, outcome: &Outcome<'_>, refused: Option<ErrorCode>) {
        let kind = match (action, outcome) {
            (Action::Resign { .. }, Outcome::View(_)) => "resign-accepted",
            (Action::Switchover { to, .. }, Outcome::View(v))
                if v.view().leader.as_deref() == Some(to.as_str()) =>
            {
                "switchover-handed"
            }
            (Action::Switchover { .. }, _) if refused == Some(ErrorCode::NotCandidate) => {
                "switchover-refused"
            }
            (Action::Switchover { .. }, _) => "switchover-failed",
            _ => return,
        };
        self.act(kind);
    }

    fn act(&mut self, kind: &'static str) {
        *self.actions.get_mut(kind).unwrap() += 1;
    }

    /// Everything the role decided since it was last asked, checked in order.
    fn take_transitions(&mut self, i: usize) -> Result<(), Violation> {
        let role = &mut self.nodes[i].role;
        let ts: Vec<_> = std::iter::from_fn(|| role.poll_transition()).collect();
        self.transitions(i, ts)
    }

    fn transitions(&mut self, i: usize, ts: Vec<Transition>) -> Result<(), Violation> {
        for t in ts {
            match t {
                Transition::Promote { term, .. } => {
                    self.promotions += 1;
                    self.log(format!("{} PROMOTE term={term}", self.nodes[i].name));
                    if let Some((j, prev)) = self.last_promotion {
                        if j != i && term <= prev {
                            return Err(self.violation(format!(
                                "{} promoted in term {term} after {} in term {prev}",
                                self.nodes[i].name, self.nodes[j].name
                            )));
                        }
                    }
                    self.last_promotion = Some((i, term));
                    self.check_alone(i)?;
                    if self.ops_rng.chance(50) {
                        self.ask_switchover(i, None, false, "switchover-at-grant");
                    }
                }
                Transition::Demote { term, reason, .. } => {
                    let name = self.nodes[i].name.clone();
                    self.log(format!("{name} DEMOTE term={term} {}", reason.as_str()));
                }
            }
        }
        Ok(())
    }

    /// Node `i` starts acting now: nobody else may be able to.
    fn check_alone(&self, i: usize) -> Result<(), Violation> {
        if !self.nodes[i].can_act(self.t) {
            return Ok(());
        }
        for (j, n) in self.nodes.iter().enumerate() {
            if j != i && n.can_act(self.t) {
                return Err(self.violation(format!(
                    "two leaders: {} and {} both act (terms {:?} and {:?})",
                    self.nodes[i].name,
                    n.name,
                    self.nodes[i].role.guard(self.nodes[i].mono(self.t)).ok(),
                    n.role.guard(n.mono(self.t)).ok()
                )));
            }
        }
        Ok(())
    }

    /// Starts the next fault episode.
    fn inject(&mut self) -> Result<(), Violation> {
        let ttl = self.timing.lease_ttl_ms;
        let n = self.nodes.len() as u64;
        let i = self.rng.range(0, n) as usize;
        let end = match self.rng.range(0, 8) {
            0 => {
                // A pause longer than the lease, or a short one.
                let d = self.rng.range(ttl / 4, 3 * ttl);
                self.nodes[i].up = Up::Paused { until: self.t + d };
                self.count("pause");
                self.log(format!("FAULT pause {} for {d} ms", self.nodes[i].name));
                self.t + d
            }
            1 => {
                let d = self.rng.range(0, 2 * ttl);
                let name = self.nodes[i].name.clone();
                self.nodes[i].up = Up::Dead { until: self.t + d };
                self.count("kill-restart");
                self.log(format!("FAULT kill -9 {name}, back in {d} ms"));
                self.t + d
            }
            2 => {
                let d = self.rng.range(ttl / 2, 3 * ttl);
                self.nodes[i].partitioned_until = self.t + d;
                self.count("partition");
                self.log(format!("FAULT partition {} for {d} ms", self.nodes[i].name));
                self.t + d
            }
            3 if self.replicas.is_some() => {
                if self.t < self.forge_down_until {
                    // A failover is still under way: this episode is a short partition.
                    let d = self.rng.range(ttl / 2, 3 * ttl);
                    self.nodes[i].partitioned_until = self.t + d;
                    self.count("partition");
                    self.t + d
                } else {
                    self.replica_failover()
                }
            }
            3 => {
                let d = self.rng.range(0, ttl);
                self.forge_down_until = self.t + d;
                self.forge.store.restart(&self.forge_cfg(), self.t + d);
                // Every socket breaks; nodes reconnect with their next beat.
                self.sockets.iter_mut().for_each(|s| *s = None);
                self.count("forge-restart");
                self.log(format!("FAULT forge restart, down {d} ms"));
                // Restarted from the durable state: its term must not go back.
                let term = self.forge.store.term();
                if term < self.max_term {
                    return Err(self.violation(format!(
                        "forge restart lost terms: {} -> {term}",
                        self.max_term
                    )));
                }
                self.t + d
            }
            4 => {
                // A wall-clock step (NTP, an operator): small, or past the skew window.
                let step = if self.rng.chance(500) {
                    self.rng.range(0, 4_001) as i64 - 2_000
                } else {
                    self.rng.range(0, 120_001) as i64 - 60_000
                };
                self.nodes[i].wall_offset += step;
                self.count("clock-step");
                self.log(format!(
                    "FAULT wall clock of {} steps {step} ms",
                    self.nodes[i].name
                ));
                // Stepped back later, so the federation can heal.
                let d = self.rng.range(ttl / 2, 2 * ttl);
                self.pending_unstep.push((self.t + d, i, step));
                self.t + d
            }
            5 if self.t >= self.forge_down_until
                && !self.pending_reenrol.iter().any(|(_, n)| *n == i) =>
            {
                // The operator revokes node i's key (whoever it is, the leader too) and
                // re-enrols it later. Its requests are refused meanwhile; a revoked leader's
                // lease runs out, never cut short, so the safety check covers the handover.
                let name = self.nodes[i].name.clone();
                let generation = self.nodes[i].key_gen;
                if self.nodes[i].can_act(self.t) {
                    self.revoked_leaders += 1;
                }
                let status = self.operator_revokes(&name, generation)?;
                self.count("revoke");
                let d = self.rng.range(ttl / 2, 3 * ttl);
                self.pending_reenrol.push((self.t + d, i));
                self.log(format!(
                    "FAULT operator revokes {name} (generation {generation}): {status}; \
                     re-enrolled in {d} ms"
                ));
                self.t + d
            }
            _ => {
                let d = self.rng.range(ttl / 2, 2 * ttl);
                self.lossy_until = self.t + d;
                self.log(format!("FAULT lossy network for {d} ms"));
                self.t + d
            }
        };
        self.calm_from = self.calm_from.max(end);
        Ok(())
    }

    /// `POST /federation/revoke` signed by the top operator, at the forge's clock.
    fn operator_revokes(&mut self, node: &str, generation: u32) -> Result<u16, Violation> {
        let body = format!(r#"{{"env":"{ENV}","node":"{node}","generation":{generation}}}"#);
        let path = "/federation/revoke";
        let nonce = Nonce::new("operator", self.t + 1);
        let msg = brh_shared::sign::canonical_for(
            brh_shared::sign::Audience::Forge,
            "POST",
            path,
            "ops",
            self.t,
            &nonce,
            body.as_bytes(),
        );
        let top = brh_shared::keys::operator_signing_key(SEAL);
        let mut req = Request::new("POST", path);
        req.add_header(HEADER_NODE, "ops");
        req.add_header(HEADER_TS, &self.t.to_string());
        req.add_header(HEADER_NONCE, &nonce.to_string());
        req.add_header(
            HEADER_SIG,
            &brh_shared::keys::sign_hex(&top, msg.as_bytes()),
        );
        req.body = body.into_bytes();
        let handled = now(self.forge.handle(&req, self.t));
        self.check_term()?;
        let status = handled.response.status;
        if status != 200 {
            return Err(self.violation(format!(
                "the operator's revocation was refused: {status} {}",
                String::from_utf8_lossy(&handled.response.body)
            )));
        }
        if !handled.leader_changes.is_empty() {
            self.push_all();
        }
        Ok(status)
    }

    fn forge_cfg(&self) -> ElectionConfig {
        ElectionConfig::new(self.timing)
    }

    /// Runs until `faults` faults were injected or the clock reaches `max_t_ms`.
    pub fn run(&mut self, faults: u64, max_t_ms: u64) -> Result<(), Violation> {
        let ttl = self.timing.lease_ttl_ms;
        let interval = self.timing.heartbeat_interval_ms;
        // ttl + one heartbeat + the largest round trip, plus the margin (a grant that arrives
        // within the margin of its end is not acted on) and the forge's sweep period.
        let bound = ttl + interval + 2 * self.max_delay + ttl / 10 + 500;
        while self.total_faults() < faults && self.t < max_t_ms {
            let next = self.next_event();
            self.t = next.max(self.t);
            self.step()?;
            // Liveness, once per quiet stretch.
            if !self.recovered && self.t >= self.calm_from && self.t < self.next_fault {
                if self.nodes.iter().any(|n| n.can_act(self.t)) {
                    self.recovered = true;
                    self.worst_recovery_ms = self.worst_recovery_ms.max(self.t - self.calm_from);
                } else if self.t > self.calm_from + bound {
                    return Err(self.violation(format!(
                        "no leader {} ms after the last fault ended (bound {bound} ms)",
                        self.t - self.calm_from
                    )));
                }
            }
            if self.t >= self.next_op {
                self.operate()?;
                let ttl = self.timing.lease_ttl_ms;
                self.next_op = self.t + self.ops_rng.range(ttl, 8 * ttl);
            }
            if self.t >= self.next_fault {
                self.inject()?;
                self.recovered = false;
                // The next episode after a quiet stretch long enough to check liveness (or,
                // one time in four, overlapping this one).
                let gap = self.rng.range(0, 3 * ttl);
                self.next_fault = if self.rng.chance(250) {
                    self.t + self.rng.range(1, ttl)
                } else {
                    self.calm_from + bound + gap
                };
            }
        }
        Ok(())
    }

    fn next_event(&self) -> u64 {
        let mut next = self.next_fault.min(self.next_op);
        if let Some((&(at, _), _)) = self.net.iter().next() {
            next = next.min(at);
        }
        next = next.min(self.next_sweep.max(self.forge_down_until));
        for &(at, _, _) in &self.pending_unstep {
            next = next.min(at);
        }
        for &(at, _) in &self.pending_reenrol {
            next = next.min(at);
        }
        if let Some(Up::Paused { until }) = self
            .replicas
            .as_ref()
            .and_then(|r| r.zombie.as_ref())
            .map(|z| z.up)
        {
            next = next.min(until);
        }
        for n in &self.nodes {
            next = next.min(match n.up {
                Up::Paused { until } | Up::Dead { until } => until,
                Up::Running if n.switchover_asked.is_some() && n.outstanding.is_none() => self.t,
                Up::Running => {
                    let mono = n.mono(self.t);
                    let mut w = match &n.outstanding {
                        Some(o) => o.timeout_t,
                        // `None`: the shutdown is finished and the process exits now.
                        None => n.role.poll_timeout(mono).map_or(self.t, |m| n.true_at(m)),
                    };
                    if let Some(h) = n.role.held(mono) {
                        w = w.min(n.true_at(h.deadline_ms));
                    }
                    w
                }
            });
        }
        next.max(self.t)
    }

    fn deliver(&mut self, m: Msg) -> Result<(), Violation> {
        match m {
            Msg::Request { from, seq, req } => self.forge_receives(from, seq, &req),
            Msg::Frame {
                from,
                boot,
                seq,
                frame,
            } => self.forge_receives_frame(from, boot, seq, &frame),
            Msg::Answer {
                to,
                of,
                boot,
                seq,
                status,
                body,
                stream,
                injected,
            } => self.node_receives(to, of, boot, seq, status, &body, stream, injected),
            Msg::Push { to, boot, body } => self.node_receives_push(to, boot, &body),
        }
    }

    /// Everything due at `self.t`, in a fixed order.
    fn step(&mut self) -> Result<(), Violation> {
        let t = self.t;
        // Clock steps undone.
        let mut i = 0;
        while i < self.pending_unstep.len() {
            if self.pending_unstep[i].0 <= t {
                let (_, n, step) = self.pending_unstep.swap_remove(i);
                self.nodes[n].wall_offset -= step;
            } else {
                i += 1;
            }
        }
        // Revoked nodes re-enrolled: the next generation of their key, without a restart
        // (the agent's SIGHUP reload).
        let mut i = 0;
        while i < self.pending_reenrol.len() {
            if self.pending_reenrol[i].0 <= t {
                let (_, n) = self.pending_reenrol.swap_remove(i);
                let node = &mut self.nodes[n];
                node.key_gen += 1;
                node.key = brh_shared::keys::node_key_gen(SEAL, ENV, &node.name, node.key_gen);
                node.keys.node = Some((node.name.clone(), node.key));
                let line = format!(
                    "{} re-enrolled (key generation {})",
                    node.name, node.key_gen
                );
                self.log(line);
            } else {
                i += 1;
            }
        }
        // The network.
        while let Some(entry) = self.net.first_entry() {
            if entry.key().0 > t {
                break;
            }
            let m = entry.remove();
            self.deliver(m)?;
        }
        // The forge's sweep.
        if t >= self.next_sweep && t >= self.forge_down_until {
            let changes = now(self.forge.sweep(t)).unwrap_or_default();
            self.check_term()?;
            if !changes.is_empty() {
                self.log(format!("forge sweep: {changes:?}"));
                self.push_all();
            }
            self.next_sweep = t + 500;
        }
        // The zombie replica resumes (SIGCONT): what reached it meanwhile is read now, its
        // proof checked at this instant.
        let resumed = self.replicas.as_mut().and_then(|r| {
            let z = r.zombie.as_mut()?;
            match z.up {
                Up::Paused { until } if until <= t => {
                    z.up = Up::Running;
                    Some(std::mem::take(&mut z.inbox))
                }
                _ => None,
            }
        });
        if let Some(inbox) = resumed {
            self.log(format!(
                "zombie replica resumes with {} messages",
                inbox.len()
            ));
            for m in inbox {
                self.zombie_receives(m, true)?;
            }
        }
        // The nodes.
        for i in 0..self.nodes.len() {
            match self.nodes[i].up {
                Up::Paused { until } if until <= t => {
                    self.nodes[i].up = Up::Running;
                    self.log(format!("{} resumes", self.nodes[i].name));
                    // Acting again with a guard still open is a new start: check it.
                    self.check_alone(i)?;
                    // The buffered answer and the request's timer are both ready; either
                    // may win the race.
                    let inbox = std::mem::take(&mut self.nodes[i].inbox);
                    if self.rng.chance(500) {
                        for m in inbox {
                            self.deliver(m)?;
                        }
                    }
                }
                Up::Paused { .. } => {}
                Up::Dead { until } if until <= t => {
                    let (name, boot) = (self.nodes[i].name.clone(), self.nodes[i].boot + 1);
                    let key_gen = self.nodes[i].key_gen;
                    self.nodes[i] = self.fresh_node(name, t, boot, key_gen);
                    // A new process starts at the first address of its list, which may be
                    // the zombie's.
                    if let Some(r) = self.replicas.as_mut() {
                        r.at_zombie[i] = r.rng.chance(500);
                    }
                    self.log(format!("{} restarted (boot {boot})", self.nodes[i].name));
                }
                _ => {}
            }
            if self.nodes[i].up != Up::Running {
                continue;
            }
            // A healed partition delivers what the socket held.
            if self.nodes[i].partitioned_until <= t && !self.nodes[i].inbox.is_empty() {
                for m in std::mem::take(&mut self.nodes[i].inbox) {
                    self.deliver(m)?;
                }
            }
            // The keeper's loop: the request's timeout, the deadline, then the action due.
            let mono = self.nodes[i].mono(t);
            if let Some(o) = self.nodes[i].outstanding.take_if(|o| o.timeout_t <= t) {
                self.count_answer(&o.action, &Outcome::Failed, None);
                let n = &mut self.nodes[i];
                n.role
                    .handle_answer(&o.action, o.sent, mono, Outcome::Failed, n.jitter);
                self.take_transitions(i)?;
            }
            self.nodes[i].role.handle_timeout(mono);
            self.take_transitions(i)?;
            if self.nodes[i].outstanding.is_some() {
                continue;
            }
            if self.nodes[i].stopping {
                if self.nodes[i].role.shutdown_finished(mono) {
                    self.exits(i);
                    continue;
                }
            } else if let Some((to, kill)) = self.nodes[i].switchover_asked.take() {
                self.switchover(i, to, kill)?;
                continue;
            }
            let Some(action) = self.nodes[i].role.poll_action(mono) else {
                continue;
            };
            match action {
                Action::Heartbeat => self.nodes[i].jitter = self.rng.range(0, 1000),
                Action::Farewell => self.act("farewell"),
                _ => {}
            }
            self.send_action(i, action);
        }
        Ok(())
    }

    /// The operators' next move, on their own schedule, whatever faults are active: a
    /// switchover asked of the node acting as leader (one time in five of any node, which
    /// must refuse unless it leads), or a graceful shutdown of the leader or of any node.
    fn operate(&mut self) -> Result<(), Violation> {
        let n = self.nodes.len() as u64;
        let acting = (0..self.nodes.len()).find(|&j| self.nodes[j].can_act(self.t));
        let any = self.ops_rng.range(0, n) as usize;
        let pick = match acting {
            Some(l) if !self.ops_rng.chance(200) => l,
            _ => any,
        };
        let kind = self.ops_rng.range(0, 5);
        // A shutdown of any node (most are witnesses: the farewell beat).
        let pick = if kind == 4 { any } else { pick };
        let other = {
            let k = self.ops_rng.range(1, n) as usize;
            self.nodes[(pick + k) % self.nodes.len()].name.clone()
        };
        let node = &self.nodes[pick];
        if node.up != Up::Running || node.stopping || node.switchover_asked.is_some() {
            return Ok(());
        }
        let name = node.name.clone();
        match kind {
            0..=2 => {
                let (to, kill, kind) = match kind {
                    0 => (Some(other), false, "switchover-named"),
                    1 => (None, false, "switchover-best"),
                    _ => (Some(other), true, "switchover-to-dying"),
                };
                self.ask_switchover(pick, to, kill, kind);
            }
            _ => {
                // SIGTERM: the keeper drops the action in flight and stops acting at once.
                let node = &mut self.nodes[pick];
                let mono = node.mono(self.t);
                node.stopping = true;
                node.outstanding = None;
                node.switchover_asked = None;
                let resigns = node.role.begin_shutdown(mono);
                self.log(format!("OP shutdown {name} (resign {resigns:?})"));
                self.act("shutdown");
                if resigns.is_some() {
                    self.act("resign");
                }
                self.take_transitions(pick)?;
                // A stand-in elected after the resign, or the lease left to expire: no leader
                // for up to a ttl.
                self.calm_from = self.calm_from.max(self.t + self.timing.lease_ttl_ms);
                self.recovered = false;
            }
        }
        Ok(())
    }

    /// An operator asks node `i` for a switchover; its keeper starts it once the action on
    /// the wire is done.
    fn ask_switchover(&mut self, i: usize, to: Option<String>, kill: bool, kind: &'static str) {
        let n = &self.nodes[i];
        if n.up != Up::Running || n.stopping || n.switchover_asked.is_some() {
            return;
        }
        let dies = if kill { " (it dies)" } else { "" };
        self.log(format!("OP switchover {} -> {to:?}{dies}", n.name));
        self.nodes[i].switchover_asked = Some((to, kill));
        self.act("switchover");
        self.act(kind);
        // The handover, or a stand-in elected after a failed one: no leader for up to a ttl.
        self.calm_from = self.calm_from.max(self.t + self.timing.lease_ttl_ms);
        self.recovered = false;
    }

    /// A switchover as `switchover::perform` does it: the agent refuses unless it holds the
    /// lease, reads the forge's peers, chooses the successor, and the role steps down and
    /// asks for the resign naming it. `kill`: the successor dies before the resign arrives.
    fn switchover(&mut self, i: usize, to: Option<String>, kill: bool) -> Result<(), Violation> {
        let mono = self.nodes[i].mono(self.t);
        let name = self.nodes[i].name.clone();
        if self.nodes[i].role.held(mono).is_none() {
            self.act("switchover-refused");
            self.log(format!("{name} switchover refused: not the leader"));
            return Ok(());
        }
        // The agent reads `GET /federation/peers` first: unreachable, the switchover fails.
        if self.t < self.forge_down_until || self.nodes[i].partitioned_until > self.t {
            self.act("switchover-failed");
            return Ok(());
        }
        let peers = self
            .forge_state()
            .map(|s| s.peer_summaries(self.t, &self.timing))
            .unwrap_or_default();
        let successor = match choose_successor(&peers, &name, to.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                self.act("switchover-refused");
                self.log(format!("{name} switchover refused: {e}"));
                return Ok(());
            }
        };
        if kill {
            if let Some(j) = self.nodes.iter().position(|n| n.name == successor) {
                let d = self.ops_rng.range(0, 2 * self.timing.lease_ttl_ms);
                self.nodes[j].up = Up::Dead { until: self.t + d };
                self.calm_from = self.calm_from.max(self.t + d);
                self.log(format!("OP kill -9 {successor}, back in {d} ms"));
            }
        }
        let stepped = self.nodes[i]
            .role
            .handle_switchover_request(successor.clone(), mono);
        self.take_transitions(i)?;
        if let Err(e) = stepped {
            self.act("switchover-refused");
            self.log(format!("{name} switchover refused: {e}"));
            return Ok(());
        }
        match self.nodes[i].role.poll_action(mono) {
            Some(action @ Action::Switchover { .. }) => self.send_action(i, action),
            other => unreachable!("a switchover's action, not {other:?}"),
        }
        Ok(())
    }

    /// A process whose shutdown is finished exits; it is started again later (a new boot).
    fn exits(&mut self, i: usize) {
        if self.nodes[i].role.resign_abandoned().is_some() {
            self.act("resign-abandoned");
        }
        let d = self.ops_rng.range(0, 2 * self.timing.lease_ttl_ms);
        self.nodes[i].up = Up::Dead { until: self.t + d };
        self.calm_from = self.calm_from.max(self.t + d);
        self.log(format!(
            "{} exits, started again in {d} ms",
            self.nodes[i].name
        ));
    }

    /// The forge's state (for debugging a seed).
    pub fn forge_state(&self) -> Option<EnvState> {
        self.forge
            .store
            .slot
            .borrow()
            .as_ref()
            .map(|s| s.state.clone())
    }

    /// No operators: only faults (the schedule of runs before operators were simulated).
    pub fn without_operators(mut self) -> Self {
        self.next_op = u64::MAX;
        self
    }

    /// One line for a soak report.
    pub fn summary(&self) -> String {
        let a = |k: &str| self.actions[k];
        format!(
            "seed {} t={} s faults={} promotions={} ({} by push, {} pushes applied, {} reports) \
             shutdowns={} (resigns={}, {} accepted, {} abandoned; farewells={}) \
             switchovers={} (named={}, best={}, to-dying={}; handed={}, refused={}, failed={}) \
             worst recovery {} ms",
            self.seed,
            self.t / 1000,
            self.total_faults(),
            self.promotions,
            self.promotions_by_push,
            self.pushes_applied,
            self.reports,
            a("shutdown"),
            a("resign"),
            a("resign-accepted"),
            a("resign-abandoned"),
            a("farewell"),
            a("switchover"),
            a("switchover-named"),
            a("switchover-best"),
            a("switchover-to-dying"),
            a("switchover-handed"),
            a("switchover-refused"),
            a("switchover-failed"),
            self.worst_recovery_ms
        )
    }
}
