//! A Compose file as the manifest, on real processes and the project's private dockerd: the
//! leader runs the stack the way `docker compose up` would name it (project network with
//! service-name aliases, project-scoped named volume, Compose's labels next to BRH's), a
//! one-shot job runs before the service that waits for it, after `kill -9` of the leader the
//! successor adopts every container in place (same ids, same volume data, the job not run
//! again), a deploy under client load never serves two versions at once on the host port,
//! and a leader with the `drain` policy removes the stack when it stops.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brh_tests::federation::*;

/// The project's containers (`all`: the exited ones too), sorted.
fn containers(project: &str, all: bool) -> Vec<String> {
    let mut v: Vec<String> = docker(&[
        "ps",
        if all { "-aq" } else { "-q" },
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ])
    .lines()
    .map(str::to_string)
    .collect();
    v.sort();
    v
}

/// The project's running containers.
fn ids(project: &str) -> Vec<String> {
    containers(project, false)
}

/// One request of the load: when it ended, and the version that answered (`None`: no answer).
type Answer = (Instant, Option<String>);

/// Every container of the project, running or exited.
fn all_ids(project: &str) -> Vec<String> {
    containers(project, true)
}

/// An engine timestamp (RFC 3339, nanoseconds with trailing zeros trimmed) in a form that
/// sorts by time: the fraction padded to nine digits.
fn sortable(ts: &str) -> String {
    match ts.trim_end_matches('Z').split_once('.') {
        Some((secs, frac)) => format!("{secs}.{frac:0<9}Z"),
        None => format!("{}.000000000Z", ts.trim_end_matches('Z')),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The test stack: `web` (health-checked, on a host port) waits for `db` to be healthy and
/// for the one-shot `migrate` job, which writes into the named volume web mounts, to exit 0.
fn stack(project: &str, port: u16) -> String {
    format!(
        "name: {project}\n\
         services:\n\
         \x20 web:\n\
         \x20   image: brh-test/web:1\n\
         \x20   depends_on:\n\
         \x20     db: {{ condition: service_healthy }}\n\
         \x20     migrate: {{ condition: service_completed_successfully }}\n\
         \x20   networks: {{ default: {{}}, back: {{ aliases: [frontend] }} }}\n\
         \x20   ports: [\"127.0.0.1:{port}:8080\"]\n\
         \x20   stop_grace_period: 2s\n\
         \x20   healthcheck: {{ test: [CMD, cat, /www/health], interval: 1s, retries: 3 }}\n\
         \x20   environment:\n\
         \x20     GREETING: \"${{GREETING:-hello}}\"\n\
         \x20   volumes: [\"data:/data\"]\n\
         \x20   restart: unless-stopped\n\
         \x20 worker:\n\
         \x20   image: brh-test/sleep:1\n\
         \x20   deploy: {{ replicas: 2 }}\n\
         \x20   restart: always\n\
         \x20 migrate:\n\
         \x20   image: brh-test/sleep:1\n\
         \x20   command: [sh, -c, \"echo migrated >> /data/migrated && echo migration done\"]\n\
         \x20   volumes: [\"data:/data\"]\n\
         \x20 db:\n\
         \x20   image: brh-test/web:1\n\
         \x20   networks: [back]\n\
         \x20   secrets: [token]\n\
         \x20   restart: always\n\
         \x20   healthcheck:\n\
         \x20     test: [CMD, cat, /www/health]\n\
         \x20     interval: 1s\n\
         \x20     timeout: 1s\n\
         \x20     retries: 3\n\
         volumes:\n\
         \x20 data:\n\
         networks:\n\
         \x20 back: {{}}\n\
         secrets:\n\
         \x20 token: {{ file: ./token.txt }}\n"
    )
}

fn remove_project(env: &str, project: &str) {
    remove_env_containers(env);
    docker(&["network", "rm", &format!("{project}_default")]);
    docker(&["network", "rm", &format!("{project}_back")]);
    docker(&["volume", "rm", &format!("{project}_data")]);
}

fn label(id: &str, key: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        &format!("{{{{index .Config.Labels \"{key}\"}}}}"),
        id,
    ])
}

