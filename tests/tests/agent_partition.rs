//! Real processes behind per-agent TCP proxies: a leader cut from the forge, a leader paused
//! past its lease, and a forge restart.
use std::time::Duration;

use brh_tests::federation::*;

const SETTLE: Duration = Duration::from_secs(15);
const TTL_MS: u64 = 3_000;

struct Fed {
    _dir: std::path::PathBuf,
    forge: Forge,
    agents: Vec<Agent>,
    proxies: Vec<Proxy>,
}

fn federation(name: &str) -> Fed {
    let dir = scratch(name);
    let seal = fresh_seal();
    let forge = Forge::start(&dir, &seal, None, 30_000);
    let mut agents = Vec::new();
    let mut proxies = Vec::new();
    for n in ["n1", "n2", "n3"] {
        let p = Proxy::start(forge.addr);
        agents.push(Agent::start(&dir, n, &seal, p.addr, AgentOpts::default()));
        proxies.push(p);
    }
    Fed {
        _dir: dir,
        forge,
        agents,
        proxies,
    }
}

fn settle(agents: &[Agent]) -> (String, u64, usize) {
    let refs: Vec<&Agent> = agents.iter().collect();
    let (l, t) = wait_until(SETTLE, || agreed_leader(&refs)).expect("no leader");
    let i = agents.iter().position(|a| a.node == l).unwrap();
    (l, t, i)
}

/// When the forge granted `term` (from its history).
fn granted_at(forge: &Forge, term: u64) -> Option<u64> {
    forge
        .history()
        .into_iter()
        .find(|(t, l, _)| *t == term && l.is_some())
        .map(|(_, _, at)| at)
}

#[test]
fn leader_cut_from_the_forge_demotes_itself_before_its_lease_can_pass() {
    let mut f = federation("cut");
    let (leader, term, li) = settle(&f.agents);
    let cut_at = wall_ms();
    f.proxies[li].set_cut(true);
    // Someone else gets the next term once the old lease has expired at the forge.
    let others: Vec<&Agent> = f.agents.iter().filter(|a| a.node != leader).collect();
    let (l2, t2) = wait_until(SETTLE, || agreed_leader(&others)).expect("no new leader");
    assert_eq!(t2, term + 1);
    let granted = granted_at(&f.forge, t2).expect("grant in history");
    // The cut leader stopped acting on its own deadline, before the forge let the lease go.
    let recs = f.agents[li].records();
    let demote = recs
        .iter()
        .find(|r| r.event == "demote" && r.term == term)
        .expect("the cut leader must demote itself");
    assert_eq!(demote.reason.as_deref(), Some("deadline"));
    assert!(
        demote.at_ms < granted,
        "demoted at {} but the forge re-granted at {}",
        demote.at_ms,
        granted
    );
    assert!(
        demote.at_ms <= cut_at + TTL_MS,
        "deadline later than the lease could last"
    );
    let new = others.iter().find(|a| a.node == l2).unwrap();
    let promoted = new
        .records()
        .iter()
        .find(|r| r.event == "promote" && r.term == t2)
        .map(|r| r.at_ms)
        .unwrap();
    assert!(promoted >= granted, "promoted before the forge granted");
    // Its guard refuses, and its status says witness, while still cut off.
    let st = f.agents[li].status().unwrap();
    assert_eq!(st["role"], "witness");
    assert_eq!(st["forge"]["reachable"], false);
    drop(others);
    // Reconnected, it follows the new leader.
    f.proxies[li].set_cut(false);
    let all: Vec<&Agent> = f.agents.iter().collect();
    assert_eq!(
        wait_until(SETTLE, || agreed_leader(&all)),
        Some((l2, t2)),
        "the old leader must rejoin as a witness"
    );
    drop(all);
    finish_and_check(&mut f.agents);
}

#[test]
fn a_paused_leader_refuses_orchestration_on_resume_before_learning_anything() {
    let mut f = federation("pause");
    let (leader, term, li) = settle(&f.agents);
    let seal = f.forge.seal.clone();
    let pid = f.agents[li].pid();
    signal(pid, libc::SIGSTOP);
    // While it sleeps nothing reaches it from the forge either.
    f.proxies[li].set_cut(true);
    let others: Vec<&Agent> = f.agents.iter().filter(|a| a.node != leader).collect();
    let (_, t2) = wait_until(SETTLE, || agreed_leader(&others)).expect("no new leader");
    assert_eq!(t2, term + 1);
    drop(others);
    // A deploy sent to the paused leader waits in its accept queue and is the first thing it
    // handles on resume (together with its own timers).
    let api = f.agents[li].api;
    let deploy = std::process::Command::new(bin("brh-agent"))
        .args([
            "deploy",
            "--agent",
            &format!("http://{api}"),
            "--image",
            "nginx:1",
        ])
        .env("DOMINION_SEAL", &seal)
        .env("BRH_ENV", "dev")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    signal(pid, libc::SIGCONT);
    let out = deploy.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(r#""status":"ignored""#) && stdout.contains("not-leader"),
        "a paused leader past its lease must refuse: {stdout} / {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "deploy to a non-leader exits non-zero"
    );
    let st = f.agents[li].status().unwrap();
    assert_eq!(st["role"], "witness");
    // It refused on its own clock: the last term it heard of is still its own old one.
    assert_eq!(
        st["term"].as_u64(),
        Some(term),
        "it must not have learnt the new term yet"
    );
    let recs = f.agents[li].records();
    let d = recs
        .iter()
        .find(|r| r.event == "demote")
        .expect("demote recorded");
    assert_eq!(d.reason.as_deref(), Some("deadline"));
    f.proxies[li].set_cut(false);
    finish_and_check(&mut f.agents);
}

#[test]
fn forge_restart_keeps_the_leaders_lease_and_term() {
    let dir = scratch("restart");
    let seal = fresh_seal();
    let mut forge = Forge::start(&dir, &seal, None, 30_000);
    // All agents reach the forge through one proxy, so the forge may come back on a new port.
    let p = Proxy::start(forge.addr);
    let mut agents: Vec<Agent> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| Agent::start(&dir, n, &seal, p.addr, AgentOpts::default()))
        .collect();
    let (leader, term, li) = settle(&agents);
    forge.kill();
    let forge2 = Forge::start(&dir, &seal, None, 30_000);
    p.retarget(forge2.addr);
    // Several heartbeats against the restarted forge.
    std::thread::sleep(Duration::from_secs(4));
    let refs: Vec<&Agent> = agents.iter().collect();
    assert_eq!(agreed_leader(&refs), Some((leader.clone(), term)));
    drop(refs);
    let v = forge2.get("/federation/leader?env=dev");
    assert_eq!(v["leader"].as_str(), Some(leader.as_str()));
    assert_eq!(v["term"].as_u64(), Some(term));
    let recs = agents[li].records();
    assert_eq!(recs.len(), 1, "the leader must not have demoted: {recs:?}");
    drop(forge);
    finish_and_check(&mut agents);
}
