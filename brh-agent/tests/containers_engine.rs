//! The container layer against a real dockerd: adoption in place, fencing, scoping to managed
//! containers of one env, recovery, deploys with rollback, and the drain policy. Engine state
//! is asserted through the Docker API (the CLI), not through the code under test.
mod engine_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use brh_agent::api::orchestration_status;
use brh_agent::containers::orchestrator::OrchestratorError;
use brh_agent::containers::policy::{DemotePolicy, PullPolicy};
use engine_support::*;
use tokio_util::sync::CancellationToken;

fn web(env: &str, port: u16) -> String {
    let _ = env;
    format!(
        "provider: {{ kind: docker, network: brh_test_net }}\nservices:\n  web:\n    image: brh-test/web:1\n    ports: [\"127.0.0.1:{port}:8080\"]\n    health: {{ http: \"http://127.0.0.1:{port}/health\", interval: 100ms, timeout: 1s, retries: 50 }}\n  worker:\n    image: brh-test/sleep:1\n    replicas: 2\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_creates_then_adopts_in_place_and_fences_newer_terms() {
    use_project_engine();
    let env = env_name("adopt");
    cleanup(&env, &[]);
    let yaml = web(&env, 18101);
    let a = orchestrator(
        &env,
        "node-a",
        &yaml,
        TestGuard::leader(3),
        DemotePolicy::Relinquish,
    );
    let r = a.promote().await.unwrap();
    assert_eq!(
        (r.created.len(), r.adopted.len(), r.unhealthy.len()),
        (3, 0, 0),
        "{r:?}"
    );
    for id in &r.created {
        assert!(running(id));
        assert_eq!(
            docker(&["inspect", "-f", "{{index .Config.Labels \"brh.term\"}}", id]),
            "3"
        );
        assert_eq!(
            docker(&[
                "inspect",
                "-f",
                "{{index .Config.Labels \"brh.owner\"}}",
                id
            ]),
            "node-a"
        );
        let envs = docker(&[
            "inspect",
            "-f",
            "{{range .Config.Env}}{{println .}}{{end}}",
            id,
        ]);
        assert!(envs.contains(&format!("BRH_ENV={env}")) && envs.contains("BRH_EPOCH=1700000000"));
        let token = envs
            .lines()
            .find_map(|l| l.strip_prefix("BRH_TOKEN="))
            .expect("token");
        brh_shared::token::verify(b"engine-test-seal", token, 1_700_000_000).expect("valid token");
    }
    let before: Vec<(String, String)> = r
        .created
        .iter()
        .map(|id| (id.clone(), started_at(id)))
        .collect();

    // Another node takes over with a newer term: same containers, not restarted.
    let b = orchestrator(
        &env,
        "node-b",
        &yaml,
        TestGuard::leader(4),
        DemotePolicy::Relinquish,
    );
    let r = b.promote().await.unwrap();
    assert_eq!((r.created.len(), r.adopted.len()), (0, 3), "{r:?}");
    for (id, t) in &before {
        assert!(r.adopted.contains(id));
        assert_eq!(&started_at(id), t, "adoption must not restart {id}");
    }

    // A stale leader (term 2 < label 3) must not touch them.
    let stale = orchestrator(
        &env,
        "node-c",
        &yaml,
        TestGuard::leader(2),
        DemotePolicy::Drain,
    );
    let r = stale.promote().await.unwrap();
    assert_eq!(
        (r.fenced.len(), r.created.len(), r.adopted.len()),
        (3, 0, 0),
        "{r:?}"
    );
    let name = format!("brh_{env}_web_1");
    assert!(matches!(
        stale.restart(&name).await,
        Err(OrchestratorError::Fenced { .. })
    ));
    for (id, t) in &before {
        assert_eq!(&started_at(id), t);
    }
    cleanup(&env, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_managed_containers_of_this_env_are_touched_and_recovery_is_leader_only() {
    use_project_engine();
    let env = env_name("scope");
    let other_env = format!("{env}-other");
    let unmanaged = format!("{env}-unmanaged");
    cleanup(&env, &[&unmanaged]);
    cleanup(&other_env, &[]);
    let yaml = "services:\n  worker:\n    image: brh-test/sleep:1\n";
    let guard = TestGuard::leader(1);
    let o = orchestrator(&env, "n1", yaml, guard.clone(), DemotePolicy::Relinquish);
    let mine = o.promote().await.unwrap().created[0].clone();
    let theirs = orchestrator(
        &other_env,
        "n2",
        yaml,
        TestGuard::leader(1),
        DemotePolicy::Relinquish,
    )
    .promote()
    .await
    .unwrap()
    .created[0]
        .clone();
    let plain = docker(&[
        "run",
        "-d",
        "--init",
        "--name",
        &unmanaged,
        "--label",
        &format!("brh.env={env}"),
        "brh-test/sleep:1",
    ]);
    assert!(!plain.is_empty());

    let shutdown = CancellationToken::new();
    tokio::spawn(o.clone().run_recovery(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Killed from outside: the leader's recovery restarts its own container only.
    let t0 = started_at(&mine);
    docker(&["kill", &mine]);
    docker(&["kill", &theirs]);
    docker(&["kill", &unmanaged]);
    assert!(
        eventually(15, || running(&mine) && started_at(&mine) != t0).await,
        "leader must restart its container"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!running(&theirs), "another env's container was touched");
    assert!(!running(&unmanaged), "an unmanaged container was touched");

    // restart/drain by name refuse what is not ours.
    assert!(matches!(
        o.restart(&unmanaged).await,
        Err(OrchestratorError::NotFound(_))
    ));
    assert!(matches!(
        o.drain(&theirs).await,
        Err(OrchestratorError::NotFound(_))
    ));
    assert!(!docker(&["ps", "-aq", "--filter", &format!("name={unmanaged}")]).is_empty());

    // As a witness, nothing is restarted.
    guard.leading.store(false, Ordering::SeqCst);
    docker(&["kill", &mine]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!running(&mine), "a witness must not recover containers");
    assert!(matches!(
        o.restart(&mine).await,
        Err(OrchestratorError::NotLeader(_))
    ));

    shutdown.cancel();
    cleanup(&env, &[&unmanaged]);
    cleanup(&other_env, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_rolls_out_rolls_back_and_refuses_bad_input() {
    use_project_engine();
    let env = env_name("deploy");
    cleanup(&env, &[]);
    let yaml = "services:\n  web:\n    image: brh-test/web:1\n    replicas: 2\n    health: { http: \"http://{ip}:8080/health\", interval: 100ms, timeout: 1s, retries: 30 }\n";
    let guard = TestGuard::leader(1);
    let o = orchestrator(&env, "n1", yaml, guard.clone(), DemotePolicy::Relinquish);
    let created = o.promote().await.unwrap().created;
    assert_eq!(created.len(), 2);
    let version = |name: &str| {
        let ip = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            name,
        ]);
        docker(&["inspect", "-f", "{{.Config.Image}}", name]) + "@" + &ip
    };

    // A valid new image rolls out, one replica at a time, each healthy.
    let out = o
        .deploy("web", "brh-test/web:2", PullPolicy::Never)
        .await
        .unwrap();
    assert_eq!(out.status, "deployed", "{out:?}");
    assert_eq!(out.replaced.len(), 2);
    for r in &out.replaced {
        assert!(!created.contains(&r.new_id));
        assert!(running(&r.new_id));
        assert!(
            docker(&[
                "ps",
                "-aq",
                "--no-trunc",
                "--filter",
                &format!("id={}", r.old_id.as_deref().unwrap())
            ])
            .is_empty(),
            "old replica removed"
        );
    }
    let name = format!("brh_{env}_web_1");
    assert!(version(&name).starts_with("brh-test/web:2@"));
    let after_ok: Vec<String> = out.replaced.iter().map(|r| r.new_id.clone()).collect();

    // A failing image rolls back: the running replicas are untouched.
    let out = o
        .deploy("web", "brh-test/broken:1", PullPolicy::Never)
        .await
        .unwrap();
    assert_eq!(out.status, "rolled-back", "{out:?}");
    assert!(out.replaced.is_empty());
    for id in &after_ok {
        assert!(running(id), "rollback must keep {id}");
    }
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("label=brh.env={env}")])
            .lines()
            .count(),
        2
    );

    // Bad input: 400-class errors, engine unchanged.
    let snapshot = docker(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label=brh.env={env}"),
        "--format",
        "{{.ID}} {{.Image}} {{.Status}}",
    ]);
    for bad in ["Bad/Image", "x;rm -rf /", "", "a@sha256:zz"] {
        let e = o.deploy("web", bad, PullPolicy::Never).await.unwrap_err();
        assert_eq!(orchestration_status(&e).0.as_u16(), 400, "{bad}: {e}");
    }
    assert_eq!(
        orchestration_status(
            &o.deploy("nope", "brh-test/web:2", PullPolicy::Never)
                .await
                .unwrap_err()
        )
        .0
        .as_u16(),
        404
    );
    assert_eq!(
        orchestration_status(
            &o.deploy("web", "brh-test/absent:9", PullPolicy::Never)
                .await
                .unwrap_err()
        )
        .0
        .as_u16(),
        404
    );
    guard.leading.store(false, Ordering::SeqCst);
    assert!(matches!(
        o.deploy("web", "brh-test/web:1", PullPolicy::Never).await,
        Err(OrchestratorError::NotLeader(_))
    ));
    let again = docker(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label=brh.env={env}"),
        "--format",
        "{{.ID}} {{.Image}} {{.Status}}",
    ]);
    assert_eq!(
        snapshot
            .lines()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        again
            .lines()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    cleanup(&env, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_policy_stops_and_removes_own_containers_on_demotion() {
    use_project_engine();
    let env = env_name("drain");
    cleanup(&env, &[]);
    let yaml = "services:\n  worker:\n    image: brh-test/sleep:1\n    replicas: 2\n";
    let guard = TestGuard::leader(5);
    let o = orchestrator(&env, "n1", yaml, guard.clone(), DemotePolicy::Drain);
    let created = o.promote().await.unwrap().created;
    assert_eq!(created.len(), 2);
    // A container of a newer term (another leader's) must survive our drain.
    let newer = orchestrator(
        &env,
        "n2",
        "services:\n  other:\n    image: brh-test/sleep:1\n",
        TestGuard::leader(6),
        DemotePolicy::Relinquish,
    )
    .promote()
    .await
    .unwrap()
    .created[0]
        .clone();
    guard.leading.store(false, Ordering::SeqCst);
    let drained = o.demote(5).await.unwrap();
    assert_eq!(drained.len(), 2);
    for id in &created {
        assert!(
            docker(&["ps", "-aq", "--filter", &format!("id={id}")]).is_empty(),
            "{id} still exists"
        );
    }
    assert!(running(&newer));
    // Relinquish leaves everything running.
    let r = orchestrator(
        &env,
        "n2",
        "services: {}\n",
        TestGuard::leader(6),
        DemotePolicy::Relinquish,
    );
    assert!(r.demote(6).await.unwrap().is_empty());
    assert!(running(&newer));
    cleanup(&env, &[]);
}

/// `POST /drain` when the lease goes while the container takes its stop timeout to stop (it
/// ignores SIGTERM): the removal after the stop is refused, the stopped container stays for
/// the next leader, and the drain answers not-leader. Leading again, the same drain removes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_drain_whose_lease_goes_during_the_stop_does_not_remove() {
    use_project_engine();
    let env = env_name("drainlost");
    cleanup(&env, &[]);
    let yaml = "services:\n  stubborn:\n    image: brh-test/sleep:1\n    \
                command: [\"/bin/sh\", \"-c\", \"trap '' TERM; sleep 3600\"]\n";
    let guard = TestGuard::leader(3);
    let o = orchestrator(&env, "n1", yaml, guard.clone(), DemotePolicy::Relinquish);
    let id = o.promote().await.unwrap().created[0].clone();
    let name = format!("brh_{env}_stubborn_1");
    let g = guard.clone();
    let lose = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        g.leading.store(false, Ordering::SeqCst);
    });
    let e = o.drain(&name).await.unwrap_err();
    lose.await.unwrap();
    assert!(matches!(e, OrchestratorError::NotLeader(_)), "{e:?}");
    assert_eq!(
        docker(&["ps", "-aq", "--no-trunc", "--filter", &format!("id={id}")]),
        id,
        "removed after the lease went"
    );
    assert!(!running(&id), "the stop itself had been admitted");
    guard.leading.store(true, Ordering::SeqCst);
    o.drain(&name).await.unwrap();
    assert!(docker(&["ps", "-aq", "--filter", &format!("id={id}")]).is_empty());
    cleanup(&env, &[]);
}

