//! Unit tests for every election rule, then property tests over random interleavings.
use super::*;
use crate::replay::Nonce;
use crate::sign::KeyId;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use proptest::prelude::*;
use std::collections::HashMap;

const T: Timing = Timing::DEFAULT; // hb 5 s, ttl 15 s

fn cfg() -> ElectionConfig {
    ElectionConfig::new(T)
}

/// A test driver: one env, nodes sign with increasing sequence numbers.
#[derive(Default)]
struct Sim {
    st: EnvState,
    seq: HashMap<String, u64>,
}

impl Sim {
    fn auth(&mut self, node: &str, now: u64) -> Authenticated {
        let s = self.seq.entry(node.to_string()).or_insert(0);
        *s += 1;
        Authenticated {
            node: node.into(),
            ts_ms: now,
            nonce: Nonce::new("boot", *s),
            key: KeyId::default(),
        }
    }
    fn hb_full(&mut self, node: &str, prio: i32, draining: bool, now: u64) -> Vec<Change> {
        let a = self.auth(node, now);
        let hb = Heartbeat {
            env: "dev".into(),
            priority: prio,
            draining,
            uptime_s: 1,
            version: "t".into(),
            api: None,
        };
        self.st.heartbeat(&cfg(), &a, &hb, now).unwrap()
    }
    fn hb(&mut self, node: &str, now: u64) -> Vec<Change> {
        self.hb_full(node, 0, false, now)
    }
    fn resign(&mut self, node: &str, term: u64, now: u64) -> Result<Vec<Change>, ElectionError> {
        self.resign_req(node, term, false, None, now)
    }
    fn resign_leaving(&mut self, node: &str, term: u64, now: u64) -> Vec<Change> {
        self.resign_req(node, term, true, None, now).unwrap()
    }
    fn resign_req(
        &mut self,
        node: &str,
        term: u64,
        leaving: bool,
        successor: Option<&str>,
        now: u64,
    ) -> Result<Vec<Change>, ElectionError> {
        let a = self.auth(node, now);
        let req = ResignRequest {
            env: "dev".into(),
            term,
            leaving,
            successor: successor.map(Into::into),
        };
        self.st.resign(&cfg(), &a, &req, now)
    }
    fn leader(&self, now: u64) -> Option<(&str, u64)> {
        self.st
            .valid_lease(now)
            .map(|l| (l.holder.as_str(), l.term))
    }
}

#[test]
fn first_heartbeat_is_granted_term_1() {
    let mut s = Sim::default();
    let ch = s.hb("a", 1000);
    assert_eq!(
        ch,
        vec![
            Change::PeerJoined { node: "a".into() },
            Change::Granted {
                holder: "a".into(),
                term: 1,
                expires_at_ms: 16_000,
                reason: GrantReason::First
            }
        ]
    );
    assert_eq!(s.leader(1000), Some(("a", 1)));
}

#[test]
fn lease_is_sticky_against_better_candidates() {
    let mut s = Sim::default();
    s.hb("b", 0);
    s.hb_full("a", 100, false, 1);
    assert_eq!(s.leader(1), Some(("b", 1)));
}

#[test]
fn holder_renews_and_keeps_term() {
    let mut s = Sim::default();
    s.hb("a", 0);
    let ch = s.hb("a", 10_000);
    assert_eq!(
        ch,
        vec![Change::Renewed {
            holder: "a".into(),
            term: 1,
            expires_at_ms: 25_000
        }]
    );
    assert_eq!(s.leader(24_999), Some(("a", 1)));
    assert_eq!(s.leader(25_000), None);
}

#[test]
fn expiry_then_next_heartbeat_grants_term_plus_one() {
    let mut s = Sim::default();
    s.hb("a", 0);
    s.hb("b", 1);
    s.hb("b", 14_999);
    assert_eq!(s.leader(14_999), Some(("a", 1)), "not before expiry");
    let ch = s.hb("b", 15_000);
    assert!(ch.contains(&Change::Expired {
        holder: "a".into(),
        term: 1
    }));
    assert!(ch.contains(&Change::Granted {
        holder: "b".into(),
        term: 2,
        expires_at_ms: 30_000,
        reason: GrantReason::Expired
    }));
}

#[test]
fn an_expired_holder_that_returns_gets_a_new_term() {
    let mut s = Sim::default();
    s.hb("a", 0);
    s.hb("a", 20_000);
    assert_eq!(s.leader(20_000), Some(("a", 2)));
}

#[test]
fn sweep_expires_and_elects_live_candidate() {
    let mut s = Sim::default();
    s.hb("a", 0);
    s.hb("b", 10_000);
    assert!(s.st.sweep(&cfg(), 14_000).is_empty());
    let ch = s.st.sweep(&cfg(), 15_000);
    assert_eq!(ch.len(), 2);
    assert_eq!(s.leader(15_000), Some(("b", 2)));
    // Nobody alive: sweep expires and leaves the lease vacant, term kept.
    let ch = s.st.sweep(&cfg(), 40_000);
    assert_eq!(
        ch,
        vec![Change::Expired {
            holder: "b".into(),
            term: 2
        }]
    );
    assert_eq!(s.leader(40_000), None);
    assert_eq!(s.st.term, 2);
}

