//! Container-layer benchmark against the project's dockerd (`scripts/dockerd.sh start`).
//!
//! Prints a table: handover time (promotion of a new term → every container adopted and
//! healthy) for 1, 10 and 50 containers, the time to create them from nothing, and the
//! time of a one-replica deploy (start-first, health-checked). Medians over `BENCH_RUNS`
//! (default 3) runs.
//!
//!     cargo run --release -p brh-agent --example bench_containers
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brh_agent::containers::orchestrator::OrchestratorConfig;
use brh_agent::containers::policy::{DemotePolicy, PullPolicy};
use brh_agent::containers::{LeaseGuard, Manifest, NotLeader, Orchestrator};

struct Term(AtomicU64);
impl LeaseGuard for Term {
    fn check(&self) -> Result<u64, NotLeader> {
        Ok(self.0.load(Ordering::SeqCst))
    }
}

fn orch(env: &str, yaml: &str, term: u64) -> Arc<Orchestrator> {
    Orchestrator::new(
        OrchestratorConfig {
            env: env.into(),
            node: format!("bench-{term}"),
            federation: "bench".into(),
            epoch: 0,
            token_key: b"bench".to_vec(),
            lease_token: Default::default(),
            token_ttl: Duration::from_secs(3600),
            stop_timeout: Duration::from_secs(2),
            demote_policy: DemotePolicy::Relinquish,
            chaos: None,
        },
        Manifest::parse(yaml).expect("manifest"),
        Arc::new(Term(AtomicU64::new(term))),
    )
}

fn cleanup(env: &str) {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=brh.env={env}")])
        .output()
        .expect("docker CLI");
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    if !ids.is_empty() {
        let _ = std::process::Command::new("docker")
            .arg("rm")
            .arg("-f")
            .args(&ids)
            .output();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    if std::env::var_os("DOCKER_HOST").is_none() {
        std::env::set_var("DOCKER_HOST", "unix:///var/tmp/brh-docker/docker.sock");
    }
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    println!("| containers | create from nothing (ms) | handover: adopt + healthy (ms) |");
    println!("|---|---|---|");
    for n in [1u32, 10, 50] {
        let yaml = format!(
            "services:\n  web:\n    image: brh-test/web:1\n    replicas: {n}\n    health: {{ http: \"http://{{ip}}:8080/health\", interval: 50ms, timeout: 1s, retries: 100 }}\n"
        );
        let (mut create, mut adopt) = (Vec::new(), Vec::new());
        for run in 0..runs {
            let env = format!("bench-{}-{n}-{run}", std::process::id());
            cleanup(&env);
            let t = Instant::now();
            let r = orch(&env, &yaml, 1).promote().await.expect("promote");
            assert_eq!(r.created.len(), n as usize);
            assert!(r.unhealthy.is_empty());
            create.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            let r = orch(&env, &yaml, 2).promote().await.expect("handover");
            assert_eq!(r.adopted.len(), n as usize);
            assert!(r.unhealthy.is_empty());
            adopt.push(t.elapsed().as_secs_f64() * 1000.0);
            cleanup(&env);
        }
        println!("| {n} | {:.0} | {:.0} |", median(create), median(adopt));
    }
    let yaml = "services:\n  web:\n    image: brh-test/web:1\n    health: { http: \"http://{ip}:8080/health\", interval: 50ms, timeout: 1s, retries: 100 }\n";
    let mut deploy = Vec::new();
    for run in 0..runs {
        let env = format!("bench-deploy-{}-{run}", std::process::id());
        cleanup(&env);
        let o = orch(&env, yaml, 1);
        o.promote().await.expect("promote");
        let image = if run % 2 == 0 {
            "brh-test/web:2"
        } else {
            "brh-test/web:1"
        };
        let t = Instant::now();
        let out = o
            .deploy("web", image, PullPolicy::Never)
            .await
            .expect("deploy");
        assert_eq!(out.status, "deployed");
        deploy.push(t.elapsed().as_secs_f64() * 1000.0);
        cleanup(&env);
    }
    println!(
        "\n| deploy, 1 replica, start-first + health check | {:.0} ms (median of {runs}) |",
        median(deploy)
    );
}
