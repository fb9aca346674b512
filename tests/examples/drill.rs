//! Fault drills on real processes (issue 9): `cargo run -p brh-tests --example drill --
//! [--faults 1000] [--agents 5] [--seed 1] [--every-ms 400]`. Needs the debug binaries
//! (`cargo build --workspace --bins`). Prints progress, the count per fault kind, the number
//! of leadership intervals checked and the final term; a violation panics with both
//! intervals and exits non-zero.
use std::time::Duration;

use brh_tests::drill::{run, DrillOpts, DRILL_KINDS};
use brh_tests::federation::scratch;

fn main() {
    let mut o = DrillOpts {
        agents: 5,
        faults: 1_000,
        seed: 1,
        every: Duration::from_millis(400),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().and_then(|v| v.parse::<u64>().ok());
        match (a.as_str(), v) {
            ("--faults", Some(v)) => o.faults = v,
            ("--agents", Some(v)) if (3..=5).contains(&v) => o.agents = v as usize,
            ("--seed", Some(v)) => o.seed = v,
            ("--every-ms", Some(v)) if v >= 50 => o.every = Duration::from_millis(v),
            _ => {
                eprintln!(
                    "usage: drill [--faults N] [--agents 3..5] [--seed S] [--every-ms MS>=50]"
                );
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
        "\n{} faults in {:.0} s, {} leadership intervals checked, final term {}, no overlap",
        r.faults.values().sum::<u64>(),
        r.elapsed.as_secs_f64(),
        r.intervals,
        r.terms
    );
}