#[test]
fn ranking_priority_then_joined_then_id() {
    let mut s = Sim::default();
    s.hb("z", 0); // holder, then dies
    s.hb("c", 1);
    s.hb("b", 2);
    s.hb_full("d", -1, false, 3);
    for t in [5_000, 10_000, 15_000] {
        s.hb("c", t);
        s.hb("b", t);
        s.hb_full("d", -1, false, t);
    }
    assert_eq!(s.leader(15_000), Some(("c", 2)), "earliest joined wins");

    let mut s = Sim::default();
    s.hb("z", 0);
    s.hb("c", 1);
    s.hb_full("x", 5, false, 2);
    s.st.sweep(&cfg(), 15_000);
    assert_eq!(s.leader(15_000), Some(("x", 2)), "priority first");

    let mut s = Sim::default();
    s.hb("z", 0);
    s.hb("c", 7);
    s.hb("b", 7);
    s.st.sweep(&cfg(), 15_000);
    assert_eq!(s.leader(15_000), Some(("b", 2)), "then node id");
}

#[test]
fn draining_nodes_are_not_elected_and_holder_is_not_renewed() {
    let mut s = Sim::default();
    let ch = s.hb_full("a", 0, true, 0);
    assert_eq!(ch, vec![Change::PeerJoined { node: "a".into() }]);
    assert_eq!(s.leader(0), None);
    s.hb("b", 1);
    assert_eq!(s.leader(1), Some(("b", 1)));
    // Holder drains: no renewal, the lease runs out at 15_001.
    let ch = s.hb_full("b", 0, true, 10_000);
    assert_eq!(ch, vec![Change::PeerUpdated { node: "b".into() }]);
    s.hb("a", 14_000);
    assert_eq!(s.leader(15_000), Some(("b", 1)));
    s.hb("a", 15_001);
    assert_eq!(s.leader(15_001), Some(("a", 2)));
}

#[test]
fn switchover_hands_over_to_the_named_candidate_and_to_no_one_else() {
    let mut s = Sim::default();
    s.hb_full("a", 10, false, 0);
    s.hb_full("b", 5, false, 1);
    s.hb_full("c", 0, false, 2);
    // b would be the best candidate; the operator names c.
    let ch = s.resign_req("a", 1, false, Some("c"), 3).unwrap();
    assert_eq!(s.leader(3), Some(("c", 2)));
    assert!(ch.contains(&Change::Granted {
        holder: "c".into(),
        term: 2,
        expires_at_ms: 15_003,
        reason: GrantReason::Switchover,
    }));
    assert_eq!(
        ch.iter()
            .filter_map(|c| c.history_entry(3))
            .map(|h| h.reason)
            .collect::<Vec<_>>(),
        ["resigned", "switchover"]
    );
    // c stops heartbeating: its lease runs out, and for the rest of the window (one ttl
    // from the resign, which is when c's lease ends) nobody else is granted.
    s.hb("b", 10_000);
    assert_eq!(s.leader(10_000), Some(("c", 2)));
    // After the window the usual rule applies: b (best live) takes over.
    s.hb("b", 15_004);
    assert_eq!(s.leader(15_004), Some(("b", 3)));
}

#[test]
fn switchover_to_a_node_that_cannot_lead_is_refused_and_changes_nothing() {
    let mut s = Sim::default();
    s.hb_full("a", 10, false, 0);
    s.hb_full("d", 0, true, 1); // draining
    s.hb("gone", 2);
    s.hb("a", 14_000);
    s.hb_full("d", 0, true, 14_000);
    for (to, why) in [
        ("a", "it is the holder itself"),
        ("zz", "it is not a member of this env"),
        ("d", "it is draining"),
        ("gone", "it is not alive"),
    ] {
        let before = s.st.clone();
        assert_eq!(
            s.resign_req("a", 1, false, Some(to), 16_000),
            Err(ElectionError::NotCandidate {
                node: to.into(),
                why
            })
        );
        assert_eq!(s.st, before, "refused switchover to {to} changed the state");
    }
    // A node that resigned because it is stopping cannot be chosen either.
    let mut s = Sim::default();
    s.hb("a", 0);
    s.hb("b", 1);
    s.resign_leaving("a", 1, 2);
    assert_eq!(s.leader(2), Some(("b", 2)));
    assert_eq!(
        s.resign_req("b", 2, false, Some("a"), 3),
        Err(ElectionError::NotCandidate {
            node: "a".into(),
            why: "it is stopping"
        })
    );
}

#[test]
fn resign_hands_over_at_once_and_does_not_bounce_back() {
    let mut s = Sim::default();
    s.hb_full("a", 10, false, 0);
    s.hb("b", 1);
    let ch = s.resign("a", 1, 2).unwrap();
    assert_eq!(
        ch,
        vec![
            Change::Resigned {
                holder: "a".into(),
                term: 1
            },
            Change::Granted {
                holder: "b".into(),
                term: 2,
                expires_at_ms: 15_002,
                reason: GrantReason::Resigned
            }
        ]
    );
    // b dies; a (higher priority) is still cooling down until 15_002 but is the only live
    // candidate, so it gets the lease back after b's lease expires.
    s.hb_full("a", 10, false, 15_002);
    assert_eq!(s.leader(15_002), Some(("a", 3)));
}

