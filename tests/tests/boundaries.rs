//! The crate boundaries ARCHITECTURE.md states, checked on the resolved dependency graph
//! (`cargo metadata`), every kind of dependency included (normal, build, dev): a crate cannot
//! import what it does not depend on, so these rules hold for the source too.
//!
//! - `brh-shared` knows nothing about any other crate of the workspace.
//! - `brh-http-server` knows nothing about the forge, the agent or the binary.
//! - `brh-agent` (the agent library) knows nothing about the forge.
//! - `forge-worker` knows nothing about the agent or the binary.
//! - Only `brh-cli` (the `brh-agent` binary, for `up`) and `brh-tests` bring the two together.
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Workspace crate name → the workspace crates it depends on, directly or not.
fn workspace_closure() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .map(|v| v.as_str().expect("member id"))
        .collect();
    let name_of: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let direct: BTreeMap<&str, Vec<&str>> = meta["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .map(|n| {
            let deps = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["pkg"].as_str().unwrap())
                .collect();
            (n["id"].as_str().unwrap(), deps)
        })
        .collect();
    let mut closure = BTreeMap::new();
    for &m in &members {
        let mut seen = BTreeSet::new();
        let mut stack = vec![m];
        while let Some(id) = stack.pop() {
            for &d in direct.get(id).map(Vec::as_slice).unwrap_or(&[]) {
                if seen.insert(d) {
                    stack.push(d);
                }
            }
        }
        let names = seen
            .into_iter()
            .filter(|id| members.contains(id))
            .map(|id| name_of[id].to_string())
            .collect();
        closure.insert(name_of[m].to_string(), names);
    }
    closure
}

fn assert_knows_nothing_of(
    graph: &BTreeMap<String, BTreeSet<String>>,
    krate: &str,
    forbidden: &[&str],
) {
    let deps = graph
        .get(krate)
        .unwrap_or_else(|| panic!("{krate} is not a workspace member"));
    let found: Vec<&&str> = forbidden.iter().filter(|f| deps.contains(**f)).collect();
    assert!(
        found.is_empty(),
        "{krate} must know nothing about {found:?} (ARCHITECTURE.md, crate boundaries); it \
         depends on {deps:?}"
    );
}

#[test]
fn crates_know_nothing_of_each_other() {
    let g = workspace_closure();
    let all = [
        "brh-shared",
        "brh-http-server",
        "forge-worker",
        "brh-agent",
        "brh-cli",
        "brh-tests",
    ];
    assert_knows_nothing_of(&g, "brh-shared", &all);
    assert_knows_nothing_of(
        &g,
        "brh-http-server",
        &["forge-worker", "brh-agent", "brh-cli", "brh-tests"],
    );
    assert_knows_nothing_of(&g, "brh-agent", &["forge-worker", "brh-cli", "brh-tests"]);
    assert_knows_nothing_of(&g, "forge-worker", &["brh-agent", "brh-cli", "brh-tests"]);
    assert_knows_nothing_of(&g, "brh-cli", &["brh-tests"]);
    // The two sides meet only where a process runs both.
    let both: Vec<&String> = g
        .iter()
        .filter(|(_, d)| d.contains("brh-agent") && d.contains("forge-worker"))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        both,
        ["brh-cli", "brh-tests"],
        "who links agent and forge together"
    );
}
