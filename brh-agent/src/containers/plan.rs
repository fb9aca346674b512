//! Reconciliation as a pure function: given the manifest, what the engine shows for this env
//! and this agent's term, decide what to do. No I/O here, so every rule is unit-tested.
use super::manifest::Manifest;

/// A BRH-managed container of this env, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub id: String,
    pub name: String,
    pub service: String,
    pub replica: Option<u32>,
    /// The term of the leader that created it (label `brh.term`); 0 if absent.
    pub term: u64,
    pub running: bool,
    /// The federation that created it (label `brh.federation`); `None` when absent.
    pub federation: Option<String>,
    /// Exited with status 0 (a one-shot job that has done its work).
    pub completed: bool,
}

/// Whether a container whose `brh.federation` label is `label` belongs to federation `ours`.
/// The one rule for it (the engine's listing applies it too): labelled with our id, or not
/// labelled at all — a container of a release before the label, which was ours, so it is
/// still adopted in place. Any other id is another federation's: never touched.
pub fn is_ours(label: Option<&str>, ours: &str) -> bool {
    label.is_none_or(|f| f == ours)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Running and matching: keep it as it is (same container, no restart).
    Adopt {
        id: String,
        service: String,
        replica: u32,
    },
    /// Matching but stopped: adopt and start it.
    Start {
        id: String,
        service: String,
        replica: u32,
    },
    /// A one-shot job (`restart: "no"` / `on-failure`) that has exited 0: done, left as it
    /// is. Its dependents' `service_completed_successfully` is met by it.
    Done {
        id: String,
        service: String,
        replica: u32,
    },
    /// Missing: create and start it.
    Create { service: String, replica: u32 },
    /// A replica beyond the manifest's count: stop and remove it.
    RemoveExtra { id: String, service: String },
    /// Labelled with a newer term than ours: never touched (resource-side fencing). Its slot
    /// is not filled either, since a newer leader owns it.
    Fenced { id: String, term: u64 },
    /// A managed container of a service no longer in the manifest: left alone and reported.
    Orphan { id: String, service: String },
    /// Another federation's container (label `brh.federation` names another id), e.g. one
    /// left by an older federation on the same engine: never touched, whatever its term, and
    /// it claims no slot (its term fences nothing of ours). Reported so the operator can
    /// remove it if that federation is gone.
    Foreign {
        id: String,
        name: String,
        federation: String,
    },
}

/// Which of several containers claiming one replica slot keeps it (smallest first). Two can
/// claim a slot after an interrupted deploy: the replacement is created under a temporary
/// name before the old one goes. A newer term's container owns the slot whatever else is
/// there (fencing); then the one under the canonical name — the deploy that left the other
/// did not finish, so the manifest still names the canonical one's image; then a running
/// one over a stopped one; then the newest term. Ties keep the engine's order.
fn slot_preference(
    s: &Seen,
    canonical: &str,
    my_term: u64,
) -> (bool, bool, bool, std::cmp::Reverse<u64>) {
    (
        s.term <= my_term,
        s.name.trim_start_matches('/') != canonical,
        !s.running,
        std::cmp::Reverse(s.term),
    )
}

/// Plans promotion-time reconciliation for federation `federation`: other federations'
/// containers first (each `Foreign`, nothing else), then every manifest slot, then what is
/// left of ours.
pub fn reconcile(
    manifest: &Manifest,
    env: &str,
    federation: &str,
    seen: &[Seen],
    my_term: u64,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut used = vec![false; seen.len()];
    for (i, s) in seen.iter().enumerate() {
        if let Some(theirs) = s.federation.as_deref() {
            if !is_ours(Some(theirs), federation) {
                used[i] = true;
                actions.push(Action::Foreign {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    federation: theirs.into(),
                });
            }
        }
    }
    for svc in &manifest.services {
        for replica in 1..=svc.replicas {
            let canonical = svc.container_name(env, replica);
            let found = seen
                .iter()
                .enumerate()
                .filter(|(i, s)| {
                    !used[*i] && s.service == svc.name && s.replica.unwrap_or(1) == replica
                })
                .min_by_key(|(_, s)| slot_preference(s, &canonical, my_term));
            match found {
                Some((i, s)) => {
                    used[i] = true;
                    actions.push(if s.term > my_term {
                        Action::Fenced {
                            id: s.id.clone(),
                            term: s.term,
                        }
                    } else if s.running {
                        Action::Adopt {
                            id: s.id.clone(),
                            service: svc.name.clone(),
                            replica,
                        }
                    } else if s.completed && svc.options.restart.is_one_shot() {
                        Action::Done {
                            id: s.id.clone(),
                            service: svc.name.clone(),
                            replica,
                        }
                    } else {
                        Action::Start {
                            id: s.id.clone(),
                            service: svc.name.clone(),
                            replica,
                        }
                    });
                }
                None => actions.push(Action::Create {
                    service: svc.name.clone(),
                    replica,
                }),
            }
        }
    }
    for (i, s) in seen.iter().enumerate() {
        if used[i] {
            continue;
        }
        actions.push(if s.term > my_term {
            Action::Fenced {
                id: s.id.clone(),
                term: s.term,
            }
        } else if manifest.service(&s.service).is_some() {
            Action::RemoveExtra {
                id: s.id.clone(),
                service: s.service.clone(),
            }
        } else {
            Action::Orphan {
                id: s.id.clone(),
                service: s.service.clone(),
            }
        });
    }
    actions
}

