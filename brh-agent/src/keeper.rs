//! The keeper: the one task that talks to the forge. It owns the [`ForgeClient`] (so signed
//! requests leave strictly in nonce order), feeds answers and time into the pure
//! [`RoleState`], and turns the resulting transitions into logs, events, metrics and hooks.
//! All decisions are in `role.rs`; this file only does I/O and waiting.
use std::sync::Arc;
use std::time::Duration;

use brh_shared::wire::{ConsensusReport, Heartbeat};
use tokio_util::sync::CancellationToken;

use crate::client::{random_hex, ClientError, ForgeClient};
use crate::clock::{self, mono_ms};
use crate::node::{lock, RoleHooks, Shared, VERSION};
use crate::role::{TimingChange, VerifiedView};
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
                let done = switchover::perform(&shared, &mut client, hooks.as_ref(), req.to).await;
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
                        switchover::nudge_peers(shared, peers).await;
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