#[test]
fn a_leaving_node_is_never_granted_again_until_a_new_boot() {
    let mut s = Sim::default();
    s.hb("a", 0);
    assert_eq!(s.leader(0), Some(("a", 1)));
    // Alone and leaving: no grant (a resign without `leaving` would hand it straight back).
    let ch = s.resign_leaving("a", 1, 10);
    assert!(!ch.iter().any(|c| matches!(c, Change::Granted { .. })));
    assert_eq!(s.leader(10), None);
    let st = s.st.clone();
    let summary = st.peer_summaries(20, &T);
    assert!(!summary[0].alive, "a leaving node is shown as gone");
    // Nothing (sweeps, time) grants it again while it is gone ...
    s.st.sweep(&cfg(), 1_000);
    assert_eq!(s.leader(1_000), None);
    // ... and a late beat of the same boot does not bring it back either.
    s.hb("a", 1_100);
    assert_eq!(s.leader(1_100), None);
    // Back with a new boot: a candidate again.
    let a = Authenticated {
        node: "a".into(),
        ts_ms: 2_000,
        nonce: Nonce::new("boot2", 1),
        key: KeyId::default(),
    };
    let hb = Heartbeat {
        env: "dev".into(),
        priority: 0,
        draining: false,
        uptime_s: 0,
        version: "t".into(),
        api: None,
    };
    s.st.heartbeat(&cfg(), &a, &hb, 2_000).unwrap();
    assert_eq!(s.leader(2_000), Some(("a", 2)));
}

#[test]
fn resigned_node_skipped_for_one_ttl_when_others_live() {
    let mut s = Sim::default();
    s.hb_full("a", 10, false, 0);
    s.hb("b", 1);
    s.resign("a", 1, 2).unwrap();
    // b resigns too while a is cooling: a is live... but the cooling record is b's now.
    s.hb("c", 3);
    s.hb_full("a", 10, false, 3);
    let ch = s.resign("b", 2, 4).unwrap();
    assert!(ch
        .iter()
        .any(|c| matches!(c, Change::Granted { holder, .. } if holder == "a")));
}

#[test]
fn resign_by_non_holder_or_wrong_term_changes_nothing() {
    let mut s = Sim::default();
    s.hb("a", 0);
    s.hb("b", 1);
    let before = s.st.clone();
    assert_eq!(
        s.resign("b", 1, 2),
        Err(ElectionError::NotHolder {
            holder: Some("a".into()),
            term: 1
        })
    );
    assert!(s.resign("a", 2, 2).is_err());
    assert_eq!(s.st, before);
    assert!(
        s.resign("a", 1, 15_000).is_err(),
        "expired lease cannot be resigned"
    );
}

#[test]
fn replayed_and_older_nonces_are_refused_without_change() {
    let mut s = Sim::default();
    s.hb("a", 0);
    let hb = Heartbeat {
        env: "dev".into(),
        priority: 0,
        draining: false,
        uptime_s: 1,
        version: String::new(),
        api: None,
    };
    let replay = Authenticated {
        node: "a".into(),
        ts_ms: 0,
        nonce: Nonce::new("boot", 1),
        key: KeyId::default(),
    };
    let before = s.st.clone();
    assert_eq!(
        s.st.heartbeat(&cfg(), &replay, &hb, 5_000),
        Err(ElectionError::Replay)
    );
    assert_eq!(
        s.st.resign(
            &cfg(),
            &replay,
            &ResignRequest {
                env: "dev".into(),
                term: 1,
                leaving: false,
                successor: None
            },
            5_000
        ),
        Err(ElectionError::Replay)
    );
    let report = ConsensusReport {
        env: "dev".into(),
        leader: Some("a".into()),
        term: 1,
        peers: vec![],
        epoch: 0,
    };
    assert_eq!(
        s.st.consensus(&replay, &report, 5_000),
        Err(ElectionError::Replay)
    );
    // A different boot with an older timestamp is a replay of a previous life.
    let old_boot = Authenticated {
        node: "a".into(),
        ts_ms: 0,
        nonce: Nonce::new("earlier", 99),
        key: KeyId::default(),
    };
    assert_eq!(
        s.st.heartbeat(&cfg(), &old_boot, &hb, 5_000),
        Err(ElectionError::Replay)
    );
    assert_eq!(s.st, before);
    // A restarted agent (new boot, newer timestamp) is welcome.
    let new_boot = Authenticated {
        node: "a".into(),
        ts_ms: 1,
        nonce: Nonce::new("later", 0),
        key: KeyId::default(),
    };
    assert!(s.st.heartbeat(&cfg(), &new_boot, &hb, 5_000).is_ok());
}

#[test]
fn consensus_never_sets_the_leader_and_flags_contradictions() {
    let mut s = Sim::default();
    s.hb("a", 0);
    s.hb("b", 1);
    let report = |s: &mut Sim, node: &str, leader: Option<&str>, term: u64| {
        let a = s.auth(node, 2);
        let r = ConsensusReport {
            env: "dev".into(),
            leader: leader.map(Into::into),
            term,
            peers: vec![],
            epoch: 0,
        };
        s.st.consensus(&a, &r, 2)
    };
    assert_eq!(report(&mut s, "b", Some("a"), 1), Ok(vec![]));
    assert_eq!(
        report(&mut s, "b", None, 0),
        Ok(vec![]),
        "behind is not split brain"
    );
    let ch = report(&mut s, "b", Some("b"), 1).unwrap();
    assert!(matches!(&ch[..], [Change::SplitBrain { reporter, .. }] if reporter == "b"));
    assert_eq!(report(&mut s, "b", Some("a"), 9).unwrap().len(), 1);
    assert_eq!(s.st.split_brain_alarms, 2);
    assert_eq!(s.leader(2), Some(("a", 1)), "reports never move the lease");
    assert_eq!(
        report(&mut s, "ghost", Some("ghost"), 1),
        Err(ElectionError::UnknownNode)
    );
}

#[test]
fn long_dead_peers_are_forgotten_but_not_the_holder() {
    let mut s = Sim::default();
    s.hb("a", 0);
    s.hb("b", 0);
    let later = cfg().forget_after_ms + 1;
    let ch = s.st.sweep(&cfg(), later);
    assert!(ch.contains(&Change::PeerForgotten { node: "b".into() }));
    assert!(ch.contains(&Change::Expired {
        holder: "a".into(),
        term: 1
    }));
    assert!(s.st.peers.is_empty() || s.st.peers.contains_key("a"));
    s.st.sweep(&cfg(), later + 1);
    assert!(s.st.peers.is_empty());
}

