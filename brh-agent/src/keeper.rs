//! The keeper: the one task that talks to the forge. It owns the [`ForgeClient`] (so signed
//! requests leave strictly in nonce order), feeds answers and time into the pure
//! [`RoleState`](crate::role::RoleState), and turns the resulting transitions into logs,
//! events, metrics and the container layer's channel.
//! All decisions are in `role/`, each exchange with the forge in `exchange.rs`; this file
//! only moves bytes and time.
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::client::{request_timeout, ForgeClient};
use crate::clock::{self, mono_ms};
use crate::exchange::{self, begin_shutdown, Done, TimingMismatch};
use crate::forge_stream::{SentBeats, Stream, StreamLink};
use crate::node::{lock, Shared};
use crate::role::{Action, TimingChange};
use crate::switchover::{self, SwitchoverRequest};

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
    // The stream lives as long as the keeper (the shutdown resign goes on it; the farewell
    // beat over HTTP).
    let link_stop = CancellationToken::new();
    let _link_stop = link_stop.clone().drop_guard();
    let (mut stream, mut pushes) = if cfg.forge_stream && cfg.heartbeat_enabled {
        let (link, pushes) = StreamLink::start(
            client.urls().clone(),
            cfg.env.clone(),
            cfg.node_id.clone(),
            link_stop,
        );
        let beats = SentBeats::default();
        (Some(Stream { link, beats }), Some(pushes))
    } else {
        (None, None)
    };
    let mut fatal = None;
    let mut stopping = false;
    // Read during the resign, so the nudges go out one round trip sooner.
    let mut peers = None;
    let mut keyed = 0;
    loop {
        // Credentials reloaded (SIGHUP): the next request is signed, and its answer checked,
        // with the new keys. One nonce sequence throughout, so nothing else changes.
        let (version, credentials) = shared.credentials();
        if version != keyed {
            client.set_credentials(&credentials);
            keyed = version;
        }
        let now = mono_ms();
        let (transitions, action, wake) = {
            let mut r = lock(&shared.role);
            r.handle_timeout(now);
            let ts: Vec<_> = std::iter::from_fn(|| r.poll_transition()).collect();
            let action = r.poll_action(now);
            let remaining_ms = r.held(now).map_or(0, |h| h.deadline_ms.saturating_sub(now));
            shared
                .metrics
                .lease_remaining_seconds
                .set(remaining_ms as f64 / 1000.0);
            (ts, action, r.poll_timeout(now))
        };
        shared.apply(transitions);
        if let Some(action) = action {
            let begun = tokio::select! {
                _ = cancel.cancelled(), if !stopping => None,
                done = exchange::perform(&shared, &mut client, stream.as_mut(), &action) => Some(done),
            };
            let Some((sent, result)) = begun else {
                stopping = true;
                peers = begin_shutdown(&shared, &client);
                continue;
            };
            let change = exchange::answered(&shared, &action, sent, &result);
            if let Some(TimingChange::Adopted { to, .. }) = change {
                client.set_request_timeout(request_timeout(&to));
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
            if let (Action::Resign { .. }, Done::View(_)) = (&action, &result) {
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
            Some(push) = next_push(&mut pushes), if !stopping => {
                if let Some(s) = &stream {
                    exchange::pushed(&shared, &client, s, &push);
                }
            }
            Some(req) = switchovers.recv(), if !stopping => {
                let done = switchover::perform(&shared, &mut client, stream.as_mut(), req.to).await;
                let _ = req.reply.send(done);
            }
            _ = tokio::time::sleep_until(clock::instant_at(wake)) => {}
        }
    }
    if let Some(term) = lock(&shared.role).resign_abandoned() {
        tracing::warn!(
            node = %cfg.node_id,
            env = %cfg.env,
            term,
            "[CN] resign of term {term} gave up; the lease will expire on its own"
        );
    }
    fatal.map_or(Ok(()), Err)
}

/// The next push, or never when there is no stream.
async fn next_push(
    pushes: &mut Option<tokio::sync::mpsc::Receiver<brh_shared::wire::StreamMessage>>,
) -> Option<brh_shared::wire::StreamMessage> {
    match pushes {
        Some(p) => p.recv().await,
        None => std::future::pending().await,
    }
}
