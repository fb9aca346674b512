//! One exchange with the forge per [`Action`] the role asks for: what goes on the wire, what
//! came back, and how it is recorded (logs, events, metrics). No decisions: those are
//! `RoleState`'s; the keeper decides only *when* to wait.
use std::time::Duration;

use brh_shared::wire::{ConsensusReport, ErrorCode, Heartbeat, PeerSummary, StreamMessage};

use crate::client::{random_hex, ClientError, ForgeClient};
use crate::clock::{self, mono_ms};
use crate::forge_stream::{LinkError, Stream};
use crate::node::{lock, Shared, VERSION};
use crate::role::{Action, Outcome, TimingChange, VerifiedView};

const HEARTBEAT: &str = "/federation/heartbeat";
const RESIGN: &str = "/federation/resign";
const CONSENSUS: &str = "/federation/consensus";

/// The agent was pinned to a timing the forge does not use (docs/design.md §4.3: the forge is the one
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

/// What an action came back with.
pub enum Done {
    View(VerifiedView),
    NotHolder,
    Failed(ClientError),
    /// Informational actions (consensus report, farewell beat): nothing to feed back.
    Sent,
}

/// The peers a resigning leader reads while it resigns, to nudge them one round trip sooner.
pub type PeersRead = tokio::task::JoinHandle<Result<Vec<PeerSummary>, ClientError>>;

/// The retry jitter the role keeps with each answer. Drawn here, at the edge, so the role
/// stays deterministic under test.
fn jitter() -> u64 {
    u64::from_str_radix(&random_hex(2), 16).unwrap_or(500) % 1000
}

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

/// Does `action` on the wire; returns its monotonic send time and how it ended. The send time
/// is the one the lease is measured from (docs/design.md §4.4), so it is taken before the request.
/// A heartbeat goes over the stream while it is up, over HTTP otherwise.
pub async fn perform(
    shared: &Shared,
    client: &mut ForgeClient,
    stream: Option<&mut Stream>,
    action: &Action,
) -> (u64, Done) {
    let signed = |r: Result<(u64, VerifiedView), (u64, ClientError)>| match r {
        Ok((sent, v)) => (sent, Done::View(v)),
        Err((sent, e)) if e.is_refusal(ErrorCode::NotHolder) => (sent, Done::NotHolder),
        Err((sent, e)) => (sent, Done::Failed(e)),
    };
    match action {
        Action::Heartbeat => {
            let hb = heartbeat_body(shared, false);
            if let Some(r) = via_stream(client, stream, HEARTBEAT, &hb).await {
                return signed(r);
            }
            signed(client.heartbeat(&hb).await)
        }
        Action::Resign { term } => signed(resign(client, stream, *term, true, None).await),
        // Every refusal is the switchover's to explain (`switchover::perform`), `not_holder`
        // included: the forge has moved on, and this agent stays a candidate.
        Action::Switchover { term, to } => {
            match resign(client, stream, *term, false, Some(to)).await {
                Ok((sent, v)) => (sent, Done::View(v)),
                Err((sent, e)) => (sent, Done::Failed(e)),
            }
        }
        Action::LeaderPoll => {
            let sent = mono_ms();
            match client.leader().await {
                Ok(v) => (sent, Done::View(v)),
                Err(e) => (sent, Done::Failed(e)),
            }
        }
        Action::Consensus => {
            let sent = mono_ms();
            report(shared, client, stream).await;
            (sent, Done::Sent)
        }
        Action::Farewell => {
            let sent = mono_ms();
            let hb = heartbeat_body(shared, true);
            // Best effort: a stopping witness does not wait long to say it is leaving.
            let _ = tokio::time::timeout(Duration::from_secs(1), client.heartbeat(&hb)).await;
            (sent, Done::Sent)
        }
    }
}

/// Gives the lease up: on the stream when it is up — one message to the register instead of
/// a request through the Worker (in workerd, handover ~4 ms instead of ~20) — over HTTP
/// otherwise. `leaving`: this agent is stopping; `successor`: a switchover.
pub async fn resign(
    client: &mut ForgeClient,
    stream: Option<&mut Stream>,
    term: u64,
    leaving: bool,
    successor: Option<&str>,
) -> Result<(u64, VerifiedView), (u64, ClientError)> {
    let req = client.resign_request(term, leaving, successor);
    if let Some(r) = via_stream(client, stream, RESIGN, &req).await {
        return r;
    }
    client.resign(&req).await
}