#[test]
fn view_reports_role_and_counts() {
    let mut s = Sim::default();
    s.hb("a", 0);
    s.hb("b", 1);
    let v = s.st.view("dev", 2, &T, "native", Some("b"));
    assert_eq!(v.leader.as_deref(), Some("a"));
    assert_eq!(v.term, 1);
    assert_eq!(v.peers_alive, 2);
    assert_eq!(v.you.unwrap().role, Role::Witness);
    let v = s.st.view("dev", 2, &T, "native", Some("a"));
    assert_eq!(v.you.as_ref().unwrap().role, Role::Leader);
    assert_eq!(v.lease_remaining_ms(), 14_998);
    let v = s.st.view("dev", 20_000, &T, "native", None);
    assert_eq!(
        (v.leader, v.lease, v.term, v.peers_alive),
        (None, None, 1, 0)
    );
}

#[test]
fn state_survives_serde_round_trip() {
    let mut s = Sim::default();
    s.hb("a", 0);
    s.hb("b", 1);
    s.resign("a", 1, 2).unwrap();
    let json = serde_json::to_string(&s.st).unwrap();
    let back: EnvState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s.st);
    assert_eq!(back.term, 2);
}

#[test]
fn a_revoked_key_is_refused_everywhere_and_changes_nothing() {
    let mut s = Sim::default();
    s.hb("a", 0);
    s.hb("b", 1);
    let changes = s.st.revoke(&cfg(), "b", 1, 2);
    assert_eq!(
        changes,
        vec![Change::Revoked {
            node: "b".into(),
            accepted_from: 1
        }]
    );
    assert!(
        !s.st.peers.contains_key("b"),
        "no longer a member, so no candidate"
    );
    let before = s.st.clone();
    let a = s.auth("b", 3);
    let hb = Heartbeat {
        env: "dev".into(),
        priority: 9,
        draining: false,
        uptime_s: 1,
        version: "t".into(),
        api: None,
    };
    let refused = Err(ElectionError::Revoked {
        key_gen: 0,
        accepted_from: 1,
    });
    assert_eq!(s.st.heartbeat(&cfg(), &a, &hb, 3), refused);
    let req = ResignRequest {
        env: "dev".into(),
        term: 1,
        leaving: false,
        successor: None,
    };
    assert_eq!(s.st.resign(&cfg(), &a, &req, 3), refused);
    let report = ConsensusReport {
        env: "dev".into(),
        leader: Some("b".into()),
        term: 1,
        peers: vec![],
        epoch: 0,
    };
    assert_eq!(s.st.consensus(&a, &report, 3), refused);
    assert_eq!(s.st, before);
    // The next generation is accepted; revoking the same generation again changes nothing.
    let mut next = s.auth("b", 4);
    next.key.generation = 1;
    assert!(s.st.heartbeat(&cfg(), &next, &hb, 4).is_ok());
    assert!(s.st.peers.contains_key("b"));
    assert!(s.st.revoke(&cfg(), "b", 1, 5).is_empty());
    assert_eq!(s.st.accepted_from("b"), 1);
}

#[test]
fn revoking_the_holder_never_cuts_its_lease_short() {
    let mut s = Sim::default();
    s.hb("a", 0);
    s.hb("b", 1);
    assert_eq!(s.leader(2), Some(("a", 1)));
    s.st.revoke(&cfg(), "a", 1, 2);
    // It may still act until its deadline: nobody else is granted before expiry.
    assert_eq!(s.leader(14_999), Some(("a", 1)));
    s.hb("b", 14_999);
    assert_eq!(s.leader(14_999), Some(("a", 1)));
    s.hb("b", 15_000);
    assert_eq!(s.leader(15_000), Some(("b", 2)));
}

#[test]
fn a_revocation_survives_the_durable_records() {
    let mut s = Sim::default();
    s.hb("a", 0);
    s.hb("b", 1);
    let changes = s.st.revoke(&cfg(), "b", 3, 2);
    let out = s.st.outcome(&changes, 2);
    assert_eq!(out.durability, Durability::Sync);
    let mut back = EnvState::default();
    back.apply_record(Record::Peer {
        node: "b".into(),
        peer: before_peer(),
    });
    for r in out.records {
        back.apply_record(r);
    }
    assert_eq!(back.accepted_from("b"), 3);
    assert!(!back.peers.contains_key("b"));
    let json = serde_json::to_string(&s.st.lease_record()).unwrap();
    let lease: LeaseRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(lease.revoked.get("b"), Some(&3));
}

fn before_peer() -> Peer {
    Peer {
        joined_at_ms: 0,
        last_seen_ms: 0,
        priority: 0,
        draining: false,
        uptime_s: 0,
        version: "t".into(),
        api: None,
        nonce: NonceMark::of(&Nonce::new("boot", 1), 0),
        reported: None,
        leaving: false,
        key: KeyId::default(),
    }
}

#[test]
fn highest_epoch_method_prefers_most_recent() {
    let c = ElectionConfig {
        method: ElectionMethod::HighestEpoch,
        ..cfg()
    };
    let mut s = Sim::default();
    s.hb("a", 0);
    s.hb("b", 100);
    s.hb("c", 200);
    s.st.lease = None;
    assert_eq!(s.st.best_candidate(&c, 300).as_deref(), Some("c"));
    assert_eq!(s.st.best_candidate(&cfg(), 300).as_deref(), Some("a"));
}

