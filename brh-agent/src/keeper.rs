//! The keeper: the one task that talks to the forge. It owns the [`ForgeClient`] (so signed
//! requests leave strictly in nonce order), feeds answers and time into the pure
//! [`RoleState`], and turns the resulting transitions into logs, events, metrics and hooks.
//! All decisions are in `role.rs`; this file only does I/O and waiting.
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use brh_shared::wire::{ConsensusReport, Heartbeat, LeaderView};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::client::{random_hex, ClientError, ForgeClient};
use crate::clock::{self, mono_ms};
use crate::config::Config;
use crate::events::{EventLog, LeadershipRecord};
use crate::metrics::Metrics;
use crate::role::{
    DemoteReason, NotLeader, RoleState, TimingChange, TimingSource, Transition, VerifiedView,
};
use crate::switchover::{choose_successor, Switched, SwitchoverError, SwitchoverRequest};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Called on role changes, after the guard already reflects them. Implementations must not
/// block (spawn work instead); every mutation they cause must still pass [`Shared::guard`].
pub trait RoleHooks: Send + Sync + 'static {
    fn promoted(&self, _term: u64) {}
    fn demoted(&self, _term: u64, _reason: DemoteReason) {}
}

/// No container layer yet.
pub struct NoHooks;
impl RoleHooks for NoHooks {}

/// What the forge last told us, for `/status`.
#[derive(Debug, Clone, Default)]
pub struct ForgeStatus {
    pub reachable: bool,
    pub last_error: Option<String>,
    pub last_view: Option<LeaderView>,
    pub last_ok_wall_ms: Option<u64>,
}

