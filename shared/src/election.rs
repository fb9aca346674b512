//! The election state machine of one env (docs/design.md §4).
//!
//! [`EnvState`] is plain data (serde), so a store can load it, apply one event and save it
//! back: the native forge keeps it in a file, a Durable Object in its transactional storage.
//! Every event takes the current time (unix ms, the forge's clock) and returns the
//! [`Change`]s it caused. Nothing here reads a clock or does I/O.
//!
//! Safety rule: a lease is granted only when no lease is valid — the previous one expired on
//! the forge's clock or its holder resigned it. The agent stops acting a margin before its
//! lease can expire (see `Timing::safety_margin_ms`), so no two agents act as leader at once.
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::Reverse;

use serde::{Deserialize, Serialize};

use crate::replay::{Nonce, NonceMark, Replay};
use crate::sign::{Authenticated, KeyId};
use crate::timing::Timing;
use crate::wire::{
    ConsensusReport, Heartbeat, HistoryEntry, LeaderView, LeaseInfo, PeerSummary, ResignRequest,
    Role, You,
};

mod durable;
pub use durable::{Durability, LeaseRecord, Outcome, Record};

/// How the next leader is chosen when the lease is vacant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ElectionMethod {
    /// Highest priority, then earliest joined, then node id. The default.
    #[default]
    Priority,
    /// The seed's method: the most recently heard node wins (then node id). Kept as an option
    /// for compatibility; it is flapping-prone because "most recent" changes every beat, and
    /// it only applies when the lease is vacant (the lease stays sticky either way).
    HighestEpoch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionConfig {
    pub timing: Timing,
    pub method: ElectionMethod,
    /// A peer not heard from for this long is dropped from the table (and its replay mark
    /// with it; the request timestamp window is far shorter, so that is safe).
    pub forget_after_ms: u64,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        ElectionConfig::new(Timing::DEFAULT)
    }
}

impl ElectionConfig {
    pub fn new(timing: Timing) -> Self {
        ElectionConfig {
            timing,
            method: ElectionMethod::Priority,
            forget_after_ms: 3_600_000,
        }
    }
}

/// The lease: who leads, in which term, until when (forge clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: String,
    pub term: u64,
    pub granted_at_ms: u64,
    pub expires_at_ms: u64,
    pub ttl_ms: u64,
}

impl Lease {
    pub fn is_valid_at(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms
    }
}

/// What the forge remembers of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub joined_at_ms: u64,
    pub last_seen_ms: u64,
    pub priority: i32,
    pub draining: bool,
    pub uptime_s: u64,
    pub version: String,
    #[serde(default)]
    pub api: Option<String>,
    pub nonce: NonceMark,
    /// The node's last consensus report: (leader it believes in, term).
    #[serde(default)]
    pub reported: Option<(Option<String>, u64)>,
    /// It resigned because it is stopping: gone until it comes back with a new boot, so it
    /// is never granted the lease again on the strength of its last heartbeats.
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub leaving: bool,
    /// The key it last signed with: pushes to it are signed under that key.
    #[serde(default, skip_serializing_if = "KeyId::is_default")]
    pub key: KeyId,
}

impl Peer {
    pub fn is_alive_at(&self, now_ms: u64, timing: &Timing) -> bool {
        !self.leaving && now_ms.saturating_sub(self.last_seen_ms) < timing.peer_dead_after_ms()
    }
}

/// The most recent resignation, to keep the lease from bouncing straight back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resignation {
    pub node: String,
    pub term: u64,
    pub at_ms: u64,
    /// A switchover's chosen successor: for one ttl after the resign, the only candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successor: Option<String>,
}

/// Why the lease became vacant, remembered until the next grant names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantReason {
    /// No lease was ever granted in this env.
    First,
    Expired,
    Resigned,
    /// The holder handed the lease to a named successor.
    Switchover,
}

impl GrantReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantReason::First => "elected",
            GrantReason::Expired => "expired",
            GrantReason::Resigned => "resigned",
            GrantReason::Switchover => "switchover",
        }
    }
}