/// The container name of one replica: `brh_{env}_{service}_{replica}`.
pub fn container_name(env: &str, service: &str, replica: u32) -> String {
    format!("brh_{env}_{service}_{replica}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn manifest(services: &[(&str, u32)]) -> Manifest {
        let yaml: String = services
            .iter()
            .map(|(n, r)| format!("  {n}: {{ image: brh-test/sleep:1, replicas: {r} }}\n"))
            .collect();
        Manifest::parse(&format!("services:\n{yaml}")).unwrap()
    }

    fn seen(id: &str, service: &str, replica: u32, term: u64, running: bool) -> Seen {
        Seen {
            id: id.into(),
            name: container_name("dev", service, replica),
            service: service.into(),
            replica: Some(replica),
            term,
            running,
            federation: Some(FED.into()),
            completed: false,
        }
    }

    const FED: &str = "0123456789abcdef";

    fn foreign(mut s: Seen, federation: &str) -> Seen {
        s.federation = Some(federation.into());
        s
    }

    #[test]
    fn adopts_starts_creates_removes_fences() {
        let m = manifest(&[("web", 2), ("db", 1)]);
        let s = vec![
            seen("a", "web", 1, 3, true),
            seen("b", "web", 2, 3, false),
            seen("c", "web", 3, 2, true),
            seen("d", "old", 1, 1, true),
            seen("e", "db", 1, 9, true),
        ];
        let plan = reconcile(&m, "dev", FED, &s, 5);
        assert_eq!(
            plan,
            vec![
                Action::Adopt {
                    id: "a".into(),
                    service: "web".into(),
                    replica: 1
                },
                Action::Start {
                    id: "b".into(),
                    service: "web".into(),
                    replica: 2
                },
                Action::Fenced {
                    id: "e".into(),
                    term: 9
                },
                Action::RemoveExtra {
                    id: "c".into(),
                    service: "web".into()
                },
                Action::Orphan {
                    id: "d".into(),
                    service: "old".into()
                },
            ]
        );
        assert_eq!(
            reconcile(&m, "dev", FED, &[], 1),
            vec![
                Action::Create {
                    service: "web".into(),
                    replica: 1
                },
                Action::Create {
                    service: "web".into(),
                    replica: 2
                },
                Action::Create {
                    service: "db".into(),
                    replica: 1
                },
            ]
        );
    }

    /// A one-shot job that exited 0 is done: not started again, not replaced. One that
    /// failed is started again (as `docker compose up` would); a service with
    /// `restart: always` is started whatever its exit.
    #[test]
    fn a_completed_one_shot_job_is_done_not_started_again() {
        use super::super::manifest::Restart;
        let mut m = manifest(&[("migrate", 1), ("retry", 1), ("web", 1)]);
        m.services[0].options.restart = Restart::No;
        m.services[1].options.restart = Restart::OnFailure(Some(3));
        let mut done = seen("m", "migrate", 1, 2, false);
        done.completed = true;
        let failed = seen("r", "retry", 1, 2, false);
        let mut web = seen("w", "web", 1, 2, false);
        web.completed = true;
        let plan = reconcile(&m, "dev", FED, &[done, failed, web], 3);
        assert_eq!(
            plan,
            vec![
                Action::Done {
                    id: "m".into(),
                    service: "migrate".into(),
                    replica: 1
                },
                Action::Start {
                    id: "r".into(),
                    service: "retry".into(),
                    replica: 1
                },
                Action::Start {
                    id: "w".into(),
                    service: "web".into(),
                    replica: 1
                },
            ]
        );
    }

    /// An interrupted deploy leaves the replacement (temporary name, maybe running) beside
    /// the canonical container: the canonical one keeps the slot, the other is the extra.
    #[test]
    fn an_interrupted_deploy_keeps_the_canonical_container() {
        let m = manifest(&[("web", 1)]);
        let mut temp = seen("new", "web", 1, 5, true);
        temp.name = format!("{}_t5_1795519000", container_name("dev", "web", 1));
        let old = seen("old", "web", 1, 4, false);
        for s in [vec![temp.clone(), old.clone()], vec![old, temp]] {
            let plan = reconcile(&m, "dev", FED, &s, 5);
            assert_eq!(
                plan,
                vec![
                    Action::Start {
                        id: "old".into(),
                        service: "web".into(),
                        replica: 1
                    },
                    Action::RemoveExtra {
                        id: "new".into(),
                        service: "web".into()
                    },
                ]
            );
        }
    }

    const OTHER: &str = "fedcba9876543210";

    /// The trap of a fresh federation on an engine an older one used: the older one's
    /// container claims our slot with a far higher term. It is foreign: it fences nothing,
    /// and we create our own.
    #[test]
    fn a_foreign_container_with_a_higher_term_does_not_fence_our_slot() {
        let m = manifest(&[("web", 1)]);
        for name in [container_name("dev", "web", 1), "leftover".to_string()] {
            let mut theirs = foreign(seen("x", "web", 1, 99, true), OTHER);
            theirs.name = name.clone();
            assert_eq!(
                reconcile(&m, "dev", FED, &[theirs], 1),
                vec![
                    Action::Foreign {
                        id: "x".into(),
                        name,
                        federation: OTHER.into()
                    },
                    Action::Create {
                        service: "web".into(),
                        replica: 1
                    },
                ]
            );
        }
    }

    /// Whatever a foreign container looks like — an extra replica, a service not in the
    /// manifest, a better claimant of a slot than ours — it is only ever `Foreign`.
    #[test]
    fn a_foreign_container_is_never_removed_orphaned_or_given_a_slot() {
        let m = manifest(&[("web", 1)]);
        let s = vec![
            foreign(seen("canonical", "web", 1, 0, true), OTHER),
            foreign(seen("extra", "web", 2, 0, true), OTHER),
            foreign(seen("gone", "old", 1, 0, false), OTHER),
            seen("mine", "web", 1, 1, false),
        ];
        let plan = reconcile(&m, "dev", FED, &s, 1);
        let f = |id: &str, service: &str, replica| Action::Foreign {
            id: id.into(),
            name: container_name("dev", service, replica),
            federation: OTHER.into(),
        };
        assert_eq!(
            plan,
            vec![
                f("canonical", "web", 1),
                f("extra", "web", 2),
                f("gone", "old", 1),
                Action::Start {
                    id: "mine".into(),
                    service: "web".into(),
                    replica: 1
                },
            ]
        );
        // Alone, the same containers would have been adopted, removed and orphaned.
        let ours: Vec<Seen> = s[..3].iter().map(|x| foreign(x.clone(), FED)).collect();
        assert_eq!(
            reconcile(&m, "dev", FED, &ours, 1),
            vec![
                Action::Adopt {
                    id: "canonical".into(),
                    service: "web".into(),
                    replica: 1
                },
                Action::RemoveExtra {
                    id: "extra".into(),
                    service: "web".into()
                },
                Action::Orphan {
                    id: "gone".into(),
                    service: "old".into()
                },
            ]
        );
    }

    /// Containers of the release before the label carry none: ours, adopted in place (and
    /// still fenced by a newer term).
    #[test]
    fn an_unlabelled_container_is_ours() {
        let m = manifest(&[("web", 2)]);
        let mut old = seen("old", "web", 1, 3, true);
        old.federation = None;
        let mut newer = seen("newer", "web", 2, 9, true);
        newer.federation = None;
        assert_eq!(
            reconcile(&m, "dev", FED, &[old, newer], 5),
            vec![
                Action::Adopt {
                    id: "old".into(),
                    service: "web".into(),
                    replica: 1
                },
                Action::Fenced {
                    id: "newer".into(),
                    term: 9
                },
            ]
        );
        assert!(is_ours(None, FED) && is_ours(Some(FED), FED) && !is_ours(Some(OTHER), FED));
    }

    proptest! {
        /// Whatever the engine shows and in whatever order: a slot claimed by a newer term's
        /// container is fenced, else a canonical-named claimant keeps it, else a running one.
        #[test]
        fn prop_slot_goes_to_the_preferred_claimant(
            claimants in prop::collection::vec((any::<bool>(), any::<bool>(), 0..8u64), 1..5),
            my_term in 0..8u64,
        ) {
            let m = manifest(&[("web", 1)]);
            let seen: Vec<Seen> = claimants.iter().enumerate().map(|(i, (canon, run, t))| {
                let mut s = seen(&format!("c{i}"), "web", 1, *t, *run);
                if !canon {
                    s.name = format!("{}_t{t}_{i}", s.name);
                }
                s
            }).collect();
            let plan = reconcile(&m, "dev", FED, &seen, my_term);
            let kept = plan.iter().find_map(|a| match a {
                Action::Adopt { id, .. } | Action::Start { id, .. } | Action::Fenced { id, .. } => Some(id.clone()),
                _ => None,
            }).expect("the slot is kept by someone");
            let k = seen.iter().find(|s| s.id == kept).unwrap();
            let canonical = |s: &Seen| !s.name.contains("_t");
            if seen.iter().any(|s| s.term > my_term) {
                prop_assert!(k.term > my_term, "a newer term's container owns the slot");
            } else if seen.iter().any(canonical) {
                prop_assert!(canonical(k));
                prop_assert!(k.running || !seen.iter().any(|s| canonical(s) && s.running));
            } else {
                prop_assert!(k.running || !seen.iter().any(|s| s.running));
            }
        }

        /// Whatever the engine shows: another federation's container is only ever
        /// `Foreign`; of ours, one with a newer term is only ever `Fenced`; every container
        /// appears in exactly one action, and every manifest slot is covered exactly once.
        #[test]
        fn prop_plan_is_total_and_fenced(
            replicas in prop::collection::vec(1..4u32, 1..4),
            seen_spec in prop::collection::vec((0..5usize, 1..5u32, 0..10u64, any::<bool>(), 0..3u8), 0..12),
            my_term in 0..10u64,
        ) {
            let names = ["s0", "s1", "s2", "s3", "gone"];
            let svcs: Vec<(&str, u32)> = replicas.iter().enumerate().map(|(i, r)| (names[i], *r)).collect();
            let m = manifest(&svcs);
            let seen: Vec<Seen> = seen_spec.iter().enumerate()
                .map(|(i, (s, r, t, run, fed))| {
                    let mut c = seen(&format!("c{i}"), names[*s], *r, *t, *run);
                    c.federation = [None, Some(FED.to_string()), Some(OTHER.to_string())][*fed as usize].clone();
                    c
                })
                .collect();
            let plan = reconcile(&m, "dev", FED, &seen, my_term);
            for s in &seen {
                let acts: Vec<&Action> = plan.iter().filter(|a| match a {
                    Action::Adopt { id, .. } | Action::Start { id, .. } | Action::RemoveExtra { id, .. }
                    | Action::Fenced { id, .. } | Action::Orphan { id, .. } | Action::Done { id, .. }
                    | Action::Foreign { id, .. } => *id == s.id,
                    Action::Create { .. } => false,
                }).collect();
                prop_assert_eq!(acts.len(), 1);
                let foreign = matches!(acts[0], Action::Foreign { .. });
                prop_assert_eq!(foreign, s.federation.as_deref() == Some(OTHER));
                if !foreign && s.term > my_term {
                    let fenced = matches!(acts[0], Action::Fenced { .. });
                    prop_assert!(fenced);
                }
            }
            let slots: usize = svcs.iter().map(|(_, r)| *r as usize).sum();
            let filled = plan.iter().filter(|a| matches!(a, Action::Adopt { .. } | Action::Start { .. } | Action::Create { .. } | Action::Done { .. })).count();
            let fenced_slots = plan.iter().filter(|a| matches!(a, Action::Fenced { .. })).count();
            prop_assert!(filled <= slots && filled + fenced_slots >= slots);
        }
    }
}
