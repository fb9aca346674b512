//! Short fault drills on real processes (the long ones: `cargo run -p brh-tests --example
//! drill -- --faults 1000 [--profile subsecond] [--forge durable-object]`): 3 agents and the
//! native forge, overlapping kill -9, SIGSTOP past the lease, partitions, forge restarts and
//! skewed restarts; the overlap checker over every incarnation's leadership log. The
//! Durable Object drill is its own CI step (`--test drill_workerd`: it needs the Worker built).
use std::time::Duration;

use brh_tests::drill::{run, DrillForge, DrillOpts};
use brh_tests::federation::scratch;

fn drill(name: &str, timing: (u64, u64), every_ms: u64, seed: u64) {
    let dir = scratch(name);
    let r = run(
        &dir,
        &DrillOpts {
            agents: 3,
            faults: 20,
            seed,
            every: Duration::from_millis(every_ms),
            forge: DrillForge::Native,
            timing,
        },
        |p| eprintln!("drill: {p}"),
    );
    eprintln!("{r:?}");
    assert_eq!(r.faults.values().sum::<u64>(), 20);
    assert!(r.intervals >= 1, "nobody ever led: {r:?}");
}

#[test]
fn a_short_drill_finds_no_two_leaders() {
    drill("drill", (1_000, 3_000), 400, 11);
}

/// The sub-second profile (heartbeat 200 ms, lease 1 s) under the same faults, on loopback.
#[test]
fn a_short_subsecond_drill_finds_no_two_leaders() {
    drill("drill-subsecond", (200, 1_000), 150, 12);
}
