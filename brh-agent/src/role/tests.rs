use super::*;
use brh_shared::sign::sign_view;
use brh_shared::wire::{LeaderView, LeaseInfo, Role, You};
use proptest::prelude::*;

const T: Timing = Timing::FAST; // 1 s / 3 s, margin 300 ms

fn view(leader: Option<&str>, term: u64, issued: u64, expires: u64, me: &str) -> LeaderView {
    LeaderView {
        env: "dev".into(),
        leader: leader.map(Into::into),
        term,
        lease: leader.map(|l| LeaseInfo {
            holder: l.into(),
            term,
            expires_at_ms: expires,
            ttl_ms: 3000,
        }),
        epoch: 0,
        issued_at_ms: issued,
        peers_alive: 2,
        mode: "native".into(),
        heartbeat_interval_ms: 1_000,
        lease_ttl_ms: 3_000,
        you: Some(You {
            node: me.into(),
            role: if leader == Some(me) {
                Role::Leader
            } else {
                Role::Witness
            },
        }),
        sig: String::new(),
        lease_token: None,
    }
}

fn vv(leader: Option<&str>, term: u64, issued: u64, expires: u64) -> VerifiedView {
    VerifiedView::assume_verified(view(leader, term, issued, expires, "a"))
}

/// The keys node `me` of env dev holds, from the federation seal `seal`.
pub(crate) fn keys_of(seal: &[u8], me: &str) -> ViewKeys {
    ViewKeys {
        node: Some((me.into(), brh_shared::keys::node_key(seal, "dev", me))),
        forge: brh_shared::keys::forge_signing_key(seal).verifying_key(),
    }
}

#[test]
fn verification_rejects_bad_answers() {
    let mut v = view(Some("a"), 1, 0, 3000, "a");
    sign_view(&brh_shared::keys::node_key(b"seal", "dev", "a"), &mut v);
    let a = keys_of(b"seal", "a");
    assert!(VerifiedView::check(&a, "dev", Some("a"), v.clone()).is_ok());
    assert!(VerifiedView::check(&a, "dev", None, v.clone()).is_ok());
    assert_eq!(
        VerifiedView::check(&keys_of(b"other", "a"), "dev", Some("a"), v.clone()),
        Err(ViewError::BadSignature)
    );
    // Node b cannot be handed a's view, nor a view signed with a's key for b.
    assert_eq!(
        VerifiedView::check(&keys_of(b"seal", "b"), "dev", None, v.clone()),
        Err(ViewError::BadSignature)
    );
    let mut for_b = view(Some("b"), 1, 0, 3000, "b");
    sign_view(&brh_shared::keys::node_key(b"seal", "dev", "a"), &mut for_b);
    assert_eq!(
        VerifiedView::check(&keys_of(b"seal", "b"), "dev", Some("b"), for_b),
        Err(ViewError::BadSignature)
    );
    // A reader with no node key accepts only the forge's public views.
    let reader = ViewKeys {
        node: None,
        forge: a.forge,
    };
    assert_eq!(
        VerifiedView::check(&reader, "dev", None, v.clone()),
        Err(ViewError::BadSignature)
    );
    let mut public = v.clone();
    public.you = None;
    brh_shared::sign::sign_public_view(&brh_shared::keys::forge_signing_key(b"seal"), &mut public);
    assert!(VerifiedView::check(&reader, "dev", None, public.clone()).is_ok());
    assert!(VerifiedView::check(&a, "dev", None, public).is_ok());
    assert!(matches!(
        VerifiedView::check(&a, "prod", Some("a"), v.clone()),
        Err(ViewError::WrongEnv { .. })
    ));
    let mut unsigned = v;
    unsigned.sig.clear();
    assert_eq!(
        VerifiedView::check(&a, "dev", Some("a"), unsigned),
        Err(ViewError::BadSignature)
    );
}

