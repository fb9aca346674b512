//! On real processes and a real dockerd (docs/design.md §6.4): a federation has an identity,
//! the `brh.federation` label of its containers, and never touches another federation's.
//!
//! Federation A runs a service on the engine and goes away (its containers keep running, as
//! `relinquish` leaves them). A fresh federation B (new seal, so new forge key and id) starts
//! on the same engine, in the same env, with its node named like A's — `brh-agent up
//! --fresh` in the same directory, in short. A also left a container claiming B's service's
//! slot with `brh.term=99`: before the label, B's leader at term 1 was fenced by it until its
//! own term passed 99. Now B's leader creates and runs its own container at term 1, adopts an
//! unlabelled container (a previous release's) in place, and leaves A's containers alone
//! through every path: promotion, recovery, deploy, restart and drain by name, demotion.
//! Engine state is read with the docker CLI, not through the agents.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use brh_tests::federation::*;

/// The id a seal's federation gets by default (what `brh-agent enroll` prints).
fn federation_of(seal: &str) -> String {
    brh_shared::keys::federation_id(
        &brh_shared::keys::forge_signing_key(seal.as_bytes()).verifying_key(),
    )
}

fn label(id: &str, name: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        &format!("{{{{index .Config.Labels \"{name}\"}}}}"),
        id,
    ])
}

/// `(id, StartedAt, running)` of a container, or `None` if it is gone.
fn state(name_or_id: &str) -> Option<(String, String, bool)> {
    let f = docker(&[
        "inspect",
        "-f",
        "{{.Id}}|{{.State.StartedAt}}|{{.State.Running}}",
        name_or_id,
    ]);
    let p: Vec<&str> = f.split('|').collect();
    (p.len() == 3).then(|| (p[0].to_string(), p[1].to_string(), p[2] == "true"))
}

/// `docker run -d` of a managed-looking container with `labels`, as an older federation (or
/// release) left it.
fn leave_container(name: &str, labels: &[(&str, String)]) -> String {
    let mut args = vec![
        "run".to_string(),
        "-d".into(),
        "--init".into(),
        "--name".into(),
        name.into(),
    ];
    for (k, v) in labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    args.push("brh-test/sleep:1".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = docker(&args);
    assert_eq!(id.len(), 64, "docker run {name}: {id:?}");
    id
}

fn manifest(dir: &Path, services: &[&str]) -> String {
    let p = dir.join("bridge.runtime.yaml");
    let mut yaml =
        "provider: { kind: docker, network: brh_federation_net }\nservices:\n".to_string();
    for s in services {
        yaml.push_str(&format!("  {s}:\n    image: brh-test/sleep:1\n"));
    }
    std::fs::write(&p, yaml).unwrap();
    p.display().to_string()
}

/// `brh-agent restart|drain NAME` at one agent, as federation `seal`'s top operator.
fn cli_container(
    seal: &str,
    env: &str,
    api: std::net::SocketAddr,
    verb: &str,
    name: &str,
) -> (bool, String) {
    let out = Command::new(bin("brh-agent"))
        .args([verb, name, "--agent", &format!("http://{api}")])
        .env("DOMINION_SEAL", seal)
        .env("BRH_ENV", env)
        .output()
        .expect("run brh-agent");
    (out.status.success(), output_text(&out))
}

fn events(a: &Agent) -> Vec<String> {
    http_get(a.api, "/events")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["message"].as_str().map(String::from))
        .collect()
}