/// State shared by the keeper and the API.
pub struct Shared {
    pub cfg: Config,
    pub role: Mutex<RoleState>,
    pub forge: Mutex<ForgeStatus>,
    pub events: EventLog,
    pub metrics: Metrics,
    pub started_mono: u64,
    /// Set by `POST /federation/nudge`: a peer resigned, beat early to pick the lease up.
    pub nudge: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the guard down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `GET /status` body.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSnapshot {
    pub node: String,
    pub env: String,
    pub role: &'static str,
    pub leader: Option<String>,
    pub term: u64,
    /// Until this node's own deadline (0 unless leading).
    pub lease_remaining_ms: u64,
    /// Witnesses: at most this long until the current leader's lease ends unless renewed
    /// (as of the last answer; `null` when there is no lease or this node leads).
    pub leader_lease_remaining_ms: Option<u64>,
    pub forge: ForgeSnapshot,
    pub version: &'static str,
    pub uptime_s: u64,
    pub priority: i32,
    pub heartbeat_interval_ms: u64,
    pub lease_ttl_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ForgeSnapshot {
    pub url: String,
    pub reachable: bool,
    pub last_error: Option<String>,
    pub last_ok_ms: Option<u64>,
    pub peers_alive: u32,
}

impl Shared {
    pub fn new(cfg: Config) -> std::io::Result<Arc<Self>> {
        let events = EventLog::new(cfg.event_log.as_deref())?;
        Ok(Arc::new(Shared {
            role: Mutex::new(
                RoleState::new(cfg.node_id.clone(), cfg.timing).with_timing_source(
                    if cfg.timing_pinned_by.is_empty() {
                        TimingSource::Forge
                    } else {
                        TimingSource::Pinned
                    },
                ),
            ),
            cfg,
            forge: Mutex::new(ForgeStatus::default()),
            events,
            metrics: Metrics::new(),
            started_mono: mono_ms(),
            nudge: tokio::sync::Notify::new(),
        }))
    }

    /// The orchestration guard (`sh_guarded`): returns the term to fence with, or
    /// [`NotLeader`]. Evaluated against the monotonic clock at the moment of the call.
    pub fn guard(&self) -> Result<u64, NotLeader> {
        let r = lock(&self.role).guard(mono_ms());
        if r.is_err() {
            self.metrics.guard_refusals.inc();
        }
        r
    }

    pub fn uptime_s(&self) -> u64 {
        mono_ms().saturating_sub(self.started_mono) / 1000
    }

    pub fn status(&self) -> StatusSnapshot {
        let now = mono_ms();
        let role = lock(&self.role);
        let held = role.held(now);
        let (leader, term) = role.leader();
        let f = lock(&self.forge);
        let timing = role.timing();
        StatusSnapshot {
            node: self.cfg.node_id.clone(),
            env: self.cfg.env.clone(),
            role: if held.is_some() { "leader" } else { "witness" },
            leader: if held.is_some() {
                Some(self.cfg.node_id.clone())
            } else {
                leader.map(String::from).filter(|l| *l != self.cfg.node_id)
            },
            term: held.map_or(term, |h| h.term),
            lease_remaining_ms: held.map_or(0, |h| h.deadline_ms.saturating_sub(now)),
            leader_lease_remaining_ms: role
                .other_lease_end_ms()
                .filter(|_| held.is_none())
                .map(|e| e.saturating_sub(now)),
            forge: ForgeSnapshot {
                url: self.cfg.forge_url.clone(),
                reachable: f.reachable,
                last_error: f.last_error.clone(),
                last_ok_ms: f.last_ok_wall_ms,
                peers_alive: f.last_view.as_ref().map_or(0, |v| v.peers_alive),
            },
            version: VERSION,
            uptime_s: self.uptime_s(),
            priority: self.cfg.priority,
            heartbeat_interval_ms: timing.heartbeat_interval_ms,
            lease_ttl_ms: timing.lease_ttl_ms,
        }
    }

    /// Logs, records and announces transitions, in order.
    fn apply(&self, hooks: &dyn RoleHooks, ts: impl IntoIterator<Item = Transition>) {
        for t in ts {
            match t {
                Transition::Promote { term, at_ms } => {
                    tracing::info!(
                        "[CN] PROMOTE → I am leader ({}) term={term}",
                        self.cfg.node_id
                    );
                    self.events.leadership(LeadershipRecord {
                        node: self.cfg.node_id.clone(),
                        env: self.cfg.env.clone(),
                        event: "promote".into(),
                        term,
                        at_ms: clock::wall_at(at_ms),
                        reason: None,
                        leader: None,
                    });
                    self.metrics.transition("promote");
                    self.metrics.is_leader.set(1);
                    self.metrics.term.set(term as i64);
                    hooks.promoted(term);
                }
                Transition::Demote {
                    term,
                    leader,
                    reason,
                    at_ms,
                } => {
                    tracing::info!(
                        "[CN] DEMOTE → I am witness (leader={}) term={term} reason={}",
                        leader.as_deref().unwrap_or("none"),
                        reason.as_str()
                    );
                    self.events.leadership(LeadershipRecord {
                        node: self.cfg.node_id.clone(),
                        env: self.cfg.env.clone(),
                        event: "demote".into(),
                        term,
                        at_ms: clock::wall_at(at_ms),
                        reason: Some(reason.as_str().into()),
                        leader,
                    });
                    self.metrics.transition("demote");
                    self.metrics.is_leader.set(0);
                    hooks.demoted(term, reason);
                }
            }
        }
    }

    fn forge_ok(&self, view: &VerifiedView) {
        let mut f = lock(&self.forge);
        if !f.reachable {
            let again = if f.last_error.is_some() { " again" } else { "" };
            tracing::info!("[HB] {} pulse → forge reachable{again}", self.cfg.node_id);
            self.events.log(format!(
                "HEARTBEAT: forge reachable{again} at {}",
                self.cfg.forge_url
            ));
        }
        f.reachable = true;
        f.last_error = None;
        f.last_view = Some(view.view().clone());
        f.last_ok_wall_ms = Some(clock::wall_ms());
        self.metrics.forge_reachable.set(1);
        self.metrics.term.set(view.view().term as i64);
    }

    fn forge_failed(&self, e: &ClientError) {
        let mut f = lock(&self.forge);
        if f.reachable || f.last_error.is_none() {
            tracing::warn!("[HB] {} failed pulse → {e}", self.cfg.node_id);
            self.events
                .log(format!("HEARTBEAT: failed pulse → {}", e.kind()));
        } else {
            tracing::debug!("[HB] {} failed pulse → {e}", self.cfg.node_id);
        }
        f.reachable = false;
        f.last_error = Some(e.to_string());
        self.metrics.forge_reachable.set(0);
    }
}

fn jitter() -> u64 {
    u64::from_str_radix(&random_hex(2), 16).unwrap_or(500) % 1000
}

/// The agent was pinned to a timing the forge does not use (design §4: the forge is the one
/// timing authority). Running anyway would flap: the deadline and the beats disagree.
#[derive(Debug, thiserror::Error)]
#[error(
    "timing mismatch: this agent is pinned to heartbeat {} ms / lease {} ms ({}) but the forge \
     at {url} uses heartbeat {} ms / lease {} ms; unset the pinned settings to follow the forge, \
     or set them to the forge's values",
    ours.heartbeat_interval_ms, ours.lease_ttl_ms, pinned_by.join(", "),
    forge.heartbeat_interval_ms, forge.lease_ttl_ms
)]
pub struct TimingMismatch {
    pub ours: brh_shared::Timing,
    pub forge: brh_shared::Timing,
    pub pinned_by: Vec<&'static str>,
    pub url: String,
}

