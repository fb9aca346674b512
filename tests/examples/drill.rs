//! Fault drills on real processes (`tests/src/drill.rs`): `cargo run -p brh-tests --example drill
//! -- [--faults 1000] [--agents 5] [--seed 1] [--every-ms 400] [--forge native|durable-object]
//! [--profile fast|subsecond]`. Needs the debug binaries (`cargo build --workspace --bins`);
//! `--forge durable-object` also needs `scripts/setup-node.sh` and `scripts/build-worker.sh`.
//! Prints progress, the count per fault kind, the number of leadership intervals checked and the
//! final term; a violation panics with both intervals and exits non-zero.
use std::time::Duration;

use brh_tests::drill::{run, DrillForge, DrillOpts, DRILL_KINDS};
use brh_tests::federation::scratch;

const USAGE: &str = "usage: drill [--faults N] [--agents 3..5] [--seed S] [--every-ms MS>=50] \
                     [--forge native|durable-object] [--profile fast|subsecond]";

fn main() {
    let mut o = DrillOpts::long();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        let n = v.parse::<u64>().ok();
        match (a.as_str(), v.as_str(), n) {
            ("--faults", _, Some(v)) => o.faults = v,
            ("--agents", _, Some(v)) if (3..=5).contains(&v) => o.agents = v as usize,
            ("--seed", _, Some(v)) => o.seed = v,
            ("--every-ms", _, Some(v)) if v >= 50 => o.every = Duration::from_millis(v),
            ("--forge", "native", _) => o.forge = DrillForge::Native,
            ("--forge", "durable-object", _) => o.forge = DrillForge::DurableObject,
            ("--profile", "fast", _) => o.timing = (1_000, 3_000),
            ("--profile", "subsecond", _) => o.timing = (200, 1_000),
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let dir = scratch("drill-cmd");
    eprintln!("drill: {o:?} in {}", dir.display());
    let r = run(&dir, &o, |p| eprintln!("drill: {p}"));
    println!("| fault | count |");
    println!("|---|---:|");
    for k in DRILL_KINDS {
        println!("| {k} | {} |", r.faults[k]);
    }
    println!(
        "\n{:?} forge, heartbeat {} ms / lease {} ms: {} faults in {:.0} s, {} leadership \
         intervals checked, final term {}, no overlap",
        o.forge,
        o.timing.0,
        o.timing.1,
        r.faults.values().sum::<u64>(),
        r.elapsed.as_secs_f64(),
        r.intervals,
        r.terms
    );
}