/// On its own timing, an agent at the default profile (5 s / 15 s, margin 1.5 s)
/// on a fast forge (1 s / 3 s) would promote and hit its deadline 1.5 s later, every 5 s.
/// Following the forge, it beats at the forge's interval with the forge's margin.
#[test]
fn an_agent_follows_the_forges_timing() {
    let mut r = RoleState::new("a", Timing::DEFAULT);
    let t = r.record_answer(1000, 1010, &vv(Some("a"), 1, 50_000, 53_000));
    assert_eq!(
        t,
        vec![Transition::Promote {
            term: 1,
            at_ms: 1010
        }]
    );
    assert_eq!(r.timing(), T);
    assert_eq!(
        r.take_timing_change(),
        Some(TimingChange::Adopted {
            from: Timing::DEFAULT,
            to: T
        })
    );
    assert_eq!(r.take_timing_change(), None);
    // The forge's margin (300 ms), not the default's 1.5 s: deadline 1000 + 3000 − 300.
    assert_eq!(r.held(0).unwrap().deadline_ms, 3700);
    // And the forge's interval: next beat 1 s after the last, long before the deadline.
    assert_eq!(r.next_beat_at(1010, 500), 2000);
    // Renewals keep the lease: no demotion across many beats.
    let mut sent = 2000;
    for i in 1..20u64 {
        let issued = 50_000 + i * 1000;
        let t = r.record_answer(sent, sent + 10, &vv(Some("a"), 1, issued, issued + 3000));
        assert!(t.is_empty(), "{t:?}");
        assert!(r.expire(sent + 999).is_none());
        sent = r.next_beat_at(sent + 10, 500);
    }
    assert_eq!(r.take_timing_change(), None);
}

#[test]
fn a_pinned_agent_is_never_granted_on_another_timing() {
    let mut r = RoleState::new("a", Timing::DEFAULT).with_timing_source(TimingSource::Pinned);
    let t = r.record_answer(1000, 1010, &vv(Some("a"), 1, 50_000, 53_000));
    assert!(t.is_empty(), "{t:?}");
    assert!(r.guard(1011).is_err());
    assert_eq!(r.timing(), Timing::DEFAULT);
    assert_eq!(
        r.take_timing_change(),
        Some(TimingChange::Conflict {
            ours: Timing::DEFAULT,
            forge: T
        })
    );
    // Same values: pinned agents run as before.
    let mut r = RoleState::new("a", T).with_timing_source(TimingSource::Pinned);
    let t = r.record_answer(1000, 1010, &vv(Some("a"), 1, 50_000, 53_000));
    assert_eq!(t.len(), 1);
    assert_eq!(r.take_timing_change(), None);
}

#[test]
fn an_answer_without_timing_keeps_ours() {
    let mut r = RoleState::new("a", Timing::DEFAULT);
    let mut v = view(Some("a"), 1, 50_000, 53_000, "a");
    v.heartbeat_interval_ms = 0;
    v.lease_ttl_ms = 0;
    r.record_answer(1000, 1010, &VerifiedView::assume_verified(v));
    assert_eq!(r.timing(), Timing::DEFAULT);
    assert_eq!(r.take_timing_change(), None);
}

/// The driver interface: the keeper only asks what to do and when.
#[test]
fn the_schedule_drives_beats_deadlines_and_reports() {
    let mut r = RoleState::new("a", T).with_schedule(true, Some(60_000), 0);
    assert_eq!(r.poll_action(0), Some(Action::Heartbeat));
    let v = vv(Some("a"), 1, 10_000, 13_000);
    r.handle_answer(&Action::Heartbeat, 0, 5, Outcome::View(&v), 500);
    assert!(matches!(
        r.poll_transition(),
        Some(Transition::Promote { term: 1, .. })
    ));
    assert_eq!(r.poll_transition(), None);
    assert_eq!(r.poll_action(10), None);
    // Next: the beat at 1000 (before the deadline 2700 and the first report at 2000).
    assert_eq!(r.poll_timeout(10), Some(1000));
    assert_eq!(r.poll_action(1000), Some(Action::Heartbeat));
    r.handle_answer(&Action::Heartbeat, 1000, 1005, Outcome::Failed, 500);
    // Unanswered: the deadline (2700) passes at its time, whatever else happens.
    r.handle_timeout(2700);
    assert!(matches!(
        r.poll_transition(),
        Some(Transition::Demote {
            reason: DemoteReason::Deadline,
            ..
        })
    ));
    // The consensus report comes due two intervals after start, then every 60 s.
    let mut r = RoleState::new("a", T).with_schedule(true, Some(60_000), 0);
    r.handle_answer(&Action::Heartbeat, 0, 5, Outcome::View(&v), 500);
    let _ = r.poll_action(2_000); // the beat due at 1000
    r.handle_answer(&Action::Heartbeat, 2_000, 2_005, Outcome::View(&v), 500);
    assert_eq!(r.poll_action(2_010), Some(Action::Consensus));
    assert_eq!(r.poll_action(2_020), None);
    // Heartbeats off: leader polls, never a grant.
    let mut p = RoleState::new("a", T).with_schedule(false, None, 0);
    assert_eq!(p.poll_action(0), Some(Action::LeaderPoll));
}