/// Another federation's container under our canonical name: never touched, and our create
/// fails with an error naming the federation that holds the name and what to do, not Docker's
/// bare 409. Restart and drain by name refuse it the same way; nothing lists it as ours.
#[tokio::test(flavor = "multi_thread")]
async fn another_federations_container_is_never_touched_and_a_taken_name_says_whose() {
    use_project_engine();
    let env = env_name("federation");
    cleanup(&env, &[]);
    let yaml = "services:\n  worker:\n    image: brh-test/sleep:1\n";
    let old = "fedcba9876543210";
    let theirs = orchestrator_of(
        old,
        &env,
        "n1",
        yaml,
        TestGuard::leader(7),
        DemotePolicy::Relinquish,
    )
    .promote()
    .await
    .unwrap()
    .created[0]
        .clone();
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"brh.federation\"}}",
            &theirs
        ]),
        old
    );
    let t0 = started_at(&theirs);
    // Our federation, same env, same node name, newer term.
    let ours = orchestrator(&env, "n1", yaml, TestGuard::leader(8), DemotePolicy::Drain);
    let name = format!("brh_{env}_worker_1");
    let e = ours.promote().await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("cannot create {name}"))
            && msg.contains(&format!("another federation (brh.federation={old})"))
            && msg.contains(&format!("docker rm -f {name}")),
        "{msg}"
    );
    assert_eq!(orchestration_status(&e).1, "conflict");
    for r in [ours.restart(&name).await, ours.drain(&theirs).await] {
        match r {
            Err(OrchestratorError::NotFound(m)) => {
                assert!(m.contains("another federation"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(ours.containers().await.unwrap().is_empty());
    assert_eq!(ours.listed().await.unwrap().foreign.len(), 1);
    assert!(ours.demote(8).await.unwrap().is_empty());
    assert!(running(&theirs));
    assert_eq!(
        started_at(&theirs),
        t0,
        "another federation's container is not restarted"
    );
    cleanup(&env, &[]);
}
