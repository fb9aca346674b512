//! The Workers KV key layout (docs/design.md §5.6), as pure functions so the host tests can
//! check it.
//!
//! ```text
//! envs/{env}                      env index: one key per env, written once when it appears
//! env/{env}/lease                 the env state without its peers: term, lease, resignation,
//!                                 alarms, revocations (JSON). Written when one of those
//!                                 changes: in kv mode the leader's renewal changes the expiry,
//!                                 so once per heartbeat interval
//! env/{env}/peer/{node}           one peer (JSON value); the same JSON in the key *metadata*
//!                                 when it fits in KV's 1024-byte limit, so one `list` with the
//!                                 prefix returns the whole peer table. In kv mode written on a
//!                                 durable change of that peer, or when its stored liveness is
//!                                 ttl − interval old (see [`plan_save`]); mirrored from the
//!                                 register on durable changes in durable-object mode
//! env/{env}/hist/{inv_term}-{inv_at}-{inv_i}
//!                                 one leader-history row (value and metadata); the inverted,
//!                                 zero-padded term/time make a plain ascending `list` newest
//!                                 first, so KV's list cursor is the history cursor
//! ```
//!
//! [`plan_save`] turns `before`/`after` into the writes that differ, nothing else: a witness
//! heartbeat writes at most its own peer key (when its liveness needs refreshing); a leader
//! renewal writes the lease key, and its peer key when that needs refreshing. So with agents
//! heartbeating every interval (≥ 1 s) no key is written more than once a second under normal
//! load, which is KV's per-key write limit.
use brh_shared::election::{EnvState, Peer};
use brh_shared::wire::HistoryEntry;

/// Prefix of the env index keys.
pub const INDEX_PREFIX: &str = "envs/";
/// KV refuses metadata over 1024 bytes (serialized); keep a margin.
pub const METADATA_MAX: usize = 1000;
/// History rows expire from KV after 90 days, so the namespace stays bounded.
pub const HISTORY_TTL_S: u64 = 90 * 24 * 3600;

pub fn index_key(env: &str) -> String {
    format!("{INDEX_PREFIX}{env}")
}

pub fn lease_key(env: &str) -> String {
    format!("env/{env}/lease")
}

pub fn peer_prefix(env: &str) -> String {
    format!("env/{env}/peer/")
}

pub fn peer_key(env: &str, node: &str) -> String {
    format!("{}{node}", peer_prefix(env))
}

pub fn history_prefix(env: &str) -> String {
    format!("env/{env}/hist/")
}

/// A key that sorts newest first: a higher term, then a later time, then a later row of the
/// same save come first in ascending order.
pub fn history_key(prefix: &str, entry: &HistoryEntry, index_in_save: usize) -> String {
    format!(
        "{prefix}{:020}-{:020}-{:04}",
        u64::MAX - entry.term,
        u64::MAX - entry.at_ms,
        9999usize.saturating_sub(index_in_save)
    )
}

/// The metadata to store with a peer key: its JSON if it fits, else none (the reader then
/// fetches the value).
pub fn peer_metadata(peer_json: &str) -> Option<String> {
    // Stored as a JSON string, so the metadata serializes to the JSON plus quotes and escapes.
    let escaped = serde_json::to_string(peer_json).ok()?;
    (escaped.len() <= METADATA_MAX).then(|| peer_json.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: String,
        metadata: Option<String>,
        ttl_s: Option<u64>,
    },
    Delete {
        key: String,
    },
}

#[cfg_attr(not(test), allow(dead_code))]
impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    // Our own plain data: serialization cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

/// Whether two records of one peer differ in what is not volatile (liveness, uptime, the
/// replay mark within a boot, consensus reports).
pub fn peer_durably_equal(a: &Peer, b: &Peer) -> bool {
    a.joined_at_ms == b.joined_at_ms
        && a.priority == b.priority
        && a.draining == b.draining
        && a.version == b.version
        && a.api == b.api
        && a.nonce.boot_id == b.nonce.boot_id
        && a.nonce.retired == b.nonce.retired
        // A resign that leaves must reach KV, or the next isolate re-grants the leaver.
        && a.leaving == b.leaving
        && a.key.generation == b.key.generation
}

