//! The engine stopped and restarted under a running orchestrator: degraded status and clear
//! errors while it is down, no panic, and reconnection plus reconciliation when it returns.
//! Its own test binary, because it stops the shared engine.
mod engine_support;

use std::process::Command;
use std::time::Duration;

use brh_agent::api::orchestration_status;
use brh_agent::containers::engine::EngineError;
use brh_agent::containers::orchestrator::OrchestratorError;
use brh_agent::containers::policy::DemotePolicy;
use engine_support::*;
use tokio_util::sync::CancellationToken;

fn dockerd(cmd: &str) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let st = Command::new("bash")
        .arg(format!("{root}/scripts/dockerd.sh"))
        .arg(cmd)
        .status()
        .expect("scripts/dockerd.sh");
    assert!(st.success(), "dockerd.sh {cmd} failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn engine_down_and_back() {
    use_project_engine();
    let env = env_name("restart");
    cleanup(&env, &[]);
    let yaml = "services:\n  worker:\n    image: brh-test/sleep:1\n";
    let o = orchestrator(
        &env,
        "n1",
        yaml,
        TestGuard::leader(1),
        DemotePolicy::Relinquish,
    );
    let id = o.promote().await.unwrap().created[0].clone();
    let shutdown = CancellationToken::new();
    tokio::spawn(o.clone().run_recovery(shutdown.clone()));
    assert!(o.engine_status().available);

    dockerd("stop");
    let e = o.containers().await.unwrap_err();
    assert!(
        matches!(e, OrchestratorError::Engine(EngineError::Unavailable(_))),
        "{e}"
    );
    assert_eq!(orchestration_status(&e).0.as_u16(), 503);
    assert!(!o.engine_status().available);
    assert!(o.engine_status().last_error.is_some());
    assert!(matches!(
        o.restart("x").await,
        Err(OrchestratorError::Engine(EngineError::Unavailable(_)))
    ));

    dockerd("start");
    // The container stopped with the engine; the leader's recovery loop reconnects and
    // reconciles, starting it again (same container).
    assert!(
        eventually(30, || running(&id)).await,
        "container not restarted after engine returned"
    );
    assert!(o.engine_status().available);
    assert_eq!(o.managed_ids().await.unwrap().len(), 1);
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    cleanup(&env, &[]);
}
