//! The orchestrator's steps against the in-memory engine: no dockerd. What these prove is the
//! part the real-engine tests cannot reach at will — a lease lost between two calls of one
//! step, a newer leader's container appearing mid-sequence — and that whatever happens, no
//! mutation reaches the engine while the guard refuses, nor against a container of a newer
//! term or another federation.
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::containers::fake_engine::{FakeEngine, Op, Record, TestGuard};
use crate::containers::labels;

const ENV: &str = "dev";
const NODE: &str = "node-a";
const FED: &str = "0123456789abcdef";
const OTHER_FED: &str = "fedcba9876543210";

fn config(policy: DemotePolicy) -> OrchestratorConfig {
    OrchestratorConfig {
        env: ENV.into(),
        node: NODE.into(),
        federation: FED.into(),
        epoch: 1_700_000_000,
        token_key: b"unit-test-seal".to_vec(),
        lease_token: Default::default(),
        token_ttl: Duration::from_secs(3600),
        stop_timeout: Duration::from_secs(1),
        demote_policy: policy,
        chaos: None,
    }
}

struct World {
    orch: Arc<Orchestrator<FakeEngine>>,
    engine: FakeEngine,
    guard: Arc<TestGuard>,
}

fn world_with(yaml: &str, term: u64, policy: DemotePolicy) -> World {
    world_of(Manifest::parse(yaml).expect("test manifest"), term, policy)
}

fn world_of(manifest: Manifest, term: u64, policy: DemotePolicy) -> World {
    let guard = TestGuard::leader(term);
    let engine = FakeEngine::new(Some(guard.clone()));
    let e = engine.clone();
    let orch = Orchestrator::with_engine(
        config(policy),
        manifest,
        guard.clone(),
        Box::new(move || {
            let e = e.clone();
            Box::pin(async move { Ok(e) })
        }),
    );
    World {
        orch,
        engine,
        guard,
    }
}

const WEB2: &str = "services:\n  web: { image: brh-test/sleep:1, replicas: 2 }\n";

fn world(yaml: &str, term: u64) -> World {
    world_with(yaml, term, DemotePolicy::Relinquish)
}

/// The labels of a container of service `service`, replica `replica`, created in `term` by
/// `owner` of federation `fed` (`None`: a container of a release before the label).
fn managed(
    service: &str,
    replica: u32,
    term: u64,
    owner: &str,
    fed: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut l = vec![
        (labels::MANAGED, "true".to_string()),
        (labels::ENV, ENV.to_string()),
        (labels::SERVICE, service.to_string()),
        (labels::REPLICA, replica.to_string()),
        (labels::TERM, term.to_string()),
        (labels::OWNER, owner.to_string()),
    ];
    if let Some(f) = fed {
        l.push((labels::FEDERATION, f.to_string()));
    }
    l
}

