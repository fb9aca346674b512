//! A Compose file as the manifest: an unmodified `compose.yaml` run on exactly one host.
//!
//! Parsed with `docker-compose-types` (its `norway` backend: the same YAML library as the rest
//! of the agent), after Compose's variable interpolation. What BRH runs, it runs the way
//! `docker compose up` would (project-scoped names, the project's default network where every
//! service answers to its name, Compose's labels next to BRH's). **What BRH does not support is
//! refused, never ignored**: a key that could change what runs stops start-up with one line
//! naming the service, the key and why (`compose: service "db": build: …`). The supported keys
//! are listed in [`SERVICE_KEYS`] and the table in docs/compose.md.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use docker_compose_types as dc;
use serde_norway::Value;

use super::manifest::{parse_port, Manifest, PortMap, Service};
use brh_shared::ids::validate_id;

/// The file names `docker compose` looks for, in its order.
pub const FILE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Service keys BRH runs (and how), in the order of the Compose specification.
pub const SERVICE_KEYS: [(&str, &str); 10] = [
    ("image", "the image to run (required: BRH runs images, not builds)"),
    ("command", "the container's command (a string is split like a shell would)"),
    ("environment", "variables (map or list; a name without a value takes it from the agent's environment)"),
    ("env_file", "files of KEY=VALUE lines, relative to the Compose file"),
    ("ports", "short and long syntax, tcp and udp, one host port per replica"),
    ("volumes", "bind mounts (relative paths from the Compose file) and named volumes declared at the top level"),
    ("labels", "map or list"),
    ("deploy", "replicas only"),
    ("restart", "always / unless-stopped (BRH's recovery restarts what dies)"),
    ("expose", "informational (containers of one network reach each other's ports anyway)"),
];

/// Why a key BRH knows about is refused (the rest: "not supported by BRH yet").
fn refusal(key: &str) -> &'static str {
    match key {
        "build" => "BRH runs images, not builds — build and push the image, then name it in image:",
        "container_name" => {
            "BRH names every replica itself (brh_<env>_<service>_<n>) so a successor can adopt it; remove container_name"
        }
        "network_mode" | "networks" => {
            "BRH runs every service on the project's default network, reachable by its name; other networks are not supported yet"
        }
        "depends_on" | "healthcheck" => {
            "start order and the engine's health checks are not supported yet; remove it, or run this stack with docker compose"
        }
        "privileged" | "cap_add" | "devices" | "pid" | "ipc" | "userns_mode" | "security_opt" => {
            "host privileges are not granted by BRH yet"
        }
        "extends" | "include" => "BRH reads one file: merge it first (docker compose config)",
        "secrets" | "configs" => "file-based secrets and configs are not supported yet",
        _ => "not supported by BRH yet; remove it, or run this stack with docker compose",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("compose: {0}")]
pub struct ComposeError(pub String);

fn service_err(service: &str, key: &str, why: impl std::fmt::Display) -> ComposeError {
    ComposeError(format!("service {service:?}: {key}: {why}"))
}

/// A loaded Compose file: the manifest BRH runs, the project's name and the warnings Compose
/// itself would print (an unset variable, the obsolete `version`).
#[derive(Debug, Clone)]
pub struct ComposeProject {
    pub name: String,
    pub manifest: Manifest,
    pub warnings: Vec<String>,
}

