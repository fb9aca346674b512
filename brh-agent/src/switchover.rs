//! Switchover (`patronictl switchover --candidate`): the leader hands its lease to a named live
//! candidate, or to the best one, on an operator's authenticated request.
//!
//! Order, as for shutdown: the guard closes first (the containers' demote policy runs), then
//! the resign names the successor, and the forge grants it to that node and to no one else
//! for one ttl (`EnvState::best_candidate`). The forge checks the candidate again, so a choice
//! made here from a slightly old peer list can never grant to a dead node.

use std::time::Duration;

use brh_shared::election::candidate_rank;
use brh_shared::wire::{ErrorCode, PeerSummary};
use tokio::sync::oneshot;

use crate::client::{request_timeout, ClientError, ForgeClient};
use crate::clock::mono_ms;
use crate::exchange::{self, Done};
use crate::forge_stream::Stream;
use crate::node::{lock, Shared};
use crate::role::{Action, TimingChange};

/// A request the API hands to the keeper (the one task that signs forge requests).
#[derive(Debug)]
pub struct SwitchoverRequest {
    /// The successor; `None`: the best live candidate.
    pub to: Option<String>,
    pub reply: oneshot::Sender<Result<Switched, SwitchoverError>>,
}

/// A completed switchover.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Switched {
    pub from: String,
    pub to: String,
    /// The successor's term.
    pub term: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SwitchoverError {
    #[error("this agent is not the leader (leader: {})", .0.as_deref().unwrap_or("none"))]
    NotLeader(Option<String>),
    #[error("{0}")]
    NotCandidate(String),
    #[error("the forge could not be reached: {0}; this agent stays a candidate")]
    Forge(String),
}

/// The successor: `to` when it is a live, non-draining peer other than `me`; otherwise the
/// best such peer by the forge's own order (priority, then earliest joined, then node id).
pub fn choose_successor(
    peers: &[PeerSummary],
    me: &str,
    to: Option<&str>,
) -> Result<String, SwitchoverError> {
    let live = || {
        peers
            .iter()
            .filter(|p| p.alive && !p.draining && p.node != me)
    };
    match to {
        Some(to) if to == me => Err(SwitchoverError::NotCandidate(format!(
            "{to} already leads: name another node"
        ))),
        Some(to) => match peers.iter().find(|p| p.node == to) {
            Some(p) if p.alive && !p.draining => Ok(to.to_string()),
            found => {
                let why = match found {
                    None => "it is not a member of this env",
                    Some(p) if !p.alive => "it is not alive",
                    Some(_) => "it is draining",
                };
                let others: Vec<&str> = live().map(|p| p.node.as_str()).collect();
                Err(SwitchoverError::NotCandidate(format!(
                    "cannot hand the lease to {to}: {why} (live candidates: {})",
                    if others.is_empty() {
                        "none".to_string()
                    } else {
                        others.join(", ")
                    }
                )))
            }
        },
        None => live()
            .max_by_key(|p| candidate_rank(p.priority, p.joined_at_ms, &p.node))
            .map(|p| p.node.clone())
            .ok_or_else(|| {
                SwitchoverError::NotCandidate(
                    "no other live, non-draining node to hand the lease to".into(),
                )
            }),
    }
}

