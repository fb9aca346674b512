//! Handover on real processes and a real dockerd (docs/design.md §6.5): two agents share one
//! engine; the leader starts the manifest's services; `kill -9` of the leader; the new leader
//! adopts the same containers (same ids, `StartedAt` unchanged) within ttl + one heartbeat, and
//! they stay healthy. Then a deploy through the leader's API rolls out, and a bad one changes
//! nothing. Engine state is read with the docker CLI, not through the agents.
use std::net::TcpStream;
use std::time::Duration;

use brh_tests::federation::*;

const DEPLOY_WEB: &[&str] = &["--service", "web", "--pull", "never"];
/// `(id, StartedAt, running, image)` of every container of the env, sorted by name.
fn snapshot(env: &str) -> Vec<(String, String, bool, String)> {
    let ids = docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label=brh.env={env}"),
    ]);
    let mut v: Vec<(String, String, String, bool, String)> = ids
        .lines()
        .map(|id| {
            let f = docker(&[
                "inspect",
                "-f",
                "{{.Name}}|{{.State.StartedAt}}|{{.State.Running}}|{{.Config.Image}}",
                id,
            ]);
            let p: Vec<&str> = f.split('|').collect();
            (
                p[0].to_string(),
                id.to_string(),
                p[1].to_string(),
                p[2] == "true",
                p[3].to_string(),
            )
        })
        .collect();
    v.sort();
    v.into_iter()
        .map(|(_, id, s, r, i)| (id, s, r, i))
        .collect()
}

fn healthy(id: &str) -> bool {
    let ip = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        id,
    ]);
    TcpStream::connect_timeout(
        &format!("{ip}:8080").parse().unwrap(),
        Duration::from_secs(1),
    )
    .is_ok()
}

#[test]
fn shared_engine_handover_adopts_in_place_and_deploys() {
    std::env::set_var("DOCKER_HOST", docker_host());
    let env = format!("h{}", std::process::id());
    remove_env_containers(&env);
    let dir = scratch("containers-handover");
    let manifest = dir.join("bridge.runtime.yaml");
    std::fs::write(
        &manifest,
        "provider: { kind: docker, network: brh_handover_net }\n\
         services:\n\
         \x20 web:\n\
         \x20   image: brh-test/web:1\n\
         \x20   replicas: 2\n\
         \x20   health: { http: \"http://{ip}:8080/health\", interval: 100ms, timeout: 1s, retries: 50 }\n\
         \x20 worker:\n\
         \x20   image: brh-test/sleep:1\n",
    )
    .unwrap();
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    let opts = |prio: i32| AgentOpts {
        priority: prio,
        env: Some(env.clone()),
        args: vec![
            "--config".into(),
            manifest.display().to_string(),
            "--stop-timeout".into(),
            "2s".into(),
        ],
        ..AgentOpts::default()
    };
    let a = Agent::start(&dir, "n-a", &seal, forge.addr, opts(1));
    let b = Agent::start(&dir, "n-b", &seal, forge.addr, opts(0));
    let mut agents = vec![a, b];

    // The leader starts the manifest's three containers, healthy.
    let (leader, term) = wait_until(Duration::from_secs(20), || {
        agreed_leader(&agents.iter().collect::<Vec<_>>())
    })
    .expect("a leader");
    let started = wait_until(Duration::from_secs(30), || {
        let s = snapshot(&env);
        (s.len() == 3 && s.iter().all(|c| c.2)).then_some(s)
    })
    .expect("the leader starts 3 containers");
    for (id, ..) in &started {
        let term_label = docker(&["inspect", "-f", "{{index .Config.Labels \"brh.term\"}}", id]);
        assert_eq!(term_label, term.to_string());
        assert_eq!(
            docker(&[
                "inspect",
                "-f",
                "{{index .Config.Labels \"brh.owner\"}}",
                id
            ]),
            leader
        );
    }
    let webs: Vec<&String> = started
        .iter()
        .filter(|c| c.3 == "brh-test/web:1")
        .map(|c| &c.0)
        .collect();
    assert_eq!(webs.len(), 2);
    assert!(wait_until(Duration::from_secs(10), || webs
        .iter()
        .all(|id| healthy(id))
        .then_some(()))
    .is_some());

    // kill -9 of the leader: the other agent is promoted and adopts the same containers.
    let li = agents.iter().position(|a| a.node == leader).unwrap();
    let killed_at = agents[li].kill9();
    let survivor = &agents[1 - li];
    let promoted = wait_until(Duration::from_secs(15), || {
        let s = survivor.status()?;
        (s["role"] == "leader").then(|| (wall_ms(), s["term"].as_u64().unwrap()))
    })
    .expect("the survivor is promoted");
    assert_eq!(promoted.1, term + 1);
    // ttl 3 s + heartbeat 1 s, plus 1 s for process scheduling on a loaded 2-core machine.
    assert!(
        promoted.0 - killed_at <= 3_000 + 1_000 + 1_000,
        "promotion took {} ms",
        promoted.0 - killed_at
    );
    let adopted = wait_until(Duration::from_secs(20), || {
        let ev = http_get(survivor.api, "/events")?;
        ev.as_array()?
            .iter()
            .any(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(&format!("PROMOTION: term {}", term + 1)))
            })
            .then_some(())
    });
    assert!(
        adopted.is_some(),
        "the new leader reports its reconciliation"
    );
    let after = snapshot(&env);
    assert_eq!(
        after, started,
        "same containers, same StartedAt, still running"
    );
    assert!(
        webs.iter().all(|id| healthy(id)),
        "adopted containers stay healthy"
    );
    let st = survivor.status().unwrap();
    assert_eq!(st["containers"]["engine"], "ok");
    assert_eq!(st["containers"]["managed"].as_array().unwrap().len(), 3);

    // A deploy through the new leader's API rolls the web service to web:2, healthy.
    let (ok, out) = cli_deploy(&seal, &env, survivor.api, "brh-test/web:2", DEPLOY_WEB);
    assert!(ok, "deploy failed: {out}");
    assert!(out.contains("\"deployed\""), "{out}");
    let s = snapshot(&env);
    assert_eq!(
        s.iter().filter(|c| c.3 == "brh-test/web:2" && c.2).count(),
        2,
        "{s:?}"
    );
    // A bad reference: refused, the engine unchanged.
    let (ok, out) = cli_deploy(&seal, &env, survivor.api, "Not/A:Valid:Ref", DEPLOY_WEB);
    assert!(!ok, "{out}");
    assert_eq!(snapshot(&env), s);

    finish_and_check(&mut agents);
    drop(forge);
    remove_env_containers(&env);
}
