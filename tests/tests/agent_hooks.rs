//! Real processes: role-change hooks (`BRH_ON_PROMOTE`, `BRH_ON_DEMOTE`, `BRH_HOOK_TIMEOUT`).
use std::path::Path;
use std::time::Duration;

use brh_tests::federation::*;

const SETTLE: Duration = Duration::from_secs(20);

/// A hook that appends one line per run to `DIR/NODE.hooks`: what it was told, whether it got
/// a lease token, and whether the node's own key leaked into its environment.
fn recording_hook(dir: &Path) -> String {
    format!(
        r#"printf '%s %s %s %s %s %s\n' "$BRH_HOOK" "$BRH_ROLE" "$BRH_ENV" "$BRH_TERM" "${{BRH_LEASE_TOKEN:+token}}${{BRH_LEASE_TOKEN:-notoken}}" "${{BRH_NODE_KEY:-nokey}}" >> '{}/'"$BRH_NODE".hooks"#,
        dir.display()
    )
}

fn hook_lines(dir: &Path, node: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(format!("{node}.hooks")))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            // The token itself varies; keep only whether there was one.
            let mut parts: Vec<&str> = l.split(' ').collect();
            if let Some(t) = parts.get_mut(4) {
                if t.starts_with("token") {
                    *t = "token";
                }
            }
            parts.join(" ")
        })
        .collect()
}

#[test]
fn promote_and_demote_hooks_run_in_order_with_the_lease_and_on_sigterm() {
    let dir = scratch("hooks");
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    let hook = recording_hook(&dir);
    let opts = AgentOpts {
        args: vec![
            "--on-promote".into(),
            hook.clone(),
            "--on-demote".into(),
            hook,
        ],
        ..AgentOpts::default()
    };
    let mut agents: Vec<Agent> = ["n1", "n2"]
        .iter()
        .map(|n| Agent::start(&dir, n, &seal, forge.addr, opts.clone()))
        .collect();
    let refs: Vec<&Agent> = agents.iter().collect();
    let (leader, term) = wait_until(SETTLE, || agreed_leader(&refs)).expect("no leader");
    drop(refs);
    let other = if leader == "n1" { "n2" } else { "n1" };
    let promoted = format!("promote leader dev {term} token nokey");
    wait_until(SETTLE, || {
        hook_lines(&dir, &leader).contains(&promoted).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no promote hook on {leader}: {:?}",
            hook_lines(&dir, &leader)
        )
    });
    assert!(
        hook_lines(&dir, other).is_empty(),
        "a witness ran a hook: {:?}",
        hook_lines(&dir, other)
    );
    // SIGTERM: the leader steps down and its demote hook runs before the process exits.
    let li = agents.iter().position(|a| a.node == leader).unwrap();
    assert!(agents[li].terminate(), "the leader did not exit cleanly");
    let lines = hook_lines(&dir, &leader);
    assert_eq!(
        lines,
        vec![promoted, format!("demote witness dev {term} token nokey")],
        "the old leader's hooks, in order"
    );
    assert!(agents[li].log_has("[HOOK] on-demote exited 0"));
    // The successor's promote hook, for the next term.
    let next = format!("promote leader dev {} token nokey", term + 1);
    wait_until(SETTLE, || {
        hook_lines(&dir, other).contains(&next).then_some(())
    })
    .unwrap_or_else(|| panic!("no promote hook on {other}: {:?}", hook_lines(&dir, other)));
    finish_and_check(&mut agents);
}

#[test]
fn a_hung_promote_hook_is_killed_at_its_bound_and_the_lease_is_kept() {
    let dir = scratch("hooks-hung");
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    let pid_file = dir.join("hung.pid");
    let opts = AgentOpts {
        args: vec![
            "--on-promote".into(),
            format!("echo $$ > '{}'; echo started; sleep 60", pid_file.display()),
            "--hook-timeout".into(),
            "1s".into(),
        ],
        ..AgentOpts::default()
    };
    let mut agents = vec![Agent::start(&dir, "n1", &seal, forge.addr, opts)];
    let (leader, term) = wait_until(SETTLE, || agreed_leader(&[&agents[0]])).expect("no leader");
    assert_eq!(leader, "n1");
    wait_until(SETTLE, || {
        agents[0]
            .log_has("[HOOK] on-promote killed at its bound")
            .then_some(())
    })
    .expect("the hung hook was not killed at its bound");
    assert!(
        agents[0].log_has("stdout: started"),
        "the hook's output is logged"
    );
    // The whole group went: the shell (and the sleep it started).
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || (!Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists())
        .then_some(()))
        .is_some(),
        "the hook's shell {pid} is still alive"
    );
    // Lease keeping never waited for the hook: well past the lease ttl (3 s) and the hook's
    // bound, the same node still leads the same term.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(agreed_leader(&[&agents[0]]), Some(("n1".to_string(), term)));
    finish_and_check(&mut agents);
}