#[test]
fn an_answer_counts_only_bound_to_our_own_request() {
    use brh_shared::sign::{sign_basis, sign_view};
    let seal = b"unit-seal";
    let key = brh_shared::keys::node_key(seal, "dev", "a");
    let keys = keys_of(seal, "a");
    let mut v = view(Some("a"), 3, 1_000, 4_000, "a");
    sign_view(&key, &mut v);
    let sig = sign_basis(&key, "a", "b1:7", &v.sig);
    let check = |basis: Option<&str>, basis_sig: Option<&str>, nonce: &str| {
        VerifiedView::check_answer(&keys, "dev", "a", v.clone(), basis, basis_sig, nonce)
    };
    assert!(check(Some("b1:7"), Some(&sig), "b1:7").is_ok());
    // The same answer replayed as the answer to a later request of ours.
    assert_eq!(
        check(Some("b1:7"), Some(&sig), "b1:8"),
        Err(ViewError::Unbound)
    );
    // Relabelled to the later request without the seal.
    assert_eq!(
        check(Some("b1:8"), Some(&sig), "b1:8"),
        Err(ViewError::Unbound)
    );
    // Stripped of its binding.
    assert_eq!(check(None, None, "b1:7"), Err(ViewError::Unbound));
    assert_eq!(check(Some("b1:7"), None, "b1:7"), Err(ViewError::Unbound));
    // Bound for another node, or with another node's key.
    let theirs = sign_basis(&key, "b", "b1:7", &v.sig);
    assert_eq!(
        check(Some("b1:7"), Some(&theirs), "b1:7"),
        Err(ViewError::Unbound)
    );
    let b_key = brh_shared::keys::node_key(seal, "dev", "b");
    let theirs = sign_basis(&b_key, "a", "b1:7", &v.sig);
    assert_eq!(
        check(Some("b1:7"), Some(&theirs), "b1:7"),
        Err(ViewError::Unbound)
    );
}

