//! `brh-agent up`: the one-command local federation starts, elects, and stops cleanly.
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use brh_tests::federation::*;

/// `brh-agent up` in `dir` with free ports: the child, its forge and its agents' APIs, and
/// the lines printed before "Ctrl-C".
fn start_up(dir: &std::path::Path, extra: &[&str]) -> (Child, SocketAddr, Vec<SocketAddr>, String) {
    let mut child = Command::new(bin("brh-agent"))
        .args([
            "up",
            "--forge-listen",
            "127.0.0.1:0",
            "--api-port",
            "0",
            "--data",
        ])
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.with_extension(format!("{}.log", extra.len()))).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut dashboard, mut apis, mut printed) = (None, Vec::<SocketAddr>::new(), String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if let Some(u) = line.trim().strip_prefix("dashboard: http://") {
            dashboard = Some(u.trim_end_matches('/').parse::<SocketAddr>().unwrap());
        } else if line.trim().starts_with("brh-node-") {
            let u = line.split("http://").nth(1).unwrap();
            apis.push(u.trim_end_matches("/status").parse().unwrap());
        } else if line.starts_with("Ctrl-C") {
            break;
        }
    }
    (
        child,
        dashboard.expect("dashboard URL printed"),
        apis,
        printed,
    )
}

fn agreed(apis: &[SocketAddr]) -> Option<String> {
    wait_until(Duration::from_secs(15), || {
        let st: Vec<_> = apis
            .iter()
            .map(|a| http_get(*a, "/status"))
            .collect::<Option<_>>()?;
        let l = st[0]["leader"].as_str()?.to_string();
        let ok = st.iter().all(|s| s["leader"].as_str() == Some(&l))
            && st.iter().filter(|s| s["role"] == "leader").count() == 1;
        ok.then_some(l)
    })
}

fn stop(mut child: Child) {
    signal(child.id(), libc::SIGINT);
    let st = child.wait().unwrap();
    assert!(st.success(), "up must exit 0 on Ctrl-C: {st:?}");
}

