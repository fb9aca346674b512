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

use super::manifest::{
    parse_port, Condition, ContainerOptions, Dependency, EngineHealthcheck, FileMount, Manifest,
    NetworkAttachment, NetworkSpec, PortMap, Restart, Service, Subnet,
};
use brh_shared::ids::validate_id;

/// The file names `docker compose` looks for, in its order.
pub const FILE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Service keys BRH runs (and how), in the order of the Compose specification.
pub const SERVICE_KEYS: [(&str, &str); 29] = [
    ("image", "the image to run (required: BRH runs images, not builds)"),
    ("command", "the container's command (a string is split like a shell would)"),
    ("entrypoint", "the container's entrypoint (a string is split like a shell would)"),
    ("environment", "variables (map or list; a name without a value takes it from the agent's environment)"),
    ("env_file", "files of KEY=VALUE lines, relative to the Compose file"),
    ("ports", "short and long syntax, tcp and udp, one host port per replica"),
    ("volumes", "bind mounts (relative paths from the Compose file) and named volumes declared at the top level"),
    ("networks", "list or map; aliases and ipv4_address (on a network with an ipam subnet)"),
    ("labels", "map or list"),
    ("deploy", "replicas only"),
    ("restart", "no (the default), always, unless-stopped, on-failure[:N]: applied by BRH's recovery"),
    ("expose", "PORT or PORT/PROTOCOL: exposed to the service's networks, as the image's EXPOSE"),
    ("healthcheck", "run by the engine; BRH waits for `healthy` after a start and a deploy"),
    ("depends_on", "start order; service_started, service_healthy and service_completed_successfully are waited for; restart: true"),
    ("user", "the user the container runs as"),
    ("working_dir", "the container's working directory"),
    ("hostname", "the container's host name"),
    ("container_name", "the one replica's name (deploy.replicas must be 1)"),
    ("cap_add", "capabilities added"),
    ("cap_drop", "capabilities dropped"),
    ("extra_hosts", "HOST:IP (or HOST=IP) entries for /etc/hosts"),
    ("tmpfs", "tmpfs mounts (PATH or PATH:OPTIONS)"),
    ("read_only", "a read-only root file system"),
    ("init", "an init process as PID 1 (Compose's default: none)"),
    ("stop_signal", "the signal a stop sends first"),
    ("stop_grace_period", "how long a stop waits before SIGKILL (replaces BRH_STOP_TIMEOUT for this service)"),
    ("secrets", "file-based: mounted read-only at /run/secrets/NAME (or target)"),
    ("configs", "file-based: mounted read-only at /NAME (or target)"),
    ("profiles", "a service runs only when one of its profiles is in COMPOSE_PROFILES"),
];

/// Why a key BRH knows about is refused (the rest: "not supported by BRH yet").
fn refusal(key: &str) -> &'static str {
    match key {
        "build" => "BRH runs images, not builds — build and push the image, then name it in image:",
        "network_mode" => {
            "BRH runs services on the project's networks (networks:); another network mode is not supported"
        }
        "privileged" | "devices" | "pid" | "ipc" | "userns_mode" | "security_opt" => {
            "host privileges are not granted by BRH yet"
        }
        "extends" | "include" => "BRH reads one file: merge it first (docker compose config)",
        "links" | "external_links" => {
            "legacy links are not supported: services on one network reach each other by name"
        }
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
            "networks" | "secrets" | "configs" => {}
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
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => {
            let volumes: dc::TopLevelVolumes = serde_norway::from_value(v.clone())
                .map_err(|e| ComposeError(format!("volumes: {e}")))?;
            declared_volumes(&volumes, &project)?
        }
    };
    let networks = declared_networks(top.get("networks"), &project)?;
    let default_network = networks
        .get("default")
        .map(|n| n.name.clone())
        .unwrap_or_else(|| format!("{project}_default"));
    let files = Files {
        secrets: declared_files("secrets", top.get("secrets"), dir)?,
        configs: declared_files("configs", top.get("configs"), dir)?,
    };
    let project_ctx = Project {
        name: &project,
        dir,
        volumes: &declared,
    };
    let active: Vec<String> = vars("COMPOSE_PROFILES")
        .unwrap_or_default()
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let mut out = Vec::new();
    let mut inactive = Vec::new();
    for (name, svc) in services.into_iter().flatten() {
        let name = name.as_str().unwrap_or("?");
        let mut svc = svc.clone();
        stringify_lists(&mut svc);
        check_nested_keys(name, &svc)?;
        // Read from the document: the typed model has no `configs`, and its network settings
        // refuse unknown keys with a message that names neither service nor key.
        let has_init = svc.get("init").is_some();
        let (attachments, secret_mounts) = {
            let m = svc.as_mapping_mut().expect("checked above");
            let nets = m.remove("networks");
            let sec = m.remove("secrets");
            let cfg = m.remove("configs");
            let nets = service_networks(name, nets.as_ref(), &networks, &default_network)?;
            let mut mounts = file_mounts(name, "secrets", sec.as_ref(), &files.secrets)?;
            mounts.extend(file_mounts(name, "configs", cfg.as_ref(), &files.configs)?);
            (nets, mounts)
        };
        unify_ports(name, &mut svc)?;
        // Typed per service, so an error names the service (and the key, found by typing
        // each key alone).
        let svc: dc::Service = serde_norway::from_value(svc.clone()).map_err(|e| {
            let key = svc.as_mapping().and_then(|m| {
                m.iter().find_map(|(k, v)| {
                    let mut one = serde_norway::Mapping::new();
                    one.insert(k.clone(), v.clone());
                    serde_norway::from_value::<dc::Service>(Value::Mapping(one))
                        .is_err()
                        .then(|| k.as_str().unwrap_or("?").to_string())
                })
            });
            service_err(
                name,
                key.as_deref().unwrap_or("?"),
                format!("not valid Compose: {e}"),
            )
        })?;
        // A service with profiles runs only when one of them is active, as in Compose.
        if !svc.profiles.is_empty() && !svc.profiles.iter().any(|p| active.contains(p)) {
            inactive.push(name.to_string());
            continue;
        }
        let mut s = service(name, &svc, &project_ctx, vars)?;
        s.volumes
            .extend(secret_mounts.iter().map(|f| f.mount.clone()));
        s.options.files = secret_mounts;
        s.options.networks = attachments;
        if !has_init {
            // Not said: BRH's default (an init process), so a stop is not a SIGKILL after the
            // whole grace period for a PID 1 that ignores SIGTERM. `init: false` is honoured.
            s.options.init = None;
        }
        out.push(s);
    }
    if out.is_empty() {
        return Err(ComposeError(
            "services: nothing to run (no service, or every one is in an inactive profile)".into(),
        ));
    }
    let services = start_order(out, &inactive)?;
    Ok(ComposeProject {
        manifest: Manifest {
            network: default_network,
            networks: networks.into_values().collect(),
            volumes: declared,
            secrets: files.secrets,
            configs: files.configs,
            services,
        },
        name: project,
        warnings,
    })
}