#[test]
fn shutdown_demotes_then_resigns_with_a_bounded_budget() {
    let mut r = RoleState::new("a", T).with_schedule(true, None, 0);
    let v = vv(Some("a"), 3, 10_000, 13_000);
    r.handle_answer(&Action::Heartbeat, 0, 5, Outcome::View(&v), 0);
    let _ = r.poll_transition();
    assert_eq!(r.begin_shutdown(100), Some(3));
    assert!(matches!(
        r.poll_transition(),
        Some(Transition::Demote {
            reason: DemoteReason::Shutdown,
            ..
        })
    ));
    assert!(
        r.guard(100).is_err(),
        "the guard closes before the resign leaves"
    );
    let mut at = 100;
    for attempt in 1..=RESIGN_ATTEMPTS {
        assert_eq!(
            r.poll_action(at),
            Some(Action::Resign { term: 3 }),
            "{attempt}"
        );
        r.handle_answer(&Action::Resign { term: 3 }, at, at + 1, Outcome::Failed, 0);
        if attempt < RESIGN_ATTEMPTS {
            let next = r.poll_timeout(at + 1).unwrap();
            assert_eq!(next - (at + 1), RETRY_BASE_MS << (attempt - 1), "backoff");
            assert_eq!(r.poll_action(at + 2), None, "not before the backoff");
            at = next;
        }
    }
    assert!(r.shutdown_finished(at + 10));
    assert_eq!(r.poll_timeout(at + 10), None);
    assert_eq!(r.resign_abandoned(), Some(3));
    // Success ends it at once; a witness says farewell once.
    let mut r = RoleState::new("a", T).with_schedule(true, None, 0);
    r.handle_answer(&Action::Heartbeat, 0, 5, Outcome::View(&v), 0);
    r.begin_shutdown(10);
    r.handle_answer(&Action::Resign { term: 3 }, 10, 11, Outcome::View(&v), 0);
    assert!(r.shutdown_finished(11));
    assert_eq!(r.resign_abandoned(), None);
    let mut w = RoleState::new("a", T).with_schedule(true, None, 0);
    assert_eq!(w.begin_shutdown(0), None);
    assert_eq!(w.poll_action(0), Some(Action::Farewell));
    assert_eq!(w.poll_action(1), None);
    assert!(w.shutdown_finished(1));
    // The budget: the ttl (3 s here), at most 10 s.
    let mut r = RoleState::new("a", T).with_schedule(true, None, 0);
    r.handle_answer(&Action::Heartbeat, 0, 5, Outcome::View(&v), 0);
    r.begin_shutdown(0);
    assert_eq!(r.poll_action(3_000), None);
    assert!(r.shutdown_finished(3_000));
}

#[test]
fn a_switchover_steps_down_before_its_resign_and_ignores_older_grants() {
    let mut r = RoleState::new("a", T).with_schedule(true, None, 0);
    let v = vv(Some("a"), 3, 10_000, 13_000);
    r.handle_answer(&Action::Heartbeat, 0, 5, Outcome::View(&v), 0);
    let _ = r.poll_transition();
    assert_eq!(r.handle_switchover_request("b", 100), Ok(3));
    assert!(matches!(
        r.poll_transition(),
        Some(Transition::Demote {
            term: 3,
            reason: DemoteReason::Switchover,
            at_ms: 100,
            ..
        })
    ));
    assert!(
        r.guard(100).is_err(),
        "the guard closes before the resign leaves"
    );
    assert_eq!(
        r.handle_switchover_request("c", 100),
        Err(NotLeader {
            leader: None,
            reason: "handing the lease over"
        })
    );
    let hand = Action::Switchover {
        term: 3,
        to: "b".into(),
    };
    assert_eq!(r.poll_action(100), Some(hand.clone()));
    assert_eq!(r.poll_action(5_000), None, "one action at a time");
    // A grant of the handed-over term that the forge gave before the resign (a push bound
    // to a beat sent before the step-down) is not acted on.
    r.handle_push(50, 120, &vv(Some("a"), 3, 10_100, 13_100));
    assert_eq!(r.poll_transition(), None);
    // The forge refused (or the resign was lost): our lease may be intact, and the next
    // heartbeat, sent after the step-down, promotes us afresh.
    r.handle_answer(&hand, 100, 130, Outcome::Failed, 0);
    assert!(r.guard(130).is_err());
    assert_eq!(r.poll_action(1_000), Some(Action::Heartbeat));
    r.handle_answer(&Action::Heartbeat, 1_000, 1_010, Outcome::View(&v), 0);
    assert_eq!(
        r.poll_transition(),
        Some(Transition::Promote {
            term: 3,
            at_ms: 1_010
        })
    );
    // Accepted: the answer names the successor; a witness cannot hand over.
    assert_eq!(r.handle_switchover_request("b", 1_100), Ok(3));
    let _ = r.poll_transition();
    assert_eq!(r.poll_action(1_100), Some(hand.clone()));
    let after = vv(Some("b"), 4, 11_200, 14_200);
    r.handle_answer(&hand, 1_100, 1_120, Outcome::View(&after), 0);
    assert_eq!(r.poll_transition(), None);
    assert_eq!(r.leader(), (Some("b"), 4));
    assert_eq!(
        r.handle_switchover_request("b", 1_200),
        Err(NotLeader {
            leader: Some("b".into()),
            reason: "witness"
        })
    );
    // Shutting down: no switchover.
    let mut s = RoleState::new("a", T).with_schedule(true, None, 0);
    s.handle_answer(&Action::Heartbeat, 0, 5, Outcome::View(&v), 0);
    s.begin_shutdown(10);
    assert!(s.handle_switchover_request("b", 10).is_err());
}