#[test]
fn history_rows() {
    let g = Change::Granted {
        holder: "a".into(),
        term: 3,
        expires_at_ms: 0,
        reason: GrantReason::Resigned,
    };
    let h = g.history_entry(9).unwrap();
    assert_eq!(
        (h.term, h.leader.as_deref(), h.reason.as_str(), h.at_ms),
        (3, Some("a"), "resigned", 9)
    );
    assert!(Change::PeerJoined { node: "a".into() }
        .history_entry(0)
        .is_none());
}

// ---------------------------------------------------------------------------------------------
// Property tests.
//
// The simulation models agents as well as the forge: an agent that receives a view granting it
// the lease believes it leads from the moment the answer arrives until
// `sent_at + (expires_at - issued_at) - margin` on its own clock (docs/design.md §4.4), and stops
// believing when it sends a resign. Requests may be delayed in flight (sent earlier than the
// forge processes them). The checked safety property is about those beliefs.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    /// Node `n` heartbeats; the request spent `delay` ms in flight.
    Heartbeat {
        n: usize,
        prio: i32,
        draining: bool,
        delay: u64,
    },
    /// Node `n` resigns; with `to`, a switchover to that node (possibly dead, draining,
    /// itself: the forge must refuse those and change nothing).
    Resign {
        n: usize,
        to: Option<usize>,
    },
    Sweep,
    Advance {
        ms: u64,
    },
    /// The forge restarts from its durable records (process restart, Durable Object eviction
    /// or redeploy), losing every volatile update.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4usize, 0..3i32, prop::bool::weighted(0.1), 0..2_000u64)
            .prop_map(|(n, prio, draining, delay)| Op::Heartbeat { n, prio, draining, delay }),
        1 => (0..4usize, prop::option::weighted(0.5, 0..4usize))
            .prop_map(|(n, to)| Op::Resign { n, to }),
        1 => Just(Op::Sweep),
        4 => (1..8_000u64).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Restart),
    ]
}

#[derive(Debug, Clone, Copy)]
struct Belief {
    term: u64,
    from: u64,
    until: u64,
}

struct World {
    sim: Sim,
    /// What the store holds: every step's durable records applied in order.
    durable: EnvState,
    restarts: u32,
    now: u64,
    /// Per node: the current (last) belief interval.
    beliefs: Vec<Option<Belief>>,
    closed: Vec<(usize, Belief)>,
    /// Per node: the last non-draining heartbeat the forge processed.
    last_renew: Vec<Option<u64>>,
    /// (holder, term) as seen after every step.
    trail: Vec<(Option<String>, u64)>,
}

fn name(n: usize) -> String {
    format!("n{n}")
}

impl World {
    fn new(nodes: usize) -> Self {
        World {
            sim: Sim::default(),
            durable: EnvState::default(),
            restarts: 0,
            now: 1_000_000,
            beliefs: vec![None; nodes],
            closed: Vec::new(),
            last_renew: vec![None; nodes],
            trail: Vec::new(),
        }
    }

    fn end_belief(&mut self, n: usize, at: u64) {
        if let Some(mut b) = self.beliefs[n].take() {
            b.until = b.until.min(at);
            if b.until > b.from {
                self.closed.push((n, b));
            }
        }
    }

    fn step(&mut self, op: &Op) {
        let margin = T.safety_margin_ms();
        match *op {
            Op::Heartbeat {
                n,
                prio,
                draining,
                delay,
            } => {
                let sent_at = self.now.saturating_sub(delay);
                let node = name(n);
                let prev_holder = self.sim.st.valid_lease(self.now).map(|l| l.holder.clone());
                let changes = self.sim.hb_full(&node, prio, draining, self.now);
                self.persist(&changes);
                self.check_replacement(&changes, prev_holder);
                if !draining
                    && self
                        .sim
                        .st
                        .valid_lease(self.now)
                        .is_some_and(|l| l.holder == node)
                {
                    self.last_renew[n] = Some(self.now);
                }
                let view = self.sim.st.view("dev", self.now, &T, "native", Some(&node));
                let leads = view.you.as_ref().is_some_and(|y| y.role == Role::Leader);
                if leads {
                    let until = sent_at + view.lease_remaining_ms() - margin;
                    let term = view.term;
                    match &mut self.beliefs[n] {
                        Some(b) if b.term == term => b.until = b.until.max(until),
                        _ => {
                            self.end_belief(n, self.now);
                            self.beliefs[n] = Some(Belief {
                                term,
                                from: self.now,
                                until,
                            });
                        }
                    }
                } else {
                    self.end_belief(n, self.now);
                }
            }
            Op::Resign { n, to } => {
                let node = name(n);
                let Some(term) = self.sim.st.lease.as_ref().map(|l| l.term) else {
                    return;
                };
                // The agent stops acting before it sends the resign.
                self.end_belief(n, self.now);
                let before = self.sim.st.clone();
                let to = to.map(name);
                match self
                    .sim
                    .resign_req(&node, term, false, to.as_deref(), self.now)
                {
                    Ok(changes) => {
                        self.persist(&changes);
                        self.last_renew[n] = None
                    }
                    Err(_) => {
                        // Refused events change nothing (beyond the driver's own seq counter).
                        assert_eq!(self.sim.st, before);
                    }
                }
            }
            Op::Sweep => {
                let prev_holder = self.sim.st.valid_lease(self.now).map(|l| l.holder.clone());
                let changes = self.sim.st.sweep(&cfg(), self.now);
                self.persist(&changes);
                self.check_replacement(&changes, prev_holder);
            }
            Op::Advance { ms } => self.now += ms,
            Op::Restart => {
                let term_before = self.sim.st.term;
                let mut st = self.durable.clone();
                st.recover(&cfg(), self.now);
                assert_eq!(st.term, term_before, "a restart lost a term");
                self.sim.st = st;
                self.restarts += 1;
            }
        }
        // Everything but volatile fields is durable after every step.
        assert_eq!(self.durable.lease_record().term, self.sim.st.term);
        assert_eq!(
            self.durable.lease.as_ref().map(|l| (&l.holder, l.term)),
            self.sim.st.lease.as_ref().map(|l| (&l.holder, l.term))
        );
        assert!(self.durable.peers.keys().eq(self.sim.st.peers.keys()));
        let v = self.sim.st.view("dev", self.now, &T, "native", None);
        self.trail.push((v.leader, v.term));
    }