/// Runs until `cancel`, then resigns (if leading) and returns. Ends early, after stepping
/// down the same way, when the forge's timing conflicts with a pinned one.
pub async fn run(
    shared: Arc<Shared>,
    mut client: ForgeClient,
    hooks: Arc<dyn RoleHooks>,
    mut switchovers: tokio::sync::mpsc::Receiver<SwitchoverRequest>,
    cancel: CancellationToken,
) -> Result<(), TimingMismatch> {
    let cfg = shared.cfg.clone();
    let ci = cfg.consensus_interval_ms;
    let mut next_consensus = mono_ms() + 2 * cfg.timing.heartbeat_interval_ms;
    let mut fatal = None;
    tracing::info!(
        "[HB] {} joining env={} forge={} heartbeat={}ms lease={}ms ({})",
        cfg.node_id,
        cfg.env,
        client.base(),
        cfg.timing.heartbeat_interval_ms,
        cfg.timing.lease_ttl_ms,
        if cfg.timing_pinned_by.is_empty() {
            "until the forge says otherwise".to_string()
        } else {
            format!("pinned by {}", cfg.timing_pinned_by.join(", "))
        }
    );
    loop {
        let now = mono_ms();
        let (next_beat, deadline) = {
            let r = lock(&shared.role);
            (
                r.next_beat_at(now, jitter()),
                r.held(now).map(|h| h.deadline_ms),
            )
        };
        let mut wake = next_beat;
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        if cfg.consensus_enabled {
            wake = wake.min(next_consensus);
        }
        let nudged = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = shared.nudge.notified() => true,
            Some(req) = switchovers.recv() => {
                let done = switchover(&shared, &mut client, hooks.as_ref(), req.to).await;
                let _ = req.reply.send(done);
                continue;
            }
            _ = tokio::time::sleep_until(clock::instant_at(wake)) => false,
        };
        if nudged {
            // Re-plan: the nudge brings the next beat forward (see `RoleState::nudge`).
            lock(&shared.role).nudge();
            continue;
        }
        let now = mono_ms();
        let beat_due = now >= next_beat;
        let t = lock(&shared.role).tick(now);
        shared.apply(hooks.as_ref(), t);
        shared.metrics.lease_remaining_ms.set(
            lock(&shared.role)
                .held(now)
                .map_or(0, |h| h.deadline_ms.saturating_sub(now)) as i64,
        );

        if beat_due {
            let outcome = tokio::select! {
                _ = cancel.cancelled() => break,
                o = beat(&shared, &mut client) => o,
            };
            match outcome {
                Ok((sent, view)) => {
                    // Taken under the lock: the guard changes exactly when we say it did.
                    let ts = {
                        let mut r = lock(&shared.role);
                        let recv = mono_ms();
                        shared
                            .metrics
                            .forge_rtt_seconds
                            .observe(recv.saturating_sub(sent) as f64 / 1000.0);
                        let ts = r.on_view(sent, recv, &view);
                        (ts, r.take_timing_change())
                    };
                    let (ts, change) = ts;
                    match change {
                        Some(TimingChange::Adopted { from, to }) => {
                            tracing::info!(
                                "[HB] {} following the forge's timing: heartbeat={}ms lease={}ms \
                                 (was {}ms/{}ms)",
                                cfg.node_id,
                                to.heartbeat_interval_ms,
                                to.lease_ttl_ms,
                                from.heartbeat_interval_ms,
                                from.lease_ttl_ms
                            );
                            client.set_request_timeout(crate::request_timeout(&to));
                        }
                        Some(TimingChange::Conflict { ours, forge }) => {
                            let e = TimingMismatch {
                                ours,
                                forge,
                                pinned_by: cfg.timing_pinned_by.clone(),
                                url: client.base().to_string(),
                            };
                            tracing::error!("[HB] {} stopping: {e}", cfg.node_id);
                            shared.apply(hooks.as_ref(), ts);
                            fatal = Some(e);
                            break;
                        }
                        None => {}
                    }
                    shared.forge_ok(&view);
                    shared.metrics.heartbeat("ok");
                    let v = view.view();
                    tracing::debug!(
                        "[HB] {} pulse → ok (role={}, leader={}, term={})",
                        cfg.node_id,
                        v.you.as_ref().map_or("-", |y| y.role.as_str()),
                        v.leader.as_deref().unwrap_or("none"),
                        v.term
                    );
                    shared.apply(hooks.as_ref(), ts);
                }
                Err((sent, e)) => {
                    shared.metrics.heartbeat(e.kind());
                    shared.forge_failed(&e);
                    let t = lock(&shared.role).on_failure(sent, mono_ms());
                    shared.apply(hooks.as_ref(), t);
                }
            }
        }

        if cfg.consensus_enabled && mono_ms() >= next_consensus {
            next_consensus = mono_ms() + ci;
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = report(&shared, &mut client) => {}
            }
        }
    }
    shutdown(&shared, &mut client, hooks.as_ref()).await;
    fatal.map_or(Ok(()), Err)
}