/// Tells the other agents that the lease is free, so the one the forge just granted it to
/// learns so in one round trip instead of at its next regular heartbeat. Best effort and
/// bounded: without it, handover still completes within one heartbeat interval.
pub(crate) async fn nudge_peers(shared: &Shared, peers: Vec<brh_shared::wire::PeerSummary>) {
    let http = crate::client::http_client(Duration::from_millis(500));
    let mut set = tokio::task::JoinSet::new();
    for api in peers
        .into_iter()
        .filter(|p| p.alive && p.node != shared.cfg.node_id)
        .filter_map(|p| p.api)
        .filter(|api| *api != shared.cfg.advertise)
    {
        // A nudge is a hint with no authority (see `api::nudge`): no credential to sign with.
        let req = http
            .post(crate::client::join(&api, "/federation/nudge"))
            .header("content-type", "application/json")
            .body("{}");
        set.spawn(async move {
            if let Err(e) = req.send().await {
                tracing::debug!("nudge to {api} failed: {e}");
            }
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), set.join_all()).await;
}

/// An operator's switchover: choose the successor from the forge's peers, then drive the
/// role through it — it stops acting and asks for the resign naming the successor, whose
/// answer it takes like any other. A successor on the stream learns from the forge's push;
/// the nudge is for one that is not (its stream down, or `BRH_FORGE_STREAM=false`).
pub(crate) async fn perform(
    shared: &Shared,
    client: &mut ForgeClient,
    stream: Option<&mut Stream>,
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
    let (transitions, action) = {
        let mut r = lock(&shared.role);
        let now = mono_ms();
        // Refused when the deadline passed while we read the peers.
        let stepped = r.handle_switchover_request(successor.clone(), now);
        let ts: Vec<_> = std::iter::from_fn(|| r.poll_transition()).collect();
        (ts, stepped.ok().and_then(|_| r.poll_action(now)))
    };
    shared.apply(transitions);
    let Some(action @ Action::Switchover { term, .. }) = action else {
        return Err(not_leader());
    };
    tracing::info!(
        node = %me,
        env = %shared.cfg.env,
        term,
        "[CN] {me} switchover of term {term} to {successor}"
    );
    // On the stream when it is up: the successor's push leaves the register with the answer.
    let (sent, done) = exchange::perform(shared, client, stream, &action).await;
    if let Some(TimingChange::Adopted { to, .. }) = exchange::answered(shared, &action, sent, &done)
    {
        client.set_request_timeout(request_timeout(&to));
    }
    let transitions: Vec<_> = {
        let mut r = lock(&shared.role);
        std::iter::from_fn(|| r.poll_transition()).collect()
    };
    shared.apply(transitions);
    match done {
        Done::View(view) => {
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
        Done::Failed(ClientError::Refused {
            code: Some(ErrorCode::NotCandidate),
            message,
            ..
        }) => Err(SwitchoverError::NotCandidate(message)),
        Done::Failed(e) => Err(SwitchoverError::Forge(e.to_string())),
        Done::NotHolder | Done::Sent => Err(SwitchoverError::Forge("no answer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(node: &str, alive: bool, draining: bool, priority: i32, joined: u64) -> PeerSummary {
        PeerSummary {
            node: node.into(),
            alive,
            last_seen_ms: 0,
            joined_at_ms: joined,
            priority,
            draining,
            uptime_s: 0,
            version: "t".into(),
            api: None,
            leaving: false,
        }
    }

    #[test]
    fn the_named_candidate_must_be_live_and_not_draining() {
        let peers = [
            peer("a", true, false, 0, 1),
            peer("b", true, false, 0, 2),
            peer("c", false, false, 9, 3),
            peer("d", true, true, 9, 4),
        ];
        assert_eq!(choose_successor(&peers, "a", Some("b")).unwrap(), "b");
        for (to, why) in [
            ("a", "already leads"),
            ("c", "it is not alive (live candidates: b)"),
            ("d", "it is draining"),
            ("zz", "not a member"),
        ] {
            let e = choose_successor(&peers, "a", Some(to)).unwrap_err();
            assert!(e.to_string().contains(why), "{to}: {e}");
        }
    }

    #[test]
    fn without_a_name_the_forges_order_picks() {
        let peers = [
            peer("a", true, false, 5, 1),
            peer("b", true, false, 1, 2),
            peer("c", true, false, 1, 1),
            peer("d", false, false, 9, 0),
            peer("e", true, true, 9, 0),
        ];
        // Highest priority other than the leader, then earliest joined.
        assert_eq!(choose_successor(&peers, "a", None).unwrap(), "c");
        assert!(matches!(
            choose_successor(&peers[..1], "a", None),
            Err(SwitchoverError::NotCandidate(_))
        ));
    }
}
