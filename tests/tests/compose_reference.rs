//! `brh-agent manifest check FILE --json` against Compose's own reference implementation:
//! for every file BRH loads — the fixtures in `tests/data/compose-reference/` (every key BRH
//! runs) and the files of the corpus in `tests/data/compose/` that load — the model BRH will
//! run must be what `docker compose config --format json` (Compose v2, unpacked by
//! `scripts/dockerd.sh`) prints, key for key. The normalization is written out below and is
//! the whole list of differences allowed: both sides drop null and empty values, an explicit
//! `deploy: { replicas: 1 }` equals no `deploy`, and a network's `driver: bridge` equals no
//! driver (BRH runs bridge networks only).
use std::path::{Path, PathBuf};

use brh_tests::federation::{agent_cli, compose_v2, output_text};
use serde_json::Value;

fn normalize(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, normalize(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        v => v,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The two equivalences of the module doc, applied to one side's model.
fn equivalences(mut model: Value) -> Value {
    if let Some(services) = model["services"].as_object_mut() {
        for svc in services.values_mut() {
            if svc["deploy"] == serde_json::json!({ "replicas": 1 }) {
                svc.as_object_mut().unwrap().remove("deploy");
            }
        }
    }
    if let Some(networks) = model["networks"].as_object_mut() {
        for net in networks.values_mut() {
            if net["driver"] == "bridge" {
                net.as_object_mut().unwrap().remove("driver");
            }
        }
    }
    model
}

/// Every path where the two models differ, as `path: compose … | brh …`.
fn differences(path: &str, compose: &Value, brh: &Value, out: &mut Vec<String>) {
    match (compose, brh) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = format!("{path}.{k}");
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => differences(&p, x, y, out),
                    (Some(x), None) => out.push(format!("{p}: only Compose has {x}")),
                    (None, Some(y)) => out.push(format!("{p}: only BRH has {y}")),
                    (None, None) => {}
                }
            }
        }
        (x, y) if x != y => out.push(format!("{path}: Compose {x} | BRH {y}")),
        _ => {}
    }
}

fn model_of_compose(file: &Path) -> Value {
    let out = std::process::Command::new(compose_v2())
        .args(["-f", file.to_str().unwrap(), "config", "--format", "json"])
        .env_remove("COMPOSE_PROFILES")
        .env_remove("COMPOSE_PROJECT_NAME")
        .output()
        .expect("Compose v2 runs");
    assert!(
        out.status.success(),
        "Compose refuses {}: {}",
        file.display(),
        output_text(&out)
    );
    serde_json::from_slice(&out.stdout).expect("Compose prints JSON")
}

/// BRH's model, or `None` when BRH refuses the file.
fn model_of_brh(file: &Path) -> Option<Value> {
    let out = agent_cli(
        &["manifest", "check", file.to_str().unwrap(), "--json"],
        &[],
    );
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("brh-agent prints JSON"))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    v.sort();
    v
}

#[test]
fn brh_reads_every_file_it_loads_as_compose_v2_does() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let fixtures = yaml_files(&data.join("compose-reference"));
    assert!(fixtures.len() >= 2, "{fixtures:?}");
    let mut compared = 0;
    let mut failures = Vec::new();
    for file in fixtures.iter().chain(&yaml_files(&data.join("compose"))) {
        let Some(brh) = model_of_brh(file) else {
            // The corpus's refused files are checked by compose_corpus.rs; a fixture must load.
            assert!(
                !fixtures.contains(file),
                "BRH refuses the fixture {}",
                file.display()
            );
            continue;
        };
        let compose = equivalences(normalize(model_of_compose(file)));
        let brh = equivalences(normalize(brh));
        let mut diffs = Vec::new();
        differences("", &compose, &brh, &mut diffs);
        if !diffs.is_empty() {
            failures.push(format!("{}:\n  {}", file.display(), diffs.join("\n  ")));
        }
        compared += 1;
        println!("{}: same model", file.display());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The fixtures and the 4 corpus files that load.
    assert!(compared >= fixtures.len() + 4, "compared {compared}");
}

/// The comparison itself can fail: a model that differs in one value is caught.
#[test]
fn a_different_model_is_caught() {
    let a = normalize(serde_json::json!({ "services": { "web": { "image": "x", "ports": [] } } }));
    let b = normalize(serde_json::json!({ "services": { "web": { "image": "y" } } }));
    let mut diffs = Vec::new();
    differences("", &a, &b, &mut diffs);
    assert_eq!(diffs, [r#".services.web.image: Compose "x" | BRH "y""#]);
}