/// What every service of one file shares.
struct Project<'a> {
    name: &'a str,
    dir: &'a Path,
    /// Top-level named volumes: key → engine name.
    volumes: &'a BTreeMap<String, String>,
}

/// The file-based top-level `secrets:` and `configs:`: name → absolute path.
struct Files {
    secrets: BTreeMap<String, PathBuf>,
    configs: BTreeMap<String, PathBuf>,
}

/// Keys inside a service's mappings that the typed model would reject with a message that
/// does not name them, or accept and drop.
fn check_nested_keys(name: &str, svc: &Value) -> Result<(), ComposeError> {
    let keys_of = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_mapping)
            .map(|m| {
                m.keys()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    for k in keys_of(svc.get("healthcheck")) {
        if ![
            "test",
            "interval",
            "timeout",
            "retries",
            "start_period",
            "start_interval",
            "disable",
        ]
        .contains(&k.as_str())
        {
            return Err(service_err(name, &format!("healthcheck.{k}"), refusal(&k)));
        }
    }
    if let Some(deps) = svc.get("depends_on").and_then(Value::as_mapping) {
        for (dep, opts) in deps {
            let dep = dep.as_str().unwrap_or("?");
            for k in keys_of(Some(opts)) {
                if !["condition", "required", "restart"].contains(&k.as_str()) {
                    return Err(service_err(
                        name,
                        &format!("depends_on.{dep}.{k}"),
                        refusal(&k),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The top-level `networks:`: Compose's key → what to create (`{project}_{key}` unless the
/// file names it; `external: true` networks must exist and are not created).
/// A top-level section that maps names to settings (`networks:`, `secrets:`, `configs:`):
/// absent or null is empty.
fn top_mapping<'v>(
    kind: &str,
    v: Option<&'v Value>,
) -> Result<impl Iterator<Item = (&'v Value, &'v Value)>, ComposeError> {
    let m = match v {
        None | Some(Value::Null) => None,
        Some(Value::Mapping(m)) => Some(m),
        Some(_) => return Err(ComposeError(format!("{kind}: must be a mapping"))),
    };
    Ok(m.into_iter().flatten())
}

/// A path of the Compose file, as Compose resolves it: `~/` from `$HOME`, anything else
/// from the file's directory, lexically normalised (`./data` → `DIR/data`; the path may not
/// exist yet).
fn resolve_path(dir: &Path, path: &str) -> PathBuf {
    let p = match path.strip_prefix("~/") {
        Some(rest) => PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(rest),
        None => dir.join(path),
    };
    normalize(&p)
}

fn declared_networks(
    v: Option<&Value>,
    project: &str,
) -> Result<BTreeMap<String, NetworkSpec>, ComposeError> {
    let mut out = BTreeMap::new();
    for (key, settings) in top_mapping("networks", v)? {
        let key = key.as_str().unwrap_or("?");
        let err = |k: &str, why: &str| ComposeError(format!("networks: {key}: {k}: {why}"));
        validate_id(key).map_err(|e| err("name", &format!("the network name {e}")))?;
        let mut spec = NetworkSpec {
            name: format!("{project}_{key}"),
            ..Default::default()
        };
        let empty = serde_norway::Mapping::new();
        let settings = match settings {
            Value::Null => &empty,
            Value::Mapping(s) => s,
            _ => return Err(err("", "must be a mapping")),
        };
        let mut labels = BTreeMap::new();
        for (k, v) in settings {
            let k = k.as_str().unwrap_or("?");
            match k {
                "name" => {
                    spec.name = v
                        .as_str()
                        .ok_or_else(|| err(k, "must be a string"))?
                        .to_string();
                }
                "driver" if v.as_str() == Some("bridge") => {}
                "driver" => return Err(err(k, "only the bridge driver runs on one host")),
                "internal" => spec.internal = v.as_bool().ok_or_else(|| err(k, "true or false"))?,
                "external" => match v {
                    Value::Bool(b) => spec.external = *b,
                    _ => return Err(err(k, "true or false (name the network with name:)")),
                },
                "attachable" if v.as_bool() == Some(false) => {}
                "labels" => {
                    let l: dc::Labels =
                        serde_norway::from_value(v.clone()).map_err(|e| err(k, &e.to_string()))?;
                    labels.extend(label_pairs(&l));
                }
                "ipam" => spec.subnets = ipam(v).map_err(|e| err(k, &e))?,
                k if k.starts_with("x-") => {}
                other => return Err(err(other, refusal(other))),
            }
        }
        validate_id(&spec.name).map_err(|e| err("name", &format!("the network name {e}")))?;
        if !spec.external {
            labels.insert(super::labels::COMPOSE_PROJECT.into(), project.into());
            labels.insert(super::labels::COMPOSE_NETWORK.into(), key.into());
        }
        spec.labels = labels;
        out.insert(key.to_string(), spec);
    }
    Ok(out)
}

fn ipam(v: &Value) -> Result<Vec<Subnet>, String> {
    let m = v.as_mapping().ok_or("must be a mapping")?;
    let mut out = Vec::new();
    for (k, v) in m {
        match k.as_str().unwrap_or("?") {
            "driver" if v.as_str() == Some("default") => {}
            "config" => {
                for c in v.as_sequence().ok_or("config: must be a list")? {
                    let c = c.as_mapping().ok_or("config: entries must be mappings")?;
                    let mut sub = Subnet::default();
                    for (k, v) in c {
                        let k = k.as_str().unwrap_or("?");
                        let v = v
                            .as_str()
                            .ok_or_else(|| format!("config.{k}: must be a string"))?
                            .to_string();
                        match k {
                            "subnet" => sub.subnet = v,
                            "gateway" => sub.gateway = Some(v),
                            "ip_range" => sub.ip_range = Some(v),
                            other => return Err(format!("config.{other}: {}", refusal(other))),
                        }
                    }
                    if sub.subnet.is_empty() {
                        return Err("config: an entry without subnet".into());
                    }
                    out.push(sub);
                }
            }
            other => return Err(format!("{other}: {}", refusal(other))),
        }
    }
    Ok(out)
}

/// A service's `networks:` (list or map) → attachments; empty when it names none (then it
/// joins the project's default network).
fn service_networks(
    name: &str,
    v: Option<&Value>,
    declared: &BTreeMap<String, NetworkSpec>,
    default_network: &str,
) -> Result<Vec<NetworkAttachment>, ComposeError> {
    let err = |k: &str, why: String| service_err(name, k, why);
    let entries: Vec<(String, Option<&Value>)> = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Sequence(l)) => l
            .iter()
            .map(|n| n.as_str().map(|n| (n.to_string(), None)))
            .collect::<Option<_>>()
            .ok_or_else(|| err("networks", "list entries must be network names".into()))?,
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| (k.as_str().unwrap_or("?").to_string(), Some(v)))
            .collect(),
        Some(_) => return Err(err("networks", "must be a list or a mapping".into())),
    };
    let mut out = Vec::new();
    for (net, settings) in entries {
        let implicit_default = NetworkSpec {
            name: default_network.to_string(),
            ..Default::default()
        };
        let spec = match declared.get(&net) {
            Some(s) => s,
            None if net == "default" => &implicit_default,
            None => {
                return Err(err(
                    "networks",
                    format!(
                    "{net:?} is not declared in the top-level networks: (Compose refuses it too)"
                ),
                ))
            }
        };
        let mut a = NetworkAttachment {
            network: spec.name.clone(),
            ..Default::default()
        };
        for (k, v) in settings.and_then(Value::as_mapping).into_iter().flatten() {
            let k = k.as_str().unwrap_or("?");
            let key = format!("networks.{net}.{k}");
            match k {
                "aliases" => {
                    for alias in v
                        .as_sequence()
                        .ok_or_else(|| err(&key, "must be a list".into()))?
                    {
                        let alias = alias
                            .as_str()
                            .ok_or_else(|| err(&key, "must be strings".into()))?;
                        a.aliases.push(alias.to_string());
                    }
                }
                "ipv4_address" => {
                    let ip = v
                        .as_str()
                        .ok_or_else(|| err(&key, "must be a string".into()))?;
                    ip.parse::<std::net::Ipv4Addr>()
                        .map_err(|_| err(&key, format!("{ip:?} is not an IPv4 address")))?;
                    if spec.subnets.is_empty() {
                        return Err(err(
                            &key,
                            format!("a static address needs a subnet: give network {net:?} an ipam config"),
                        ));
                    }
                    a.ipv4_address = Some(ip.to_string());
                }
                other if other.starts_with("x-") => {}
                other => {
                    return Err(err(
                        &format!("networks.{net}.{other}"),
                        refusal(other).into(),
                    ))
                }
            }
        }
        out.push(a);
    }
    Ok(out)
}

/// The top-level file-based `secrets:` or `configs:`: name → absolute file.
fn declared_files(
    kind: &str,
    v: Option<&Value>,
    dir: &Path,
) -> Result<BTreeMap<String, PathBuf>, ComposeError> {
    let mut out = BTreeMap::new();
    for (name, settings) in top_mapping(kind, v)? {
        let name = name.as_str().unwrap_or("?");
        let err = |k: &str, why: &str| ComposeError(format!("{kind}: {name}: {k}: {why}"));
        let mut file = None;
        for (k, v) in settings.as_mapping().into_iter().flatten() {
            let k = k.as_str().unwrap_or("?");
            match k {
                "file" => file = Some(v.as_str().ok_or_else(|| err(k, "must be a string"))?),
                "name" => {}
                "external" | "environment" | "content" | "driver" | "template_driver" => {
                    return Err(err(
                        k,
                        "only file-based secrets and configs are supported (file: PATH)",
                    ))
                }
                k if k.starts_with("x-") => {}
                other => return Err(err(other, refusal(other))),
            }
        }
        let file =
            file.ok_or_else(|| err("file", "required (only file-based ones are supported)"))?;
        out.insert(name.to_string(), resolve_path(dir, file));
    }
    Ok(out)
}

/// A service's `secrets:` / `configs:` as read-only bind mounts: secrets at
/// `/run/secrets/NAME` (or a target, relative to it), configs at `/NAME` (or a target).
fn file_mounts(
    name: &str,
    kind: &str,
    v: Option<&Value>,
    declared: &BTreeMap<String, PathBuf>,
) -> Result<Vec<FileMount>, ComposeError> {
    let err = |k: &str, why: String| service_err(name, k, why);
    let Some(list) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_sequence()
        .ok_or_else(|| err(kind, "must be a list".into()))?;
    let mut out = Vec::new();
    for entry in list {
        let (source, target) = match entry {
            Value::String(s) => (s.clone(), None),
            Value::Mapping(m) => {
                let mut source = None;
                let mut target = None;
                for (k, v) in m {
                    let k = k.as_str().unwrap_or("?");
                    let v = v.as_str().map(String::from);
                    match k {
                        "source" => source = v,
                        "target" => target = v,
                        "uid" | "gid" | "mode" => {
                            return Err(err(
                                &format!("{kind}.{k}"),
                                "a bind-mounted file keeps the host file's owner and mode; set them on the file".into(),
                            ))
                        }
                        other => return Err(err(&format!("{kind}.{other}"), refusal(other).into())),
                    }
                }
                let source =
                    source.ok_or_else(|| err(&format!("{kind}.source"), "required".into()))?;
                (source, target)
            }
            _ => return Err(err(kind, "entries must be names or mappings".into())),
        };
        let file = declared.get(&source).ok_or_else(|| {
            err(
                kind,
                format!(
                    "{source:?} is not declared in the top-level {kind}: (Compose refuses it too)"
                ),
            )
        })?;
        let (kind, at) = match (kind, &target) {
            ("secrets", None) => ("secrets", format!("/run/secrets/{source}")),
            ("secrets", Some(t)) if !t.starts_with('/') => ("secrets", format!("/run/secrets/{t}")),
            ("secrets", Some(t)) => ("secrets", t.clone()),
            (_, None) => ("configs", format!("/{source}")),
            (_, Some(t)) => ("configs", t.clone()),
        };
        out.push(FileMount {
            kind,
            target: if kind == "secrets" {
                Some(at.clone())
            } else {
                target
            },
            mount: format!("{}:{at}:ro", file.display()),
            source,
        });
    }
    Ok(out)
}

/// Services in start order: each after the services it depends on, otherwise in file order.
/// A dependency on a missing service, or on one in an inactive profile, is refused (as
/// Compose does) unless it is `required: false`; a cycle is refused.
fn start_order(services: Vec<Service>, inactive: &[String]) -> Result<Vec<Service>, ComposeError> {
    let names: Vec<String> = services.iter().map(|s| s.name.clone()).collect();
    let mut services = services;
    for s in &mut services {
        let mut kept = Vec::new();
        for d in std::mem::take(&mut s.options.depends_on) {
            if names.contains(&d.service) || !d.required {
                // An optional dependency that is not there (an inactive profile) stays in the
                // model, as Compose keeps it; nothing waits for it.
                kept.push(d);
            } else if inactive.contains(&d.service) {
                return Err(service_err(
                    &s.name,
                    "depends_on",
                    format!("{:?} is in an inactive profile", d.service),
                ));
            } else {
                return Err(service_err(
                    &s.name,
                    "depends_on",
                    format!("{:?} is not a service of this file", d.service),
                ));
            }
        }
        s.options.depends_on = kept;
    }
    // A job waited for to complete must be one BRH lets complete: with `restart: always` it
    // would be started again at each exit, and its dependents would wait on a moving target.
    for s in &services {
        for d in &s.options.depends_on {
            let Some(dep) = services.iter().find(|x| x.name == d.service) else {
                continue;
            };
            if d.condition == Condition::Completed && !dep.options.restart.is_one_shot() {
                return Err(service_err(
                    &s.name,
                    &format!("depends_on.{}.condition", d.service),
                    format!(
                        "service_completed_successfully needs {:?} to be a one-shot job \
                         (restart: \"no\" or on-failure), not restart: {}",
                        d.service,
                        dep.options.restart.as_compose()
                    ),
                ));
            }
        }
    }
    let mut order: Vec<Service> = Vec::new();
    let mut pending = services;
    while !pending.is_empty() {
        let placed: Vec<String> = order.iter().map(|s| s.name.clone()).collect();
        let Some(i) = pending.iter().position(|s| {
            s.options
                .depends_on
                .iter()
                .all(|d| placed.contains(&d.service) || !names.contains(&d.service))
        }) else {
            let cycle: Vec<&str> = pending.iter().map(|s| s.name.as_str()).collect();
            return Err(ComposeError(format!(
                "depends_on: a cycle among services {}",
                cycle.join(", ")
            )));
        };
        order.push(pending.remove(i));
    }
    Ok(order)
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
            // Secrets and configs are listed as such below, as Compose does.
            .filter(|v| !s.options.files.iter().any(|f| &f.mount == *v))
            .map(|v| {
                let parts: Vec<&str> = v.split(':').collect();
                let (source, target) = (parts[0], parts.get(1).copied().unwrap_or(""));
                let kind = if source.starts_with('/') {
                    "bind"
                } else {
                    "volume"
                };
                // A named volume by its key, as the file names it (the top-level `volumes:`
                // gives the engine's name); a bind's missing host path is created (the
                // engine's `Binds`), as Compose's short syntax does.
                let key = manifest
                    .volumes
                    .iter()
                    .find(|(_, engine)| engine.as_str() == source)
                    .map_or(source, |(k, _)| k.as_str());
                let mut o = json!({ "type": kind, "source": key, "target": target });
                if kind == "bind" {
                    o["bind"] = json!({ "create_host_path": true });
                }
                if parts.get(2) == Some(&"ro") {
                    o["read_only"] = json!(true);
                }
                o
            })
            .collect();
        // The labels the file gives: Compose's own (project, service) are added at create
        // time, as `docker compose config` leaves them out too.
        let labels: BTreeMap<&String, &String> = s
            .labels
            .iter()
            .filter(|(k, _)| {
                ![
                    super::labels::COMPOSE_PROJECT,
                    super::labels::COMPOSE_SERVICE,
                ]
                .contains(&k.as_str())
            })
            .collect();
        let mut svc = json!({ "image": s.image });
        if !s.env.is_empty() {
            svc["environment"] = json!(s.env);
        }
        if !labels.is_empty() {
            svc["labels"] = json!(labels);
        }
        if s.replicas != 1 {
            svc["deploy"] = json!({ "replicas": s.replicas });
        }
        if let Some(c) = &s.command {
            svc["command"] = json!(c);
        }
        if !ports.is_empty() {
            svc["ports"] = json!(ports);
        }
        if !volumes.is_empty() {
            svc["volumes"] = json!(volumes);
        }
        options_json(&mut svc, manifest, s);
        services.insert(s.name.clone(), svc);
    }
    let mut networks = Map::new();
    // The default network, as Compose lists it: only when a service is on it.
    let on_default = manifest.services.iter().any(|s| {
        s.options.networks.is_empty()
            || s.options
                .networks
                .iter()
                .any(|a| a.network == manifest.network)
    });
    if on_default {
        networks.insert("default".into(), json!({ "name": manifest.network }));
    }
    for n in &manifest.networks {
        let key = n
            .labels
            .get(super::labels::COMPOSE_NETWORK)
            .cloned()
            .unwrap_or_else(|| n.name.clone());
        let mut o = json!({ "name": n.name });
        if n.internal {
            o["internal"] = json!(true);
        }
        if n.external {
            o["external"] = json!(true);
        }
        if !n.subnets.is_empty() {
            let config: Vec<_> = n
                .subnets
                .iter()
                .map(|s| {
                    let mut c = json!({ "subnet": s.subnet });
                    if let Some(g) = &s.gateway {
                        c["gateway"] = json!(g);
                    }
                    if let Some(r) = &s.ip_range {
                        c["ip_range"] = json!(r);
                    }
                    c
                })
                .collect();
            o["ipam"] = json!({ "config": config });
        }
        networks.insert(key, o);
    }
    let mut out = json!({
        "name": project,
        "services": services,
        "networks": networks,
    });
    for (kind, declared) in [
        ("secrets", &manifest.secrets),
        ("configs", &manifest.configs),
    ] {
        if declared.is_empty() {
            continue;
        }
        let prefix = project.unwrap_or_default();
        let m: Map<String, serde_json::Value> = declared
            .iter()
            .map(|(k, file)| {
                let o =
                    json!({ "name": format!("{prefix}_{k}"), "file": file.display().to_string() });
                (k.clone(), o)
            })
            .collect();
        out[kind] = serde_json::Value::Object(m);
    }
    if !manifest.volumes.is_empty() {
        let volumes: Map<String, serde_json::Value> = manifest
            .volumes
            .iter()
            .map(|(k, name)| (k.clone(), json!({ "name": name })))
            .collect();
        out["volumes"] = serde_json::Value::Object(volumes);
    }
    out
}

/// A duration as Go's `time.Duration` prints it, as Compose does: `500ms`, `2s`, `1.5s`,
/// `1m30s`, `2h0m0s`.
pub fn go_duration_string(d: std::time::Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d < std::time::Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let frac = match d.subsec_millis() {
        0 => String::new(),
        ms => format!(".{ms:03}").trim_end_matches('0').to_string(),
    };
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}{frac}s"));
    out
}

/// The [`ContainerOptions`] keys of one service, as `docker compose config --format json`
/// names them (durations in Go's syntax, as Compose prints them).
fn options_json(svc: &mut serde_json::Value, manifest: &Manifest, s: &Service) {
    use serde_json::json;
    let o = &s.options;
    let go = go_duration_string;
    let mut set = |k: &str, v: serde_json::Value| svc[k] = v;
    if let Some(v) = &o.entrypoint {
        set("entrypoint", json!(v));
    }
    for (k, v) in [
        ("user", &o.user),
        ("working_dir", &o.working_dir),
        ("hostname", &o.hostname),
        ("container_name", &o.container_name),
        ("stop_signal", &o.stop_signal),
    ] {
        if let Some(v) = v {
            set(k, json!(v));
        }
    }
    for (k, v) in [
        ("cap_add", &o.cap_add),
        ("cap_drop", &o.cap_drop),
        ("expose", &o.expose),
    ] {
        if !v.is_empty() {
            set(k, json!(v));
        }
    }
    for kind in ["secrets", "configs"] {
        let refs: Vec<serde_json::Value> = o
            .files
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| match &f.target {
                Some(t) => json!({ "source": f.source, "target": t }),
                None => json!({ "source": f.source }),
            })
            .collect();
        if !refs.is_empty() {
            set(kind, json!(refs));
        }
    }
    if !o.extra_hosts.is_empty() {
        // The engine takes `HOST:IP`; Compose prints its newer `HOST=IP`.
        let hosts: Vec<String> = o
            .extra_hosts
            .iter()
            .map(|h| h.replacen(':', "=", 1))
            .collect();
        set("extra_hosts", json!(hosts));
    }
    if !o.tmpfs.is_empty() {
        let t: Vec<String> = o
            .tmpfs
            .iter()
            .map(|(p, opts)| {
                if opts.is_empty() {
                    p.clone()
                } else {
                    format!("{p}:{opts}")
                }
            })
            .collect();
        set("tmpfs", json!(t));
    }
    if o.read_only {
        set("read_only", json!(true));
    }
    if o.restart != Restart::No {
        set("restart", json!(o.restart.as_compose()));
    }
    if let Some(i) = o.init {
        set("init", json!(i));
    }
    if let Some(d) = o.stop_grace_period {
        set("stop_grace_period", json!(go(d)));
    }
    if let Some(h) = &o.healthcheck {
        let mut hc = json!({ "test": h.test });
        for (k, v) in [
            ("interval", h.interval),
            ("timeout", h.timeout),
            ("start_period", h.start_period),
            ("start_interval", h.start_interval),
        ] {
            if let Some(v) = v {
                hc[k] = json!(go(v));
            }
        }
        if let Some(r) = h.retries {
            hc["retries"] = json!(r);
        }
        set("healthcheck", hc);
    }
    if !o.depends_on.is_empty() {
        let mut deps = serde_json::Map::new();
        for d in &o.depends_on {
            let condition = match d.condition {
                Condition::Started => "service_started",
                Condition::Healthy => "service_healthy",
                Condition::Completed => "service_completed_successfully",
            };
            let mut entry = json!({ "condition": condition, "required": d.required });
            if d.restart {
                entry["restart"] = json!(true);
            }
            deps.insert(d.service.clone(), entry);
        }
        set("depends_on", serde_json::Value::Object(deps));
    }
    // The networks by their Compose key (the default network is `default`).
    let key_of = |engine_name: &str| {
        manifest
            .networks
            .iter()
            .find(|n| n.name == engine_name)
            .and_then(|n| n.labels.get(super::labels::COMPOSE_NETWORK).cloned())
            .unwrap_or_else(|| {
                if engine_name == manifest.network {
                    "default".into()
                } else {
                    engine_name.to_string()
                }
            })
    };
    let mut nets = serde_json::Map::new();
    if o.networks.is_empty() {
        nets.insert("default".into(), serde_json::Value::Null);
    }
    for a in &o.networks {
        let mut v = serde_json::Value::Null;
        if !a.aliases.is_empty() {
            v = json!({ "aliases": a.aliases });
        }
        if let Some(ip) = &a.ipv4_address {
            if v.is_null() {
                v = json!({});
            }
            v["ipv4_address"] = json!(ip);
        }
        nets.insert(key_of(&a.network), v);
    }
    set("networks", serde_json::Value::Object(nets));
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

/// A `ports:` list may mix the short and the long syntax; the typed model takes one or the
/// other, so short entries of a mixed list are written in the long syntax first.
fn unify_ports(service: &str, svc: &mut Value) -> Result<(), ComposeError> {
    let Some(Value::Sequence(items)) = svc.get_mut("ports") else {
        return Ok(());
    };
    if !items.iter().any(Value::is_mapping) || !items.iter().any(Value::is_string) {
        return Ok(());
    }
    for item in items.iter_mut() {
        let Some(short) = item.as_str() else { continue };
        let p = parse_port(short).map_err(|e| service_err(service, "ports", e))?;
        let mut m = serde_norway::Mapping::new();
        m.insert("target".into(), Value::Number(p.container_port.into()));
        if let Some(h) = p.host_port {
            m.insert("published".into(), Value::Number(h.into()));
        }
        if let Some(ip) = p.host_ip {
            m.insert("host_ip".into(), Value::String(ip));
        }
        m.insert("protocol".into(), Value::String(p.proto));
        *item = Value::Mapping(m);
    }
    Ok(())
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
fn declared_volumes(
    volumes: &dc::TopLevelVolumes,
    project: &str,
) -> Result<BTreeMap<String, String>, ComposeError> {
    let mut out = BTreeMap::new();
    for (key, v) in volumes.0.iter() {
        let mut name = format!("{project}_{key}");
        match v {
            dc::MapOrEmpty::Empty => {}
            dc::MapOrEmpty::Map(v) => {
                if v.driver.is_some() || !v.driver_opts.is_empty() || v.external.is_some() {
                    return Err(ComposeError(format!(
                        "volumes: {key}: driver, driver_opts and external volumes are not supported yet"
                    )));
                }
                if !v.labels.is_empty() {
                    return Err(ComposeError(format!(
                        "volumes: {key}: labels: not supported yet (the engine creates the volume at first use, unlabelled)"
                    )));
                }
                if let Some(n) = v.name.as_ref().filter(|n| !n.is_empty()) {
                    validate_id(n).map_err(|e| {
                        ComposeError(format!("volumes: {key}: name: the volume name {e}"))
                    })?;
                    name = n.clone();
                }
            }
        }
        out.insert(key.clone(), name);
    }
    Ok(out)
}

fn service(
    name: &str,
    svc: &dc::Service,
    project: &Project<'_>,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<Service, ComposeError> {
    let dir = project.dir;
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
        let path = resolve_path(dir, &f);
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
        volumes.push(volume(v, dir, project.volumes).map_err(|e| err("volumes", e))?);
    }
    let mut labels = label_pairs(&svc.labels);
    // Compose's own labels, so `docker compose ps/logs -p PROJECT` show the containers.
    labels.insert(super::labels::COMPOSE_PROJECT.into(), project.name.into());
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
    let restart = match svc.restart.as_deref() {
        // Compose's default: a container that exits stays exited.
        None | Some("no") => Restart::No,
        Some("always") => Restart::Always,
        Some("unless-stopped") => Restart::UnlessStopped,
        Some("on-failure") => Restart::OnFailure(None),
        Some(r) => match r.strip_prefix("on-failure:").map(str::parse::<u32>) {
            Some(Ok(n)) => Restart::OnFailure(Some(n)),
            _ => {
                return Err(err(
                    "restart",
                    format!("{r:?}: one of \"no\", always, on-failure[:N], unless-stopped"),
                ))
            }
        },
    };
    let mut options = options(name, svc, replicas)?;
    options.restart = restart;
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
        options,
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

/// The container settings beyond BRH's schema ([`ContainerOptions`]); `networks` are read
/// by the caller.
fn options(name: &str, svc: &dc::Service, replicas: u32) -> Result<ContainerOptions, ComposeError> {
    let err = |key: &str, why: String| service_err(name, key, why);
    let split = |key: &str, s: &str| {
        shlex::split(s).ok_or_else(|| err(key, format!("{s:?}: unbalanced quotes")))
    };
    let entrypoint = match &svc.entrypoint {
        None => None,
        Some(dc::Entrypoint::List(l)) => Some(l.clone()),
        Some(dc::Entrypoint::Simple(s)) => Some(split("entrypoint", s)?),
    };
    if let Some(n) = &svc.container_name {
        let ok = n.len() > 1
            && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(err(
                "container_name",
                format!("{n:?} is not a container name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)"),
            ));
        }
        if replicas > 1 {
            return Err(err(
                "container_name",
                "one name cannot be given to several replicas: use deploy.replicas: 1 or drop container_name".into(),
            ));
        }
    }
    let tmpfs = match &svc.tmpfs {
        None => Vec::new(),
        Some(dc::Tmpfs::Simple(s)) => vec![s.clone()],
        Some(dc::Tmpfs::List(l)) => l.clone(),
    }
    .into_iter()
    .map(|t| match t.split_once(':') {
        Some((p, o)) => (p.to_string(), o.to_string()),
        None => (t, String::new()),
    })
    .collect::<BTreeMap<_, _>>();
    if let Some(p) = tmpfs.keys().find(|p| !p.starts_with('/')) {
        return Err(err("tmpfs", format!("{p:?} is not an absolute path")));
    }
    let extra_hosts = svc
        .extra_hosts
        .iter()
        .map(|h| {
            // `HOST=IP` is Compose's newer form; the engine takes `HOST:IP`.
            let (host, ip) = h
                .split_once('=')
                .or_else(|| h.split_once(':'))
                .ok_or_else(|| err("extra_hosts", format!("{h:?} is not HOST:IP")))?;
            Ok(format!("{host}:{ip}"))
        })
        .collect::<Result<Vec<_>, ComposeError>>()?;
    let stop_grace_period = svc
        .stop_grace_period
        .as_deref()
        .map(|d| go_duration(d).map_err(|e| err("stop_grace_period", e)))
        .transpose()?;
    let healthcheck = svc
        .healthcheck
        .as_ref()
        .map(|h| healthcheck(h).map_err(|(k, e)| err(&format!("healthcheck{k}"), e)))
        .transpose()?;
    let mut depends_on = Vec::new();
    match &svc.depends_on {
        dc::DependsOnOptions::Simple(l) => depends_on.extend(l.iter().map(|d| Dependency {
            service: d.clone(),
            condition: Condition::Started,
            required: true,
            restart: false,
        })),
        dc::DependsOnOptions::Conditional(m) => {
            for (d, c) in m {
                let key = format!("depends_on.{d}");
                let condition =
                    match c.condition.as_str() {
                        "service_started" => Condition::Started,
                        "service_healthy" => Condition::Healthy,
                        "service_completed_successfully" => Condition::Completed,
                        other => {
                            return Err(err(
                                &format!("{key}.condition"),
                                format!("{other:?}: service_started, service_healthy or service_completed_successfully"),
                            ))
                        }
                    };
                depends_on.push(Dependency {
                    service: d.clone(),
                    condition,
                    required: c.required != Some(false),
                    restart: c.restart == Some(true),
                });
            }
        }
    }
    if let Some(d) = depends_on.iter().find(|d| d.service == name) {
        return Err(err(
            "depends_on",
            format!("{:?} depends on itself", d.service),
        ));
    }
    let expose = svc
        .expose
        .iter()
        .map(|e| {
            let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
            let ok = port.parse::<u16>().is_ok_and(|p| p > 0) && ["tcp", "udp"].contains(&proto);
            if ok {
                Ok(e.clone())
            } else {
                Err(err(
                    "expose",
                    format!("{e:?} is not PORT or PORT/PROTOCOL (tcp, udp; no ranges)"),
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    Ok(ContainerOptions {
        entrypoint,
        user: nonempty(&svc.user),
        working_dir: nonempty(&svc.working_dir),
        hostname: nonempty(&svc.hostname),
        container_name: svc.container_name.clone(),
        cap_add: svc.cap_add.clone(),
        cap_drop: svc.cap_drop.clone(),
        extra_hosts,
        tmpfs,
        read_only: svc.read_only,
        // Read as given; the caller sets `None` when the file does not say.
        init: Some(svc.init),
        stop_signal: nonempty(&svc.stop_signal),
        stop_grace_period,
        healthcheck,
        depends_on,
        networks: Vec::new(),
        // Set by the caller.
        restart: Restart::No,
        expose,
        files: Vec::new(),
    })
}

/// Compose's `healthcheck:` for the engine: a string test is `CMD-SHELL`, a list starts with
/// `CMD`, `CMD-SHELL` or `NONE`; `disable: true` is `NONE`.
fn healthcheck(h: &dc::Healthcheck) -> Result<EngineHealthcheck, (String, String)> {
    let test = if h.disable {
        vec!["NONE".to_string()]
    } else {
        match &h.test {
            None => return Err((".test".into(), "required (or disable: true)".into())),
            Some(dc::HealthcheckTest::Single(s)) => vec!["CMD-SHELL".into(), s.clone()],
            Some(dc::HealthcheckTest::Multiple(l)) => {
                match l.first().map(String::as_str) {
                    Some("CMD" | "CMD-SHELL") if l.len() > 1 => {}
                    Some("NONE") => {}
                    _ => {
                        return Err((
                            ".test".into(),
                            "a list starts with CMD, CMD-SHELL or NONE, then the command".into(),
                        ))
                    }
                }
                l.clone()
            }
        }
    };
    let dur = |k: &str, v: &Option<String>| {
        v.as_deref()
            .map(|d| go_duration(d).map_err(|e| (format!(".{k}"), e)))
            .transpose()
    };
    let retries = match h.retries {
        0 => None,
        r => Some(u32::try_from(r).ok().filter(|r| *r <= 100).ok_or((
            ".retries".to_string(),
            "must be between 1 and 100".to_string(),
        ))?),
    };
    Ok(EngineHealthcheck {
        test,
        interval: dur("interval", &h.interval)?,
        timeout: dur("timeout", &h.timeout)?,
        start_period: dur("start_period", &h.start_period)?,
        start_interval: dur("start_interval", &h.start_interval)?,
        retries,
    })
}

/// A Compose duration (Go's syntax): `1m30s`, `10s`, `1.5s`, `500ms`, `2h`; units `us`,
/// `ms`, `s`, `m`, `h`, and a bare number of seconds.
pub fn go_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?} is not a duration (like 30s, 1m30s or 500ms)");
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return std::time::Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut total = 0f64;
    let mut rest = t;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[u..];
    }
    std::time::Duration::try_from_secs_f64(total).map_err(|_| bad())
}

fn label_pairs(l: &dc::Labels) -> BTreeMap<String, String> {
    match l {
        dc::Labels::List(l) => l
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect(),
        dc::Labels::Map(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
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
    dir: &Path,
    declared: &BTreeMap<String, String>,
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
        resolve_path(dir, &source).display().to_string()
    } else {
        match declared.get(&source) {
            Some(name) => name.clone(),
            None => {
                return Err(format!(
                    "{source:?} is not declared in the top-level volumes: (Compose refuses it too)"
                ))
            }
        }
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