/// Whether `path` names a Compose file (by name: `compose.yaml`, `docker-compose.yml`,
/// `*.compose.yaml`, …) rather than a `bridge.runtime.yaml`.
pub fn is_compose_path(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    FILE_NAMES.contains(&name)
        || [".compose.yaml", ".compose.yml"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// Whether the document reads as a Compose file rather than BRH's own schema: not if it has
/// BRH's `provider:` / `runtime:` or services with BRH's own keys (`env`, `health`,
/// `replicas`); yes if it has a key only Compose has (top-level `version`, `name`, `volumes`,
/// `networks`, …, or a service's `environment`, `build`, `deploy`, …). A file that is valid in
/// both (services with only `image`, `command`, `ports`, `volumes`, `labels`) stays BRH's, as
/// before Compose files were read.
pub fn looks_like_compose(doc: &Value) -> bool {
    if doc.get("provider").is_some() || doc.get("runtime").is_some() {
        return false;
    }
    let services: Vec<&serde_norway::Mapping> = doc
        .get("services")
        .and_then(Value::as_mapping)
        .map(|m| m.values().filter_map(Value::as_mapping).collect())
        .unwrap_or_default();
    let brh_keys = ["env", "health", "replicas"];
    if services
        .iter()
        .any(|s| brh_keys.iter().any(|k| s.contains_key(*k)))
    {
        return false;
    }
    let shared = ["image", "command", "ports", "volumes", "labels"];
    let top_markers = [
        "version", "name", "volumes", "networks", "secrets", "configs", "include",
    ];
    top_markers.iter().any(|k| doc.get(*k).is_some())
        || services.iter().any(|s| {
            s.keys()
                .filter_map(Value::as_str)
                .any(|k| !shared.contains(&k))
        })
}

/// The Compose file of the working directory, as `docker compose` would pick it.
pub fn default_file() -> Option<PathBuf> {
    FILE_NAMES.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Whether the file at `path` (its text parsed as `doc`) is to be read as a Compose file.
pub fn is_compose(path: &Path, doc: &Value) -> bool {
    is_compose_path(path) || looks_like_compose(doc)
}

/// Loads `path` with the agent's environment `vars` (which win over the file's `.env`).
pub fn load(
    path: &Path,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<ComposeProject, ComposeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ComposeError(format!("cannot read {}: {e}", path.display())))?;
    // Absolute: Docker binds need absolute sources, and `./data` is relative to the file.
    let parent = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = match parent {
        Some(d) => d.canonicalize(),
        None => std::env::current_dir(),
    }
    .map_err(|e| {
        ComposeError(format!(
            "cannot resolve the directory of {}: {e}",
            path.display()
        ))
    })?;
    let dot_env = read_env_file(&dir.join(".env")).unwrap_or_default();
    let lookup = |name: &str| vars(name).or_else(|| dot_env.get(name).cloned());
    let default_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "default".into());
    parse(&text, &dir, &default_name, &lookup)
}

/// Parses a Compose document found in `dir` (relative paths resolve there).
pub fn parse(
    text: &str,
    dir: &Path,
    default_name: &str,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<ComposeProject, ComposeError> {
    let mut doc: Value =
        serde_norway::from_str(text).map_err(|e| ComposeError(format!("not valid YAML: {e}")))?;
    doc.apply_merge()
        .map_err(|e| ComposeError(format!("YAML merge keys: {e}")))?;
    let mut warnings = Vec::new();
    interpolate_value(&mut doc, vars, &mut warnings)?;
    let Value::Mapping(top) = &doc else {
        return Err(ComposeError("the file must be a mapping".into()));
    };
    for k in top.keys() {
        let k = k.as_str().unwrap_or("?");
        match k {
            "services" | "name" | "volumes" => {}
            "version" => warnings.push(
                "the top-level `version` is obsolete and ignored (as docker compose does)".into(),
            ),
            // Extensions are ignored by the specification; `x-brh` is BRH's and has no
            // settings yet, so anything in it would be silently dropped: refused.
            "x-brh" if top.get(k).is_some_and(|v| !v.is_null()) => {
                return Err(ComposeError(
                    "x-brh: BRH reads no settings from the Compose file yet".into(),
                ))
            }
            k if k.starts_with("x-") => {}
            "networks" => {
                // Only the implicit default network, declared without options.
                let only_default = top.get(k).and_then(Value::as_mapping).is_some_and(|m| {
                    m.iter().all(|(n, v)| {
                        n.as_str() == Some("default") && v.as_mapping().is_none_or(|o| o.is_empty())
                    })
                });
                if !only_default {
                    return Err(ComposeError(format!("networks: {}", refusal("networks"))));
                }
            }
            other => return Err(ComposeError(format!("{other}: {}", refusal(other)))),
        }
    }
    // Service keys are checked on the document itself, before the typed parse: whatever the
    // parsing crate would skip or default, BRH refuses unless it runs it.
    let services = top.get("services").and_then(Value::as_mapping);
    for (name, svc) in services.into_iter().flatten() {
        let name = name.as_str().unwrap_or("?");
        let Some(svc) = svc.as_mapping() else {
            return Err(service_err(name, "", "must be a mapping"));
        };
        for k in svc.keys() {
            let k = k.as_str().unwrap_or("?");
            if k == "profiles" || k.starts_with("x-") {
                continue;
            }
            if !SERVICE_KEYS.iter().any(|(s, _)| *s == k) {
                return Err(service_err(name, k, refusal(k)));
            }
        }
    }
    let project = match top.get("name") {
        None | Some(Value::Null) => project_name(default_name),
        Some(Value::String(n)) => n.clone(),
        Some(_) => return Err(ComposeError("name: must be a string".into())),
    };
    validate_id(&project).map_err(|e| ComposeError(format!("name: the project name {e}")))?;
    let declared = match top.get("volumes") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => {
            let volumes: dc::TopLevelVolumes = serde_norway::from_value(v.clone())
                .map_err(|e| ComposeError(format!("volumes: {e}")))?;
            declared_volumes(&volumes)?
        }
    };
    let active: Vec<String> = vars("COMPOSE_PROFILES")
        .unwrap_or_default()
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let mut out = Vec::new();
    for (name, svc) in services.into_iter().flatten() {
        let name = name.as_str().unwrap_or("?");
        let mut svc = svc.clone();
        stringify_lists(&mut svc);
        // Typed per service, so an error names the service.
        let svc: dc::Service = serde_norway::from_value(svc)
            .map_err(|e| service_err(name, "", format!("not valid Compose: {e}")))?;
        // A service with profiles runs only when one of them is active, as in Compose.
        if !svc.profiles.is_empty() && !svc.profiles.iter().any(|p| active.contains(p)) {
            continue;
        }
        out.push(service(name, &svc, &project, dir, &declared, vars)?);
    }
    if out.is_empty() {
        return Err(ComposeError(
            "services: nothing to run (no service, or every one is in an inactive profile)".into(),
        ));
    }
    Ok(ComposeProject {
        manifest: Manifest {
            network: format!("{project}_default"),
            services: out,
        },
        name: project,
        warnings,
    })
}

/// The model BRH will run, in the shape `docker compose config --format json` prints (the
/// keys BRH supports), so a file can be compared with Compose's own reading of it.
pub fn config_json(project: Option<&str>, manifest: &Manifest) -> serde_json::Value {
    use serde_json::{json, Map};
    let mut services = Map::new();
    for s in &manifest.services {
        let ports: Vec<serde_json::Value> = s
            .ports
            .iter()
            .map(|p| {
                let mut o =
                    json!({ "mode": "ingress", "target": p.container_port, "protocol": p.proto });
                if let Some(h) = p.host_port {
                    o["published"] = json!(h.to_string());
                }
                if let Some(ip) = &p.host_ip {
                    o["host_ip"] = json!(ip);
                }
                o
            })
            .collect();
        let volumes: Vec<serde_json::Value> = s
            .volumes
            .iter()
            .map(|v| {
                let parts: Vec<&str> = v.split(':').collect();
                let (source, target) = (parts[0], parts.get(1).copied().unwrap_or(""));
                let kind = if source.starts_with('/') {
                    "bind"
                } else {
                    "volume"
                };
                let mut o = json!({ "type": kind, "source": source, "target": target });
                if parts.get(2) == Some(&"ro") {
                    o["read_only"] = json!(true);
                }
                o
            })
            .collect();
        let mut svc = json!({
            "image": s.image,
            "environment": s.env,
            "labels": s.labels,
            "deploy": { "replicas": s.replicas },
            "networks": { "default": null },
        });
        if let Some(c) = &s.command {
            svc["command"] = json!(c);
        }
        if !ports.is_empty() {
            svc["ports"] = json!(ports);
        }
        if !volumes.is_empty() {
            svc["volumes"] = json!(volumes);
        }
        services.insert(s.name.clone(), svc);
    }
    json!({
        "name": project,
        "services": services,
        "networks": { "default": { "name": manifest.network } },
    })
}

/// Compose takes numbers and booleans where it wants strings (`expose: [5432]`,
/// `labels: {tier: 1}`, `command: [sleep, 5]`); the typed model wants strings there.
fn stringify_lists(svc: &mut Value) {
    let scalar = |v: &mut Value| {
        let s = match v {
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return,
        };
        *v = Value::String(s);
    };
    let Some(m) = svc.as_mapping_mut() else {
        return;
    };
    for key in [
        "expose",
        "ports",
        "command",
        "environment",
        "labels",
        "volumes",
        "env_file",
    ] {
        match m.get_mut(key) {
            Some(Value::Sequence(items)) => items.iter_mut().for_each(scalar),
            Some(Value::Mapping(map)) if key == "labels" => {
                map.iter_mut().for_each(|(_, v)| scalar(v))
            }
            _ => {}
        }
    }
}

/// Compose's default project name: the directory's name, lowercased, keeping `a-z0-9_-`.
fn project_name(dir: &str) -> String {
    let n: String = dir
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    if n.is_empty() {
        "default".into()
    } else {
        n
    }
}

/// The top-level named volumes (plain declarations only: drivers and external volumes are
/// not supported yet).
fn declared_volumes(volumes: &dc::TopLevelVolumes) -> Result<Vec<String>, ComposeError> {
    let mut out = Vec::new();
    for (name, v) in volumes.0.iter() {
        match v {
            dc::MapOrEmpty::Empty => {}
            dc::MapOrEmpty::Map(v) => {
                if v.driver.is_some() || !v.driver_opts.is_empty() || v.external.is_some() {
                    return Err(ComposeError(format!(
                        "volumes: {name}: driver, driver_opts and external volumes are not supported yet"
                    )));
                }
            }
        }
        out.push(name.clone());
    }
    Ok(out)
}

fn service(
    name: &str,
    svc: &dc::Service,
    project: &str,
    dir: &Path,
    declared: &[String],
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<Service, ComposeError> {
    let err = |key: &str, why: String| service_err(name, key, why);
    validate_id(name).map_err(|e| err("name", format!("service name {e}")))?;
    let image = svc
        .image
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| err("image", "required: BRH runs images, not builds".into()))?;
    let command = match &svc.command {
        None => None,
        Some(dc::Command::Args(a)) => Some(a.clone()),
        Some(dc::Command::Simple(s)) => Some(
            shlex::split(s).ok_or_else(|| err("command", format!("{s:?}: unbalanced quotes")))?,
        ),
    };
    let mut env = BTreeMap::new();
    for f in env_files(svc) {
        let path = dir.join(&f);
        let vars = read_env_file(&path)
            .map_err(|e| err("env_file", format!("{}: {e}", path.display())))?;
        env.extend(vars);
    }
    let pairs: Vec<(String, Option<String>)> = match &svc.environment {
        dc::Environment::List(l) => l
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (e.clone(), None),
            })
            .collect(),
        dc::Environment::KvPair(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(ToString::to_string)))
            .collect(),
    };
    for (k, v) in pairs {
        // `NAME` alone takes the value from the environment, or is left out (Compose).
        if let Some(v) = v.or_else(|| vars(&k)) {
            env.insert(k, v);
        }
    }
    let mut ports = Vec::new();
    match &svc.ports {
        dc::Ports::Short(list) => {
            for p in list {
                ports.push(parse_port(p).map_err(|e| err("ports", e))?);
            }
        }
        dc::Ports::Long(list) => {
            for p in list {
                ports.push(long_port(p).map_err(|e| err("ports", e))?);
            }
        }
    }
    let mut volumes = Vec::new();
    for v in &svc.volumes {
        volumes.push(volume(v, project, dir, declared).map_err(|e| err("volumes", e))?);
    }
    let mut labels: BTreeMap<String, String> = match &svc.labels {
        dc::Labels::List(l) => l
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect(),
        dc::Labels::Map(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    };
    // Compose's own labels, so `docker compose ps/logs -p PROJECT` show the containers.
    labels.insert(super::labels::COMPOSE_PROJECT.into(), project.into());
    labels.insert(super::labels::COMPOSE_SERVICE.into(), name.into());
    let replicas = match &svc.deploy {
        None => 1,
        Some(d) => {
            let set = serde_norway::to_value(d).unwrap_or(Value::Null);
            if let Some(m) = set.as_mapping() {
                if let Some(k) = m
                    .keys()
                    .filter_map(Value::as_str)
                    .find(|k| *k != "replicas")
                {
                    return Err(err(
                        &format!("deploy.{k}"),
                        "only deploy.replicas is supported".into(),
                    ));
                }
            }
            match d.replicas {
                None => 1,
                Some(r) => u32::try_from(r)
                    .ok()
                    .filter(|r| (1..=64).contains(r))
                    .ok_or_else(|| err("deploy.replicas", "must be between 1 and 64".into()))?,
            }
        }
    };
    if let Some(r) = &svc.restart {
        if !matches!(r.as_str(), "always" | "unless-stopped") {
            return Err(err(
                "restart",
                format!(
                    "{r:?}: BRH's recovery restarts every managed container that dies \
                     (always / unless-stopped); other policies are not supported yet"
                ),
            ));
        }
    }
    let s = Service {
        name: name.into(),
        image,
        command,
        ports,
        volumes,
        env,
        labels,
        health: None,
        replicas,
    };
    if s.replicas > 1 && s.binds_host_ports() {
        return Err(err(
            "ports",
            "a host port can be bound by one replica only: use deploy.replicas: 1 or drop the host port"
                .into(),
        ));
    }
    Ok(s)
}

