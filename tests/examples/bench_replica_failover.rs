//! Forge replica failover, measured (never asserted in a test): a 3-member etcd cluster,
//! three `forge serve --store etcd` replicas (default profile: heartbeat 5 s, lease 15 s),
//! three agents on all three URLs (`BRH_FORGE_URL=A,B,C`, each in its own order).
//!
//! ```text
//! cargo run --release -p brh-tests --example bench_replica_failover -- [--rounds 10] [--etcd-ttl 2]
//! ```
//! (or `scripts/bench-replica-failover.sh`, which builds the binaries first). Each round hits
//! the active replica, alternately with `kill -9` and `SIGSTOP`, and measures the fault → another
//! replica serving, then waits two heartbeats and reads the leader and term. The stopped
//! replica is resumed (it must refuse), the killed one started again, before the next round.
//! At the end every agent's leadership log goes through the overlap checker, and the BRH
//! leader changes, demotions and leaderless time over the whole run are reported.
use std::time::{Duration, Instant};

use brh_tests::etcd::{free_addr, replica, serves, EtcdCluster};
use brh_tests::federation::*;
use brh_tests::stats::median_worst;

const USAGE: &str = "usage: bench_replica_failover [--rounds N>=1] [--etcd-ttl 1..5]";

fn main() {
    let (mut rounds, mut etcd_ttl) = (10u64, 2u64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().and_then(|v| v.parse::<u64>().ok())) {
            ("--rounds", Some(n)) if n >= 1 => rounds = n,
            ("--etcd-ttl", Some(n)) if (1..=5).contains(&n) => etcd_ttl = n,
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let dir = scratch("bench-replica-failover");
    let seal = fresh_seal();
    let etcd = EtcdCluster::start(&dir, 3);
    let endpoints = etcd.endpoints();
    let listen: Vec<_> = (0..3).map(|_| free_addr()).collect();
    let timing = ["--profile", "default"];
    let start = |i: usize| replica(&dir, &seal, &endpoints, listen[i], etcd_ttl, &timing);
    let mut forges: Vec<Forge> = (0..3).map(start).collect();
    let active = |skip: Option<usize>| {
        (0..3)
            .filter(|&i| Some(i) != skip)
            .find(|&i| serves(listen[i]) == Some(true))
    };
    wait_until(Duration::from_secs(20), || active(None)).expect("no replica became active");
    let urls: Vec<String> = listen.iter().map(|a| format!("http://{a}")).collect();
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| {
            let mut order = urls.clone();
            order.rotate_left(i);
            let opts = AgentOpts {
                timing: Some((5_000, 15_000)),
                vars: vec![("BRH_FORGE_URL".into(), order.join(","))],
                ..AgentOpts::default()
            };
            Agent::start(&dir, &format!("f{i}"), &seal, listen[0], opts)
        })
        .collect();
    let agreed = |agents: &[Agent]| {
        let refs: Vec<&Agent> = agents.iter().collect();
        wait_until(Duration::from_secs(60), || agreed_leader(&refs))
    };
    let (_, first_term) = agreed(&agents).expect("no leader");
    let began = wall_ms();
    let (mut kill_ms, mut stop_ms) = (Vec::new(), Vec::new());
    let mut lost_leader = 0u64;
    for round in 0..rounds {
        let Some((leader, term)) = agreed(&agents) else {
            eprintln!("round {round}: no agreed leader; stopping");
            break;
        };
        let r = active(None).expect("a replica serves between rounds");
        let sigstop = round % 2 == 1;
        let t0 = Instant::now();
        if sigstop {
            signal(forges[r].child.id(), libc::SIGSTOP);
        } else {
            forges[r].kill();
        }
        let other = wait_until(Duration::from_secs(30), || active(Some(r)));
        let took = t0.elapsed().as_millis() as u64;
        // Two heartbeats: every agent has beaten the new replica at least once.
        std::thread::sleep(Duration::from_secs(11));
        let after = agreed(&agents);
        if after != Some((leader.clone(), term)) {
            lost_leader += 1;
        }
        eprintln!(
            "round {round}: {} of replica {r}: replica {other:?} serving after {took} ms; \
             leader {leader} term {term} → {after:?}",
            if sigstop { "SIGSTOP" } else { "kill -9" }
        );
        if sigstop {
            stop_ms.push(took);
            signal(forges[r].child.id(), libc::SIGCONT);
            std::thread::sleep(Duration::from_millis(300));
            if serves(listen[r]) == Some(true) {
                eprintln!("round {round}: the resumed replica {r} serves: a second active replica");
            }
        } else {
            kill_ms.push(took);
            forges[r] = start(r);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let ended = wall_ms();
    let last_term = agreed(&agents).map_or(0, |(_, t)| t);
    let demotions: usize = agents.iter().map(Agent::demotions).sum();
    let all = finish_and_check(&mut agents);
    // Leaderless time between the first grant and the end of the rounds.
    let mut covered: Vec<(u64, u64)> = all
        .iter()
        .map(|i| (i.start.max(began), i.end.min(ended)))
        .filter(|(s, e)| s < e)
        .collect();
    covered.sort_unstable();
    let (mut leaderless, mut at) = (0u64, began);
    for (s, e) in covered {
        leaderless += s.saturating_sub(at);
        at = at.max(e);
    }
    leaderless += ended.saturating_sub(at);
    for f in &mut forges {
        f.kill();
    }
    let row = |name: &str, v: &[u64]| {
        let mut s = v.to_vec();
        s.sort_unstable();
        let (med, worst) = median_worst(&s).unwrap_or((0, 0));
        println!(
            "| {name} | {} | {} | {med} | {worst} |",
            v.len(),
            s.first().copied().unwrap_or(0)
        );
    };
    println!(
        "3 etcd members, 3 forge replicas (`--etcd-lease-ttl {etcd_ttl}`), 3 agents on all three \
         URLs, default profile (5 s / 15 s)\n"
    );
    println!("| fault of the active replica | rounds | min ms | median ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    row("kill -9 → another replica serving", &kill_ms);
    row("SIGSTOP → another replica serving", &stop_ms);
    println!(
        "\nBRH leader changes over the run: {} (term {first_term} → {last_term}); rounds whose \
         leader or term differed after: {lost_leader}; demotions: {demotions}; leaderless time: \
         {leaderless} ms of {} s; {} leadership intervals checked, no overlap",
        last_term.saturating_sub(first_term),
        (ended - began) / 1000,
        all.len()
    );
}