#[test]
fn grant_deadline_counts_from_send_time() {
    let mut r = RoleState::new("a", T);
    // Sent at 1000, answered at 1400; forge clock says 3000 ms of lease are left.
    let t = r.record_answer(1000, 1400, &vv(Some("a"), 5, 50_000, 53_000));
    assert_eq!(
        t,
        vec![Transition::Promote {
            term: 5,
            at_ms: 1400
        }]
    );
    // deadline = 1000 + 3000 - 300
    assert_eq!(
        r.held(1400),
        Some(Held {
            term: 5,
            deadline_ms: 3700
        })
    );
    assert_eq!(r.guard(3699), Ok(5));
    assert!(r.guard(3700).is_err());
    assert_eq!(
        r.expire(3750),
        Some(Transition::Demote {
            term: 5,
            leader: None,
            reason: DemoteReason::Deadline,
            at_ms: 3700
        })
    );
    assert_eq!(r.expire(3800), None);
}

#[test]
fn renewal_extends_and_late_answer_does_not_resurrect() {
    let mut r = RoleState::new("a", T);
    r.record_answer(0, 10, &vv(Some("a"), 1, 0, 3000));
    assert!(r
        .record_answer(1000, 1010, &vv(Some("a"), 1, 1000, 4000))
        .is_empty());
    assert_eq!(r.held(1010).unwrap().deadline_ms, 3700);
    // An answer arriving after the deadline: demote at the deadline first, then the
    // fresh grant (measured from its own send time) starts a new interval.
    let t = r.record_answer(3000, 3800, &vv(Some("a"), 1, 3000, 6000));
    assert_eq!(
        t,
        vec![
            Transition::Demote {
                term: 1,
                leader: None,
                reason: DemoteReason::Deadline,
                at_ms: 3700
            },
            Transition::Promote {
                term: 1,
                at_ms: 3800
            }
        ]
    );
    // A grant that is already unusable when it arrives is not acted on.
    let mut r = RoleState::new("a", T);
    assert!(r
        .record_answer(0, 2800, &vv(Some("a"), 1, 0, 3000))
        .is_empty());
    assert!(r.guard(2800).is_err());
}

#[test]
fn forge_saying_witness_demotes_and_term_change_refences() {
    let mut r = RoleState::new("a", T);
    r.record_answer(0, 10, &vv(Some("a"), 1, 0, 3000));
    let t = r.record_answer(500, 510, &vv(Some("a"), 2, 500, 3500));
    assert!(matches!(
        t[0],
        Transition::Demote {
            term: 1,
            reason: DemoteReason::TermChanged,
            ..
        }
    ));
    assert_eq!(
        t[1],
        Transition::Promote {
            term: 2,
            at_ms: 510
        }
    );
    let t = r.record_answer(600, 610, &vv(Some("b"), 3, 600, 3600));
    assert_eq!(
        t,
        vec![Transition::Demote {
            term: 2,
            leader: Some("b".into()),
            reason: DemoteReason::Forge,
            at_ms: 610
        }]
    );
    assert_eq!(
        r.guard(620),
        Err(NotLeader {
            leader: Some("b".into()),
            reason: "witness"
        })
    );
}

#[test]
fn failures_do_not_change_role_before_deadline() {
    let mut r = RoleState::new("a", T);
    r.record_answer(0, 10, &vv(Some("a"), 1, 0, 3000));
    assert_eq!(r.record_failure(1000, 2000), None);
    assert_eq!(r.guard(2000), Ok(1));
    assert!(matches!(
        r.record_failure(2000, 2700),
        Some(Transition::Demote { .. })
    ));
    assert!(r.guard(2700).is_err());
}

