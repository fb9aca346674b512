//! Real processes: `BRH_LOG_FORMAT=json` gives one JSON object per line on both binaries, with
//! the agent's role changes carrying `node`, `env` and `term` as fields; a bad value stops
//! start-up with one line.
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use brh_tests::federation::*;
use serde_json::Value;

const JSON: (&str, &str) = ("BRH_LOG_FORMAT", "json");

/// Every captured line as JSON: a line that is not one object fails the test.
fn objects(lines: &Mutex<Vec<String>>, who: &str) -> Vec<Value> {
    let lines = lines.lock().unwrap().clone();
    lines
        .iter()
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(v @ Value::Object(_)) => v,
            _ => panic!("{who}: not a JSON object per line: {l:?}"),
        })
        .collect()
}

/// The first line of `who` whose message starts with `prefix`, waiting for it.
fn line(lines: &Mutex<Vec<String>>, who: &str, prefix: &str) -> Value {
    wait_until(Duration::from_secs(10), || {
        objects(lines, who)
            .into_iter()
            .find(|o| o["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
    })
    .unwrap_or_else(|| panic!("{who}: no {prefix:?} line: {:?}", lines.lock().unwrap()))
}

fn assert_role_fields(o: &Value, node: &str, term: u64) {
    assert_eq!(o["node"], node, "{o}");
    assert_eq!(o["env"], "dev", "{o}");
    assert_eq!(o["term"].as_u64(), Some(term), "{o}");
    assert!(o["timestamp"].is_string() && o["level"].is_string(), "{o}");
}

#[test]
fn json_logs_carry_node_env_and_term_on_role_changes() {
    let dir = scratch("log-json");
    let seal = fresh_seal();
    let forge = Forge::start_with_vars(&dir, &seal, None, 30_000, &["--profile", "fast"], &[JSON]);
    let opts = AgentOpts {
        vars: vec![(JSON.0.into(), JSON.1.into())],
        ..AgentOpts::default()
    };
    let mut agents: Vec<Agent> = ["n1", "n2"]
        .iter()
        .map(|n| Agent::start(&dir, n, &seal, forge.addr, opts.clone()))
        .collect();
    let refs: Vec<&Agent> = agents.iter().collect();
    let (leader, term) =
        wait_until(Duration::from_secs(15), || agreed_leader(&refs)).expect("no leader");
    drop(refs);
    let li = agents.iter().position(|a| a.node == leader).unwrap();
    let wi = 1 - li;
    let witness = agents[wi].node.clone();

    let o = line(&forge.lines, "forge", "forge listening on http://");
    assert_eq!(o["level"], "INFO", "{o}");
    let o = line(&agents[li].lines, &leader, "[CN] PROMOTE → I am leader");
    assert_role_fields(&o, &leader, term);

    // A planned step-down: the leader demotes and resigns, the witness takes the next term.
    assert!(agents[li].terminate(), "{leader} did not exit cleanly");
    let o = line(&agents[li].lines, &leader, "[CN] DEMOTE → I am witness");
    assert_role_fields(&o, &leader, term);
    let o = line(
        &agents[li].lines,
        &leader,
        &format!("[CN] {leader} resigned"),
    );
    assert_role_fields(&o, &leader, term);
    let o = line(&agents[wi].lines, &witness, "[CN] PROMOTE → I am leader");
    let next = o["term"].as_u64().expect("term");
    assert!(next > term, "{o}");
    assert_role_fields(&o, &witness, next);

    finish_and_check(&mut agents);
    for a in &agents {
        objects(&a.lines, &a.node);
    }
    objects(&forge.lines, "forge");
}

#[test]
fn a_bad_log_format_stops_either_binary_with_one_line() {
    type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);
    let cases: [Case; 3] = [
        ("brh-agent", &["run"], &[("BRH_LOG_FORMAT", "xml")]),
        ("forge", &["serve"], &[("BRH_LOG_FORMAT", "xml")]),
        ("forge", &["serve", "--log-format", "xml"], &[]),
    ];
    for (name, args, vars) in cases {
        let out = Command::new(bin(name))
            .args(args)
            .env_remove("BRH_LOG_FORMAT")
            .env_remove("DOMINION_SEAL")
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{name} {args:?}: one line: {err}");
        assert!(
            err.contains("BRH_LOG_FORMAT") && err.contains("\"xml\"") && err.contains("json"),
            "{name} {args:?}: {err}"
        );
    }
}
