//! A short fault drill on real processes (the long one: `cargo run -p brh-tests --example
//! drill -- --faults 1000`): 3 agents and the native forge, overlapping kill -9, SIGSTOP past
//! the lease, partitions, forge restarts and skewed restarts; the overlap checker over every
//! incarnation's leadership log.
use std::time::Duration;

use brh_tests::drill::{run, DrillOpts};
use brh_tests::federation::scratch;

#[test]
fn a_short_drill_finds_no_two_leaders() {
    let dir = scratch("drill");
    let r = run(
        &dir,
        &DrillOpts {
            agents: 3,
            faults: 20,
            seed: 11,
            every: Duration::from_millis(400),
        },
        |p| eprintln!("drill: {p}"),
    );
    eprintln!("{r:?}");
    assert_eq!(r.faults.values().sum::<u64>(), 20);
    assert!(r.intervals >= 1, "nobody ever led: {r:?}");
}