    fn persist(&mut self, changes: &[Change]) {
        let out = self.sim.st.outcome(changes, self.now);
        assert_eq!(out.records.is_empty(), out.is_volatile());
        for r in out.records {
            self.durable.apply_record(r);
        }
    }

    /// Property: a holder that renewed within the ttl is never replaced.
    fn check_replacement(&self, changes: &[Change], prev_holder: Option<String>) {
        let Some(prev) = prev_holder else { return };
        for c in changes {
            if let Change::Granted { holder, .. } = c {
                if *holder != prev {
                    let n: usize = prev[1..].parse().unwrap();
                    if let Some(t) = self.last_renew[n] {
                        assert!(
                            self.now >= t + T.lease_ttl_ms,
                            "{prev} renewed at {t} and was replaced at {}",
                            self.now
                        );
                    }
                }
            }
        }
    }

    fn finish(mut self) {
        for n in 0..self.beliefs.len() {
            let now = self.now;
            self.end_belief(n, now);
        }
        // Safety: no two agents believe they lead at the same instant.
        for (i, (na, a)) in self.closed.iter().enumerate() {
            for (nb, b) in &self.closed[i + 1..] {
                if na != nb {
                    assert!(
                        a.until <= b.from || b.until <= a.from,
                        "n{na} {a:?} overlaps n{nb} {b:?}"
                    );
                }
            }
        }
        // Terms never decrease, and every change of holder comes with a higher term.
        let mut last_term = 0;
        let mut last_holder: Option<(String, u64)> = None;
        for (holder, term) in &self.trail {
            assert!(*term >= last_term, "term went back {last_term} -> {term}");
            last_term = *term;
            if let Some(h) = holder {
                if let Some((ph, pt)) = &last_holder {
                    if ph != h {
                        assert!(term > pt, "holder {ph}->{h} without a new term");
                    }
                }
                last_holder = Some((h.clone(), *term));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    /// Includes forge restarts from the last durable state at any point: no two agents
    /// overlap, terms never go back, a renewed holder is not replaced within its ttl.
    fn prop_random_interleavings_are_safe(ops in prop::collection::vec(op(), 1..200)) {
        let mut w = World::new(4);
        for op in &ops {
            w.step(op);
        }
        w.finish();
    }

    /// Liveness: nodes beat every interval (with jitter); the holder dies at a random moment.
    /// A live candidate exists, so the lease changes hands at most ttl + one interval after the
    /// dead holder's last heartbeat.
    #[test]
    fn prop_dead_holder_is_replaced_in_time(
        nodes in 2..5usize,
        offsets in prop::collection::vec(0..T.heartbeat_interval_ms, 5),
        jitter in prop::collection::vec(0..500u64, 64),
        die_after_beats in 1..10usize,
        sweeps in prop::bool::ANY,
    ) {
        let hb = T.heartbeat_interval_ms;
        let mut s = Sim::default();
        // Event list: (time, node) heartbeats; node 0 beats first so it holds the lease.
        let mut events: Vec<(u64, usize)> = Vec::new();
        for n in 0..nodes {
            let mut t = if n == 0 { 0 } else { 1 + offsets[n] };
            for k in 0..40 {
                events.push((t, n));
                t += hb - 250 + jitter[(k + n * 7) % jitter.len()] % 250;
            }
        }
        events.sort();
        let mut dead_at_last_beat: Option<u64> = None;
        let mut beats0 = 0;
        let mut replaced_at = None;
        for (t, n) in events {
            if n == 0 {
                if dead_at_last_beat.is_some() { continue; }
                beats0 += 1;
                if beats0 == die_after_beats { dead_at_last_beat = Some(t); }
            }
            if sweeps { s.st.sweep(&cfg(), t); }
            s.hb(&name(n), t);
            if dead_at_last_beat.is_some() && replaced_at.is_none() {
                if let Some((h, _)) = s.leader(t) {
                    if h != "n0" { replaced_at = Some(t); }
                }
            }
        }
        let last = dead_at_last_beat.unwrap();
        let r = replaced_at.expect("a live candidate must take over");
        prop_assert!(r <= last + T.lease_ttl_ms + hb, "replaced at {r}, last beat {last}");
        prop_assert!(r >= last + T.lease_ttl_ms, "replaced before expiry");
    }

    /// Any change to any signed field, or to the signature, fails verification.
    #[test]
    fn prop_request_tampering_fails(
        method in "(GET|POST)",
        path in "/[a-z/]{0,20}",
        node in "[a-z][a-z0-9-]{0,10}",
        ts in 0..u64::MAX / 2,
        boot in "[a-z0-9]{1,8}",
        seq in 0..u64::MAX / 2,
        body in prop::collection::vec(any::<u8>(), 0..64),
        which in 0..8usize,
        flip in 1..=255u8,
    ) {
        use crate::sign::{sign_request, verify_request, RawAuth, AuthError};
        let seal = b"prop-seal";
        let h = sign_request(seal, &method, &path, &node, ts, Nonce::new(boot.clone(), seq), &body);
        let (ts_s, nonce_s) = (ts.to_string(), h.nonce.to_string());
        let raw = RawAuth { node: Some(&node), ts: Some(&ts_s), nonce: Some(&nonce_s), sig: Some(&h.sig) };
        prop_assert!(verify_request(seal, &method, &path, raw, &body, ts, 0).is_ok());
        let (mut m, mut p, mut nd, mut t, mut nn, mut b, mut sg) =
            (method.clone(), path.clone(), node.clone(), ts_s.clone(), nonce_s.clone(), body.clone(), h.sig.clone());
        match which {
            0 => m = if m == "GET" { "POST".into() } else { "GET".into() },
            1 => p.push('x'),
            2 => nd.push('x'),
            3 => t = (ts + 1).to_string(),
            4 => nn = format!("{boot}:{}", seq + 1),
            5 => if b.is_empty() { b.push(flip) } else { b[0] ^= flip },
            6 => {
                let mut bytes = sg.into_bytes();
                let i = (flip as usize) % bytes.len();
                bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
                sg = String::from_utf8(bytes).unwrap();
            }
            _ => nn = format!("{boot}x:{seq}"),
        }
        let raw = RawAuth { node: Some(&nd), ts: Some(&t), nonce: Some(&nn), sig: Some(&sg) };
        let r = verify_request(seal, &m, &p, raw, &b, ts, u64::MAX);
        prop_assert_eq!(r, Err(AuthError::BadSignature));
    }

    #[test]
    fn prop_view_tampering_fails(
        leader in prop::option::of("[a-z]{1,6}"),
        term in 0..1_000u64,
        issued in 0..u64::MAX / 4,
        you in prop::option::of(("[a-z]{1,6}", prop::bool::ANY)),
        which in 0..6usize,
    ) {
        use crate::sign::{sign_view, verify_view};
        use crate::wire::{LeaseInfo, You};
        let mut v = LeaderView {
            env: "dev".into(),
            leader: leader.clone(),
            term,
            lease: leader.as_ref().map(|h| LeaseInfo { holder: h.clone(), term, expires_at_ms: issued + 15_000, ttl_ms: 15_000 }),
            epoch: issued / 1000,
            issued_at_ms: issued,
            peers_alive: 1,
            mode: "native".into(),
            heartbeat_interval_ms: 1_000,
            lease_ttl_ms: 3_000,
            you: you.map(|(n, l)| You { node: n, role: if l { Role::Leader } else { Role::Witness } }),
            sig: String::new(),
            lease_token: None,
        };
        sign_view(b"k", &mut v);
        prop_assert!(verify_view(b"k", &v));
        let mut t = v.clone();
        match which {
            0 => t.env = "prod".into(),
            1 => t.term += 1,
            2 => t.issued_at_ms += 1,
            3 => match &mut t.lease { Some(l) => l.expires_at_ms += 1, None => t.leader = Some("z".into()) },
            4 => match &mut t.you {
                Some(y) => y.role = if y.role == Role::Leader { Role::Witness } else { Role::Leader },
                None => t.you = Some(You { node: "z".into(), role: Role::Leader }),
            },
            _ => t.sig = v.sig.replacen(&v.sig[..1], if &v.sig[..1] == "0" { "1" } else { "0" }, 1),
        }
        prop_assert!(!verify_view(b"k", &t));
    }

    /// The replay window: any nonce that does not move the mark forward is refused.
    #[test]
    fn prop_replayed_or_older_nonces_are_refused(
        steps in prop::collection::vec((0..3u8, 0..20u64, 0..2_000u64), 1..60),
    ) {
        let mut s = Sim::default();
        s.hb("a", 0);
        let hb = Heartbeat { env: "dev".into(), priority: 0, draining: false, uptime_s: 0, version: String::new(), api: None };
        let mut accepted: Vec<(String, u64, u64)> = vec![("boot".into(), 1, 0)];
        for (boot, seq, ts) in steps {
            let boot = format!("b{boot}");
            let auth = Authenticated { node: "a".into(), ts_ms: ts, nonce: Nonce::new(boot.clone(), seq), key: KeyId::default() };
            let (lb, ls, lt) = accepted.last().unwrap().clone();
            let retired = accepted.iter().any(|(b, _, _)| *b == boot) && boot != lb;
            let expect_ok = if boot == lb { seq > ls } else { ts > lt && !retired };
            let max_ts = lt.max(ts);
            let before = s.st.clone();
            let r = s.st.heartbeat(&cfg(), &auth, &hb, 1);
            if expect_ok {
                prop_assert!(r.is_ok());
                accepted.push((boot, seq, max_ts));
            } else {
                prop_assert_eq!(r, Err(ElectionError::Replay));
                prop_assert_eq!(&s.st, &before);
            }
            // Whatever was accepted before can never be accepted again.
            // (The replay is tried with the timestamp it was first sent with or any earlier.)
            for (b, q, t) in &accepted {
                let again = Authenticated { node: "a".into(), ts_ms: *t, nonce: Nonce::new(b.clone(), *q), key: KeyId::default() };
                prop_assert_eq!(s.st.clone().heartbeat(&cfg(), &again, &hb, 1), Err(ElectionError::Replay));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Durable on change, volatile on renewal.
// ---------------------------------------------------------------------------------------------

fn replayed(records: &[Record]) -> EnvState {
    let mut st = EnvState::default();
    for r in records {
        st.apply_record(r.clone());
    }
    st
}

#[test]
fn renewals_and_liveness_are_volatile_changes_are_durable() {
    let mut s = Sim::default();
    let ch = s.hb("a", 1_000);
    let out = s.st.outcome(&ch, 1_000);
    assert_eq!(out.durability, Durability::Sync, "first grant");
    assert_eq!(out.history.len(), 1);
    let mut log = out.records.clone();
    assert!(log
        .iter()
        .any(|r| matches!(r, Record::Peer { node, .. } if node == "a")));

    // The holder renews: nothing to write.
    let ch = s.hb("a", 6_000);
    assert!(ch.iter().all(|c| matches!(c, Change::Renewed { .. })));
    let out = s.st.outcome(&ch, 6_000);
    assert!(out.is_volatile() && out.records.is_empty() && out.history.is_empty());

    // A witness joins (write), then beats unchanged (volatile), then changes priority (write).
    let ch = s.hb("b", 6_100);
    let out = s.st.outcome(&ch, 6_100);
    assert_eq!(out.durability, Durability::Write);
    log.extend(out.records);
    let ch = s.hb("b", 11_000);
    assert!(s.st.outcome(&ch, 11_000).is_volatile());
    let ch = s.hb_full("b", 5, false, 12_000);
    assert_eq!(ch, vec![Change::PeerUpdated { node: "b".into() }]);
    log.extend(s.st.outcome(&ch, 12_000).records);

    // A new boot of a known node is durable (its retired boots must survive a restart).
    let a = Authenticated {
        node: "b".into(),
        ts_ms: 13_000,
        nonce: Nonce::new("boot2", 1),
        key: KeyId::default(),
    };
    let hb: Heartbeat =
        serde_json::from_str(r#"{"env":"dev","priority":5,"version":"t"}"#).unwrap();
    let ch = s.st.heartbeat(&cfg(), &a, &hb, 13_000).unwrap();
    assert_eq!(ch, vec![Change::PeerUpdated { node: "b".into() }]);
    log.extend(s.st.outcome(&ch, 13_000).records);

    // Replaying the log gives the live state except volatile fields.
    let back = replayed(&log);
    assert_eq!(back.term, s.st.term);
    assert_eq!(back.peers["b"].priority, 5);
    assert_eq!(back.peers["b"].nonce.boot_id, "boot2");
    assert_eq!(back.peers["b"].nonce.retired, vec!["boot".to_string()]);
    assert!(
        back.lease.as_ref().unwrap().expires_at_ms <= s.st.lease.as_ref().unwrap().expires_at_ms
    );
}

#[test]
fn expiry_resign_and_forget_are_durable() {
    let mut s = Sim::default();
    s.hb("a", 0);
    s.hb("b", 0);
    let ch = s.resign("a", 1, 1_000).unwrap();
    let out = s.st.outcome(&ch, 1_000);
    assert_eq!(out.durability, Durability::Sync);
    assert_eq!(out.history.len(), 2, "resigned + granted");
    let ch = s.st.sweep(&cfg(), 1_000 + T.lease_ttl_ms);
    assert_eq!(s.st.outcome(&ch, 0).durability, Durability::Sync);
    let ch = s.st.sweep(&cfg(), cfg().forget_after_ms + 100_000);
    let out = s.st.outcome(&ch, 0);
    assert!(out
        .records
        .iter()
        .any(|r| matches!(r, Record::Forget { .. })));
}

#[test]
fn recovery_extends_the_holders_lease_never_shortens_it() {
    let mut s = Sim::default();
    s.hb("a", 1_000);
    s.hb("b", 1_000);
    let durable = s.st.clone();
    s.hb("a", 9_000); // renewal, lost in the restart
    let mut st = durable.clone();
    let at = 100_000;
    assert!(st.recover(&cfg(), at));
    let l = st.lease.clone().unwrap();
    assert_eq!((l.holder.as_str(), l.term), ("a", 1));
    assert_eq!(l.expires_at_ms, at + T.lease_ttl_ms);
    // Never shortened: recovering "in the past" keeps the later expiry.
    let mut st2 = st.clone();
    assert!(!st2.recover(&cfg(), 2_000));
    assert_eq!(st2.lease.unwrap().expires_at_ms, at + T.lease_ttl_ms);
    // Peers last heard long ago are dead until they speak, and not forgotten early.
    assert_eq!(st.peers_alive(at, &T), 0);
    assert!(st.sweep(&cfg(), at + 1).is_empty());
    assert_eq!(st.peers.len(), 2);
    // The holder renews in the same term; nobody else is granted before restart + ttl.
    let mut s2 = Sim {
        st,
        seq: s.seq.clone(),
    };
    let ch = s2.hb("b", at + T.lease_ttl_ms - 1);
    assert!(!ch.iter().any(|c| matches!(c, Change::Granted { .. })));
    let ch = s2.hb("a", at + 1_000);
    assert!(matches!(ch[..], [Change::Renewed { term: 1, .. }]));
}

#[test]
fn heartbeats_do_not_scan_the_peer_table_for_forgetting() {
    let mut s = Sim::default();
    s.hb("a", 0);
    s.hb("b", 0);
    // b is long dead, but only the sweep forgets it.
    let ch = s.hb("a", cfg().forget_after_ms + 10);
    assert!(!ch.iter().any(|c| matches!(c, Change::PeerForgotten { .. })));
    assert!(s.st.peers.contains_key("b"));
}