#[test]
fn stop_demotes_and_never_leads_again() {
    let mut r = RoleState::new("a", T);
    r.record_answer(0, 10, &vv(Some("a"), 4, 0, 3000));
    let (t, term) = r.stop_leading(100);
    assert!(matches!(
        t,
        Some(Transition::Demote {
            reason: DemoteReason::Shutdown,
            at_ms: 100,
            ..
        })
    ));
    assert_eq!(term, Some(4));
    assert!(r
        .record_answer(200, 210, &vv(Some("a"), 4, 200, 3200))
        .is_empty());
    assert!(r.guard(220).is_err());
    let mut w = RoleState::new("a", T);
    assert_eq!(w.stop_leading(0), (None, None));
    // Refused grant (pinned timing): not acting, but the forge's lease is handed back.
    let mut p = RoleState::new("a", Timing::DEFAULT).with_timing_source(TimingSource::Pinned);
    assert!(p
        .record_answer(0, 10, &vv(Some("a"), 6, 0, 3000))
        .is_empty());
    assert_eq!(p.stop_leading(20), (None, Some(6)));
}

#[test]
fn witness_probes_just_after_the_lease_ends() {
    let mut r = RoleState::new("a", T);
    assert_eq!(r.next_beat_at(7, 0), 7, "first beat at once");
    // Leader b renewed long ago: 1200 ms left as of issue; we received at 1050.
    r.record_answer(1000, 1050, &vv(Some("b"), 3, 9000, 10_200));
    // Regular beat would be 2000; the lease ends by 1050 + 1200 = 2250 → regular first.
    assert_eq!(r.next_beat_at(1100, 0), 2000);
    r.record_answer(2000, 2040, &vv(Some("b"), 3, 10_000, 10_200));
    // Lease ends by 2040 + 200: beat at 2245 rather than at 3000.
    assert_eq!(r.next_beat_at(2050, 0), 2240 + PROBE_SLACK_MS);
    // If that probe was early (same lease still shown), wait at least interval / 10.
    r.record_answer(2245, 2250, &vv(Some("b"), 3, 10_200, 10_200));
    assert_eq!(r.next_beat_at(2250, 0), 2345);
    // A vacant view: regular beats.
    r.record_answer(2345, 2350, &vv(None, 3, 10_300, 0));
    assert_eq!(r.next_beat_at(2350, 0), 3345);
}

#[test]
fn nudges_bring_the_next_beat_forward_but_keep_a_gap() {
    let mut r = RoleState::new("a", T);
    r.record_answer(1000, 1010, &vv(Some("b"), 1, 0, 3000));
    assert_eq!(r.next_beat_at(1020, 0), 2000);
    r.nudge();
    assert_eq!(r.next_beat_at(1002, 0), 1000 + NUDGE_GAP_MS);
    assert_eq!(r.next_beat_at(1300, 0), 1250, "due at once");
    r.record_answer(1300, 1310, &vv(None, 1, 0, 0));
    assert_eq!(r.next_beat_at(1320, 0), 2300, "a nudge counts once");
    r.stop_leading(1400);
    r.nudge();
    assert_eq!(r.next_beat_at(1400, 0), 2300);
}

#[test]
fn retries_back_off_with_jitter_up_to_the_interval() {
    let mut r = RoleState::new("a", T);
    r.record_failure(0, 0);
    assert_eq!(r.next_beat_at(0, 500), 100);
    assert_eq!(r.next_beat_at(0, 0), 80);
    assert_eq!(r.next_beat_at(0, 999), 119);
    for i in 1..10 {
        r.record_failure(i, i);
    }
    assert!(r.next_beat_at(9, 999) <= 9 + 1200);
}

