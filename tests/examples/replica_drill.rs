//! Fault drills on forge replicas over a 3-member etcd cluster (`tests/src/replica_drill.rs`):
//! `cargo run -p brh-tests --example replica_drill -- [--faults 1000] [--agents 3..5]
//! [--seed 1] [--every-ms 1500] [--profile fast|default] [--etcd-ttl S]`. Needs the debug
//! binaries (`cargo build -p brh-cli -p forge-worker --bins`) and etcd
//! (`scripts/setup-etcd.sh`). Prints progress, the count per fault kind, the takeover times
//! (a fault on the active replica → another one serving), the term changes and demotions; a
//! violation panics with both intervals and exits non-zero.
use std::time::Duration;

use brh_tests::federation::scratch;
use brh_tests::replica_drill::{run, ReplicaDrillOpts, REPLICA_DRILL_KINDS};

const USAGE: &str = "usage: replica_drill [--faults N] [--agents 3..5] [--seed S] \
                     [--every-ms MS>=200] [--profile fast|default] [--etcd-ttl 1..5]";

fn main() {
    let mut o = ReplicaDrillOpts::long();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        let n = v.parse::<u64>().ok();
        match (a.as_str(), v.as_str(), n) {
            ("--faults", _, Some(v)) => o.faults = v,
            ("--agents", _, Some(v)) if (3..=5).contains(&v) => o.agents = v as usize,
            ("--seed", _, Some(v)) => o.seed = v,
            ("--every-ms", _, Some(v)) if v >= 200 => o.every = Duration::from_millis(v),
            ("--profile", "fast", _) => o.timing = (1_000, 3_000),
            ("--profile", "default", _) => o.timing = (5_000, 15_000),
            ("--etcd-ttl", _, Some(v)) if (1..=5).contains(&v) => o.etcd_ttl_s = v,
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let dir = scratch("replica-drill-cmd");
    eprintln!("replica drill: {o:?} in {}", dir.display());
    let r = run(&dir, &o, |p| eprintln!("replica drill: {p}"));
    println!("| fault | count |");
    println!("|---|---:|");
    for k in REPLICA_DRILL_KINDS {
        println!("| {k} | {} |", r.faults[k]);
    }
    let mut t = r.takeovers_ms.clone();
    t.sort_unstable();
    let pct = |p: f64| brh_tests::stats::percentile(&t, p);
    println!(
        "\n3 etcd members, 3 replicas, {} agents, heartbeat {} ms / lease {} ms, etcd lease {} s: \
         {} faults in {:.0} s; takeovers {} (p50 {:?} ms, p99 {:?} ms, max {:?} ms); {} \
         leadership intervals checked, final term {}, {} demotions; no overlap",
        o.agents,
        o.timing.0,
        o.timing.1,
        o.etcd_ttl_s,
        r.faults.values().sum::<u64>(),
        r.elapsed.as_secs_f64(),
        t.len(),
        pct(50.0),
        pct(99.0),
        t.last(),
        r.intervals,
        r.terms,
        r.demotions
    );
}
