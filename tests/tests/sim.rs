//! The deterministic simulation, bounded for the test suite: ~10⁴ injected faults per timing
//! profile, fixed seeds (a failure prints its seed and trace and replays exactly). The soak
//! (≥ 10⁶ faults) is `cargo run --release -p brh-tests --example sim_soak`.
use brh_tests::sim::{profile, Sim, ACTION_KINDS};

fn run(profile_name: &str, seeds: std::ops::Range<u64>, faults_per_seed: u64) {
    run_with(profile_name, seeds, faults_per_seed, false)
}

fn run_with(profile_name: &str, seeds: std::ops::Range<u64>, faults_per_seed: u64, replicas: bool) {
    let timing = profile(profile_name);
    let mut total = 0;
    let mut kinds = std::collections::BTreeMap::new();
    let mut revoked_leaders = 0;
    let mut replica_counts = (0, 0, 0);
    let mut actions: std::collections::BTreeMap<&str, u64> =
        ACTION_KINDS.iter().map(|k| (*k, 0)).collect();
    for seed in seeds {
        let mut sim = Sim::new(seed, timing, 3 + (seed % 3) as usize);
        if replicas {
            sim = sim.with_replicas();
        }
        if let Err(v) = sim.run(faults_per_seed, u64::MAX) {
            panic!("{profile_name}: {v}");
        }
        assert!(sim.promotions > 0, "seed {seed}: nobody ever led");
        total += sim.total_faults();
        let (a, b, c) = sim.replica_counts();
        replica_counts = (
            replica_counts.0 + a,
            replica_counts.1 + b,
            replica_counts.2 + c,
        );
        revoked_leaders += sim.revoked_leaders;
        for (k, n) in &sim.faults {
            *kinds.entry(*k).or_insert(0u64) += n;
        }
        for (k, n) in &sim.actions {
            *actions.get_mut(k).unwrap() += n;
        }
    }
    // Every operator action happened, and each way a switchover ends (an action that never
    // happens proves nothing). A resign given up (four attempts lost, or the budget spent) is
    // rare and not required.
    for (k, n) in &actions {
        assert!(*n > 0 || *k == "resign-abandoned", "{profile_name}: no {k}");
    }
    // Revocations were exercised, the leader's included (a fault that never fires proves
    // nothing).
    assert!(kinds["revoke"] > 0, "{profile_name}: no revocation");
    if replicas {
        for k in [
            "replica-kill",
            "replica-pause",
            "replica-cut",
            "store-outage",
        ] {
            assert!(kinds[k] > 0, "{profile_name}: no {k}");
        }
        assert_eq!(
            kinds["forge-restart"], 0,
            "replicas replace the single forge's restarts"
        );
        eprintln!(
            "{profile_name}: replica failovers: {} kill, {} pause, {} cut, {} store outage; {} \
             takeovers; the zombie answered {} requests, {} after the takeover",
            kinds["replica-kill"],
            kinds["replica-pause"],
            kinds["replica-cut"],
            kinds["store-outage"],
            replica_counts.0,
            replica_counts.1,
            replica_counts.2
        );
        assert!(
            replica_counts.1 > 0,
            "{profile_name}: the zombie never answered"
        );
    }
    assert!(
        revoked_leaders > 0,
        "{profile_name}: no leader was ever revoked"
    );
    eprintln!(
        "{profile_name}: {total} faults ({} revocations, {revoked_leaders} of the leader), no violation",
        kinds["revoke"]
    );
    let a = |k: &str| actions[k];
    eprintln!(
        "{profile_name}: {} shutdowns ({} resigns, {} accepted, {} abandoned; {} farewells), \
         {} switchovers ({} named, {} to the best, {} to a dying node, {} at a grant; {} handed, {} refused, \
         {} failed)",
        a("shutdown"),
        a("resign"),
        a("resign-accepted"),
        a("resign-abandoned"),
        a("farewell"),
        a("switchover"),
        a("switchover-named"),
        a("switchover-best"),
        a("switchover-to-dying"),
        a("switchover-at-grant"),
        a("switchover-handed"),
        a("switchover-refused"),
        a("switchover-failed"),
    );
}

#[test]
fn default_profile() {
    run("default", 0..4, 2_500);
}

#[test]
fn fast_profile() {
    run("fast", 100..104, 2_500);
}

#[test]
fn subsecond_profile() {
    // Seeds 1..5: seed 1 is where the bounded run meets the on-path attacker's relabelled
    // push (`tamper-basis`) soonest at this profile (scripts/sim-mutations.sh).
    run("subsecond", 1..5, 2_500);
}

/// Forge replicas over a store with leases (docs/design.md §12): failovers of the active
/// replica — killed, paused into a zombie that resumes, cut off from the store, the store
/// out of reach — in place of the single forge's restarts, under every other fault.
#[test]
fn forge_replicas_default_profile() {
    run_with("default", 200..204, 2_500, true);
}

#[test]
fn forge_replicas_fast_profile() {
    run_with("fast", 300..304, 2_500, true);
}

#[test]
fn a_seed_replays_exactly() {
    let t = profile("fast");
    let mut a = Sim::new(7, t, 4);
    let mut b = Sim::new(7, t, 4);
    a.run(1_000, u64::MAX).unwrap();
    b.run(1_000, u64::MAX).unwrap();
    assert_eq!(a.summary(), b.summary());
    assert_eq!(a.faults, b.faults);
    assert_eq!(a.actions, b.actions);
}
