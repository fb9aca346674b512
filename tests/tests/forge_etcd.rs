//! Real processes: two forge replicas (`forge serve --store etcd`) over a real etcd
//! (Debian's `etcd-server`, started here), three agents reaching the active replica through
//! a TCP proxy (what a load balancer in front of the replicas does). Checks:
//! - exactly one replica serves; the standby names the active one;
//! - a renewal costs no etcd write (etcd's own `etcd_mvcc_put_total` does not move while the
//!   leader renews);
//! - `kill -9` of the active replica: the standby takes over, reloads the env and applies the
//!   restart rule, so the **same leader keeps the same term** (no BRH leader change) and no
//!   two agents ever act at once.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use brh_tests::etcd::{free_addr, serves, EtcdCluster};
use brh_tests::federation::*;

/// The agents still agree that `leader` leads in `term`; returns how often it demoted.
fn kept_leader(agents: &[Agent], leader: &str, term: u64) -> usize {
    let refs: Vec<&Agent> = agents.iter().collect();
    assert_eq!(agreed_leader(&refs), Some((leader.to_string(), term)));
    agents
        .iter()
        .find(|a| a.node == leader)
        .unwrap()
        .demotions()
}

fn replica(dir: &std::path::Path, seal: &str, etcd: &EtcdCluster, listen: SocketAddr) -> Forge {
    brh_tests::etcd::replica(
        dir,
        seal,
        &etcd.endpoints(),
        listen,
        2,
        &["--profile", "default"],
    )
}

#[test]
fn the_standby_replica_takes_over_and_the_leader_keeps_its_term() {
    let dir = scratch("forge-etcd");
    let etcd = EtcdCluster::start(&dir, 1);
    let seal = fresh_seal();
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let mut a = replica(&dir, &seal, &etcd, a_addr);
    wait_until(Duration::from_secs(20), || serves(a_addr).filter(|s| *s))
        .expect("the first replica never became active");
    let b = replica(&dir, &seal, &etcd, b_addr);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(serves(b_addr), Some(false), "two replicas serve at once");
    let standby = http_get(b_addr, "/federation/leader?env=dev").unwrap();
    assert!(
        standby["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("http://{a_addr}")),
        "the standby names the active replica: {standby}"
    );

    let proxy = Proxy::start(a_addr);
    let opts = AgentOpts {
        timing: Some((5_000, 15_000)),
        ..AgentOpts::default()
    };
    let mut agents: Vec<Agent> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| Agent::start(&dir, n, &seal, proxy.addr, opts.clone()))
        .collect();
    let refs: Vec<&Agent> = agents.iter().collect();
    let (leader, term) =
        wait_until(Duration::from_secs(60), || agreed_leader(&refs)).expect("no leader");
    drop(refs);

    // Renewals: the leader beats every 5 s; over 11 s etcd records no put at all.
    let before = etcd.puts();
    assert!(
        before >= 2.0,
        "the grant is durable: the active key and the term change were written ({before})"
    );
    std::thread::sleep(Duration::from_secs(11));
    let after = etcd.puts();
    assert_eq!(
        after, before,
        "renewals must cost no etcd write (puts {before} -> {after})"
    );

    // kill -9 of the active replica; the proxy now reaches the standby.
    let killed = Instant::now();
    a.kill();
    proxy.retarget(b_addr);
    wait_until(Duration::from_secs(20), || serves(b_addr).filter(|s| *s))
        .expect("the standby never took over");
    let took_over = killed.elapsed();
    assert!(
        b.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("took over generation")),
        "the new active replica reloads from etcd"
    );
    // The holder renews with the new replica: same leader, same term.
    std::thread::sleep(Duration::from_secs(8));
    let view = http_get(b_addr, "/federation/leader?env=dev").unwrap();
    assert_eq!(view["leader"], leader, "{view}");
    assert_eq!(
        view["term"], term,
        "a replica failover must not change the term: {view}"
    );
    let demotions = kept_leader(&agents, &leader, term);
    println!(
        "replica failover: standby serving {} ms after kill -9; leader {leader} kept term \
         {term}; leader demotions during the failover: {demotions}",
        took_over.as_millis()
    );
    finish_and_check(&mut agents);
    drop(b);
}