/// The order of rule 3 (docs/design.md §4.2): highest priority, then the earliest joined, then
/// the node id (the original's alphabetical tie-break). The greatest rank wins. The agent's
/// switchover picks its default successor by the same rank.
pub fn candidate_rank(
    priority: i32,
    joined_at_ms: u64,
    node: &str,
) -> (i32, Reverse<u64>, Reverse<&str>) {
    (priority, Reverse(joined_at_ms), Reverse(node))
}

/// Everything the forge knows about one env.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EnvState {
    /// The last term granted; never decreases.
    pub term: u64,
    /// The current or last lease (it may have expired: check [`Lease::is_valid_at`]).
    pub lease: Option<Lease>,
    #[serde(default)]
    pub peers: BTreeMap<String, Peer>,
    pub resigned: Option<Resignation>,
    pub split_brain_alarms: u64,
    /// Revoked node credentials: node → the first key generation still accepted. Small (one
    /// entry per revoked node), kept with the lease record, so checking it costs no store
    /// operation on any runtime.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revoked: BTreeMap<String, u32>,
    /// Memo of [`EnvState::peers_alive`], so that answering a heartbeat does not scan the
    /// whole peer table every time. Not state: never serialized, always equal.
    #[serde(skip)]
    alive_memo: AliveMemo,
}

/// `(computed_at_ms, peer count then, alive count)`, reused for [`AliveMemo::FRESH_MS`].
#[derive(Debug, Clone, Default)]
struct AliveMemo(core::cell::Cell<Option<(u64, usize, u32)>>);

impl AliveMemo {
    /// The count is informational (views, dashboards, metrics): a quarter second stale is fine.
    const FRESH_MS: u64 = 250;
}

impl PartialEq for AliveMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for AliveMemo {}

/// What an event did. The forge turns these into history, metrics, logs and storage writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    PeerJoined {
        node: String,
    },
    PeerForgotten {
        node: String,
    },
    /// A known node changed what the election or the dashboards depend on: priority,
    /// draining, version, API address, or its boot (a restarted agent).
    PeerUpdated {
        node: String,
    },
    Granted {
        holder: String,
        term: u64,
        expires_at_ms: u64,
        reason: GrantReason,
    },
    Renewed {
        holder: String,
        term: u64,
        expires_at_ms: u64,
    },
    Expired {
        holder: String,
        term: u64,
    },
    Resigned {
        holder: String,
        term: u64,
    },
    /// A node's credentials up to `accepted_from - 1` were revoked (and it left the table).
    Revoked {
        node: String,
        accepted_from: u32,
    },
    /// A consensus report contradicts the lease.
    SplitBrain {
        reporter: String,
        reported_leader: Option<String>,
        reported_term: u64,
        lease_holder: Option<String>,
        term: u64,
    },
}

impl Change {
    /// The leader-history row of this change, if it changes who leads.
    pub fn history_entry(&self, at_ms: u64) -> Option<HistoryEntry> {
        let (term, leader, reason) = match self {
            Change::Granted {
                holder,
                term,
                reason,
                ..
            } => (*term, Some(holder.clone()), reason.as_str()),
            Change::Expired { term, .. } => (*term, None, "expired"),
            Change::Resigned { term, .. } => (*term, None, "resigned"),
            _ => return None,
        };
        Some(HistoryEntry {
            term,
            leader,
            reason: reason.into(),
            at_ms,
        })
    }

    /// Whether the lease register changed (as opposed to peer bookkeeping only).
    pub fn touches_lease(&self) -> bool {
        matches!(
            self,
            Change::Granted { .. }
                | Change::Renewed { .. }
                | Change::Expired { .. }
                | Change::Resigned { .. }
        )
    }
}

/// Why an event was refused. A refused event leaves the state exactly as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionError {
    Replay,
    /// Resign from a node that does not hold that term's valid lease.
    NotHolder {
        holder: Option<String>,
        term: u64,
    },
    /// A consensus report from a node that never heartbeated.
    UnknownNode,
    /// A switchover to a node that is not a live, non-draining candidate (or is the holder).
    NotCandidate {
        node: String,
        why: &'static str,
    },
    /// Signed with a revoked generation of the node's key.
    Revoked {
        key_gen: u32,
        accepted_from: u32,
    },
}