#[test]
fn bad_hook_settings_are_refused_at_start_up() {
    for (args, needle) in [
        (vec!["--hook-timeout", "soon"], "BRH_HOOK_TIMEOUT"),
        (vec!["--hook-timeout", "0s"], "BRH_HOOK_TIMEOUT"),
        (vec!["--on-promote", " "], "BRH_ON_PROMOTE"),
    ] {
        let seal = fresh_seal();
        let mut envs: Vec<(&str, String)> = host_keys(&seal, "dev", "n1").to_vec();
        let addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        envs.push(("FORGE_DOMINION_ROOT", root_for(&seal, addr)));
        let mut all = vec!["run", "--node-id", "n1", "--listen", "127.0.0.1:0"];
        all.extend(args.iter());
        let out = agent_cli(&all, &envs);
        let text = output_text(&out);
        assert!(!out.status.success(), "{args:?} was accepted: {text}");
        assert!(text.contains(needle), "{args:?}: {text}");
        assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
    }
}

#[test]
fn a_running_promote_hook_is_killed_when_the_lease_goes() {
    let dir = scratch("hooks-lease-lost");
    let seal = fresh_seal();
    let mut forge = Forge::start(&dir, &seal, None, 30_000);
    let opts = AgentOpts {
        args: vec![
            "--on-promote".into(),
            "sleep 60".into(),
            "--hook-timeout".into(),
            "60s".into(),
        ],
        ..AgentOpts::default()
    };
    let mut agents = vec![Agent::start(&dir, "n1", &seal, forge.addr, opts)];
    let (_, term) = wait_until(SETTLE, || agreed_leader(&[&agents[0]])).expect("no leader");
    // The forge goes: the leader cannot renew, its lease ends at its own deadline (ttl 3 s),
    // and the hook that was still running goes with it — long before its 60 s bound.
    forge.kill();
    let needle = "[HOOK] on-promote killed after";
    wait_until(Duration::from_secs(10), || {
        agents[0].log_has(needle).then_some(())
    })
    .expect("the promote hook outlived the lease");
    assert!(agents[0].log_has(&format!("the lease of term {term} is gone")));
    finish_and_check(&mut agents);
}

/// The README's example hook (`examples/hooks/floating-ip.sh`), run by real agents with `ip`
/// and `arping` replaced by recorders (the test has no CAP_NET_ADMIN to spend): the leader adds
/// the address, hands it over on SIGTERM, the successor takes it.
#[test]
fn the_floating_ip_example_moves_the_address_with_the_lease() {
    let dir = scratch("hooks-floating-ip");
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/hooks/floating-ip.sh");
    let recorder = |name: &str| {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"$BRH_NODE {name} $*\" >> '{}/ip.log'\n",
                dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        path.display().to_string()
    };
    let hook = format!(
        "IP='{}' ARPING='{}' FLOATING_IP=192.0.2.10/24 FLOATING_DEV=eth9 '{}'",
        recorder("ip"),
        recorder("arping"),
        script.display()
    );
    let opts = AgentOpts {
        args: vec![
            "--on-promote".into(),
            hook.clone(),
            "--on-demote".into(),
            hook,
        ],
        ..AgentOpts::default()
    };
    let mut agents: Vec<Agent> = ["n1", "n2"]
        .iter()
        .map(|n| Agent::start(&dir, n, &seal, forge.addr, opts.clone()))
        .collect();
    let log = || std::fs::read_to_string(dir.join("ip.log")).unwrap_or_default();
    let refs: Vec<&Agent> = agents.iter().collect();
    let (leader, term) = wait_until(SETTLE, || agreed_leader(&refs)).expect("no leader");
    drop(refs);
    let other = if leader == "n1" { "n2" } else { "n1" };
    let add = |n: &str| format!("{n} ip addr replace 192.0.2.10/24 dev eth9");
    wait_until(SETTLE, || log().contains(&add(&leader)).then_some(()))
        .unwrap_or_else(|| panic!("the leader did not take the address: {}", log()));
    assert!(log().contains(&format!("{leader} arping -U -c 3 -I eth9 192.0.2.10")));
    let li = agents.iter().position(|a| a.node == leader).unwrap();
    assert!(agents[li].log_has(&format!("held for env dev term {term}")));
    assert!(agents[li].terminate());
    assert!(
        log().contains(&format!("{leader} ip addr del 192.0.2.10/24 dev eth9")),
        "SIGTERM released the address: {}",
        log()
    );
    wait_until(SETTLE, || log().contains(&add(other)).then_some(()))
        .unwrap_or_else(|| panic!("the successor did not take the address: {}", log()));
    // Taken before it was released or taken over. (The old holder's release and the
    // successor's take run on two hosts at about the same time: `replace` plus the gratuitous
    // ARP make the newest holder win, whichever lands last.)
    let l = log();
    let taken = l.find(&add(&leader)).unwrap();
    let released = l.find(&format!("{leader} ip addr del")).unwrap();
    let retaken = l.find(&add(other)).unwrap();
    assert!(taken < released && taken < retaken, "{l}");
    finish_and_check(&mut agents);
}
