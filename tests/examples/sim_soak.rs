//! The simulation soak (docs/design.md §4.5): seeds in turn until at least `--faults` faults
//! (default 1,000,000) were injected per profile; prints the count per fault kind, the simulated
//! time covered, the seeds, promotions, the worst recovery after the last fault, and the
//! operators' actions (graceful shutdowns, resigns, farewell beats, switchovers) per kind.
//!
//!     cargo run --release -p brh-tests --example sim_soak -- [--faults N] [--profile P]... [--seed S] [--replicas]
//!
//! `--replicas`: forge replicas over a store with leases (`Sim::with_replicas`) in place of
//! the single forge's restarts; the table then also counts takeovers and the zombie's answers.
//!
//! A violation prints the seed and the last events and exits 1; `--seed S --verbose` replays
//! that seed alone with every event printed.
use std::collections::BTreeMap;
use std::time::Instant;

use brh_tests::sim::{profile, Sim, ACTION_KINDS, FAULT_KINDS};

fn main() {
    let mut faults_goal = 1_000_000u64;
    let mut profiles = Vec::new();
    let mut only_seed = None;
    let mut verbose = false;
    let mut replicas = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--faults" => {
                faults_goal = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--faults N")
            }
            "--profile" => profiles.push(args.next().expect("--profile default|fast|subsecond")),
            "--seed" => only_seed = args.next().and_then(|v| v.parse().ok()),
            "--verbose" => verbose = true,
            "--replicas" => replicas = true,
            _ => {
                eprintln!("usage: sim_soak [--faults N] [--profile default|fast|subsecond]... [--seed S] [--verbose] [--replicas]");
                std::process::exit(2);
            }
        }
    }
    if profiles.is_empty() {
        profiles = vec!["default".into(), "fast".into(), "subsecond".into()];
    }
    let per_seed = 20_000;
    println!(
        "| profile | faults | simulated time | seeds | promotions (by push) | pushes applied | consensus reports on the stream | worst recovery | wall time |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|");
    let mut kinds_all: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
    let mut actions_all: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
    for p in &profiles {
        let timing = profile(p);
        let (mut faults, mut sim_ms, mut promotions, mut worst) = (0u64, 0u64, 0u64, 0u64);
        let (mut by_push, mut pushes, mut reports) = (0u64, 0u64, 0u64);
        let mut replica_counts = (0u64, 0u64, 0u64);
        let mut kinds: BTreeMap<&str, u64> = FAULT_KINDS.iter().map(|k| (*k, 0)).collect();
        let mut actions: BTreeMap<&str, u64> = ACTION_KINDS.iter().map(|k| (*k, 0)).collect();
        let start = Instant::now();
        let mut seed = only_seed.unwrap_or(1);
        let first = seed;
        loop {
            let mut sim = Sim::new(seed, timing, 3 + (seed % 3) as usize);
            if replicas {
                sim = sim.with_replicas();
            }
            sim.verbose = verbose;
            let goal = if only_seed.is_some() {
                faults_goal
            } else {
                per_seed.min(faults_goal)
            };
            if let Err(v) = sim.run(goal, u64::MAX) {
                eprintln!("VIOLATION ({p}): {v}");
                std::process::exit(1);
            }
            faults += sim.total_faults();
            let (takeovers, answers, late) = sim.replica_counts();
            replica_counts.0 += takeovers;
            replica_counts.1 += answers;
            replica_counts.2 += late;
            sim_ms += sim.t;
            promotions += sim.promotions;
            by_push += sim.promotions_by_push;
            pushes += sim.pushes_applied;
            reports += sim.reports;
            worst = worst.max(sim.worst_recovery_ms);
            for (k, v) in &sim.faults {
                *kinds.get_mut(k).unwrap() += v;
            }
            for (k, v) in &sim.actions {
                *actions.entry(k).or_default() += v;
            }
            if only_seed.is_some() || faults >= faults_goal {
                break;
            }
            seed += 1;
        }
        println!(
            "| {p} ({}/{} ms) | {faults} | {:.1} h | {first}..={seed} | {promotions} ({by_push}) | {pushes} | {reports} | {worst} ms | {:.0} s |",
            timing.heartbeat_interval_ms,
            timing.lease_ttl_ms,
            sim_ms as f64 / 3.6e6,
            start.elapsed().as_secs_f64()
        );
        if replicas {
            println!(
                "|  | replicas: {} takeovers; the zombie answered {} requests, {} of them after \
                 the takeover (must be 0) | | | | | | | |",
                replica_counts.0, replica_counts.1, replica_counts.2
            );
        }
        kinds_all.insert(p.clone(), kinds);
        actions_all.insert(p.clone(), actions);
    }
    table("fault kind", &profiles, &FAULT_KINDS, &kinds_all);
    table("operator action", &profiles, &ACTION_KINDS, &actions_all);
}

/// A count per kind and profile, as a Markdown table.
fn table(
    title: &str,
    profiles: &[String],
    kinds: &[&str],
    counts: &BTreeMap<String, BTreeMap<&str, u64>>,
) {
    println!();
    print!("| {title} |");
    for p in profiles {
        print!(" {p} |");
    }
    println!();
    print!("|---|");
    for _ in profiles {
        print!("---:|");
    }
    println!();
    for k in kinds {
        print!("| {k} |");
        for p in profiles {
            print!(" {} |", counts[p].get(k).copied().unwrap_or(0));
        }
        println!();
    }
}
