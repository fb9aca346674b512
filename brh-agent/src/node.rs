//! The node's shared state: configuration, the role, what the forge last said, events and
//! metrics — read by the API, written by the keeper. Also the hooks through which role
//! changes reach the container layer, and the `/status` snapshot.
use std::sync::{Arc, Mutex, MutexGuard};

use brh_shared::wire::LeaderView;
use serde::Serialize;

use crate::client::ClientError;
use crate::clock::{self, mono_ms};
use crate::config::Config;
use crate::events::{EventLog, LeadershipRecord};
use crate::metrics::Metrics;
use crate::role::{NotLeader, RoleState, TimingSource, Transition, VerifiedView};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where role changes go after the guard already reflects them (the container layer), in
/// order. Whoever reads them must not hold up the keeper; every mutation they cause must still
/// pass [`Shared::guard`].
pub type RoleChanges = tokio::sync::mpsc::UnboundedSender<Transition>;

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
    /// The container layer's channel, when there is one.
    /// Who follows the role changes (the container layer, the hooks), each in order.
    role_changes: Mutex<Vec<RoleChanges>>,
    /// The newest lease token the forge gave this node (checked), for its containers.
    pub lease_token: LeaseTokenCell,
    /// The credentials in force, with a version that moves on each reload (SIGHUP): the
    /// keeper re-keys its client when it sees a newer one.
    credentials: Mutex<(u64, crate::config::Credentials)>,
    /// The forge addresses (`BRH_FORGE_URL`) and the one in use, shared by every client of
    /// this agent so they all move to the replica that answers together.
    pub forge_urls: crate::forge_urls::ForgeUrls,
}

/// The newest checked lease token: `(term, token)`.
pub type LeaseTokenCell = Arc<Mutex<Option<(u64, String)>>>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
    /// The address in use now.
    pub url: String,
    /// Every configured address, in the order they are tried.
    pub urls: Vec<String>,
    pub reachable: bool,
    pub last_error: Option<String>,
    pub last_ok_ms: Option<u64>,
    pub peers_alive: u32,
}

impl Shared {
    pub fn new(cfg: Config) -> std::io::Result<Arc<Self>> {
        let events = EventLog::new(cfg.event_log.as_deref())?;
        let cfg_credentials = cfg.credentials.clone();
        let metrics = Metrics::new();
        let forge_urls = crate::forge_urls::ForgeUrls::parse(&cfg.forge_url);
        metrics.identify(&cfg.node_id, &cfg.env, VERSION);
        Ok(Arc::new(Shared {
            role: Mutex::new(
                RoleState::new(cfg.node_id.clone(), cfg.timing)
                    .with_timing_source(if cfg.timing_pinned_by.is_empty() {
                        TimingSource::Forge
                    } else {
                        TimingSource::Pinned
                    })
                    .with_schedule(
                        cfg.heartbeat_enabled,
                        cfg.consensus_enabled.then_some(cfg.consensus_interval_ms),
                        mono_ms(),
                    ),
            ),
            cfg,
            forge: Mutex::new(ForgeStatus::default()),
            events,
            metrics,
            started_mono: mono_ms(),
            nudge: tokio::sync::Notify::new(),
            role_changes: Mutex::default(),
            lease_token: Arc::default(),
            credentials: Mutex::new((0, cfg_credentials)),
            forge_urls,
        }))
    }

    /// The credentials in force and their version.
    pub fn credentials(&self) -> (u64, crate::config::Credentials) {
        lock(&self.credentials).clone()
    }

    /// Puts reloaded credentials in force; returns their version.
    pub fn set_credentials(&self, c: crate::config::Credentials) -> u64 {
        let mut g = lock(&self.credentials);
        g.0 += 1;
        g.1 = c;
        g.0
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
                url: self.forge_urls.current().1.to_string(),
                urls: self.forge_urls.all().to_vec(),
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

    /// Sends every role change, from now on, to `to` (set once, by `start_agent`).
    pub fn subscribe(&self, to: RoleChanges) {
        lock(&self.role_changes).push(to);
    }

    /// Follows the role changes from now on, in order and one at a time, with `on`, in a
    /// task of its own (a slow consumer never delays the keeper). After `keeper_done` it
    /// handles what is already queued (the shutdown's demotion) and ends. The container layer
    /// and the role-change hooks each follow the changes this way.
    pub fn follow<F, Fut>(
        &self,
        keeper_done: tokio_util::sync::CancellationToken,
        mut on: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: FnMut(Transition) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        use tracing::Instrument;
        let (tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
        self.subscribe(tx);
        tokio::spawn(
            async move {
                loop {
                    let t = tokio::select! {
                        biased;
                        Some(t) = changes.recv() => t,
                        _ = keeper_done.cancelled() => match changes.try_recv() {
                            Ok(t) => t,
                            Err(_) => break,
                        },
                    };
                    on(t).await;
                }
            }
            .in_current_span(),
        )
    }

    /// Logs, records and announces transitions, in order.
    pub(crate) fn apply(&self, ts: impl IntoIterator<Item = Transition>) {
        for t in ts {
            for to in lock(&self.role_changes).iter() {
                let _ = to.send(t.clone());
            }
            match t {
                Transition::Promote { term, at_ms } => {
                    // node, env and term also as fields: a log pipeline (`BRH_LOG_FORMAT=json`)
                    // filters on them without parsing the message, whose shape stays the
                    // original's.
                    tracing::info!(
                        node = %self.cfg.node_id,
                        env = %self.cfg.env,
                        term,
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
                }
                Transition::Demote {
                    term,
                    leader,
                    reason,
                    at_ms,
                } => {
                    tracing::info!(
                        node = %self.cfg.node_id,
                        env = %self.cfg.env,
                        term,
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
                }
            }
        }
    }

    pub(crate) fn forge_ok(&self, view: &VerifiedView) {
        let mut f = lock(&self.forge);
        if !f.reachable {
            let again = if f.last_error.is_some() { " again" } else { "" };
            tracing::info!("[HB] {} pulse → forge reachable{again}", self.cfg.node_id);
            self.events.log(format!(
                "HEARTBEAT: forge reachable{again} at {}",
                self.forge_urls.current().1
            ));
        }
        f.reachable = true;
        f.last_error = None;
        let v = view.view();
        if let Some(t) = &v.lease_token {
            // Checked like any forge signature before containers carry it: ours, this env,
            // the view's term.
            match brh_shared::token::verify_lease(
                &lock(&self.credentials).1.forge_key,
                t,
                clock::wall_ms() / 1000,
            ) {
                Ok(c)
                    if c.env == self.cfg.env
                        && c.holder == self.cfg.node_id
                        && c.term == v.term =>
                {
                    *lock(&self.lease_token) = Some((c.term, t.clone()));
                }
                other => tracing::warn!(
                    "[HB] {} the forge's lease token was refused: {other:?}",
                    self.cfg.node_id
                ),
            }
        }
        f.last_view = Some(view.view().clone());
        f.last_ok_wall_ms = Some(clock::wall_ms());
        self.metrics.forge_reachable.set(1);
        self.metrics.term.set(view.view().term as i64);
    }

    pub(crate) fn forge_failed(&self, e: &ClientError) {
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