impl From<Replay> for ElectionError {
    fn from(_: Replay) -> Self {
        ElectionError::Replay
    }
}

impl EnvState {
    /// The lease if it is valid at `now_ms`.
    pub fn valid_lease(&self, now_ms: u64) -> Option<&Lease> {
        self.lease.as_ref().filter(|l| l.is_valid_at(now_ms))
    }

    /// The first key generation of `node` this env accepts (0 unless it was revoked).
    pub fn accepted_from(&self, node: &str) -> u32 {
        self.revoked.get(node).copied().unwrap_or(0)
    }

    /// Refuses a request signed with a revoked generation of its node's key. First, before
    /// any other check, so a revoked credential learns nothing and changes nothing.
    fn check_key(&self, auth: &Authenticated) -> Result<(), ElectionError> {
        let accepted_from = self.accepted_from(&auth.node);
        if auth.key.generation < accepted_from {
            return Err(ElectionError::Revoked {
                key_gen: auth.key.generation,
                accepted_from,
            });
        }
        Ok(())
    }

    /// Revokes every generation of `node`'s key below `accepted_from`: the forge refuses them
    /// from now on, and the node leaves the table (no longer a candidate; a switchover aimed
    /// at it is called off). If it holds the lease, the lease is *not* cut short: the holder
    /// may act until its deadline, so granting before expiry could make two leaders. Its
    /// renewals are refused, so the lease runs out within one ttl and the next is elected.
    /// Idempotent: a generation already revoked changes nothing.
    pub fn revoke(
        &mut self,
        cfg: &ElectionConfig,
        node: &str,
        accepted_from: u32,
        now_ms: u64,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        if accepted_from <= self.accepted_from(node) {
            return changes;
        }
        self.revoked.insert(node.into(), accepted_from);
        self.peers.remove(node);
        if let Some(r) = self.resigned.as_mut() {
            if r.successor.as_deref() == Some(node) {
                r.successor = None;
            }
        }
        changes.push(Change::Revoked {
            node: node.into(),
            accepted_from,
        });
        self.settle(cfg, now_ms, &mut changes);
        changes
    }

    fn check_nonce(&self, auth: &Authenticated) -> Result<(), Replay> {
        match self.peers.get(&auth.node) {
            Some(p) => p.nonce.admits(&auth.nonce, auth.ts_ms),
            None => Ok(()),
        }
    }

    fn mark_nonce(&mut self, node: &str, nonce: &Nonce, ts_ms: u64) {
        if let Some(p) = self.peers.get_mut(node) {
            p.nonce.advance(nonce, ts_ms);
        }
    }

    /// A heartbeat: liveness, lease renewal for the holder, and an election if the lease is
    /// vacant. The caller has verified the signature and that `hb.env` is this env.
    pub fn heartbeat(
        &mut self,
        cfg: &ElectionConfig,
        auth: &Authenticated,
        hb: &Heartbeat,
        now_ms: u64,
    ) -> Result<Vec<Change>, ElectionError> {
        self.check_key(auth)?;
        self.check_nonce(auth)?;
        let mut changes = Vec::new();
        let node = &auth.node;
        let peer = self.peers.entry(node.clone()).or_insert_with(|| {
            changes.push(Change::PeerJoined { node: node.clone() });
            Peer {
                joined_at_ms: now_ms,
                last_seen_ms: now_ms,
                priority: hb.priority,
                draining: hb.draining,
                uptime_s: hb.uptime_s,
                version: hb.version.clone(),
                api: hb.api.clone(),
                nonce: NonceMark::of(&auth.nonce, auth.ts_ms),
                reported: None,
                leaving: false,
                key: auth.key,
            }
        });
        let updated = changes.is_empty()
            && (peer.priority != hb.priority
                || peer.draining != hb.draining
                || peer.version != hb.version
                || peer.api != hb.api
                || peer.nonce.boot_id != auth.nonce.boot_id
                || peer.key.generation != auth.key.generation);
        if peer.nonce.boot_id != auth.nonce.boot_id {
            // Back with a new boot: a node that left is a candidate again.
            peer.leaving = false;
        }
        peer.last_seen_ms = peer.last_seen_ms.max(now_ms);
        peer.key = auth.key;
        peer.priority = hb.priority;
        peer.draining = hb.draining;
        peer.uptime_s = hb.uptime_s;
        peer.version.clone_from(&hb.version);
        peer.api.clone_from(&hb.api);
        self.mark_nonce(node, &auth.nonce, auth.ts_ms);
        if updated {
            changes.push(Change::PeerUpdated { node: node.clone() });
        }

        // Rule 1: the holder of a valid lease renews it — unless it asked to drain, in which
        // case the lease is left to run out (only an explicit resign ends it early, because
        // only the holder knows when it has stopped acting).
        let ttl = cfg.timing.lease_ttl_ms;
        if let Some(lease) = self.lease.as_mut() {
            if lease.holder == *node && lease.is_valid_at(now_ms) && !hb.draining {
                lease.expires_at_ms = lease.expires_at_ms.max(now_ms.saturating_add(ttl));
                lease.ttl_ms = ttl;
                changes.push(Change::Renewed {
                    holder: lease.holder.clone(),
                    term: lease.term,
                    expires_at_ms: lease.expires_at_ms,
                });
            }
        }
        self.settle(cfg, now_ms, &mut changes);
        Ok(changes)
    }