#[test]
fn a_push_grants_from_its_basis_send_time_and_stale_pushes_are_ignored() {
    let mut r = RoleState::new("a", T);
    // A push arriving 2.5 s after the beat it names: the deadline still counts from the
    // beat (1000 + 3000 − 300), not from the push.
    r.handle_push(1_000, 3_500, &vv(Some("a"), 4, 50, 3_050));
    assert_eq!(
        r.poll_transition(),
        Some(Transition::Promote {
            term: 4,
            at_ms: 3_500
        })
    );
    assert_eq!(r.guard(3_699), Ok(4));
    assert!(r.guard(3_700).is_err());
    // A push about term 3, crossing with the answer that granted term 4: ignored.
    r.handle_push(1_200, 3_600, &vv(Some("b"), 3, 40, 3_040));
    assert_eq!(r.poll_transition(), None);
    assert_eq!(r.guard(3_650), Ok(4));
    // A push of term 5 for b ends our leadership at once.
    r.handle_push(1_300, 3_650, &vv(Some("b"), 5, 60, 3_060));
    assert!(matches!(
        r.poll_transition(),
        Some(Transition::Demote {
            term: 4,
            reason: DemoteReason::Forge,
            ..
        })
    ));
    // A push leaves the beat schedule alone.
    assert_eq!(r.last_attempt_ms, None);
    // Arriving after its own deadline, a push grants nothing.
    let mut late = RoleState::new("a", T);
    late.handle_push(0, 2_800, &vv(Some("a"), 1, 0, 3_000));
    assert_eq!(late.poll_transition(), None);
    assert!(late.guard(2_800).is_err());
}

#[derive(Debug, Clone)]
enum Ev {
    /// Heartbeat sent after `gap` ms, answered after `rtt` ms with a grant for `me` (or
    /// for `b`), the forge's lease running `rem` ms from the answer's issue.
    Answer {
        gap: u64,
        rtt: u64,
        me: bool,
        term_bump: bool,
        rem: u64,
    },
    Fail {
        gap: u64,
        rtt: u64,
    },
    Tick {
        gap: u64,
    },
    /// A push bound to a request sent `back` ms ago, arriving `delay` ms from now.
    Push {
        back: u64,
        delay: u64,
        me: bool,
        term_bump: bool,
        rem: u64,
    },
    /// An operator's switchover to `b` after `gap` ms, its resign answered after `rtt` ms:
    /// accepted (b leads a new term) or failed (the forge may still have handled it).
    Switchover {
        gap: u64,
        rtt: u64,
        accepted: bool,
    },
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        (
            0u64..2000,
            0u64..3500,
            any::<bool>(),
            any::<bool>(),
            0u64..4000
        )
            .prop_map(|(gap, rtt, me, term_bump, rem)| Ev::Answer {
                gap,
                rtt,
                me,
                term_bump,
                rem
            }),
        (0u64..2000, 0u64..3500).prop_map(|(gap, rtt)| Ev::Fail { gap, rtt }),
        (0u64..2000).prop_map(|gap| Ev::Tick { gap }),
        (
            0u64..4000,
            0u64..3500,
            any::<bool>(),
            any::<bool>(),
            0u64..4000
        )
            .prop_map(|(back, delay, me, term_bump, rem)| Ev::Push {
                back,
                delay,
                me,
                term_bump,
                rem
            }),
        (0u64..2000, 0u64..1000, any::<bool>())
            .prop_map(|(gap, rtt, accepted)| { Ev::Switchover { gap, rtt, accepted } }),
    ]
}