/// The agents hold both replicas' addresses (`BRH_FORGE_URL=A,B`, no proxy): they find the
/// active one themselves. The active replica is frozen (`SIGSTOP`: its sockets stay open and
/// answer nothing, its etcd lease runs out), so the agents time out on it and move to the
/// standby, which takes over; then the frozen one is thawed (`SIGCONT`) and must refuse
/// (it cannot prove it is still active: its lease proof counts from its last answered
/// keepalive). Finally the new active replica is killed and the agents go back to the first.
/// Throughout: the same leader keeps the same term, and no two agents act at once.
#[test]
fn agents_with_both_replica_urls_follow_the_active_one_through_a_freeze_and_a_kill() {
    let dir = scratch("forge-etcd-urls");
    let etcd = EtcdCluster::start(&dir, 1);
    let seal = fresh_seal();
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let mut a = replica(&dir, &seal, &etcd, a_addr);
    wait_until(Duration::from_secs(20), || serves(a_addr).filter(|s| *s))
        .expect("the first replica never became active");
    let mut b = replica(&dir, &seal, &etcd, b_addr);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(serves(b_addr), Some(false), "two replicas serve at once");

    // The standby's address first for one agent: it must still find the active replica.
    let list = |first: SocketAddr, second: SocketAddr| {
        vec![(
            "BRH_FORGE_URL".to_string(),
            format!("http://{first},http://{second}"),
        )]
    };
    let mut agents: Vec<Agent> = [
        ("n1", a_addr, b_addr),
        ("n2", a_addr, b_addr),
        ("n3", b_addr, a_addr),
    ]
    .iter()
    .map(|(n, first, second)| {
        let opts = AgentOpts {
            timing: Some((5_000, 15_000)),
            vars: list(*first, *second),
            ..AgentOpts::default()
        };
        Agent::start(&dir, n, &seal, a_addr, opts)
    })
    .collect();
    let refs: Vec<&Agent> = agents.iter().collect();
    let (leader, term) =
        wait_until(Duration::from_secs(60), || agreed_leader(&refs)).expect("no leader");
    drop(refs);
    let n3 = agents[2].status().expect("n3 status");
    assert_eq!(
        n3["forge"]["url"],
        format!("http://{a_addr}"),
        "n3 moved past the standby to the active replica: {n3}"
    );
    assert_eq!(
        n3["forge"]["urls"].as_array().map(Vec::len),
        Some(2),
        "{n3}"
    );

    // Freeze the active replica.
    let frozen = Instant::now();
    signal(a.child.id(), libc::SIGSTOP);
    wait_until(Duration::from_secs(20), || serves(b_addr).filter(|s| *s))
        .expect("the standby never took over from the frozen replica");
    let took_over = frozen.elapsed();
    // Two beat intervals: every agent has beaten (and moved) at least once.
    std::thread::sleep(Duration::from_secs(11));
    let view = http_get(b_addr, "/federation/leader?env=dev").unwrap();
    assert_eq!(view["leader"], leader, "{view}");
    assert_eq!(
        view["term"], term,
        "a frozen replica must not change the term: {view}"
    );
    for ag in &agents {
        let s = ag.status().expect("status");
        assert_eq!(
            s["forge"]["url"],
            format!("http://{b_addr}"),
            "{}: {s}",
            ag.node
        );
        assert_eq!(s["forge"]["reachable"], true, "{}: {s}", ag.node);
    }

    // Thaw it: it must not answer as the active replica any more.
    signal(a.child.id(), libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        serves(a_addr),
        Some(false),
        "a thawed replica that lost its etcd lease must refuse"
    );
    assert_eq!(serves(b_addr), Some(true));

    // Kill the new active replica: the agents go back to the first address.
    let killed = Instant::now();
    b.kill();
    wait_until(Duration::from_secs(20), || serves(a_addr).filter(|s| *s))
        .expect("the thawed replica never took over again");
    let back = killed.elapsed();
    std::thread::sleep(Duration::from_secs(11));
    let view = http_get(a_addr, "/federation/leader?env=dev").unwrap();
    assert_eq!(view["leader"], leader, "{view}");
    assert_eq!(view["term"], term, "{view}");
    let demotions = kept_leader(&agents, &leader, term);
    println!(
        "agents with two replica URLs: standby serving {} ms after SIGSTOP, the first one \
         again {} ms after kill -9 of the second; leader {leader} kept term {term}; its \
         demotions: {demotions}",
        took_over.as_millis(),
        back.as_millis()
    );
    finish_and_check(&mut agents);
    a.kill();
}

/// A short drill on a 3-member etcd cluster and 3 replicas (the long one:
/// `cargo run -p brh-tests --example replica_drill -- --faults 1000`): every fault kind at
/// least once, the overlap checker over every agent's log, a leader again at the end.
#[test]
fn a_short_replica_drill_finds_no_two_leaders() {
    use brh_tests::replica_drill::{run, ReplicaDrillOpts, REPLICA_DRILL_KINDS};
    let dir = scratch("replica-drill");
    let o = ReplicaDrillOpts {
        agents: 3,
        faults: 12,
        seed: 7,
        ..ReplicaDrillOpts::long()
    };
    let r = run(&dir, &o, |p| eprintln!("replica drill: {p}"));
    eprintln!("{r:?}");
    assert_eq!(r.faults.values().sum::<u64>(), 12);
    for k in REPLICA_DRILL_KINDS {
        assert!(r.faults[k] >= 1, "{k} never injected: {r:?}");
    }
    assert!(r.intervals >= 1, "nobody ever led: {r:?}");
}