    /// The holder gives its lease up and the best other candidate gets it at once.
    /// `leaving`: it is stopping (never granted again until it comes back with a new boot).
    /// `successor` (switchover): that node gets it, and for one ttl no one else does.
    pub fn resign(
        &mut self,
        cfg: &ElectionConfig,
        auth: &Authenticated,
        req: &ResignRequest,
        now_ms: u64,
    ) -> Result<Vec<Change>, ElectionError> {
        let (term, leaving) = (req.term, req.leaving);
        self.check_key(auth)?;
        self.check_nonce(auth)?;
        let holds = self
            .valid_lease(now_ms)
            .is_some_and(|l| l.holder == auth.node && l.term == term);
        if !holds {
            let current = self.valid_lease(now_ms);
            return Err(ElectionError::NotHolder {
                holder: current.map(|l| l.holder.clone()),
                term: self.term,
            });
        }
        if let Some(s) = &req.successor {
            self.check_successor(cfg, &auth.node, s, now_ms)?;
        }
        self.mark_nonce(&auth.node, &auth.nonce, auth.ts_ms);
        if let Some(p) = self.peers.get_mut(&auth.node) {
            p.last_seen_ms = p.last_seen_ms.max(now_ms);
            p.leaving = leaving;
        }
        self.lease = None;
        self.resigned = Some(Resignation {
            node: auth.node.clone(),
            term,
            at_ms: now_ms,
            successor: req.successor.clone(),
        });
        let mut changes = alloc::vec![Change::Resigned {
            holder: auth.node.clone(),
            term,
        }];
        self.settle(cfg, now_ms, &mut changes);
        Ok(changes)
    }

    fn check_successor(
        &self,
        cfg: &ElectionConfig,
        holder: &str,
        node: &str,
        now_ms: u64,
    ) -> Result<(), ElectionError> {
        let why = match self.peers.get(node) {
            _ if node == holder => Some("it is the holder itself"),
            None => Some("it is not a member of this env"),
            Some(p) if p.leaving => Some("it is stopping"),
            Some(p) if !p.is_alive_at(now_ms, &cfg.timing) => Some("it is not alive"),
            Some(p) if p.draining => Some("it is draining"),
            Some(_) => None,
        };
        match why {
            Some(why) => Err(ElectionError::NotCandidate {
                node: node.into(),
                why,
            }),
            None => Ok(()),
        }
    }

