//! The keeper: the one task that talks to the forge. It owns the [`ForgeClient`] (so signed
//! requests leave strictly in nonce order), feeds answers and time into the pure
//! [`RoleState`], and turns the resulting transitions into logs, events, metrics and the
//! container layer's channel.
//! All decisions are in `role.rs`; this file only does I/O and waiting.
use std::sync::Arc;
use std::time::Duration;

use brh_shared::wire::{ConsensusReport, Heartbeat};
use tokio_util::sync::CancellationToken;

use crate::client::{random_hex, ClientError, ForgeClient};
use crate::clock::{self, mono_ms};
use crate::node::{lock, Shared, VERSION};
use crate::role::{Action, Outcome, TimingChange, VerifiedView};
use crate::switchover::{self, SwitchoverRequest};

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

/// Runs until `cancel`, then steps down (demote → resign → nudge) and returns. Ends early,
/// after stepping down the same way, when the forge's timing conflicts with a pinned one.
///
/// A short loop that moves bytes and time: every decision — when to beat, when the deadline
/// falls, when to report, how to resign and how often to retry — is `RoleState`'s.
pub async fn run(
    shared: Arc<Shared>,
    mut client: ForgeClient,
    mut switchovers: tokio::sync::mpsc::Receiver<SwitchoverRequest>,
    cancel: CancellationToken,
) -> Result<(), TimingMismatch> {
    let cfg = shared.cfg.clone();
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
    let mut fatal = None;
    let mut stopping = false;
    // Read during the resign, so the nudges go out one round trip sooner.
    let mut peers = None;
    loop {
        let now = mono_ms();
        let (transitions, action, wake) = {
            let mut r = lock(&shared.role);
            r.handle_timeout(now);
            let ts: Vec<_> = std::iter::from_fn(|| r.poll_transition()).collect();
            let action = r.poll_action(now);
            shared
                .metrics
                .lease_remaining_ms
                .set(r.held(now).map_or(0, |h| h.deadline_ms.saturating_sub(now)) as i64);
            (ts, action, r.poll_timeout(now))
        };
        shared.apply(transitions);
        if let Some(action) = action {
            let begun = tokio::select! {
                _ = cancel.cancelled(), if !stopping => None,
                done = perform(&shared, &mut client, action) => Some(done),
            };
            let Some((sent, result)) = begun else {
                stopping = true;
                peers = begin_shutdown(&shared, &client);
                continue;
            };
            let change = answered(&shared, action, sent, &result);
            if let Some(TimingChange::Adopted { to, .. }) = change {
                client.set_request_timeout(crate::request_timeout(&to));
            }
            if let Some(TimingChange::Conflict { ours, forge }) = change {
                let e = TimingMismatch {
                    ours,
                    forge,
                    pinned_by: cfg.timing_pinned_by.clone(),
                    url: client.base().to_string(),
                };
                tracing::error!("[HB] {} stopping: {e}", cfg.node_id);
                fatal = Some(e);
                stopping = true;
                peers = begin_shutdown(&shared, &client);
            }
            if let (Action::Resign { .. }, Done::View(_)) = (action, &result) {
                // Resigned: tell the others, so the new holder learns in one round trip.
                if let Some(Ok(Ok(p))) = match peers.take() {
                    Some(h) => Some(h.await),
                    None => None,
                } {
                    switchover::nudge_peers(&shared, p).await;
                }
            }
            continue;
        }
        let Some(wake) = wake else { break }; // shutdown finished
        tokio::select! {
            _ = cancel.cancelled(), if !stopping => {
                stopping = true;
                peers = begin_shutdown(&shared, &client);
            }
            _ = shared.nudge.notified(), if !stopping => lock(&shared.role).nudge(),
            Some(req) = switchovers.recv(), if !stopping => {
                let done = switchover::perform(&shared, &mut client, req.to).await;
                let _ = req.reply.send(done);
            }
            _ = tokio::time::sleep_until(clock::instant_at(wake)) => {}
        }
    }
    if let Some(term) = lock(&shared.role).resign_abandoned() {
        tracing::warn!("[CN] resign of term {term} gave up; the lease will expire on its own");
    }
    fatal.map_or(Ok(()), Err)
}

/// What an action came back with.
enum Done {
    View(VerifiedView),
    NotHolder,
    Failed(ClientError),
    /// Informational actions (consensus report, farewell beat): nothing to feed back.
    Sent,
}

type PeersRead = tokio::task::JoinHandle<Result<Vec<brh_shared::wire::PeerSummary>, ClientError>>;