fn env_files(svc: &dc::Service) -> Vec<String> {
    match &svc.env_file {
        None => Vec::new(),
        Some(dc::StringOrList::Simple(s)) => vec![s.clone()],
        Some(dc::StringOrList::List(l)) => l.clone(),
    }
}

fn long_port(p: &dc::Port) -> Result<PortMap, String> {
    let host_port = match &p.published {
        None => None,
        Some(dc::PublishedPort::Single(n)) => Some(*n),
        Some(dc::PublishedPort::Range(r)) => Some(
            r.parse::<u16>()
                .map_err(|_| format!("published: {r:?}: port ranges are not supported"))?,
        ),
    };
    let proto = p.protocol.clone().unwrap_or_else(|| "tcp".into());
    if proto != "tcp" && proto != "udp" {
        return Err(format!("protocol {proto:?}: tcp or udp"));
    }
    if p.mode
        .as_deref()
        .is_some_and(|m| m != "ingress" && m != "host")
    {
        return Err(format!("mode {:?}: host or ingress", p.mode));
    }
    Ok(PortMap {
        host_ip: p.host_ip.clone(),
        host_port,
        container_port: p.target,
        proto,
    })
}

/// A volume as a Docker bind: `SOURCE:TARGET[:ro]`, a relative source resolved against the
/// Compose file's directory, a named volume prefixed with the project (as Compose names it).
fn volume(
    v: &dc::Volumes,
    project: &str,
    dir: &Path,
    declared: &[String],
) -> Result<String, String> {
    let (source, target, ro) = match v {
        dc::Volumes::Simple(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts[..] {
                [t] => {
                    return Err(format!(
                        "{t:?}: an anonymous volume is not supported yet; name it"
                    ))
                }
                [s, t] => (s.to_string(), t.to_string(), false),
                [s, t, mode] => {
                    let ro = mode.split(',').any(|m| m == "ro");
                    if let Some(m) = mode.split(',').find(|m| !["ro", "rw"].contains(m)) {
                        return Err(format!("{s}:{t}: mode {m:?} is not supported (ro, rw)"));
                    }
                    (s.to_string(), t.to_string(), ro)
                }
                _ => return Err(format!("{s:?} is not SOURCE:TARGET[:MODE]")),
            }
        }
        dc::Volumes::Advanced(a) => {
            if !matches!(a._type.as_str(), "bind" | "volume") {
                return Err(format!("type {:?}: bind or volume", a._type));
            }
            if a.bind.is_some() || a.volume.is_some() || a.tmpfs.is_some() {
                return Err(format!(
                    "{}: bind/volume/tmpfs options are not supported yet",
                    a.target
                ));
            }
            let source = a
                .source
                .clone()
                .ok_or_else(|| format!("{}: an anonymous volume is not supported yet", a.target))?;
            (source, a.target.clone(), a.read_only)
        }
    };
    let is_path = source.starts_with('/') || source.starts_with('.') || source.starts_with('~');
    let source = if is_path {
        let p = if let Some(rest) = source.strip_prefix("~/") {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(rest)
        } else {
            dir.join(&source)
        };
        // Lexically normalised (`./data` → `DIR/data`): the path may not exist yet.
        normalize(&p).display().to_string()
    } else {
        if !declared.contains(&source) {
            return Err(format!(
                "{source:?} is not declared in the top-level volumes: (Compose refuses it too)"
            ));
        }
        format!("{project}_{source}")
    };
    Ok(if ro {
        format!("{source}:{target}:ro")
    } else {
        format!("{source}:{target}")
    })
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// A `.env` / `env_file` file: `KEY=VALUE` lines, `#` comments, optional `export `, values in
/// single or double quotes taken literally.
fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("line {}: not KEY=VALUE", i + 1));
        };
        let v = v.trim();
        let v = ['"', '\'']
            .iter()
            .find_map(|q| v.strip_prefix(*q).and_then(|x| x.strip_suffix(*q)))
            .unwrap_or(v);
        out.insert(k.trim().to_string(), v.to_string());
    }
    Ok(out)
}