#[test]
fn a_compose_stack_runs_on_the_leader_and_is_adopted_in_place() {
    std::env::set_var("DOCKER_HOST", docker_host());
    let env = format!("c{}", std::process::id());
    let project = format!("brhc{}", std::process::id());
    remove_env_containers(&env);
    let dir = scratch("containers-compose");
    let file = dir.join("compose.yaml");
    let port = free_port();
    std::fs::write(&file, stack(&project, port)).unwrap();
    std::fs::write(dir.join("token.txt"), "s3cret\n").unwrap();
    // `manifest check` reads it as the agent will.
    let out = agent_cli(&["manifest", "check", file.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("4 service(s): worker, migrate, db, web"),
        "{}",
        output_text(&out)
    );
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    let opts = |prio: i32| AgentOpts {
        priority: prio,
        env: Some(env.clone()),
        args: vec![
            "--config".into(),
            file.display().to_string(),
            "--stop-timeout".into(),
            "2s".into(),
        ],
        ..AgentOpts::default()
    };
    let mut agents = vec![
        Agent::start(&dir, "n-a", &seal, forge.addr, opts(1)),
        Agent::start(&dir, "n-b", &seal, forge.addr, opts(0)),
    ];
    let (leader, term) = wait_until(Duration::from_secs(20), || {
        agreed_leader(&agents.iter().collect::<Vec<_>>())
    })
    .expect("a leader");
    let started = wait_until(Duration::from_secs(30), || {
        let v = ids(&project);
        (v.len() == 4).then_some(v)
    })
    .expect("the leader runs the four containers");
    // The job ran once, before web, and exited 0; web sees what it wrote in the volume.
    let job = all_ids(&project)
        .into_iter()
        .find(|id| label(id, "com.docker.compose.service") == "migrate")
        .expect("the migrate job's container");
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            &job
        ]),
        "exited 0"
    );
    let job_started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &job]);
    let job_finished = sortable(&docker(&["inspect", "-f", "{{.State.FinishedAt}}", &job]));
    let web_started = |id: &str| sortable(&docker(&["inspect", "-f", "{{.State.StartedAt}}", id]));
    let mut numbers = Vec::new();
    for id in &started {
        assert_eq!(label(id, "brh.term"), term.to_string());
        assert_eq!(label(id, "brh.owner"), leader);
        let service = label(id, "com.docker.compose.service");
        assert_eq!(label(id, "brh.service"), service);
        numbers.push(format!(
            "{service}#{}",
            label(id, "com.docker.compose.container-number")
        ));
        // On the project's network, answering to the service's name.
        let nets = docker(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", id]);
        let on = |n: &str| nets.contains(&format!("\"{project}_{n}\""));
        match service.as_str() {
            "db" => assert!(on("back") && !on("default"), "{nets}"),
            "web" => assert!(
                on("back") && on("default") && nets.contains("\"frontend\""),
                "{nets}"
            ),
            _ => assert!(on("default") && !on("back"), "{nets}"),
        }
        assert!(
            nets.contains(&format!("\"{service}\"")),
            "no alias {service}: {nets}"
        );
        if service == "db" {
            // The engine ran its healthcheck (web waited for it), and the secret is mounted.
            let health = docker(&["inspect", "-f", "{{.State.Health.Status}}", id]);
            assert_eq!(health, "healthy");
            assert_eq!(docker(&["exec", id, "cat", "/run/secrets/token"]), "s3cret");
        }
        if service == "web" {
            assert!(
                web_started(id) >= job_finished,
                "web started after the job had exited"
            );
            assert_eq!(docker(&["exec", id, "cat", "/data/migrated"]), "migrated");
            docker(&["exec", id, "sh", "-c", "echo kept > /data/marker"]);
            let mounts = docker(&["inspect", "-f", "{{json .Mounts}}", id]);
            assert!(
                mounts.contains(&format!("\"Name\":\"{project}_data\"")),
                "{mounts}"
            );
            let envs = docker(&["inspect", "-f", "{{json .Config.Env}}", id]);
            assert!(envs.contains("GREETING=hello"), "{envs}");
        }
    }
    numbers.sort();
    assert_eq!(numbers, ["db#1", "web#1", "worker#1", "worker#2"]);
    // Compose's own CLI lists them: `docker compose ps` (Compose v2, unpacked from Debian's
    // archive by scripts/dockerd.sh), by the project name alone.
    let ps = std::process::Command::new(compose_v2())
        .args([
            "-p",
            &project,
            "ps",
            "-a",
            "--format",
            "{{.Service}} {{.State}} {{.ExitCode}}",
        ])
        .env("DOCKER_HOST", docker_host())
        .output()
        .expect("Compose v2");
    let ps_text = output_text(&ps);
    assert!(ps.status.success(), "{ps_text}");
    let mut listed: Vec<&str> = ps_text.lines().map(str::trim).collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "db running 0",
            "migrate exited 0",
            "web running 0",
            "worker running 0",
            "worker running 0"
        ],
        "docker compose ps lists the stack: {ps_text}"
    );
    let logs = std::process::Command::new(compose_v2())
        .args(["-p", &project, "logs", "--no-color", "migrate"])
        .env("DOCKER_HOST", docker_host())
        .output()
        .expect("Compose v2");
    assert!(
        output_text(&logs).contains("migration done"),
        "docker compose logs shows the job's output: {}",
        output_text(&logs)
    );

    // kill -9 of the leader: the successor adopts the same containers.
    let li = agents.iter().position(|a| a.node == leader).unwrap();
    let killed_at = std::time::Instant::now();
    agents[li].kill9();
    let rest: Vec<&Agent> = agents.iter().filter(|a| a.node != leader).collect();
    let (next, term2) = wait_until(Duration::from_secs(20), || {
        agreed_leader(&rest).filter(|(_, t)| *t > term)
    })
    .expect("a successor");
    drop(rest);
    let si = agents.iter().position(|a| a.node == next).unwrap();
    wait_until(Duration::from_secs(20), || {
        agents[si]
            .log_has(&format!("PROMOTION: term {term2}: adopted 4"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the successor did not adopt the 4 containers"));
    // A figure for the notes, not a bound (these machines are noisy).
    println!(
        "handover: kill -9 of the leader → the successor adopted all 4, healthy: {} ms",
        killed_at.elapsed().as_millis()
    );
    assert_eq!(ids(&project), started, "same containers, adopted in place");
    assert!(
        agents[si].log_has("completed jobs 1"),
        "the successor found the job done"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.StartedAt}}", &job]),
        job_started,
        "the job is not run again at the handover"
    );
    let web_id = started
        .iter()
        .find(|id| label(id, "com.docker.compose.service") == "web")
        .unwrap();
    assert_eq!(
        docker(&["exec", web_id, "cat", "/data/migrated", "/data/marker"]),
        "migrated\nkept",
        "same volume data"
    );

    // Clients on the host port while web is deployed: every answer is version 1 until the
    // first version 2, then only version 2 (stop-first on a host port: never two copies).
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(http_get_text(addr, "/version").as_deref(), Some("1\n"));
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let load = {
        let (answers, done) = (answers.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let a = http_get_text(addr, "/version").map(|v| v.trim().to_string());
                answers.lock().unwrap().push((Instant::now(), a));
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    // A deploy of a new image to one compose service: it waits for the engine's `healthy`,
    // and the new container joins the same networks with the same aliases.
    let (ok, out) = cli_deploy(
        &seal,
        &env,
        agents[si].api,
        "brh-test/web:2",
        &["--service", "web", "--pull", "never"],
    );
    assert!(ok && out.contains("\"deployed\""), "deploy failed: {out}");
    wait_until(Duration::from_secs(10), || {
        (answers.lock().unwrap().last()?.1.as_deref() == Some("2")).then_some(())
    })
    .expect("version 2 answers on the host port");
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let answers = answers.lock().unwrap().clone();
    let first_2 = answers
        .iter()
        .position(|(_, a)| a.as_deref() == Some("2"))
        .unwrap();
    assert!(
        answers[..first_2]
            .iter()
            .all(|(_, a)| a.is_none() || a.as_deref() == Some("1")),
        "before the switch: version 1 or no answer"
    );
    assert!(
        answers[first_2..]
            .iter()
            .all(|(_, a)| a.as_deref() == Some("2")),
        "after the first version 2, only version 2: {:?}",
        answers[first_2..]
            .iter()
            .map(|(_, a)| a)
            .collect::<Vec<_>>()
    );
    let failed = answers.iter().filter(|(_, a)| a.is_none()).count();
    let last_1 = answers[..first_2]
        .iter()
        .rposition(|(_, a)| a.as_deref() == Some("1"))
        .expect("version 1 answered before the deploy");
    // Figures for the notes, not bounds (these machines are noisy).
    println!(
        "deploy under load: {} requests, {failed} without an answer, gap between the last version 1 and the first version 2: {} ms",
        answers.len(),
        answers[first_2].0.duration_since(answers[last_1].0).as_millis()
    );
    let now = ids(&project);
    let web: Vec<&String> = now
        .iter()
        .filter(|id| label(id, "com.docker.compose.service") == "web")
        .collect();
    assert_eq!(web.len(), 1, "{now:?}");
    assert!(!started.contains(web[0]), "web was replaced");
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.Config.Image}} {{.State.Health.Status}}",
            web[0]
        ]),
        "brh-test/web:2 healthy"
    );
    let nets = docker(&[
        "inspect",
        "-f",
        "{{json .NetworkSettings.Networks}}",
        web[0],
    ]);
    assert!(
        nets.contains("\"frontend\"") && nets.contains(&format!("\"{project}_back\"")),
        "{nets}"
    );
    finish_and_check(&mut agents);
    remove_project(&env, &project);
}

