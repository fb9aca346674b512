//! Failover measurements for the closing note (never assertions in tests).
//!
//! `cargo run --release -p brh-tests --example bench_failover -- [RUNS]` (or
//! scripts/bench-failover.sh). For each timing profile it starts a fresh forge and three
//! agents per run and measures, from the agents' own leadership logs:
//! - unplanned failover: `kill -9` of the leader at a random point of its heartbeat cycle →
//!   the next leader's PROMOTE; and, split out, the lease's expiry at the forge → PROMOTE;
//! - planned handover: SIGTERM of the leader → the next leader's PROMOTE.
//!
//! Then it reports an idle agent's resident memory and CPU use.
use std::time::Duration;

use brh_tests::bench::{leader_of, promoted, rand_below, sigterm_to_promote, three_agents};
use brh_tests::federation::*;
use brh_tests::stats::median_worst;

struct Profile {
    name: &'static str,
    forge: &'static str,
    hb: u64,
    ttl: u64,
}

fn start(profile: &Profile, tag: &str) -> (std::path::PathBuf, Forge, Vec<Agent>) {
    let dir = scratch(tag);
    let seal = fresh_seal();
    let forge = Forge::start_profile(&dir, &seal, None, 30_000, profile.forge);
    let agents = three_agents(&dir, &seal, forge.addr, (profile.hb, profile.ttl));
    (dir, forge, agents)
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let profiles = [
        Profile {
            name: "fast (1 s / 3 s)",
            forge: "fast",
            hb: 1000,
            ttl: 3000,
        },
        Profile {
            name: "default (5 s / 15 s)",
            forge: "default",
            hb: 5000,
            ttl: 15_000,
        },
    ];
    let mut rows = Vec::new();
    // `bench_failover 0` measures only the idle footprint.
    for p in profiles.iter().filter(|_| runs > 0) {
        let (mut kill, mut gap, mut term_) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..runs {
            let (_d, forge, mut agents) = start(p, "bench-kill");
            let (li, term) = leader_of(&agents);
            // Steady state, then a random phase within the heartbeat cycle.
            std::thread::sleep(Duration::from_millis(p.hb + rand_below(p.hb)));
            let t_kill = agents[li].kill9();
            std::thread::sleep(Duration::from_millis(100));
            let expires = forge.get("/federation/leader?env=dev")["lease"]["expires_at_ms"]
                .as_u64()
                .unwrap_or(0);
            let t_prom = promoted(&agents, li, term + 1, Duration::from_millis(3 * p.ttl));
            kill.push(t_prom - t_kill);
            gap.push(t_prom.saturating_sub(expires));
            eprintln!(
                "[{}] kill run {r}: {} ms (expiry→promote {} ms)",
                p.name,
                t_prom - t_kill,
                t_prom.saturating_sub(expires)
            );
        }
        for r in 0..runs {
            let (_d, _forge, mut agents) = start(p, "bench-term");
            let ms = sigterm_to_promote(&mut agents, p.hb, p.ttl);
            term_.push(ms);
            eprintln!("[{}] sigterm run {r}: {ms} ms", p.name);
        }
        // runs > 0 here, so every list has a median.
        let (km, kw) = median_worst(&kill).unwrap();
        let (gm, gw) = median_worst(&gap).unwrap();
        let (tm, tw) = median_worst(&term_).unwrap();
        rows.push((p.name, km, kw, gm, gw, tm, tw));
    }

    // Idle footprint of one agent (fast profile: the busiest steady state).
    let (_d, _forge, agents) = start(&profiles[0], "bench-idle");
    let _ = leader_of(&agents);
    std::thread::sleep(Duration::from_secs(3));
    let pid = agents[0].pid();
    // Nanoseconds on CPU, summed over the process's threads (/proc/<pid>/task/*/schedstat):
    // finer than the 10 ms ticks of /proc/<pid>/stat, which an idle agent barely uses.
    let cpu = |pid: u32| -> u64 {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    };
    let (c0, t0) = (cpu(pid), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(30));
    let (c1, el) = (cpu(pid), t0.elapsed().as_secs_f64());
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap()
        .to_string();

    println!();
    println!("failover over {runs} runs per cell (ms; median / worst)");
    println!("| profile | kill -9 → promote | lease expiry → promote | SIGTERM → promote |");
    println!("|---|---|---|---|");
    for (n, km, kw, gm, gw, tm, tw) in rows {
        println!("| {n} | {km} / {kw} | {gm} / {gw} | {tm} / {tw} |");
    }
    println!();
    println!(
        "idle agent (fast profile, 30 s): RSS {} ; CPU {:.3} % of one core",
        rss.split_whitespace().skip(1).collect::<Vec<_>>().join(" "),
        (c1 - c0) as f64 / 1e9 / el * 100.0
    );
}
