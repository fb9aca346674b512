//! Compose files written by others (`tests/data/compose/`, from docker/awesome-compose): each
//! loads, or is refused with one line naming a key that is really in the file; and the table
//! of keys in docs/compose.md says, for every key these files use, whether BRH runs it.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use brh_agent::config::{load_config, ManifestSource};
use brh_agent::containers::compose::SERVICE_KEYS;

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/compose");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "the corpus is missing: {}",
        dir.display()
    );
    files
}

/// The keys a file uses: `top.KEY` and `service.KEY` (extensions left out).
fn keys(path: &Path) -> BTreeSet<String> {
    let doc: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = BTreeSet::new();
    for (k, v) in doc.as_mapping().unwrap() {
        let k = k.as_str().unwrap();
        if k.starts_with("x-") {
            continue;
        }
        out.insert(format!("top.{k}"));
        if k == "services" {
            for svc in v.as_mapping().unwrap().values() {
                for sk in svc.as_mapping().into_iter().flatten().map(|(k, _)| k) {
                    let sk = sk.as_str().unwrap();
                    if !sk.starts_with("x-") {
                        out.insert(format!("service.{sk}"));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_file_loads_or_is_refused_naming_a_key_it_has() {
    let mut loaded = 0;
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for f in corpus() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        match load_config(&f) {
            Ok((_, ManifestSource::Compose(m))) => {
                assert!(!m.services.is_empty(), "{name}: loaded with no service");
                loaded += 1;
                println!("{name}: loads ({} services)", m.services.len());
            }
            Ok(_) => panic!("{name}: not read as a Compose file"),
            Err(e) => {
                let msg = e.message;
                assert_eq!(msg.lines().count(), 1, "{name}: {msg}");
                // `compose: service "web": build: …` or `compose: secrets: …`
                let rest = msg
                    .strip_prefix("compose: ")
                    .unwrap_or_else(|| panic!("{name}: {msg}"));
                let (scope, rest) = match rest.strip_prefix("service \"") {
                    Some(r) => {
                        let (svc, r) = r.split_once("\": ").unwrap();
                        (format!("service {svc}"), r)
                    }
                    None => ("top".to_string(), rest),
                };
                let key = rest.split(':').next().unwrap().to_string();
                let root = key.split('.').next().unwrap();
                let level = if scope == "top" { "top" } else { "service" };
                assert!(
                    keys(&f).contains(&format!("{level}.{root}")),
                    "{name}: refused for {level}.{root}, which it does not use: {msg}"
                );
                println!("{name}: refused — {scope}: {key}");
                *reasons.entry(format!("{level}.{key}")).or_default() += 1;
            }
        }
    }
    println!("loaded {loaded}; refusals by key: {reasons:?}");
}

#[test]
fn the_keys_table_in_docs_covers_every_key_the_corpus_uses() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/compose.md"))
            .unwrap();
    // Rows: | `service.build` | no | … |
    let mut table: BTreeMap<String, String> = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() > 3 && cells[1].starts_with("`") {
            table.insert(cells[1].trim_matches('`').to_string(), cells[2].to_string());
        }
    }
    let used: BTreeSet<String> = corpus().iter().flat_map(|f| keys(f)).collect();
    let runs = |k: &str| -> bool {
        match k.split_once('.') {
            Some(("service", s)) => SERVICE_KEYS.iter().any(|(n, _)| *n == s) || s == "profiles",
            Some(("top", t)) => [
                "services", "name", "volumes", "version", "networks", "secrets", "configs",
            ]
            .contains(&t),
            _ => false,
        }
    };
    for k in &used {
        let row = table
            .get(k)
            .unwrap_or_else(|| panic!("docs/compose.md has no row for {k}"));
        let says = row.starts_with("yes");
        assert_eq!(says, runs(k), "docs/compose.md says {row:?} for {k}");
    }
}