/// One heartbeat, or (with heartbeats disabled) one leader poll that never grants.
async fn beat(
    shared: &Shared,
    client: &mut ForgeClient,
) -> Result<(u64, VerifiedView), (u64, ClientError)> {
    let cfg = &shared.cfg;
    if !cfg.heartbeat_enabled {
        let sent = mono_ms();
        return client
            .leader()
            .await
            .map(|v| (sent, v))
            .map_err(|e| (sent, e));
    }
    let hb = Heartbeat {
        env: cfg.env.clone(),
        priority: cfg.priority,
        draining: false,
        uptime_s: shared.uptime_s(),
        version: VERSION.into(),
        api: Some(cfg.advertise.clone()),
    };
    client.heartbeat(&hb).await
}

/// The consensus report (seed compatibility): our view of the leader, at
/// `BRH_CONSENSUS_INTERVAL`. The forge stores it and flags disagreement; it never elects.
async fn report(shared: &Shared, client: &mut ForgeClient) {
    let cfg = &shared.cfg;
    let (leader, term) = {
        let r = lock(&shared.role);
        match r.held(mono_ms()) {
            Some(h) => (Some(cfg.node_id.clone()), h.term),
            None => {
                let (l, t) = r.leader();
                (l.map(String::from), t)
            }
        }
    };
    let peers: Vec<String> = match client.peers().await {
        Ok(p) => p.into_iter().filter(|p| p.alive).map(|p| p.node).collect(),
        Err(_) => Vec::new(),
    };
    let n = peers.len();
    let rep = ConsensusReport {
        env: cfg.env.clone(),
        leader: leader.clone(),
        term,
        peers,
        epoch: clock::wall_ms() / 1000,
    };
    let status = match client.consensus(&rep).await {
        Ok(_) => "accepted".to_string(),
        Err((_, e)) => e.to_string(),
    };
    tracing::info!(
        "[CN] Elected leader={} | peers={n} | → {status}",
        leader.as_deref().unwrap_or("none")
    );
    shared.events.log(format!(
        "CONSENSUS: elected leader={}, peers={n}",
        leader.as_deref().unwrap_or("none")
    ));
}