/// The `drain` policy (one engine per host): the leader that stops removes every container
/// of the stack it created, the exited job's too; the named volume stays, as after
/// `docker compose down`.
#[test]
fn a_leader_with_the_drain_policy_removes_the_compose_stack_when_it_stops() {
    std::env::set_var("DOCKER_HOST", docker_host());
    let env = format!("d{}", std::process::id());
    let project = format!("brhd{}", std::process::id());
    remove_project(&env, &project);
    let dir = scratch("containers-compose-drain");
    let file = dir.join("compose.yaml");
    std::fs::write(&file, stack(&project, free_port())).unwrap();
    std::fs::write(dir.join("token.txt"), "s3cret\n").unwrap();
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    let opts = AgentOpts {
        env: Some(env.clone()),
        args: vec![
            "--config".into(),
            file.display().to_string(),
            "--stop-timeout".into(),
            "2s".into(),
            "--demote-policy".into(),
            "drain".into(),
        ],
        ..AgentOpts::default()
    };
    let mut agents = vec![Agent::start(&dir, "n-d", &seal, forge.addr, opts)];
    wait_until(Duration::from_secs(20), || {
        agreed_leader(&agents.iter().collect::<Vec<_>>())
    })
    .expect("a leader");
    wait_until(Duration::from_secs(40), || {
        (ids(&project).len() == 4 && all_ids(&project).len() == 5).then_some(())
    })
    .expect("the stack runs: 4 containers and the exited job");
    finish_and_check(&mut agents);
    assert!(
        agents[0].log_has("DEMOTION: drained 5 containers"),
        "the demotion drained the stack"
    );
    assert_eq!(all_ids(&project), Vec::<String>::new(), "no container left");
    assert_eq!(
        docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={project}_data")
        ]),
        format!("{project}_data"),
        "the named volume is kept"
    );
    remove_project(&env, &project);
}