/// Sends `body` for `path` as one signed frame when the stream is up, and reads its answer,
/// checked like an HTTP one and bound to the frame. `None` when it did not go out (no
/// stream, or the link went down just before): the caller uses HTTP, with a fresh nonce and
/// send time.
///
/// Every frame sent is remembered with its send time: the forge binds its later pushes to
/// the newest frame it accepted from us, whatever its kind, and a pushed grant is measured
/// from that frame's send time (a lease granted after the frame was accepted started after
/// it was sent, so the deadline is never late).
async fn via_stream<T: serde::Serialize>(
    client: &mut ForgeClient,
    stream: Option<&mut Stream>,
    path: &str,
    body: &T,
) -> Option<Result<(u64, VerifiedView), (u64, ClientError)>> {
    let stream = stream.filter(|s| s.link.is_up())?;
    let (frame, nonce, sent) = client.frame(path, body);
    let timeout = client.request_timeout();
    let answer = match stream.link.request(frame, nonce.clone(), timeout).await {
        Ok(m) => stream_answer(client, &m, &nonce),
        Err(LinkError::Down) => return None,
        Err(e) => Err(ClientError::Unreachable(format!("stream: {e}"))),
    };
    stream.beats.record(nonce, sent);
    Some(answer.map(|v| (sent, v)).map_err(|e| (sent, e)))
}

/// An answer on the stream, checked like an HTTP one and bound to our request.
fn stream_answer(
    client: &ForgeClient,
    m: &StreamMessage,
    nonce: &str,
) -> Result<VerifiedView, ClientError> {
    if let Some(e) = &m.error {
        return Err(ClientError::Refused {
            status: e.code.http_status(),
            code: Some(e.code),
            message: e.message.clone(),
        });
    }
    client.check_stream_view(m, nonce)
}

/// A push from the forge: verified, bound to one of our recent stream beats, then measured
/// by the role from that beat's send time. Anything else is ignored (the next answer says
/// the same). Returns whether the role took it.
pub fn pushed(shared: &Shared, client: &ForgeClient, stream: &Stream, m: &StreamMessage) -> bool {
    let node = &shared.cfg.node_id;
    let Some(basis) = m.basis.as_deref() else {
        return false;
    };
    let Some(sent) = stream.beats.sent_at(basis) else {
        tracing::debug!("[HB] {node} push for a beat we no longer know ({basis}): ignored");
        return false;
    };
    let view = match client.check_stream_view(m, basis) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("[HB] {node} push refused: {e}");
            shared.metrics.heartbeat("bad_answer");
            return false;
        }
    };
    let v = view.view();
    tracing::debug!(
        "[HB] {node} push: leader={} term={}",
        v.leader.as_deref().unwrap_or("none"),
        v.term
    );
    lock(&shared.role).handle_push(sent, mono_ms(), &view);
    shared.forge_ok(&view);
    true
}

/// Feeds an action's result to the role (under its lock: the guard changes exactly when we
/// say it did), records it, and returns a timing change the answer caused.
pub fn answered(shared: &Shared, action: &Action, sent: u64, done: &Done) -> Option<TimingChange> {
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
    record(shared, action, done, change.as_ref());
    change
}

fn record(shared: &Shared, action: &Action, done: &Done, change: Option<&TimingChange>) {
    let node = &shared.cfg.node_id;
    let env = &shared.cfg.env;
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
            tracing::info!(%node, %env, term, "[CN] {node} resigned term {term}");
            shared.events.log(format!("RESIGN: gave up term {term}"));
        }
        (Action::Resign { term }, Done::NotHolder) => {
            tracing::info!(
                %node,
                %env,
                term,
                "[CN] resign of term {term}: not the holder any more"
            );
        }
        (Action::Resign { term }, Done::Failed(e)) => {
            tracing::warn!(
                %node,
                %env,
                term,
                "[CN] resign of term {term} failed: {e}"
            );
        }
        (Action::Switchover { .. }, Done::View(view)) => shared.forge_ok(view),
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
}

/// Stop acting first (the guard closes; the demotion is the next transition), then the role
/// plans the resign or the farewell beat. A leader starts reading the peers it will nudge.
pub fn begin_shutdown(shared: &Shared, client: &ForgeClient) -> Option<PeersRead> {
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
async fn report(shared: &Shared, client: &mut ForgeClient, stream: Option<&mut Stream>) {
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
    let mut rep = ConsensusReport {
        env: cfg.env.clone(),
        leader: leader.clone(),
        term,
        peers: Vec::new(),
        epoch: clock::wall_ms() / 1000,
    };
    // On the stream: one message, and no peer list. The forge never reads the list (it
    // compares only leader and term with the lease), and reading it first would cost a
    // request through the Worker per report — for 100 nodes at the default 180 s, 48,000 a
    // day of the free plan's 100,000. The count comes from the answer (`peers_alive`).
    let (n, status) = match via_stream(client, stream, CONSENSUS, &rep).await {
        Some(Ok((_, view))) => (view.view().peers_alive as usize, "accepted".to_string()),
        Some(Err((_, e))) => (0, e.to_string()),
        // Over HTTP, as the seed: the alive peers, then the report.
        None => {
            rep.peers = match client.peers().await {
                Ok(p) => p.into_iter().filter(|p| p.alive).map(|p| p.node).collect(),
                Err(_) => Vec::new(),
            };
            let status = match client.consensus(&rep).await {
                Ok(_) => "accepted".to_string(),
                Err((_, e)) => e.to_string(),
            };
            (rep.peers.len(), status)
        }
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