/// `kv` mode: the KV writes that turn `before` (what KV holds, `None` if the env is new there)
/// into `after`, plus the new history rows.
///
/// KV *is* the register in this mode, so the lease key is written whenever it changes —
/// including a renewal's new expiry, or another isolate would see the lease end early. Peer
/// keys are written on a durable change, or when the stored `last_seen` is `refresh_ms` old
/// (liveness must stay visible to other isolates: with `refresh_ms = ttl − interval` a live
/// peer never looks dead, and a node writes its key every other beat or less).
pub fn plan_save(
    env: &str,
    before: Option<&EnvState>,
    after: &EnvState,
    history: &[HistoryEntry],
    refresh_ms: u64,
) -> Vec<Op> {
    let mut ops = Vec::new();
    if before.is_none() {
        ops.push(index_op(env));
    }
    let lease_after = after.lease_record();
    if before.map(EnvState::lease_record).as_ref() != Some(&lease_after) {
        ops.push(Op::Put {
            key: lease_key(env),
            value: json(&lease_after),
            metadata: None,
            ttl_s: None,
        });
    }
    let empty = Default::default();
    let before_peers = before.map_or(&empty, |b| &b.peers);
    for (node, peer) in &after.peers {
        let write = match before_peers.get(node) {
            None => true,
            Some(old) => {
                !peer_durably_equal(old, peer)
                    || peer.last_seen_ms.saturating_sub(old.last_seen_ms) >= refresh_ms
            }
        };
        if write {
            ops.push(put_peer(env, node, peer));
        }
    }
    for node in before_peers.keys() {
        if !after.peers.contains_key(node) {
            ops.push(Op::Delete {
                key: peer_key(env, node),
            });
        }
    }
    ops.extend(history_ops(env, history));
    ops
}

/// `durable-object` mode: the KV writes that mirror a register change — the index key of a new
/// env, the lease key, the named peers (current value, or a delete if forgotten), history.
pub fn plan_mirror<'a>(
    env: &str,
    state: &EnvState,
    new_env: bool,
    lease: bool,
    peers: impl Iterator<Item = &'a String>,
    history: &[HistoryEntry],
) -> Vec<Op> {
    let mut ops = Vec::new();
    if new_env {
        ops.push(index_op(env));
    }
    if lease {
        ops.push(Op::Put {
            key: lease_key(env),
            value: json(&state.lease_record()),
            metadata: None,
            ttl_s: None,
        });
    }
    for node in peers {
        match state.peers.get(node) {
            Some(p) => ops.push(put_peer(env, node, p)),
            None => ops.push(Op::Delete {
                key: peer_key(env, node),
            }),
        }
    }
    ops.extend(history_ops(env, history));
    ops
}

fn index_op(env: &str) -> Op {
    Op::Put {
        key: index_key(env),
        value: "1".into(),
        metadata: None,
        ttl_s: None,
    }
}

fn history_ops(env: &str, history: &[HistoryEntry]) -> Vec<Op> {
    let prefix = history_prefix(env);
    history
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let value = json(entry);
            Op::Put {
                key: history_key(&prefix, entry, i),
                metadata: Some(value.clone()),
                value,
                ttl_s: Some(HISTORY_TTL_S),
            }
        })
        .collect()
}