    /// A node's own view of the leader. Stored and compared with the lease; never sets it.
    pub fn consensus(
        &mut self,
        auth: &Authenticated,
        report: &ConsensusReport,
        now_ms: u64,
    ) -> Result<Vec<Change>, ElectionError> {
        self.check_key(auth)?;
        if !self.peers.contains_key(&auth.node) {
            return Err(ElectionError::UnknownNode);
        }
        self.check_nonce(auth)?;
        self.mark_nonce(&auth.node, &auth.nonce, auth.ts_ms);
        if let Some(p) = self.peers.get_mut(&auth.node) {
            p.reported = Some((report.leader.clone(), report.term));
        }
        let holder = self.valid_lease(now_ms).map(|l| l.holder.clone());
        // Being behind (an older term) is normal right after a failover. These are not:
        // another leader for the current term, a node that thinks it leads when it does not,
        // or a term the forge never granted.
        let same_term_other_leader = report.term == self.term && report.leader != holder;
        let claims_itself = report.leader.as_deref() == Some(auth.node.as_str())
            && holder.as_deref() != Some(auth.node.as_str());
        let future_term = report.term > self.term;
        let mut changes = Vec::new();
        if same_term_other_leader || claims_itself || future_term {
            self.split_brain_alarms += 1;
            changes.push(Change::SplitBrain {
                reporter: auth.node.clone(),
                reported_leader: report.leader.clone(),
                reported_term: report.term,
                lease_holder: holder,
                term: self.term,
            });
        }
        Ok(changes)
    }

    /// The sweep: forget long-dead peers, expire the lease, elect. Forgetting scans the whole
    /// peer table, so it lives here (run on a timer) and not on the heartbeat path, whose
    /// cost must not grow with the fleet.
    pub fn sweep(&mut self, cfg: &ElectionConfig, now_ms: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        let holder = self.lease.as_ref().map(|l| l.holder.clone());
        let forget = cfg.forget_after_ms;
        let gone: Vec<String> = self
            .peers
            .iter()
            .filter(|(n, p)| {
                now_ms.saturating_sub(p.last_seen_ms) > forget && Some(*n) != holder.as_ref()
            })
            .map(|(n, _)| n.clone())
            .collect();
        for node in gone {
            self.peers.remove(&node);
            changes.push(Change::PeerForgotten { node });
        }
        self.settle(cfg, now_ms, &mut changes);
        changes
    }