/// Tells the other agents that the lease is free, so the one the forge just granted it to
/// learns so in one round trip instead of at its next regular heartbeat. Best effort and
/// bounded: without it, handover still completes within one heartbeat interval.
async fn nudge_peers(shared: &Shared, peers: Vec<brh_shared::wire::PeerSummary>) {
    let key = crate::auth::derive_api_key(&shared.cfg.seal, &shared.cfg.env);
    let http = crate::client::http_client(Duration::from_millis(500));
    let mut set = tokio::task::JoinSet::new();
    for (peer, api) in peers
        .into_iter()
        .filter(|p| p.alive && p.node != shared.cfg.node_id)
        .filter_map(|p| Some((p.node, p.api?)))
        .filter(|(_, api)| *api != shared.cfg.advertise)
    {
        let (http, node) = (http.clone(), shared.cfg.node_id.clone());
        set.spawn(async move {
            let r = crate::client::agent_post(
                &http,
                &api,
                Some(&peer),
                "/federation/nudge",
                Vec::new(),
                &key,
                &node,
            )
            .await;
            if let Err(e) = r {
                tracing::debug!("nudge to {api} failed: {e}");
            }
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), set.join_all()).await;
}

/// An operator's switchover: choose the successor from the forge's peers, stop acting, then
/// resign naming it and nudge it so it learns in one round trip.
async fn switchover(
    shared: &Shared,
    client: &mut ForgeClient,
    hooks: &dyn RoleHooks,
    to: Option<String>,
) -> Result<Switched, SwitchoverError> {
    let me = shared.cfg.node_id.clone();
    let not_leader = || SwitchoverError::NotLeader(lock(&shared.role).leader().0.map(String::from));
    if lock(&shared.role).held(mono_ms()).is_none() {
        return Err(not_leader());
    }
    let peers = client
        .peers()
        .await
        .map_err(|e| SwitchoverError::Forge(e.to_string()))?;
    let successor = choose_successor(&peers, &me, to.as_deref())?;
    let Some((t, term)) = lock(&shared.role).step_down(mono_ms()) else {
        return Err(not_leader()); // the deadline passed while we read the peers
    };
    shared.apply(hooks, [t]);
    tracing::info!("[CN] {me} switchover of term {term} to {successor}");
    match client.resign(term, false, Some(&successor)).await {
        Ok((sent, view)) => {
            let ts = lock(&shared.role).on_view(sent, mono_ms(), &view);
            shared.apply(hooks, ts);
            shared.forge_ok(&view);
            shared.events.log(format!(
                "SWITCHOVER: handed term {term} to {successor} (term {})",
                view.view().term
            ));
            let target: Vec<_> = peers.into_iter().filter(|p| p.node == successor).collect();
            nudge_peers(shared, target).await;
            Ok(Switched {
                from: me,
                to: successor,
                term: view.view().term,
            })
        }
        // The forge's own check (the peer list was a moment old): our lease is intact and
        // the next heartbeat renews it.
        Err((_, ClientError::Refused { code, message, .. })) if code == "not_candidate" => {
            Err(SwitchoverError::NotCandidate(message))
        }
        Err((_, e)) => Err(SwitchoverError::Forge(e.to_string())),
    }
}

/// Stop acting first (the guard closes), then hand the lease over.
async fn shutdown(shared: &Shared, client: &mut ForgeClient, hooks: &dyn RoleHooks) {
    let (t, term) = lock(&shared.role).stop(mono_ms());
    shared.apply(hooks, t);
    let Some(term) = term else {
        // A last beat marked draining, so that the forge does not elect a node that is going
        // away (all of `up`'s agents stop at once; the leader's resign would otherwise hand
        // the lease to a witness that is itself stopping). Bounded, best effort.
        if shared.cfg.heartbeat_enabled {
            let hb = Heartbeat {
                env: shared.cfg.env.clone(),
                priority: shared.cfg.priority,
                draining: true,
                uptime_s: shared.uptime_s(),
                version: VERSION.into(),
                api: Some(shared.cfg.advertise.clone()),
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), client.heartbeat(&hb)).await;
        }
        tracing::info!("[CN] {} stopping (witness)", shared.cfg.node_id);
        return;
    };
    // Bounded: a forge that cannot be reached is left to let the lease expire.
    let ttl = lock(&shared.role).timing().lease_ttl_ms;
    let budget = Duration::from_millis(ttl.min(10_000));
    // Read concurrently with the resign: the nudges can go out one round trip sooner.
    let peers = tokio::spawn(client.peers_owned());
    let attempt = async {
        let mut delay = 100u64;
        for _ in 0..4 {
            match client.resign(term, true, None).await {
                Ok(_) => {
                    tracing::info!("[CN] {} resigned term {term}", shared.cfg.node_id);
                    shared.events.log(format!("RESIGN: gave up term {term}"));
                    if let Ok(Ok(peers)) = peers.await {
                        nudge_peers(shared, peers).await;
                    }
                    return;
                }
                Err((_, ClientError::Refused { code, .. })) if code == "not_holder" => {
                    tracing::info!("[CN] resign of term {term}: not the holder any more");
                    return;
                }
                Err((_, e)) => {
                    tracing::warn!("[CN] resign of term {term} failed: {e}");
                    tokio::time::sleep(Duration::from_millis(delay + jitter() % delay)).await;
                    delay *= 2;
                }
            }
        }
    };
    if tokio::time::timeout(budget, attempt).await.is_err() {
        tracing::warn!("[CN] resign of term {term} timed out; the lease will expire on its own");
    }
}