fn put_peer(env: &str, node: &str, peer: &Peer) -> Op {
    let value = json(peer);
    Op::Put {
        key: peer_key(env, node),
        metadata: peer_metadata(&value),
        value,
        ttl_s: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brh_shared::election::ElectionConfig;
    use brh_shared::sign::{Authenticated, KeyId};
    use brh_shared::wire::Heartbeat;

    fn beat(state: &mut EnvState, node: &str, seq: u64, now: u64) {
        let cfg = ElectionConfig::default();
        let auth = Authenticated {
            node: node.into(),
            ts_ms: now,
            nonce: format!("boot-{node}:{seq}").parse().unwrap(),
            key: KeyId::default(),
        };
        let hb = Heartbeat {
            env: "prod".into(),
            priority: 0,
            draining: false,
            uptime_s: 1,
            version: "0.1.0".into(),
            api: None,
        };
        state.heartbeat(&cfg, &auth, &hb, now).unwrap();
    }

    const REFRESH: u64 = 10_000;

    fn keys(ops: &[Op]) -> Vec<&str> {
        ops.iter().map(Op::key).collect()
    }

    #[test]
    fn first_heartbeat_writes_index_lease_peer_and_history() {
        let mut s = EnvState::default();
        beat(&mut s, "n1", 1, 1_000);
        let h = HistoryEntry {
            term: 1,
            leader: Some("n1".into()),
            reason: "elected".into(),
            at_ms: 1_000,
        };
        let ops = plan_save("prod", None, &s, std::slice::from_ref(&h), REFRESH);
        assert_eq!(
            keys(&ops),
            vec![
                "envs/prod",
                "env/prod/lease",
                "env/prod/peer/n1",
                history_key("env/prod/hist/", &h, 0).as_str()
            ]
        );
        let Op::Put { value, .. } = &ops[1] else {
            panic!()
        };
        let lease: EnvState = serde_json::from_str(value).unwrap();
        assert!(lease.peers.is_empty());
        assert_eq!(lease.term, 1);
        let Op::Put {
            metadata, value, ..
        } = &ops[2]
        else {
            panic!()
        };
        assert_eq!(metadata.as_deref(), Some(value.as_str()));
    }

    #[test]
    fn kv_mode_writes_peer_keys_only_for_liveness_refresh_and_renewals_write_the_lease() {
        let mut s = EnvState::default();
        beat(&mut s, "n1", 1, 1_000);
        beat(&mut s, "n2", 1, 1_100);
        let before = s.clone();
        // A witness beat 5 s later: nothing (its stored liveness is fresh enough).
        beat(&mut s, "n2", 2, 6_100);
        assert!(keys(&plan_save("prod", Some(&before), &s, &[], REFRESH)).is_empty());
        // 10 s after the stored value: refresh its key.
        beat(&mut s, "n2", 3, 11_100);
        assert_eq!(
            keys(&plan_save("prod", Some(&before), &s, &[], REFRESH)),
            vec!["env/prod/peer/n2"]
        );
        // The holder's renewal writes the lease key (KV is the register in kv mode).
        let before = s.clone();
        beat(&mut s, "n1", 2, 6_100);
        assert_eq!(
            keys(&plan_save("prod", Some(&before), &s, &[], REFRESH)),
            vec!["env/prod/lease"]
        );
        assert!(plan_save("prod", Some(&s), &s, &[], REFRESH).is_empty());
    }

    #[test]
    fn mirror_writes_only_what_changed() {
        let mut s = EnvState::default();
        beat(&mut s, "n1", 1, 1_000);
        let nodes = ["n1".to_string(), "gone".to_string()];
        let ops = plan_mirror("prod", &s, false, true, nodes.iter(), &[]);
        assert_eq!(
            keys(&ops),
            vec!["env/prod/lease", "env/prod/peer/n1", "env/prod/peer/gone"]
        );
        assert!(matches!(ops[2], Op::Delete { .. }));
    }

    #[test]
    fn a_leaving_resign_rewrites_the_peer_key() {
        // Found by the dashboard's browser test: kv mode kept `leaving` in memory only, so
        // the next isolate re-granted the leaver.
        let mut s = EnvState::default();
        beat(&mut s, "n1", 1, 1_000);
        let before = s.clone();
        s.peers.get_mut("n1").unwrap().leaving = true;
        assert!(
            keys(&plan_save("prod", Some(&before), &s, &[], REFRESH)).contains(&"env/prod/peer/n1")
        );
    }

    #[test]
    fn forgotten_peer_is_deleted() {
        let mut s = EnvState::default();
        beat(&mut s, "n1", 1, 1_000);
        beat(&mut s, "n2", 1, 1_000);
        let before = s.clone();
        s.peers.remove("n2");
        assert_eq!(
            plan_save("prod", Some(&before), &s, &[], REFRESH),
            vec![Op::Delete {
                key: "env/prod/peer/n2".into()
            }]
        );
    }

    #[test]
    fn history_keys_sort_newest_first() {
        let e = |term, at_ms| HistoryEntry {
            term,
            leader: None,
            reason: "expired".into(),
            at_ms,
        };
        let p = "env/x/hist/";
        let mut ks = [
            history_key(p, &e(1, 10), 0),
            history_key(p, &e(2, 20), 0),
            history_key(p, &e(2, 20), 1),
            history_key(p, &e(2, 30), 0),
            history_key(p, &e(10, 5), 0),
        ];
        ks.sort();
        assert_eq!(
            ks,
            [
                history_key(p, &e(10, 5), 0),
                history_key(p, &e(2, 30), 0),
                history_key(p, &e(2, 20), 1),
                history_key(p, &e(2, 20), 0),
                history_key(p, &e(1, 10), 0),
            ]
        );
    }

    #[test]
    fn oversize_peer_metadata_falls_back_to_the_value() {
        assert!(peer_metadata(r#"{"a":1}"#).is_some());
        let big = format!(r#"{{"api":"{}"}}"#, "x".repeat(1100));
        assert_eq!(peer_metadata(&big), None);
    }
}