proptest! {
    // More cases than the default: a grant that predates a failed switchover's step-down
    // needs a grant, the switchover and a late push of the same term in one sequence.
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Whatever the forge answers and however late: the guard only admits at times when
    /// the forge's lease (as the forge's clock would see it, the request having arrived
    /// no earlier than it was sent) is still valid for the guarded term, minus the margin;
    /// and transitions alternate Promote/Demote with Demote at or before the deadline. A
    /// switchover's resign may be handled by the forge as soon as it leaves, ending every
    /// grant of that term measured from before the step-down.
    #[test]
    fn guard_never_outlives_the_forge_lease(evs in proptest::collection::vec(ev(), 1..60)) {
        let mut r = RoleState::new("a", T);
        let mut now = 0u64;
        let mut term = 1u64;
        // (term, latest forge-side expiry on our clock) of each grant we were given.
        let mut forge_expiry: Option<(u64, u64)> = None;
        // (term, step-down time) of the last switchover: the forge may end that lease then.
        let mut handed: Option<(u64, u64)> = None;
        let cut = |handed: Option<(u64, u64)>, term: u64, basis: u64, e: u64| match handed {
            Some((t, at)) if term <= t && basis <= at => e.min(at),
            _ => e,
        };
        let mut leading = false;
        for e in evs {
            let (sent, recv, trans) = match e {
                Ev::Answer { gap, rtt, me, term_bump, rem } => {
                    if term_bump { term += 1; }
                    let sent = now + gap;
                    // The forge handled the request at some point in [sent, sent + rtt];
                    // take the worst case for safety: as early as possible.
                    let recv = sent + rtt;
                    let v = if me {
                        // Forge expiry on our clock, worst case.
                        let e = cut(handed, term, sent, sent + rem);
                        forge_expiry = Some(match forge_expiry {
                            Some((t, old)) if t == term => (t, old.max(e)),
                            _ => (term, e),
                        });
                        vv(Some("a"), term, 1_000_000, 1_000_000 + rem)
                    } else {
                        vv(Some("b"), term, 1_000_000, 1_000_000 + rem)
                    };
                    (sent, recv, r.record_answer(sent, recv, &v))
                }
                Ev::Fail { gap, rtt } => {
                    let sent = now + gap;
                    (sent, sent + rtt, r.record_failure(sent, sent + rtt).into_iter().collect())
                }
                Ev::Tick { gap } => (now, now + gap, r.expire(now + gap).into_iter().collect()),
                Ev::Push { back, delay, me, term_bump, rem } => {
                    if term_bump { term += 1; }
                    // The forge read the basis request no earlier than it was sent.
                    let basis = now.saturating_sub(back);
                    let recv = now + delay;
                    let holder = if me {
                        let e = cut(handed, term, basis, basis + rem);
                        forge_expiry = Some(match forge_expiry {
                            Some((t, old)) if t == term => (t, old.max(e)),
                            _ => (term, e),
                        });
                        "a"
                    } else {
                        "b"
                    };
                    r.handle_push(basis, recv, &vv(Some(holder), term, 1_000_000, 1_000_000 + rem));
                    let trans: Vec<_> = std::iter::from_fn(|| r.poll_transition()).collect();
                    (basis, recv, trans)
                }
                Ev::Switchover { gap, rtt, accepted } => {
                    let at = now + gap;
                    let stepped = r.handle_switchover_request("b", at);
                    if let Ok(t) = stepped {
                        prop_assert!(r.guard(at).is_err(), "the guard closes at the step-down");
                        handed = Some((t, at));
                        forge_expiry = forge_expiry.map(|(ft, fe)| (ft, cut(handed, ft, 0, fe)));
                        let action = r.poll_action(at);
                        prop_assert_eq!(
                            action.clone(),
                            Some(Action::Switchover { term: t, to: "b".into() })
                        );
                        let after = vv(Some("b"), term + 1, 1_000_000, 1_003_000);
                        let outcome = if accepted {
                            term += 1;
                            Outcome::View(&after)
                        } else {
                            Outcome::Failed
                        };
                        r.handle_answer(&action.unwrap(), at, at + rtt, outcome, 0);
                    }
                    let trans: Vec<_> = std::iter::from_fn(|| r.poll_transition()).collect();
                    (at, at + rtt, trans)
                }
            };
            let _ = sent;
            for t in &trans {
                match t {
                    Transition::Promote { .. } => { prop_assert!(!leading); leading = true; }
                    Transition::Demote { .. } => { prop_assert!(leading); leading = false; }
                }
            }
            now = recv;
            // Probe the guard across the whole span up to the next event.
            for probe in [now, now + 1, now + 299, now + 300, now + 2999, now + 4000] {
                if let Ok(t) = r.guard(probe) {
                    let (ft, fe) = forge_expiry.expect("guard admits only after a grant");
                    prop_assert_eq!(t, ft);
                    prop_assert!(probe + T.safety_margin_ms() <= fe,
                        "guard admitted at {} but forge lease ends at {}", probe, fe);
                }
            }
            prop_assert!(r.next_beat_at(now, 500) >= now.min(r.last_attempt_ms.unwrap_or(now)));
        }
    }
}