/// Compose's interpolation on every string value (never on keys): `$VAR`, `${VAR}`,
/// `${VAR:-default}` / `${VAR-default}`, `${VAR:?error}` / `${VAR?error}`,
/// `${VAR:+alt}` / `${VAR+alt}`, `$$` for a literal `$`. An unset variable becomes empty, with a
/// warning, as Compose does.
fn interpolate_value(
    v: &mut Value,
    vars: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<(), ComposeError> {
    match v {
        Value::String(s) => *s = interpolate(s, vars, warnings)?,
        Value::Sequence(items) => {
            for x in items {
                interpolate_value(x, vars, warnings)?;
            }
        }
        Value::Mapping(m) => {
            for (_, x) in m.iter_mut() {
                interpolate_value(x, vars, warnings)?;
            }
        }
        Value::Tagged(t) => interpolate_value(&mut t.value, vars, warnings)?,
        _ => {}
    }
    Ok(())
}

pub fn interpolate(
    s: &str,
    vars: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<String, ComposeError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            // The matching brace: a default may hold another substitution (`${A:-${B}}`).
            let mut depth = 0usize;
            let end = r
                .char_indices()
                .find(|&(_, c)| match c {
                    '{' => {
                        depth += 1;
                        false
                    }
                    '}' if depth == 0 => true,
                    '}' => {
                        depth -= 1;
                        false
                    }
                    _ => false,
                })
                .map(|(i, _)| i)
                .ok_or_else(|| ComposeError(format!("{s:?}: unclosed ${{")))?;
            let expr = &r[..end];
            rest = &r[end + 1..];
            let name_len = expr.find(|c: char| !is_name(c)).unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_len);
            if name.is_empty() {
                return Err(ComposeError(format!(
                    "{s:?}: ${{{expr}}} names no variable"
                )));
            }
            let value = vars(name);
            let set = value.is_some();
            let nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
            let text = if op.is_empty() {
                value.unwrap_or_else(|| unset(name, warnings))
            } else if let Some(d) = op.strip_prefix(":-") {
                if nonempty {
                    value.unwrap_or_default()
                } else {
                    interpolate(d, vars, warnings)?
                }
            } else if let Some(d) = op.strip_prefix('-') {
                if set {
                    value.unwrap_or_default()
                } else {
                    interpolate(d, vars, warnings)?
                }
            } else if let Some(m) = op.strip_prefix(":?") {
                if nonempty {
                    value.unwrap_or_default()
                } else {
                    return Err(required(name, m));
                }
            } else if let Some(m) = op.strip_prefix('?') {
                if set {
                    value.unwrap_or_default()
                } else {
                    return Err(required(name, m));
                }
            } else if let Some(a) = op.strip_prefix(":+") {
                if nonempty {
                    interpolate(a, vars, warnings)?
                } else {
                    String::new()
                }
            } else if let Some(a) = op.strip_prefix('+') {
                if set {
                    interpolate(a, vars, warnings)?
                } else {
                    String::new()
                }
            } else {
                return Err(ComposeError(format!(
                    "{s:?}: ${{{expr}}} is not a Compose substitution"
                )));
            };
            out.push_str(&text);
        } else {
            let n = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
            if n == 0 {
                // A lone `$` stays (Compose does the same before a non-name character).
                out.push('$');
                continue;
            }
            let name = &rest[..n];
            rest = &rest[n..];
            out.push_str(&vars(name).unwrap_or_else(|| unset(name, warnings)));
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn unset(name: &str, warnings: &mut Vec<String>) -> String {
    let w = format!("the {name} variable is not set: defaulting to a blank string");
    if !warnings.contains(&w) {
        warnings.push(w);
    }
    String::new()
}

fn required(name: &str, message: &str) -> ComposeError {
    let message = if message.is_empty() {
        "required variable is not set"
    } else {
        message
    };
    ComposeError(format!("variable {name}: {message}"))
}

#[cfg(test)]
mod tests;