fn heartbeat_body(shared: &Shared, draining: bool) -> Heartbeat {
    let cfg = &shared.cfg;
    Heartbeat {
        env: cfg.env.clone(),
        priority: cfg.priority,
        draining,
        uptime_s: shared.uptime_s(),
        version: VERSION.into(),
        api: Some(cfg.advertise.clone()),
    }
}

/// Does `action` on the wire; returns its monotonic send time and how it ended.
async fn perform(shared: &Shared, client: &mut ForgeClient, action: Action) -> (u64, Done) {
    let signed = |r: Result<(u64, VerifiedView), (u64, ClientError)>| match r {
        Ok((sent, v)) => (sent, Done::View(v)),
        Err((sent, ClientError::Refused { code, .. })) if code == "not_holder" => {
            (sent, Done::NotHolder)
        }
        Err((sent, e)) => (sent, Done::Failed(e)),
    };
    match action {
        Action::Heartbeat => signed(client.heartbeat(&heartbeat_body(shared, false)).await),
        Action::LeaderPoll => {
            let sent = mono_ms();
            match client.leader().await {
                Ok(v) => (sent, Done::View(v)),
                Err(e) => (sent, Done::Failed(e)),
            }
        }
        Action::Resign { term } => signed(client.resign(term, true, None).await),
        Action::Consensus => {
            let sent = mono_ms();
            report(shared, client).await;
            (sent, Done::Sent)
        }
        Action::Farewell => {
            let sent = mono_ms();
            let hb = heartbeat_body(shared, true);
            let _ = tokio::time::timeout(Duration::from_secs(1), client.heartbeat(&hb)).await;
            (sent, Done::Sent)
        }
    }
}

/// Feeds an action's result to the role (under its lock: the guard changes exactly when we
/// say it did) and records it; returns a timing change the answer caused.
fn answered(shared: &Shared, action: Action, sent: u64, done: &Done) -> Option<TimingChange> {
    let node = &shared.cfg.node_id;
    let change = {
        let mut r = lock(&shared.role);
        let recv = mono_ms();
        let outcome = match done {
            Done::View(v) => Outcome::View(v),
            Done::NotHolder => Outcome::NotHolder,
            Done::Failed(_) | Done::Sent => Outcome::Failed,
        };
        if let (Action::Heartbeat | Action::LeaderPoll, Done::View(_)) = (action, done) {
            let rtt = recv.saturating_sub(sent) as f64 / 1000.0;
            shared.metrics.forge_rtt_seconds.observe(rtt);
        }
        r.handle_answer(action, sent, recv, outcome, jitter());
        r.take_timing_change()
    };
    match (action, done) {
        (Action::Heartbeat | Action::LeaderPoll, Done::View(view)) => {
            shared.forge_ok(view);
            shared.metrics.heartbeat("ok");
            let v = view.view();
            tracing::debug!(
                "[HB] {node} pulse → ok (role={}, leader={}, term={})",
                v.you.as_ref().map_or("-", |y| y.role.as_str()),
                v.leader.as_deref().unwrap_or("none"),
                v.term
            );
        }
        (Action::Heartbeat | Action::LeaderPoll, Done::Failed(e)) => {
            shared.metrics.heartbeat(e.kind());
            shared.forge_failed(e);
        }
        (Action::Resign { term }, Done::View(_)) => {
            tracing::info!("[CN] {node} resigned term {term}");
            shared.events.log(format!("RESIGN: gave up term {term}"));
        }
        (Action::Resign { term }, Done::NotHolder) => {
            tracing::info!("[CN] resign of term {term}: not the holder any more");
        }
        (Action::Resign { term }, Done::Failed(e)) => {
            tracing::warn!("[CN] resign of term {term} failed: {e}");
        }
        _ => {}
    }
    if let Some(TimingChange::Adopted { from, to }) = change {
        tracing::info!(
            "[HB] {node} following the forge's timing: heartbeat={}ms lease={}ms \
             (was {}ms/{}ms)",
            to.heartbeat_interval_ms,
            to.lease_ttl_ms,
            from.heartbeat_interval_ms,
            from.lease_ttl_ms
        );
    }
    change
}

/// Stop acting first (the guard closes; the demotion is the next transition), then the role
/// plans the resign or the farewell beat. A leader starts reading the peers it will nudge.
fn begin_shutdown(shared: &Shared, client: &ForgeClient) -> Option<PeersRead> {
    let term = lock(&shared.role).begin_shutdown(mono_ms());
    match term {
        Some(_) => Some(tokio::spawn(client.peers_owned())),
        None => {
            tracing::info!("[CN] {} stopping (witness)", shared.cfg.node_id);
            None
        }
    }
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