    /// When the lease next needs the forge's attention without a request: its expiry.
    /// A runtime sets its timer (a Durable Object alarm) to this.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.lease.as_ref().map(|l| l.expires_at_ms)
    }

    fn settle(&mut self, cfg: &ElectionConfig, now_ms: u64, changes: &mut Vec<Change>) {
        let resigned = self.resigned.as_ref().filter(|r| r.term == self.term);
        let mut reason = if self.term == 0 {
            GrantReason::First
        } else if resigned.is_some_and(|r| r.successor.is_some()) {
            GrantReason::Switchover
        } else if resigned.is_some() {
            GrantReason::Resigned
        } else {
            GrantReason::Expired
        };
        if let Some(lease) = self.lease.take_if(|l| !l.is_valid_at(now_ms)) {
            reason = GrantReason::Expired;
            changes.push(Change::Expired {
                holder: lease.holder,
                term: lease.term,
            });
        }
        if self.lease.is_none() {
            if let Some(node) = self.best_candidate(cfg, now_ms) {
                self.term += 1;
                let ttl = cfg.timing.lease_ttl_ms;
                let lease = Lease {
                    holder: node,
                    term: self.term,
                    granted_at_ms: now_ms,
                    expires_at_ms: now_ms.saturating_add(ttl),
                    ttl_ms: ttl,
                };
                changes.push(Change::Granted {
                    holder: lease.holder.clone(),
                    term: lease.term,
                    expires_at_ms: lease.expires_at_ms,
                    reason,
                });
                self.lease = Some(lease);
            }
        }
    }

    /// Rule 3: the best live, non-draining candidate. A node that resigned within the last
    /// ttl is passed over unless it is the only one; after a switchover, for one ttl, the
    /// named successor is the only candidate (no one, if it stopped being live meanwhile).
    pub fn best_candidate(&self, cfg: &ElectionConfig, now_ms: u64) -> Option<String> {
        let timing = &cfg.timing;
        let live = || {
            self.peers
                .iter()
                .filter(|(_, p)| p.is_alive_at(now_ms, timing) && !p.draining)
        };
        let recent = self
            .resigned
            .as_ref()
            .filter(|r| now_ms.saturating_sub(r.at_ms) < timing.lease_ttl_ms);
        if let Some(successor) = recent.and_then(|r| r.successor.as_deref()) {
            return live()
                .find(|(n, _)| n.as_str() == successor)
                .map(|(n, _)| n.clone());
        }
        let cooling = recent.map(|r| r.node.as_str());
        let preferred = live().filter(|(n, _)| Some(n.as_str()) != cooling);
        let pick = |it: &mut dyn Iterator<Item = (&String, &Peer)>| -> Option<String> {
            match cfg.method {
                ElectionMethod::Priority => it
                    .max_by_key(|(n, p)| candidate_rank(p.priority, p.joined_at_ms, n))
                    .map(|(n, _)| n.clone()),
                ElectionMethod::HighestEpoch => it
                    .max_by_key(|(n, p)| (p.last_seen_ms, Reverse(*n)))
                    .map(|(n, _)| n.clone()),
            }
        };
        pick(&mut { preferred }).or_else(|| pick(&mut live()))
    }

    /// Peers heard from within the dead-after window. Memoized for a quarter second (while
    /// the table's size is unchanged), so it costs O(1) per heartbeat at any fleet size.
    pub fn peers_alive(&self, now_ms: u64, timing: &Timing) -> u32 {
        if let Some((at, len, n)) = self.alive_memo.0.get() {
            if len == self.peers.len() && now_ms >= at && now_ms - at < AliveMemo::FRESH_MS {
                return n;
            }
        }
        let n = self
            .peers
            .values()
            .filter(|p| p.is_alive_at(now_ms, timing))
            .count() as u32;
        self.alive_memo.0.set(Some((now_ms, self.peers.len(), n)));
        n
    }

    /// The unsigned leader view at `now_ms`, optionally for one node (`you`).
    pub fn view(
        &self,
        env: &str,
        now_ms: u64,
        timing: &Timing,
        mode: &str,
        you: Option<&str>,
    ) -> LeaderView {
        let lease = self.valid_lease(now_ms);
        LeaderView {
            env: env.into(),
            leader: lease.map(|l| l.holder.clone()),
            term: self.term,
            lease: lease.map(|l| LeaseInfo {
                holder: l.holder.clone(),
                term: l.term,
                expires_at_ms: l.expires_at_ms,
                ttl_ms: l.ttl_ms,
            }),
            epoch: now_ms / 1000,
            issued_at_ms: now_ms,
            peers_alive: self.peers_alive(now_ms, timing),
            mode: mode.into(),
            heartbeat_interval_ms: timing.heartbeat_interval_ms,
            lease_ttl_ms: timing.lease_ttl_ms,
            you: you.map(|node| You {
                node: node.into(),
                role: if lease.is_some_and(|l| l.holder == node) {
                    Role::Leader
                } else {
                    Role::Witness
                },
            }),
            sig: String::new(),
            lease_token: None,
        }
    }

    pub fn peer_summaries(&self, now_ms: u64, timing: &Timing) -> Vec<PeerSummary> {
        self.peers
            .iter()
            .map(|(node, p)| PeerSummary {
                node: node.clone(),
                alive: p.is_alive_at(now_ms, timing),
                last_seen_ms: p.last_seen_ms,
                joined_at_ms: p.joined_at_ms,
                priority: p.priority,
                draining: p.draining,
                uptime_s: p.uptime_s,
                version: p.version.clone(),
                api: p.api.clone(),
                leaving: p.leaving,
            })
            .collect()
    }
}

// What the forge reads back from its stores, with the same fields and defaults as the serde
// attributes above (checked against serde in `tests`).
crate::from_json_struct!(Lease {
    holder: req,
    term: req,
    granted_at_ms: req,
    expires_at_ms: req,
    ttl_ms: req,
});
crate::from_json_struct!(Peer {
    joined_at_ms: req,
    last_seen_ms: req,
    priority: req,
    draining: req,
    uptime_s: req,
    version: req,
    api: or_default,
    nonce: req,
    reported: or_default,
    leaving: or_default,
    key: or_default,
});
crate::from_json_struct!(Resignation {
    node: req,
    term: req,
    at_ms: req,
    successor: or_default,
});
crate::from_json_struct!(EnvState {
    term: req,
    lease: req,
    peers: or_default,
    resigned: req,
    split_brain_alarms: req,
    revoked: or_default,
    ..
});

#[cfg(test)]
mod tests;
