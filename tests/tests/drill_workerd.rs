//! A short fault drill against the built Worker in workerd, Durable Object mode (the long one:
//! `cargo run -p brh-tests --example drill -- --forge durable-object --faults 1000`): 3 agents,
//! overlapping kill -9, SIGSTOP past the lease, partitions, `kill -9` of workerd itself with a
//! restart from its persisted register, and skewed restarts; the overlap checker over every
//! incarnation's leadership log. Needs node_modules (scripts/setup-node.sh) and the Worker
//! bundle (scripts/build-worker.sh), so scripts/test.sh runs it after the end-to-end step.
use std::time::Duration;

use brh_tests::drill::{run, DrillForge, DrillOpts};
use brh_tests::federation::scratch;

#[test]
fn a_short_durable_object_drill_finds_no_two_leaders() {
    let dir = scratch("drill-workerd");
    let r = run(
        &dir,
        &DrillOpts {
            agents: 3,
            faults: 20,
            seed: 21,
            every: Duration::from_millis(500),
            forge: DrillForge::DurableObject,
            timing: (1_000, 3_000),
        },
        |p| eprintln!("drill: {p}"),
    );
    eprintln!("{r:?}");
    assert_eq!(r.faults.values().sum::<u64>(), 20);
    assert!(r.intervals >= 1, "nobody ever led: {r:?}");
}
