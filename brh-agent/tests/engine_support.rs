//! Shared helpers for the tests that run the container layer against the project's real,
//! private dockerd (started by `scripts/dockerd.sh start`, which `scripts/test.sh` runs).
#![allow(dead_code)]
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use brh_agent::containers::orchestrator::OrchestratorConfig;
use brh_agent::containers::policy::DemotePolicy;
use brh_agent::containers::{LeaseGuard, Manifest, NotLeader, Orchestrator};

/// The federation of the test orchestrators (`brh.federation` on their containers).
pub const FEDERATION: &str = "0123456789abcdef";

pub const SOCK: &str = "unix:///var/tmp/brh-docker/docker.sock";

/// Points bollard at the project's engine unless the caller chose another.
pub fn use_project_engine() {
    if std::env::var_os("DOCKER_HOST").is_none() {
        std::env::set_var("DOCKER_HOST", SOCK);
    }
}

/// A guard the test controls: leader of `term` while `leading` is set.
pub struct TestGuard {
    pub term: AtomicU64,
    pub leading: AtomicBool,
}

impl TestGuard {
    pub fn leader(term: u64) -> Arc<Self> {
        Arc::new(TestGuard {
            term: AtomicU64::new(term),
            leading: AtomicBool::new(true),
        })
    }
}

impl LeaseGuard for TestGuard {
    fn check(&self) -> Result<u64, NotLeader> {
        if self.leading.load(Ordering::SeqCst) {
            Ok(self.term.load(Ordering::SeqCst))
        } else {
            Err(NotLeader {
                leader: None,
                reason: "witness",
            })
        }
    }
}

/// A unique env name per test, so tests sharing the engine never see each other's containers.
pub fn env_name(test: &str) -> String {
    format!("t{}-{test}", std::process::id())
}

pub fn orchestrator(
    env: &str,
    node: &str,
    yaml: &str,
    guard: Arc<TestGuard>,
    policy: DemotePolicy,
) -> Arc<Orchestrator> {
    orchestrator_of(FEDERATION, env, node, yaml, guard, policy)
}

/// An orchestrator of federation `federation`.
pub fn orchestrator_of(
    federation: &str,
    env: &str,
    node: &str,
    yaml: &str,
    guard: Arc<TestGuard>,
    policy: DemotePolicy,
) -> Arc<Orchestrator> {
    let cfg = OrchestratorConfig {
        env: env.into(),
        node: node.into(),
        federation: federation.into(),
        epoch: 1_700_000_000,
        token_key: b"engine-test-seal".to_vec(),
        lease_token: Default::default(),
        token_ttl: Duration::from_secs(3600),
        stop_timeout: Duration::from_secs(2),
        demote_policy: policy,
        chaos: None,
    };
    Orchestrator::new(cfg, Manifest::parse(yaml).expect("test manifest"), guard)
}

/// The docker CLI against the project's engine (used to observe and to act "from outside").
pub fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .env(
            "DOCKER_HOST",
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| SOCK.into()),
        )
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes every container of the test's env (labels) and the named extras.
pub fn cleanup(env: &str, extra: &[&str]) {
    let ids = docker(&["ps", "-aq", "--filter", &format!("label=brh.env={env}")]);
    for id in ids.lines().filter(|l| !l.is_empty()) {
        docker(&["rm", "-f", id]);
    }
    for name in extra {
        docker(&["rm", "-f", name]);
    }
}

pub fn started_at(id: &str) -> String {
    docker(&["inspect", "-f", "{{.State.StartedAt}}", id])
}

pub fn running(id: &str) -> bool {
    docker(&["inspect", "-f", "{{.State.Running}}", id]) == "true"
}

/// Polls `f` every 100 ms for up to `secs` seconds.
pub async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 10 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}