fn log_count(a: &Agent, needle: &str) -> usize {
    a.lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

#[test]
fn a_fresh_federation_runs_beside_an_older_ones_containers_and_never_touches_them() {
    std::env::set_var("DOCKER_HOST", docker_host());
    let env = format!("fed{}", std::process::id());
    remove_env_containers(&env);
    // Both federations name their node alike, as `brh-agent up` does in every federation.
    let node = "brh-node-01";
    let (alpha, beta, gamma) = (
        format!("brh_{env}_alpha_1"),
        format!("brh_{env}_beta_1"),
        format!("brh_{env}_gamma_1"),
    );
    let trap = format!("brh_{env}_beta_1_left_by_a");

    // Federation A runs `alpha`, then goes away; `relinquish` leaves its container running.
    let dir_a = scratch("federation-a");
    let seal_a = fresh_seal();
    let fed_a = federation_of(&seal_a);
    let forge_a = Forge::start(&dir_a, &seal_a, None, 30_000);
    let opts = |manifest: String, extra: &[&str]| AgentOpts {
        env: Some(env.clone()),
        args: [
            &["--config", manifest.as_str(), "--stop-timeout", "2s"][..],
            extra,
        ]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .collect(),
        ..AgentOpts::default()
    };
    let mut a = Agent::start(
        &dir_a,
        node,
        &seal_a,
        forge_a.addr,
        opts(manifest(&dir_a, &["alpha"]), &[]),
    );
    let alpha_before = wait_until(Duration::from_secs(30), || state(&alpha).filter(|s| s.2))
        .expect("federation A runs alpha");
    assert_eq!(
        label(&alpha, "brh.federation"),
        fed_a,
        "A labels its container"
    );
    assert_eq!(label(&alpha, "brh.term"), "1");
    assert!(a.terminate(), "A's agent exits cleanly");
    drop(forge_a);
    assert_eq!(
        state(&alpha),
        Some(alpha_before.clone()),
        "relinquished, still running"
    );

    // A also left a container in the slot of B's `beta`, with a far higher term (not under
    // the canonical name, which it would simply occupy), and a previous release left `gamma`
    // with no federation label at all.
    let managed = |service: &str, term: &str| {
        vec![
            ("brh.managed", "true".to_string()),
            ("brh.env", env.clone()),
            ("brh.service", service.to_string()),
            ("brh.replica", "1".to_string()),
            ("brh.term", term.to_string()),
            ("brh.owner", node.to_string()),
        ]
    };
    let mut trap_labels = managed("beta", "99");
    trap_labels.push(("brh.federation", fed_a.clone()));
    let trap_id = leave_container(&trap, &trap_labels);
    let gamma_id = leave_container(&gamma, &managed("gamma", "0"));
    let trap_before = state(&trap).unwrap();
    let gamma_before = state(&gamma).unwrap();

    // Federation B: another seal, so another id; its leader starts at term 1.
    let dir_b = scratch("federation-b");
    let seal_b = fresh_seal();
    let fed_b = federation_of(&seal_b);
    assert_ne!(fed_a, fed_b);
    let forge_b = Forge::start(&dir_b, &seal_b, None, 30_000);
    let mut b = Agent::start(
        &dir_b,
        node,
        &seal_b,
        forge_b.addr,
        opts(
            manifest(&dir_b, &["beta", "gamma"]),
            &["--demote-policy", "drain"],
        ),
    );
    let (leader, term) =
        wait_until(Duration::from_secs(20), || agreed_leader(&[&b])).expect("B leads");
    assert_eq!((leader.as_str(), term), (node, 1));
    let promotion = wait_until(Duration::from_secs(30), || {
        events(&b)
            .into_iter()
            .find(|m| m.starts_with("PROMOTION: term 1"))
    })
    .expect("B reports its reconciliation");
    assert_eq!(
        promotion,
        "PROMOTION: term 1: adopted 1, started 0, created 1, fenced 0, unhealthy 0, \
         left 2 of other federations alone",
        "B creates beta, adopts gamma, is fenced by nothing"
    );

    // Its own beta runs at term 1, labelled with B's id; gamma adopted in place.
    let beta_state = state(&beta).expect("B created beta under its canonical name");
    assert!(beta_state.2, "beta runs");
    assert_eq!(label(&beta, "brh.federation"), fed_b);
    assert_eq!(label(&beta, "brh.term"), "1");
    assert_eq!(
        state(&gamma),
        Some(gamma_before.clone()),
        "gamma adopted in place"
    );
    assert_eq!(
        label(&gamma, "brh.federation"),
        "",
        "adoption changes no label"
    );
    assert_eq!(gamma_before.0, gamma_id);

    // Each of A's containers is logged once, with what to do about it.
    for name in [&alpha, &trap] {
        let line = format!(
            "container {name} belongs to another federation (brh.federation={fed_a}, ours is {fed_b}); \
             left alone — remove it (docker rm -f {name}) if that federation is gone"
        );
        assert_eq!(
            log_count(&b, &line),
            1,
            "{name}: {:?}",
            b.lines.lock().unwrap()
        );
    }
    // /status lists B's containers only.
    let st = b.status().unwrap();
    let mut listed: Vec<String> = st["containers"]["managed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, [beta.clone(), gamma.clone()]);

    // Operators cannot reach A's containers through B either.
    for verb in ["restart", "drain"] {
        let (ok, out) = cli_container(&seal_b, &env, b.api, verb, &trap);
        assert!(!ok, "{verb} {trap}: {out}");
        assert!(
            out.contains(&format!(
                "belongs to another federation (brh.federation={fed_a})"
            )),
            "{verb}: {out}"
        );
    }
    // A deploy of beta replaces B's own replica: the foreign term-99 claimant of the slot
    // neither fences it nor is replaced.
    let (ok, out) = cli_deploy(
        &seal_b,
        &env,
        b.api,
        "brh-test/sleep:1",
        &["--service", "beta", "--pull", "never"],
    );
    assert!(ok && out.contains("\"deployed\""), "deploy failed: {out}");
    let beta_deployed = state(&beta).expect("beta after the deploy");
    assert!(
        beta_deployed.2 && beta_deployed.0 != beta_state.0,
        "{beta_deployed:?}"
    );

    // Recovery: B restarts its own container when it dies, never A's.
    docker(&["kill", &beta]);
    docker(&["kill", &alpha]);
    assert!(
        wait_until(Duration::from_secs(15), || state(&beta)
            .filter(|s| s.2 && s.1 != beta_deployed.1))
        .is_some(),
        "B's recovery restarts beta"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        events(&b).iter().all(|m| !m.contains(&alpha)),
        "B's events never name A's container: {:?}",
        events(&b)
    );
    let alpha_after = state(&alpha).expect("A's alpha still exists");
    assert_eq!(alpha_after.0, alpha_before.0);
    assert!(
        !alpha_after.2,
        "A's killed container was not restarted by B"
    );

    // Demotion with `drain`: B removes what its node created, not A's (same node name, A's
    // alpha has term 1 ≤ B's: without the label, drain would remove it).
    assert!(b.terminate(), "B's agent exits cleanly");
    assert!(state(&beta).is_none(), "B drained its own beta");
    assert!(state(&gamma).is_none(), "and the unlabelled gamma, ours");
    assert_eq!(
        state(&alpha).map(|s| s.0),
        Some(alpha_before.0.clone()),
        "A's alpha not drained"
    );
    assert_eq!(
        state(&trap),
        Some(trap_before.clone()),
        "A's term-99 container: same id, still running"
    );
    assert_eq!(trap_before.0, trap_id);
    assert_eq!(label(&trap, "brh.federation"), fed_a);
    assert!(!b.log_has(&format!("drained container {alpha}")));

    drop(forge_b);
    remove_env_containers(&env);
    assert!(docker(&["ps", "-aq", "--filter", &format!("label=brh.env={env}")]).is_empty());
    docker(&["network", "rm", "brh_federation_net"]);
}
