//! Durable on change, volatile on renewal: the one rule every forge runtime obeys.
//!
//! An election step returns [`Change`]s; [`EnvState::outcome`] turns them into what a store
//! must make durable before the answer goes out (in the spirit of raft-rs's `Ready` /
//! `must_sync`):
//!
//! | change | durability | records |
//! |---|---|---|
//! | `Renewed` (and `last_seen`, uptime, replay marks within a boot, consensus reports) | [`Durability::Volatile`] | none: memory only |
//! | `PeerJoined`, `PeerUpdated` (priority, draining, version, API, new boot), `PeerForgotten`, `SplitBrain` | [`Durability::Write`] | the lease record, the peer |
//! | `Granted`, `Expired`, `Resigned` (the term or the holder changes) | [`Durability::Sync`] | the lease record, the holder's peer, history |
//! | `Revoked` (a node credential) | [`Durability::Sync`] | the lease record (it carries the revocations), the node's removal |
//!
//! A store keeps the whole [`EnvState`] in memory and appends [`Record`]s (a log line, a
//! storage row, a KV key) — so the cost of a step is the size of what changed, never the
//! size of the fleet, and a renewal costs nothing.
//!
//! After a restart the state is rebuilt from the records and [`EnvState::recover`] applies
//! the restart rule:
//! - **The holder's lease is extended to restart time + ttl, never shortened** (as etcd's
//!   lessor does on a leader change). Renewals were not persisted, but every renewal the
//!   holder ever received ended at most one ttl after the forge processed it, which was
//!   before the restart; so no agent can still believe in a lease past restart + ttl, and
//!   nobody else is granted before then. Terms are only ever changed by `Sync` steps, so they
//!   never go back.
//! - **Peers are not forgotten early**: `last_seen` (persisted only with durable steps) is
//!   raised to "just dead" at restart time, so a peer last persisted long ago is dead until
//!   it speaks again — never elected on stale liveness — and the forget clock restarts.
//! - **Replays stay bounded.** Replay marks are persisted with every durable step of their
//!   node (join, new boot, grant, resign) and otherwise lost. After a restart a captured
//!   request can be accepted again only if (a) its timestamp is still within the skew window
//!   of the forge's clock — so it was captured at most `skew` before the restart — and (b) its
//!   nonce is newer than the last persisted mark of its node. Each such request is accepted at
//!   most once (the mark moves forward), and none of them can change a term on its own: a
//!   resign is `Sync` and persists its mark, so a replayed resign is refused; a replayed
//!   heartbeat only restates what its node said seconds earlier (at worst it keeps a dead
//!   holder's lease for one more ttl, as the restart rule does anyway). Honest agents are
//!   never refused: their nonces keep moving forward from any persisted mark.
use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::{Change, ElectionConfig, EnvState, Lease, Peer, Resignation};
use crate::wire::HistoryEntry;

/// What a step requires of the store before its answer goes out. Ordered: the strongest
/// requirement of a step's changes wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Durability {
    /// Memory only (a renewal, liveness, replay marks within a boot).
    Volatile,
    /// Written before answering. Losing it on a power cut is harmless: a forgotten join is
    /// repeated by the node's next heartbeat.
    Write,
    /// Written and synced (fsync, a transactional commit) before answering: the term changed.
    Sync,
}

impl Change {
    pub fn durability(&self) -> Durability {
        match self {
            Change::Renewed { .. } => Durability::Volatile,
            Change::PeerJoined { .. }
            | Change::PeerUpdated { .. }
            | Change::PeerForgotten { .. }
            | Change::SplitBrain { .. } => Durability::Write,
            // A revocation is a security decision: it must survive a power cut.
            Change::Granted { .. }
            | Change::Expired { .. }
            | Change::Resigned { .. }
            | Change::Revoked { .. } => Durability::Sync,
        }
    }
}

/// The env state without its peers: what a term change touches. Small and of fixed size.
/// Serialized like an [`EnvState`] with no peers, so either can be read as the other.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub term: u64,
    pub lease: Option<Lease>,
    pub resigned: Option<Resignation>,
    pub split_brain_alarms: u64,
    #[serde(
        default,
        skip_serializing_if = "alloc::collections::BTreeMap::is_empty"
    )]
    pub revoked: alloc::collections::BTreeMap<String, u32>,
}