#[test]
fn up_starts_a_federation_and_stops_it_cleanly_on_ctrl_c() {
    let dir = scratch("up");
    let (child, forge, apis, _) = start_up(&dir, &[]);
    assert_eq!(apis.len(), 3, "three agents by default");
    // One leader, agreed by all three and by the forge.
    let leader = agreed(&apis).expect("no agreed leader");
    let v = http_get(forge, "/federation/leader?env=dev").unwrap();
    assert_eq!(v["leader"].as_str(), Some(leader.as_str()));
    // The keys file is private and the seal is not on stdout.
    let env_file = dir.join("up.env");
    let text = std::fs::read_to_string(&env_file).unwrap();
    assert!(text.contains("DOMINION_SEAL="));
    // The federation's id, in the operator's file and in each agent's enrolment.
    let federation = |file: &str| {
        file.lines()
            .find_map(|l| l.strip_prefix("BRH_FEDERATION="))
            .map(|v| v.trim_matches('\'').to_string())
    };
    let fed = federation(&text).expect("up.env has BRH_FEDERATION");
    assert!(
        fed.len() == 16 && fed.bytes().all(|b| b.is_ascii_hexdigit()),
        "{fed}"
    );
    let host = std::fs::read_to_string(dir.join("brh-node-01.env")).unwrap();
    assert_eq!(federation(&host).as_deref(), Some(fed.as_str()), "{host}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&env_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "up.env must not be readable by others");
    }
    // The README's next step: source the file in a shell, then `brh-agent status`.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"set -a; . "$1"; set +a; printf '%s\n' "$FORGE_DOMINION_ROOT"; exec "$2" status"#)
        .arg("sh")
        .arg(&env_file)
        .arg(bin("brh-agent"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("dominion") && stdout.contains("&epoch="),
        "sourcing up.env then `brh-agent status` failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let term = v["term"].as_u64().unwrap();
    stop(child);
    for a in &apis {
        assert!(
            http_get(*a, "/health").is_none(),
            "agent API still up after Ctrl-C"
        );
    }
    let recs = read_records(&dir.join(format!("{leader}.leadership.jsonl")));
    let last = recs.last().unwrap();
    assert_eq!(
        (last.event.as_str(), last.reason.as_deref()),
        ("demote", Some("shutdown"))
    );

    // `up` again in the same directory continues the federation: same keys, the forge's
    // terms and history kept (the README says state survives restarts).
    let (child, forge, apis, printed) = start_up(&dir, &[]);
    assert!(printed.contains("continuing the federation"), "{printed}");
    assert_eq!(
        std::fs::read_to_string(&env_file).unwrap().lines().next(),
        text.lines().next()
    );
    agreed(&apis).expect("no leader after restart");
    let v = http_get(forge, "/federation/leader?env=dev").unwrap();
    assert!(v["term"].as_u64().unwrap() > term, "terms restarted: {v}");
    stop(child);
    // --fresh: new keys, empty forge.
    let (child, forge, apis, printed) = start_up(&dir, &["--fresh"]);
    assert!(!printed.contains("continuing"), "{printed}");
    let fresh = std::fs::read_to_string(&env_file).unwrap();
    assert_ne!(fresh.lines().next(), text.lines().next());
    assert_ne!(
        federation(&fresh).as_deref(),
        Some(fed.as_str()),
        "a new seal is a new federation"
    );
    agreed(&apis).expect("no leader after --fresh");
    let v = http_get(forge, "/federation/leader?env=dev").unwrap();
    assert_eq!(v["term"], 1, "{v}");
    stop(child);
}

/// `id federation` of every container of env `dev` running service `upfresh`.
fn upfresh_containers() -> Vec<String> {
    let out = docker(&[
        "ps",
        "-a",
        "--filter",
        "label=brh.env=dev",
        "--filter",
        "label=brh.service=upfresh",
        "--format",
        "{{.ID}} {{.Label \"brh.federation\"}}",
    ]);
    out.lines().map(String::from).collect()
}

#[test]
fn up_fresh_with_a_manifest_replaces_the_earlier_federations_containers() {
    std::env::set_var("DOCKER_HOST", docker_host());
    let dir = scratch("up-fresh-containers");
    let manifest = dir.with_extension("yaml");
    std::fs::write(
        &manifest,
        "provider: { kind: docker, network: brh_upfresh_net }\n\
         services:\n  upfresh:\n    image: brh-test/sleep:1\n",
    )
    .unwrap();
    let m = manifest.display().to_string();
    let federation = |dir: &std::path::Path| {
        let text = std::fs::read_to_string(dir.join("up.env")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("BRH_FEDERATION='"))
            .map(|v| v.trim_end_matches('\'').to_string())
            .unwrap()
    };
    let (child, _, apis, _) = start_up(&dir, &["--agents", "2", "--config", &m]);
    agreed(&apis).expect("a leader");
    let first = federation(&dir);
    let one = wait_until(Duration::from_secs(30), || {
        let c = upfresh_containers();
        (c.len() == 1 && c[0].ends_with(&first)).then_some(c)
    })
    .expect("the first federation runs its container");
    stop(child);
    // Stopped with the default demotion policy (keep): the container is still there, and
    // would hold the service's name against a new federation.
    assert_eq!(upfresh_containers(), one);
    let (child, _, apis, printed) = start_up(&dir, &["--agents", "2", "--config", &m, "--fresh"]);
    assert!(
        printed.contains("--fresh: removed 1 container(s) of the earlier federation"),
        "{printed}"
    );
    agreed(&apis).expect("a leader after --fresh");
    let second = federation(&dir);
    assert_ne!(first, second);
    let two = wait_until(Duration::from_secs(30), || {
        let c = upfresh_containers();
        (c.len() == 1 && c[0].ends_with(&second)).then_some(c)
    })
    .expect("the fresh federation runs its own container");
    assert_ne!(one, two);
    stop(child);
    for c in upfresh_containers() {
        docker(&["rm", "-f", c.split(' ').next().unwrap()]);
    }
}