fn add(engine: &FakeEngine, name: &str, l: &[(&'static str, String)], running: bool) -> String {
    let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
    engine.add(name, &l, running)
}

fn name(service: &str, replica: u32) -> String {
    plan::container_name(ENV, service, replica)
}

/// Mutations that touched container `id`.
fn touching(records: &[Record], id: &str) -> Vec<Op> {
    records
        .iter()
        .filter(|r| r.target.as_ref().is_some_and(|t| t.id == id))
        .map(|r| r.op.clone())
        .collect()
}

/// The fenced-by-construction rule, over everything that reached the engine while leading:
/// the guard held at that moment, and the target was ours, of this env, not of a newer term.
fn assert_fenced(records: &[Record]) -> std::result::Result<(), String> {
    for r in records {
        let Some(term) = r.guard else {
            return Err(format!(
                "{:?} reached the engine while the guard refused",
                r.op
            ));
        };
        if let Some(t) = &r.target {
            let their_term: u64 = t
                .label(labels::TERM)
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            if their_term > term {
                return Err(format!(
                    "{:?} on a term-{their_term} container under term {term}",
                    r.op
                ));
            }
            if !plan::is_ours(t.label(labels::FEDERATION), FED) {
                return Err(format!("{:?} on another federation's container", r.op));
            }
            if t.label(labels::MANAGED) != Some("true") || t.label(labels::ENV) != Some(ENV) {
                return Err(format!(
                    "{:?} on a container not managed in env {ENV}",
                    r.op
                ));
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn promote_creates_then_adopts_in_place() {
    let w = world(WEB2, 3);
    *w.orch.cfg.lease_token.lock().unwrap() = Some((3, "lease-3".into()));
    let first = w.orch.promote().await.unwrap();
    assert_eq!(first.created.len(), 2);
    assert_eq!(first.term, 3);
    let web1 = w.engine.by_name(&name("web", 1)).unwrap();
    assert!(web1.running);
    assert_eq!(web1.label(labels::TERM), Some("3"));
    assert_eq!(web1.label(labels::FEDERATION), Some(FED));
    assert_eq!(web1.label(labels::OWNER), Some(NODE));
    assert!(web1
        .env_vars
        .contains(&"BRH_LEASE_TOKEN=lease-3".to_string()));

    // A later promotion (a new term) adopts both: same ids, nothing created, started or stopped.
    w.guard.regain(4);
    w.engine.clear_records();
    let second = w.orch.promote().await.unwrap();
    assert_eq!(second.adopted, first.created);
    assert!(second.created.is_empty() && second.started.is_empty() && second.removed.is_empty());
    assert_eq!(w.engine.ops(), [Op::Network("brh_net".into())]);
    assert_fenced(&w.engine.records()).unwrap();
}

#[tokio::test]
async fn promote_starts_removes_extras_and_leaves_newer_terms_and_foreigners_alone() {
    let w = world(
        "services:\n  web: { image: brh-test/sleep:1, replicas: 1 }\n  db: { image: brh-test/sleep:1 }\n",
        5,
    );
    let stopped = add(
        &w.engine,
        &name("web", 1),
        &managed("web", 1, 2, NODE, Some(FED)),
        false,
    );
    let extra = add(
        &w.engine,
        &name("web", 2),
        &managed("web", 2, 2, NODE, None),
        true,
    );
    let newer = add(
        &w.engine,
        &name("db", 1),
        &managed("db", 1, 9, "node-b", Some(FED)),
        true,
    );
    let foreign = add(
        &w.engine,
        "leftover",
        &managed("web", 3, 1, "node-z", Some(OTHER_FED)),
        true,
    );
    let r = w.orch.promote().await.unwrap();
    assert_eq!(r.started, std::slice::from_ref(&stopped));
    assert_eq!(r.removed, std::slice::from_ref(&extra));
    assert_eq!(r.fenced, std::slice::from_ref(&newer));
    assert_eq!(r.foreign, std::slice::from_ref(&foreign));
    assert!(r.created.is_empty(), "the fenced slot is not filled: {r:?}");
    assert!(w.engine.get(&stopped).unwrap().running);
    assert!(w.engine.get(&extra).is_none());
    let records = w.engine.records();
    assert!(touching(&records, &newer).is_empty());
    assert!(touching(&records, &foreign).is_empty());
    assert_fenced(&records).unwrap();
}

#[tokio::test]
async fn a_container_of_a_newer_term_or_another_federation_cannot_be_restarted_or_drained() {
    let w = world(WEB2, 5);
    let newer = add(
        &w.engine,
        &name("web", 1),
        &managed("web", 1, 6, "node-b", Some(FED)),
        true,
    );
    let foreign = add(
        &w.engine,
        "theirs",
        &managed("web", 2, 1, "node-z", Some(OTHER_FED)),
        true,
    );
    for r in [
        w.orch.restart(&name("web", 1)).await,
        w.orch.drain(&name("web", 1)).await,
    ] {
        assert_eq!(
            r.unwrap_err(),
            OrchestratorError::Fenced {
                id: newer.clone(),
                theirs: 6,
                ours: 5
            }
        );
    }
    for r in [w.orch.restart("theirs").await, w.orch.drain("theirs").await] {
        let e = r.unwrap_err();
        assert!(
            matches!(&e, OrchestratorError::NotFound(m) if m.contains("another federation")),
            "{e:?}"
        );
    }
    // A taken name says whose it is; the holder is not touched.
    let w2 = world("services:\n  web: { image: brh-test/sleep:1 }\n", 1);
    let squatter = add(
        &w2.engine,
        &name("web", 1),
        &managed("web", 9, 1, "node-z", Some(OTHER_FED)),
        true,
    );
    let e = w2.orch.promote().await.unwrap_err();
    assert!(
        matches!(&e, OrchestratorError::Engine(EngineError::Conflict(m)) if m.contains("another federation")),
        "{e:?}"
    );
    for w in [&w, &w2] {
        assert!(touching(&w.engine.records(), &foreign).is_empty());
        assert!(touching(&w.engine.records(), &squatter).is_empty());
        assert_fenced(&w.engine.records()).unwrap();
    }
    assert!(w.engine.get(&newer).unwrap().running);
}

#[tokio::test]
async fn drain_is_fenced_again_after_the_stop() {
    let w = world(WEB2, 2);
    w.orch.promote().await.unwrap();
    let id = w.engine.by_name(&name("web", 1)).unwrap().id;
    // The lease is lost while the container stops (which can take the stop timeout).
    let guard = w.guard.clone();
    w.engine.after_each_mutation(move |op| {
        if matches!(op, Op::Stop(_)) {
            guard.lose();
        }
    });
    w.engine.clear_records();
    let e = w.orch.drain(&name("web", 1)).await.unwrap_err();
    assert!(matches!(e, OrchestratorError::NotLeader(_)), "{e:?}");
    assert_eq!(
        w.engine.ops(),
        [Op::Stop(id.clone())],
        "no removal after the lease went"
    );
    assert!(w.engine.get(&id).is_some());
    // While the lease holds, the same drain stops and removes.
    w.engine.after_each_mutation(|_| {});
    w.guard.regain(3);
    w.orch.drain(&name("web", 1)).await.unwrap();
    assert!(w.engine.get(&id).is_none());
}

#[tokio::test]
async fn restart_and_remove_extra_are_fenced_again_after_the_stop() {
    let w = world(
        "services:\n  web: { image: brh-test/sleep:1, replicas: 1 }\n",
        2,
    );
    w.orch.promote().await.unwrap();
    let id = w.engine.by_name(&name("web", 1)).unwrap().id;
    let extra = add(
        &w.engine,
        &name("web", 2),
        &managed("web", 2, 1, NODE, Some(FED)),
        true,
    );
    let guard = w.guard.clone();
    w.engine.after_each_mutation(move |op| {
        if matches!(op, Op::Stop(_)) {
            guard.lose();
        }
    });
    w.engine.clear_records();
    let e = w.orch.restart(&name("web", 1)).await.unwrap_err();
    assert!(matches!(e, OrchestratorError::NotLeader(_)), "{e:?}");
    assert_eq!(w.engine.ops(), [Op::Stop(id.clone())], "not started again");
    w.guard.regain(3);
    w.engine.clear_records();
    let e = w.orch.promote().await.unwrap_err();
    assert!(matches!(e, OrchestratorError::NotLeader(_)), "{e:?}");
    assert!(
        w.engine.get(&extra).is_some(),
        "not removed after the lease went"
    );
    assert!(!w.engine.ops().iter().any(|o| matches!(o, Op::Remove(_))));
    assert_fenced(&w.engine.records()).unwrap();
}

#[tokio::test]
async fn recovery_restarts_only_our_containers_and_only_while_leading() {
    let w = world(WEB2, 4);
    w.orch.promote().await.unwrap();
    let ours = w.engine.by_name(&name("web", 1)).unwrap().id;
    let newer = add(
        &w.engine,
        "newer",
        &managed("web", 3, 7, "node-b", Some(FED)),
        false,
    );
    let foreign = add(
        &w.engine,
        "theirs",
        &managed("web", 4, 1, "node-z", Some(OTHER_FED)),
        false,
    );
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    w.orch
        .set_event_sink(Box::new(move |l| sink.lock().unwrap().push(l)));

    w.engine.crash(&ours);
    w.orch.restart_dead(&ours).await;
    assert!(w.engine.get(&ours).unwrap().running);
    assert_eq!(
        *lines.lock().unwrap(),
        [format!("RECOVERY: restarted container {}", name("web", 1))]
    );

    w.engine.clear_records();
    w.orch.restart_dead(&newer).await;
    w.orch.restart_dead(&foreign).await;
    w.guard.lose();
    w.engine.crash(&ours);
    w.orch.restart_dead(&ours).await;
    assert!(w.engine.ops().is_empty(), "{:?}", w.engine.ops());
    assert!(!w.engine.get(&ours).unwrap().running);
    assert_eq!(lines.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_recovery_loop_follows_die_events() {
    let w = world("services:\n  web: { image: brh-test/sleep:1 }\n", 1);
    w.orch.promote().await.unwrap();
    let id = w.engine.by_name(&name("web", 1)).unwrap().id;
    let stop = CancellationToken::new();
    let task = tokio::spawn(Arc::clone(&w.orch).run_recovery(stop.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    w.engine.crash(&id);
    let mut back = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if w.engine.get(&id).unwrap().running {
            back = true;
            break;
        }
    }
    stop.cancel();
    task.await.unwrap();
    assert!(back, "restarted by the recovery loop");
    assert_fenced(&w.engine.records()).unwrap();

    // A stop of our own (a drain's) is expected: its `die` event restarts nothing.
    let stop = CancellationToken::new();
    let task = tokio::spawn(Arc::clone(&w.orch).run_recovery(stop.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    w.orch
        .stopping(&id, async {
            w.engine.crash(&id);
            Ok(())
        })
        .await
        .unwrap();
    // Longer than the restart backoff of a second death (1 s).
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.cancel();
    task.await.unwrap();
    assert!(
        !w.engine.get(&id).unwrap().running,
        "an expected stop is not recovered"
    );
}

#[tokio::test]
async fn demotion_drains_only_this_nodes_containers_of_its_terms() {
    let w = world_with(WEB2, 5, DemotePolicy::Drain);
    let own = add(
        &w.engine,
        &name("web", 1),
        &managed("web", 1, 5, NODE, Some(FED)),
        true,
    );
    let unlabelled = add(
        &w.engine,
        &name("web", 2),
        &managed("web", 2, 3, NODE, None),
        true,
    );
    let other_node = add(
        &w.engine,
        "b",
        &managed("web", 3, 4, "node-b", Some(FED)),
        true,
    );
    let newer = add(&w.engine, "c", &managed("web", 4, 6, NODE, Some(FED)), true);
    let foreign = add(
        &w.engine,
        "d",
        &managed("web", 5, 1, NODE, Some(OTHER_FED)),
        true,
    );
    w.guard.lose();
    let mut drained = w.orch.demote(5).await.unwrap();
    drained.sort();
    let mut want = vec![own.clone(), unlabelled.clone()];
    want.sort();
    assert_eq!(drained, want);
    for kept in [&other_node, &newer, &foreign] {
        assert!(w.engine.get(kept).unwrap().running);
    }
    // The witness authority itself refuses what the selection skipped, and any create.
    let fenced = w.orch.engine().await.unwrap().witness(5);
    assert!(fenced.stop(&other_node, Duration::ZERO).await.is_err());
    assert!(matches!(
        fenced.remove(&newer).await,
        Err(OrchestratorError::Fenced {
            theirs: 6,
            ours: 5,
            ..
        })
    ));
    assert!(fenced.kill(&foreign).await.is_err());
    assert!(matches!(
        fenced.term(),
        Err(OrchestratorError::NotLeader(_))
    ));
    assert_eq!(
        w.engine
            .ops()
            .iter()
            .filter(|o| !matches!(o, Op::Stop(_) | Op::Remove(_)))
            .count(),
        0
    );
    for kept in [&other_node, &newer, &foreign] {
        assert!(touching(&w.engine.records(), kept).is_empty());
    }
}

#[tokio::test]
async fn deploy_replaces_in_place_and_rolls_back_a_replacement_that_cannot_start() {
    let w = world("services:\n  web: { image: brh-test/sleep:1 }\n", 2);
    w.orch.promote().await.unwrap();
    let old = w.engine.by_name(&name("web", 1)).unwrap().id;
    w.engine.add_image("brh-test/sleep:2");
    let out = w
        .orch
        .deploy("web", "brh-test/sleep:2", PullPolicy::Never)
        .await
        .unwrap();
    assert_eq!(out.status, "deployed");
    let new = w.engine.by_name(&name("web", 1)).unwrap();
    assert_eq!(out.replaced[0].new_id, new.id);
    assert_eq!(new.image, "brh-test/sleep:2");
    assert!(new.running && w.engine.get(&old).is_none());
    assert_eq!(w.orch.manifest().services[0].image, "brh-test/sleep:2");

    // The next replacement cannot start: it is removed again, the old one keeps serving.
    w.engine.fail_starts_of(&format!("{}_t", name("web", 1)));
    w.engine.add_image("brh-test/sleep:3");
    let e = w
        .orch
        .deploy("web", "brh-test/sleep:3", PullPolicy::Never)
        .await
        .unwrap_err();
    assert!(
        matches!(e, OrchestratorError::Engine(EngineError::Refused(_))),
        "{e:?}"
    );
    let names: Vec<String> = w.engine.containers().into_iter().map(|c| c.name).collect();
    assert_eq!(names, [name("web", 1)]);
    assert!(w.engine.get(&new.id).unwrap().running);
    assert_fenced(&w.engine.records()).unwrap();
}

#[tokio::test]
async fn a_deploy_over_a_newer_terms_replica_is_refused_before_creating_anything() {
    let w = world("services:\n  web: { image: brh-test/sleep:1 }\n", 2);
    let newer = add(
        &w.engine,
        &name("web", 1),
        &managed("web", 1, 3, "node-b", Some(FED)),
        true,
    );
    w.engine.add_image("brh-test/sleep:2");
    let e = w
        .orch
        .deploy("web", "brh-test/sleep:2", PullPolicy::Never)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        OrchestratorError::Fenced {
            id: newer,
            theirs: 3,
            ours: 2
        }
    );
    assert!(w.engine.ops().is_empty());
}

#[tokio::test]
async fn a_lease_lost_mid_deploy_stops_the_replacement_where_it_is() {
    let w = world("services:\n  web: { image: brh-test/sleep:1 }\n", 2);
    w.orch.promote().await.unwrap();
    let old = w.engine.by_name(&name("web", 1)).unwrap().id;
    w.engine.add_image("brh-test/sleep:2");
    let guard = w.guard.clone();
    w.engine.after_each_mutation(move |op| {
        if matches!(op, Op::Stop(_)) {
            guard.lose();
        }
    });
    w.engine.clear_records();
    let e = w
        .orch
        .deploy("web", "brh-test/sleep:2", PullPolicy::Never)
        .await
        .unwrap_err();
    assert!(matches!(e, OrchestratorError::NotLeader(_)), "{e:?}");
    // Created, started, old stopped — then nothing: neither the removal nor the rename.
    let ops = w.engine.ops();
    assert!(
        matches!(ops.last(), Some(Op::Stop(id)) if *id == old),
        "{ops:?}"
    );
    assert!(w.engine.get(&old).is_some());
    assert!(!ops
        .iter()
        .any(|o| matches!(o, Op::Remove(_) | Op::Rename(..))));
}

#[tokio::test]
async fn an_unavailable_engine_is_reported_and_refusals_are_not() {
    let w = world(WEB2, 1);
    w.engine.set_unavailable(true);
    let e = w.orch.promote().await.unwrap_err();
    assert!(matches!(
        e,
        OrchestratorError::Engine(EngineError::Unavailable(_))
    ));
    assert!(!w.orch.engine_status().available);
    w.engine.set_unavailable(false);
    w.orch.promote().await.unwrap();
    assert!(w.orch.engine_status().available);
    w.guard.lose();
    assert!(matches!(
        w.orch.restart(&name("web", 1)).await,
        Err(OrchestratorError::NotLeader(_))
    ));
    assert!(w.orch.engine_status().available);
}

/// One move of the world, or one request to the orchestrator.
#[derive(Debug, Clone)]
enum Move {
    Promote,
    Deploy(u8),
    Restart(u32),
    Drain(u32),
    Recover(u32),
    /// The lease is lost after this many more guard checks: anywhere inside a step.
    LoseAfter(usize),
    /// Leader again, of the next term.
    Regain,
    /// A newer leader's container appears in slot `replica` (our federation).
    NewerLeader(u32),
    /// Another federation's container appears in slot `replica`.
    Foreigner(u32),
}

fn a_move() -> impl Strategy<Value = Move> {
    prop_oneof![
        3 => Just(Move::Promote),
        2 => (0..3u8).prop_map(Move::Deploy),
        2 => (1..4u32).prop_map(Move::Restart),
        1 => (1..4u32).prop_map(Move::Drain),
        2 => (1..4u32).prop_map(Move::Recover),
        3 => (0..8usize).prop_map(Move::LoseAfter),
        2 => Just(Move::Regain),
        1 => (1..4u32).prop_map(Move::NewerLeader),
        1 => (1..4u32).prop_map(Move::Foreigner),
    ]
}

async fn play(moves: &[Move]) -> (Vec<Record>, usize) {
    let w = world(
        "services:\n  web: { image: brh-test/sleep:1, replicas: 2 }\n  \
         api: { image: brh-test/sleep:1, ports: [\"18080:80\"] }\n",
        1,
    );
    for i in 0..3 {
        w.engine.add_image(&format!("brh-test/sleep:{i}"));
    }
    let mut term = 1;
    for m in moves {
        match m {
            Move::Promote => {
                let _ = w.orch.promote().await;
            }
            Move::Deploy(v) => {
                let svc = if v % 2 == 0 { "web" } else { "api" };
                let _ = w
                    .orch
                    .deploy(svc, &format!("brh-test/sleep:{v}"), PullPolicy::Missing)
                    .await;
            }
            Move::Restart(r) => {
                let _ = w.orch.restart(&name("web", *r)).await;
            }
            Move::Drain(r) => {
                let _ = w.orch.drain(&name("web", *r)).await;
            }
            Move::Recover(r) => {
                if let Some(c) = w.engine.by_name(&name("web", *r)) {
                    w.engine.crash(&c.id);
                    w.orch.restart_dead(&c.id).await;
                }
            }
            Move::LoseAfter(n) => w.guard.lose_after(*n),
            Move::Regain => {
                term += 1;
                w.guard.regain(term);
            }
            Move::NewerLeader(r) => {
                let _ = add(
                    &w.engine,
                    &format!("{}_newer{term}", name("web", *r)),
                    &managed("web", *r, term + 1, "node-b", Some(FED)),
                    true,
                );
            }
            Move::Foreigner(r) => {
                let _ = add(
                    &w.engine,
                    &format!("{}_foreign{term}", name("web", *r)),
                    &managed("web", *r, term + 5, "node-z", Some(OTHER_FED)),
                    true,
                );
            }
        }
    }
    let records = w.engine.records();
    let touched = records.iter().filter(|r| r.target.is_some()).count();
    (records, touched)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Over any sequence of requests, lease losses at any guard check, new terms and newer or
    /// foreign containers appearing: every mutation that reaches the engine does so while
    /// the guard holds, on one of our containers of this env, never of a newer term.
    #[test]
    fn prop_no_mutation_escapes_the_fence(moves in prop::collection::vec(a_move(), 1..24)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (records, _touched) = rt.block_on(play(&moves));
        if let Err(why) = assert_fenced(&records) {
            return Err(TestCaseError::fail(why));
        }
    }
}

/// The property is not vacuous: the sequences it draws do reach the engine, and do mutate
/// existing containers, not only create them.
#[tokio::test]
async fn the_property_exercises_mutations_of_existing_containers() {
    let (records, touched) = play(&[
        Move::Promote,
        Move::NewerLeader(1),
        Move::Restart(2),
        Move::Deploy(2),
        Move::LoseAfter(3),
        Move::Drain(2),
        Move::Regain,
        Move::Recover(1),
        Move::Promote,
    ])
    .await;
    assert!(touched >= 4, "{records:?}");
    assert_fenced(&records).unwrap();
}

/// A Compose stack: `web` depends on `db` being healthy and on `cache` being started.
fn compose_stack() -> Manifest {
    let text = "services:\n  web:\n    image: brh-test/sleep:1\n    depends_on:\n      \
        db: { condition: service_healthy }\n      cache: { condition: service_started }\n  \
        cache: { image: brh-test/sleep:1 }\n  db:\n    image: brh-test/sleep:1\n    \
        healthcheck: { test: [CMD, 'true'], interval: 1s }\n";
    crate::containers::compose::parse(text, std::path::Path::new("/srv/app"), "app", &|_| None)
        .expect("test stack")
        .manifest
}

#[tokio::test]
async fn compose_services_start_after_their_dependencies_are_healthy() {
    let w = world_of(compose_stack(), 3, DemotePolicy::Relinquish);
    let r = w.orch.promote().await.unwrap();
    assert_eq!(r.created.len(), 3);
    assert!(r.blocked.is_empty() && r.unhealthy.is_empty(), "{r:?}");
    assert_eq!(
        w.engine.start_order(),
        [name("cache", 1), name("db", 1), name("web", 1)],
        "dependencies first"
    );
}

#[tokio::test]
async fn a_dependency_that_is_unhealthy_blocks_its_dependents_only() {
    let w = world_of(compose_stack(), 3, DemotePolicy::Relinquish);
    w.engine.fail_health_of(&name("db", 1));
    let r = w.orch.promote().await.unwrap();
    assert_eq!(w.engine.start_order(), [name("cache", 1), name("db", 1)]);
    assert_eq!(r.blocked.len(), 1, "{r:?}");
    assert!(
        r.blocked[0].starts_with("web: dependency db is not healthy"),
        "{r:?}"
    );
    assert!(
        w.engine.by_name(&name("web", 1)).is_none(),
        "web not even created"
    );
    assert_eq!(r.unhealthy.len(), 1, "db is reported unhealthy: {r:?}");
    assert!(assert_fenced(&w.engine.records()).is_ok());
}

/// Polls `f` every 20 ms for up to 5 s.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..250 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn compose(text: &str) -> Manifest {
    crate::containers::compose::parse(text, std::path::Path::new("/srv/app"), "app", &|_| None)
        .expect("test stack")
        .manifest
}

/// `migrate` is a one-shot job (Compose's default `restart: "no"`); `web` waits for it to
/// exit 0.
const JOB_STACK: &str = "services:\n  web:\n    image: brh-test/sleep:1\n    restart: always\n    \
    depends_on: { migrate: { condition: service_completed_successfully } }\n  \
    migrate: { image: brh-test/sleep:1 }\n";

#[tokio::test]
async fn a_service_waits_for_a_job_to_complete_and_a_completed_job_is_not_run_again() {
    let w = world_of(compose(JOB_STACK), 3, DemotePolicy::Relinquish);
    let e = w.engine.clone();
    // The job runs for a while, then exits 0, while the promotion waits for it.
    let job = tokio::spawn(async move {
        assert!(eventually(|| e.by_name(&name("migrate", 1)).is_some_and(|c| c.running)).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        e.exit(&e.by_name(&name("migrate", 1)).unwrap().id, 0);
    });
    let r = w.orch.promote().await.unwrap();
    job.await.unwrap();
    assert_eq!(r.created.len(), 2, "{r:?}");
    assert!(r.blocked.is_empty() && r.unhealthy.is_empty(), "{r:?}");
    assert_eq!(w.engine.start_order(), [name("migrate", 1), name("web", 1)]);

    // The next leader (term 4) finds the job done: it is left as it is, not run again, and
    // web (adopted) does not wait.
    w.guard.regain(4);
    let r = w.orch.promote().await.unwrap();
    assert_eq!(r.completed.len(), 1, "{r:?}");
    assert_eq!(r.adopted.len(), 1, "{r:?}");
    assert_eq!(w.engine.start_order().len(), 2, "nothing started again");
    assert!(!w.engine.by_name(&name("migrate", 1)).unwrap().running);
}

#[tokio::test]
async fn a_failed_job_blocks_its_dependents_and_a_retry_does_not_rerun_it() {
    let w = world_of(compose(JOB_STACK), 3, DemotePolicy::Relinquish);
    let e = w.engine.clone();
    let job = tokio::spawn(async move {
        assert!(eventually(|| e.by_name(&name("migrate", 1)).is_some_and(|c| c.running)).await);
        e.exit(&e.by_name(&name("migrate", 1)).unwrap().id, 3);
    });
    let r = w.orch.promote().await.unwrap();
    job.await.unwrap();
    assert_eq!(
        r.blocked,
        ["web: dependency migrate has not completed: it exited with status 3"],
        "{r:?}"
    );
    assert!(w.engine.by_name(&name("web", 1)).is_none());
    assert_eq!(w.orch.blocked().len(), 1);
    // A retry looks again without starting the failed job (restart: "no").
    let r = w.orch.reconcile(Pass::Retry).await.unwrap();
    assert_eq!(r.blocked.len(), 1, "{r:?}");
    assert_eq!(w.engine.start_order(), [name("migrate", 1)], "not rerun");
}

#[tokio::test]
async fn a_blocked_service_starts_when_its_dependency_turns_healthy() {
    let w = world_of(compose_stack(), 3, DemotePolicy::Relinquish);
    w.engine.fail_health_of(&name("db", 1));
    let r = w.orch.promote().await.unwrap();
    assert_eq!(r.blocked.len(), 1, "{r:?}");
    let stop = CancellationToken::new();
    let recovery = tokio::spawn(Arc::clone(&w.orch).run_recovery(stop.clone()));
    let retry = tokio::spawn(Arc::clone(&w.orch).run_dependency_retry(stop.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The engine's `health_status: healthy` event wakes the retry (well before its 5 s timer).
    w.engine.heal_health_of(&name("db", 1));
    let started = eventually(|| w.engine.by_name(&name("web", 1)).is_some_and(|c| c.running)).await;
    stop.cancel();
    recovery.await.unwrap();
    retry.await.unwrap();
    assert!(started, "web started once db is healthy");
    assert!(w.orch.blocked().is_empty());
    assert_eq!(
        w.engine.start_order(),
        [name("cache", 1), name("db", 1), name("web", 1)]
    );
    assert_fenced(&w.engine.records()).unwrap();
}

#[tokio::test]
async fn recovery_follows_the_compose_restart_policy() {
    let text = "services:\n  \
        never: { image: brh-test/sleep:1 }\n  \
        once: { image: brh-test/sleep:1, restart: 'on-failure:1' }\n  \
        always: { image: brh-test/sleep:1, restart: unless-stopped }\n";
    let w = world_of(compose(text), 2, DemotePolicy::Relinquish);
    w.orch.promote().await.unwrap();
    let id = |s: &str| w.engine.by_name(&name(s, 1)).unwrap().id;
    let running = |s: &str| w.engine.by_name(&name(s, 1)).unwrap().running;
    // restart: "no" (Compose's default): left stopped.
    w.engine.crash(&id("never"));
    w.orch.restart_dead(&id("never")).await;
    assert!(!running("never"));
    // on-failure:1: a failure is recovered once, the next one is not; an exit 0 never is.
    w.engine.crash(&id("once"));
    w.orch.restart_dead(&id("once")).await;
    assert!(running("once"));
    w.engine.crash(&id("once"));
    w.orch.restart_dead(&id("once")).await;
    assert!(!running("once"), "on-failure:1 restarts once");
    // unless-stopped: whatever the exit.
    w.engine.exit(&id("always"), 0);
    w.orch.restart_dead(&id("always")).await;
    assert!(running("always"));
    assert_fenced(&w.engine.records()).unwrap();
}

#[tokio::test]
async fn an_optional_dependency_that_is_not_run_is_not_waited_for() {
    let text = "services:\n  web:\n    image: brh-test/sleep:1\n    \
        depends_on: { debug: { condition: service_healthy, required: false } }\n  \
        debug: { image: brh-test/sleep:1, profiles: [debug] }\n";
    let w = world_of(compose(text), 2, DemotePolicy::Relinquish);
    let r = w.orch.promote().await.unwrap();
    assert_eq!(r.created.len(), 1, "{r:?}");
    assert!(r.blocked.is_empty(), "{r:?}");
}

#[tokio::test]
async fn a_restart_of_a_dependency_restarts_the_dependents_that_ask_for_it() {
    let text = "services:\n  \
        web:\n    image: brh-test/sleep:1\n    depends_on: { db: { condition: service_started, restart: true } }\n  \
        side:\n    image: brh-test/sleep:1\n    depends_on: [db]\n  \
        db: { image: brh-test/sleep:1 }\n";
    let w = world_of(compose(text), 2, DemotePolicy::Relinquish);
    w.orch.promote().await.unwrap();
    w.engine.clear_records();
    w.orch.restart(&name("db", 1)).await.unwrap();
    let web = w.engine.by_name(&name("web", 1)).unwrap().id;
    let side = w.engine.by_name(&name("side", 1)).unwrap().id;
    let ops = w.engine.ops();
    assert!(
        ops.contains(&Op::Stop(web.clone())) && ops.contains(&Op::Start(web)),
        "{ops:?}"
    );
    assert!(
        !ops.iter().any(|o| *o == Op::Stop(side.clone())),
        "side did not ask: {ops:?}"
    );
    assert_fenced(&w.engine.records()).unwrap();
}