/// One unit of durable state. A store writes them in order (a log line, a storage row, a KV
/// key); [`EnvState::apply_record`] replays them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    Lease(LeaseRecord),
    Peer { node: String, peer: Peer },
    Forget { node: String },
}

/// What one step asks of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub durability: Durability,
    /// Empty when [`Durability::Volatile`].
    pub records: Vec<Record>,
    /// New leader-history rows, oldest first (only with [`Durability::Sync`]).
    pub history: Vec<HistoryEntry>,
}

impl Outcome {
    pub fn is_volatile(&self) -> bool {
        self.durability == Durability::Volatile
    }
}

impl EnvState {
    pub fn lease_record(&self) -> LeaseRecord {
        LeaseRecord {
            term: self.term,
            lease: self.lease.clone(),
            resigned: self.resigned.clone(),
            split_brain_alarms: self.split_brain_alarms,
            revoked: self.revoked.clone(),
        }
    }

    /// What the store must persist after a step that produced `changes` at `now_ms`, read
    /// from the state *after* the step.
    pub fn outcome(&self, changes: &[Change], now_ms: u64) -> Outcome {
        let durability = changes
            .iter()
            .map(Change::durability)
            .max()
            .unwrap_or(Durability::Volatile);
        let mut out = Outcome {
            durability,
            records: Vec::new(),
            history: Vec::new(),
        };
        if durability == Durability::Volatile {
            return out;
        }
        out.records.push(Record::Lease(self.lease_record()));
        let peer = |node: &String, out: &mut Outcome| {
            let already = out
                .records
                .iter()
                .any(|r| matches!(r, Record::Peer { node: n, .. } | Record::Forget { node: n } if n == node));
            if already {
                return;
            }
            match self.peers.get(node) {
                Some(p) => out.records.push(Record::Peer {
                    node: node.clone(),
                    peer: p.clone(),
                }),
                None => out.records.push(Record::Forget { node: node.clone() }),
            }
        };
        for c in changes {
            match c {
                Change::PeerJoined { node }
                | Change::PeerUpdated { node }
                | Change::PeerForgotten { node }
                | Change::Revoked { node, .. } => peer(node, &mut out),
                // The holder's replay mark goes with the term it got or gave up.
                Change::Granted { holder, .. } | Change::Resigned { holder, .. } => {
                    peer(holder, &mut out)
                }
                Change::Renewed { .. } | Change::Expired { .. } | Change::SplitBrain { .. } => {}
            }
            out.history.extend(c.history_entry(now_ms));
        }
        out
    }

    /// Replays one durable record (loading a log, rows, or KV keys).
    pub fn apply_record(&mut self, record: Record) {
        match record {
            Record::Lease(r) => {
                self.term = r.term;
                self.lease = r.lease;
                self.resigned = r.resigned;
                self.split_brain_alarms = r.split_brain_alarms;
                self.revoked = r.revoked;
            }
            Record::Peer { node, peer } => {
                self.peers.insert(node, peer);
            }
            Record::Forget { node } => {
                self.peers.remove(&node);
            }
        }
    }

    /// The restart rule (see the module docs), applied once to state rebuilt from durable
    /// records at `now_ms`. Returns whether the holder's lease was extended.
    pub fn recover(&mut self, cfg: &ElectionConfig, now_ms: u64) -> bool {
        let timing = &cfg.timing;
        self.alive_memo = Default::default();
        let floor = now_ms.saturating_sub(timing.peer_dead_after_ms());
        for p in self.peers.values_mut() {
            p.last_seen_ms = p.last_seen_ms.max(floor);
        }
        match self.lease.as_mut() {
            Some(l) => {
                let until = now_ms.saturating_add(timing.lease_ttl_ms);
                let extended = until > l.expires_at_ms;
                l.expires_at_ms = l.expires_at_ms.max(until);
                extended
            }
            None => false,
        }
    }
}
