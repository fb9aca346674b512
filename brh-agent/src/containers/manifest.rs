//! `bridge.runtime.yaml`, the original's schema: `provider.kind: docker`, `provider.network`,
//! and `services.<name>` with `image`, `command`, `ports`, `volumes`, `env`, `labels`,
//! `health` (`http`/`tcp`, `interval`, `timeout`, `retries`) and `replicas`. Other top-level
//! sections (`dominion`, `runtime`, `consensus`, `chaos`, …) belong to the agent's
//! configuration and are ignored here. Every error names the service and the key.
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use brh_shared::ids::validate_id;
use serde_norway::Value;

use super::reference;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The network every service joins unless it names its own (`networks:` in Compose).
    pub network: String,
    /// Further networks a Compose file declares, created at promotion like `network`.
    pub networks: Vec<NetworkSpec>,
    /// In file order (Compose files: in start order, dependencies first).
    pub services: Vec<Service>,
    /// A Compose file's top-level named volumes: key → the engine's name (`{project}_{key}`,
    /// or `name:`). Empty for a `bridge.runtime.yaml`.
    pub volumes: BTreeMap<String, String>,
    /// A Compose file's top-level file-based `secrets:` and `configs:`: key → host file.
    pub secrets: BTreeMap<String, std::path::PathBuf>,
    pub configs: BTreeMap<String, std::path::PathBuf>,
}

/// A network to create (if missing) on the leader's engine: its engine name, whether it is
/// internal (no route out) and its IPAM subnets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    /// Made by someone else (`external: true`): must exist, never created.
    pub external: bool,
    pub internal: bool,
    pub subnets: Vec<Subnet>,
    /// Labels the network carries (Compose's `com.docker.compose.network` and `.project`).
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subnet {
    pub subnet: String,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub ports: Vec<PortMap>,
    pub volumes: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub health: Option<Health>,
    pub replicas: u32,
    /// What a Compose file can say beyond BRH's own schema (all empty for a
    /// `bridge.runtime.yaml` service).
    pub options: ContainerOptions,
}

/// Container settings only Compose files carry, applied the way `docker compose up` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerOptions {
    pub entrypoint: Option<Vec<String>>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    /// `container_name`: the one replica's fixed name instead of `brh_<env>_<service>_1`.
    pub container_name: Option<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `HOST:IP` entries for /etc/hosts.
    pub extra_hosts: Vec<String>,
    /// Mount point → options (`size=64m`, …; empty for none).
    pub tmpfs: BTreeMap<String, String>,
    pub read_only: bool,
    /// `None`: BRH's default (an init process, so a plain `sleep` stops on SIGTERM).
    pub init: Option<bool>,
    pub stop_signal: Option<String>,
    /// How long a stop waits before SIGKILL; `None`: the agent's `BRH_STOP_TIMEOUT`.
    pub stop_grace_period: Option<Duration>,
    /// The healthcheck the engine runs; BRH waits on the engine's health status.
    pub healthcheck: Option<EngineHealthcheck>,
    /// Services to start (and wait for) first, in file order.
    pub depends_on: Vec<Dependency>,
    /// Networks the service joins; empty: only the manifest's `network`.
    pub networks: Vec<NetworkAttachment>,
    /// What BRH's recovery does when a container of the service exits.
    pub restart: Restart,
    /// `expose:` ports (`5432`, `53/udp`): published to the service's networks only, as the
    /// image's `EXPOSE` is.
    pub expose: Vec<String>,
    /// The service's `secrets:` and `configs:` as the file names them; each is also one of
    /// the service's `volumes` (a read-only bind of the file).
    pub files: Vec<FileMount>,
}

/// One entry of a service's `secrets:` or `configs:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMount {
    /// `secrets` or `configs`.
    pub kind: &'static str,
    /// The top-level key.
    pub source: String,
    /// Where it is mounted, as Compose prints it (a secret's is always resolved; a config's
    /// only when given).
    pub target: Option<String>,
    /// The bind, as in [`Service::volumes`].
    pub mount: String,
}

/// Compose's `restart:` as BRH's recovery applies it (BRH restarts containers itself, under
/// the lease guard and the fence; the engine's own restart policy is never set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Restart {
    /// `always`, and every `bridge.runtime.yaml` service: whatever exits is started again
    /// (with backoff).
    #[default]
    Always,
    /// `unless-stopped`: as `always` (a container BRH stops itself is never restarted, and a
    /// `docker stop` by hand is recovered like a crash).
    UnlessStopped,
    /// `"no"` (Compose's default): an exited container stays exited.
    No,
    /// `on-failure[:N]`: started again only after a non-zero exit, at most N times.
    OnFailure(Option<u32>),
}

impl Restart {
    /// A one-shot job: once it has exited 0 it is done. BRH does not start it again, not
    /// even at the next promotion, and it meets `service_completed_successfully`.
    pub fn is_one_shot(self) -> bool {
        matches!(self, Restart::No | Restart::OnFailure(_))
    }

    /// The policy as Compose writes it.
    pub fn as_compose(self) -> String {
        match self {
            Restart::Always => "always".into(),
            Restart::UnlessStopped => "unless-stopped".into(),
            Restart::No => "no".into(),
            Restart::OnFailure(None) => "on-failure".into(),
            Restart::OnFailure(Some(n)) => format!("on-failure:{n}"),
        }
    }

    /// Whether recovery starts a container again that exited with `code` after `restarts`
    /// earlier recoveries.
    pub fn restarts_after(self, code: i64, restarts: u32) -> bool {
        match self {
            Restart::Always | Restart::UnlessStopped => true,
            Restart::No => false,
            Restart::OnFailure(max) => code != 0 && max.is_none_or(|m| restarts < m),
        }
    }
}

/// How long BRH waits for `healthy` from a healthcheck it knows nothing about (an image's):
/// Docker's defaults, as [`EngineHealthcheck::patience`] computes them.
pub const DEFAULT_HEALTH_PATIENCE: Duration = Duration::from_secs(185);

/// Compose's `healthcheck:` as the engine takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineHealthcheck {
    /// `["CMD", …]`, `["CMD-SHELL", "…"]` or `["NONE"]` (disabled).
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

impl EngineHealthcheck {
    /// Whether the engine will report a health status (`NONE` disables an image's check).
    pub fn is_enabled(&self) -> bool {
        self.test.first().map(String::as_str) != Some("NONE")
    }

    /// How long to wait for `healthy` before giving up: what the engine itself would need to
    /// declare the container unhealthy (start period, then `retries` failed checks, each up to
    /// an interval plus a timeout, with Docker's defaults of 30 s / 30 s / 3), plus slack.
    pub fn patience(&self) -> Duration {
        let interval = self.interval.unwrap_or(Duration::from_secs(30));
        let timeout = self.timeout.unwrap_or(Duration::from_secs(30));
        let retries = self.retries.unwrap_or(3).max(1);
        self.start_period.unwrap_or_default()
            + (interval + timeout) * (retries + 1)
            + Duration::from_secs(5)
    }
}

/// `depends_on` of one service: start `service` first, and wait until `condition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub service: String,
    pub condition: Condition,
    /// `required: false`: a missing service (say, in an inactive profile) is no error.
    pub required: bool,
    /// `restart: true`: when BRH restarts or deploys the dependency (an operator's
    /// `restart` / `deploy`, not a recovery), this service's containers are restarted after it.
    pub restart: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Started (Compose's default).
    Started,
    /// The engine reports every replica `healthy`.
    Healthy,
    /// Every replica has exited with status 0 (a one-shot job: a migration, a seed).
    Completed,
}

/// One network a service joins: its engine name, the extra names the service answers to
/// there (its own name always), and a static address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkAttachment {
    pub network: String,
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
}

impl Service {
    /// The container name of `replica`: `container_name` if the file gives one, else
    /// [`super::plan::container_name`].
    pub fn container_name(&self, env: &str, replica: u32) -> String {
        self.options
            .container_name
            .clone()
            .unwrap_or_else(|| super::plan::container_name(env, &self.name, replica))
    }

    /// Whether the service binds host ports (then two copies cannot run side by side, and a
    /// deploy replaces stop-first instead of start-first).
    pub fn binds_host_ports(&self) -> bool {
        self.ports.iter().any(|p| p.host_port.is_some())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap {
    pub host_ip: Option<String>,
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub proto: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `http://host:port/path`; `{ip}` is replaced by the container's address.
    pub http: Option<String>,
    /// `host:port`; `{ip}` as above.
    pub tcp: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {message}")]
    Read { path: String, message: String },
    #[error("manifest is not valid YAML: {0}")]
    Yaml(String),
    #[error("manifest: {key}: {message}")]
    Top { key: String, message: String },
    #[error("manifest: service {service:?}: {key}: {message}")]
    Service {
        service: String,
        key: String,
        message: String,
    },
}

fn top(key: &str, message: impl Into<String>) -> ManifestError {
    ManifestError::Top {
        key: key.into(),
        message: message.into(),
    }
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let doc: Value =
            serde_norway::from_str(text).map_err(|e| ManifestError::Yaml(e.to_string()))?;
        let provider = doc.get("provider");
        let kind = provider
            .and_then(|p| p.get("kind"))
            .map(|k| {
                k.as_str()
                    .ok_or_else(|| top("provider.kind", "must be a string"))
            })
            .transpose()?
            .unwrap_or("docker");
        if kind != "docker" {
            return Err(top(
                "provider.kind",
                format!("only \"docker\" is supported, not {kind:?}"),
            ));
        }
        let network = match provider.and_then(|p| p.get("network")) {
            None | Some(Value::Null) => "brh_net".to_string(),
            Some(v) => {
                let n = v
                    .as_str()
                    .ok_or_else(|| top("provider.network", "must be a string"))?;
                validate_id(n).map_err(|e| top("provider.network", format!("network name {e}")))?;
                n.to_string()
            }
        };
        let services = match doc.get("services") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Mapping(m)) => {
                let mut out = Vec::new();
                for (k, v) in m {
                    let name = k
                        .as_str()
                        .ok_or_else(|| top("services", "service names must be strings"))?;
                    out.push(parse_service(name, v)?);
                }
                out
            }
            Some(_) => {
                return Err(top(
                    "services",
                    "must be a mapping of service name to settings",
                ))
            }
        };
        Ok(Manifest {
            network,
            networks: Vec::new(),
            volumes: BTreeMap::new(),
            secrets: BTreeMap::new(),
            configs: BTreeMap::new(),
            services,
        })
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "ports",
    "volumes",
    "env",
    "labels",
    "health",
    "replicas",
    // Accepted for compatibility with the original's files; not used by BRH in Rust.
    "context",
    "dockerfile",
];

fn parse_service(name: &str, v: &Value) -> Result<Service, ManifestError> {
    let err = |key: &str, message: String| ManifestError::Service {
        service: name.into(),
        key: key.into(),
        message,
    };
    // Service names become part of container names and labels.
    validate_id(name).map_err(|e| err("name", format!("service name {e}")))?;
    let Value::Mapping(m) = v else {
        return Err(err("", "must be a mapping".into()));
    };
    for k in m.keys() {
        let k = k.as_str().unwrap_or("?");
        if !SERVICE_KEYS.contains(&k) {
            return Err(err(
                k,
                format!("unknown key (expected one of {})", SERVICE_KEYS.join(", ")),
            ));
        }
    }
    let string = |key: &str, v: &Value| -> Result<String, ManifestError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(err(key, "must be a string".into())),
        }
    };
    let list = |key: &str| -> Result<Vec<String>, ManifestError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .map(|(i, x)| string(&format!("{key}[{i}]"), x))
                .collect(),
            Some(_) => Err(err(key, "must be a list".into())),
        }
    };
    let map = |key: &str| -> Result<BTreeMap<String, String>, ManifestError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Mapping(m)) => m
                .iter()
                .map(|(k, x)| {
                    let k = k
                        .as_str()
                        .ok_or_else(|| err(key, "keys must be strings".into()))?;
                    Ok((k.to_string(), string(&format!("{key}.{k}"), x)?))
                })
                .collect(),
            // The list form `- KEY=value`.
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    let s = string(&format!("{key}[{i}]"), x)?;
                    let (k, val) = s.split_once('=').ok_or_else(|| {
                        err(&format!("{key}[{i}]"), format!("{s:?} is not KEY=value"))
                    })?;
                    Ok((k.to_string(), val.to_string()))
                })
                .collect(),
            Some(_) => Err(err(key, "must be a mapping or a list of KEY=value".into())),
        }
    };

    let image = match v.get("image") {
        None | Some(Value::Null) => return Err(err("image", "is required".into())),
        Some(x) => string("image", x)?,
    };
    reference::validate(&image).map_err(|e| err("image", e))?;
    let command = match v.get("command") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.split_whitespace().map(String::from).collect()),
        Some(Value::Sequence(_)) => Some(list("command")?),
        Some(_) => return Err(err("command", "must be a string or a list".into())),
    };
    let ports = list("ports")?
        .iter()
        .enumerate()
        .map(|(i, p)| parse_port(p).map_err(|m| err(&format!("ports[{i}]"), m)))
        .collect::<Result<Vec<_>, _>>()?;
    let volumes = list("volumes")?;
    for (i, vol) in volumes.iter().enumerate() {
        let parts: Vec<&str> = vol.split(':').collect();
        if !(2..=3).contains(&parts.len()) || parts[..2].iter().any(|p| p.is_empty()) {
            return Err(err(
                &format!("volumes[{i}]"),
                format!("{vol:?} is not source:target[:options]"),
            ));
        }
    }
    let env = map("env")?;
    for k in env.keys() {
        let ok = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(err(
                &format!("env.{k}"),
                "is not a valid variable name".into(),
            ));
        }
        if k.starts_with("BRH_") {
            return Err(err(
                &format!("env.{k}"),
                "BRH_* variables are set by the agent".into(),
            ));
        }
    }
    let labels = map("labels")?;
    if let Some(k) = labels.keys().find(|k| k.starts_with("brh.")) {
        return Err(err(
            &format!("labels.{k}"),
            "brh.* labels are set by the agent".into(),
        ));
    }
    let replicas = match v.get("replicas") {
        None | Some(Value::Null) => 1,
        Some(x) => x
            .as_u64()
            .filter(|r| (1..=100).contains(r))
            .ok_or_else(|| err("replicas", "must be a whole number from 1 to 100".into()))?
            as u32,
    };
    let health = match v.get("health") {
        None | Some(Value::Null) => None,
        Some(h @ Value::Mapping(_)) => {
            Some(parse_health(h).map_err(|(k, m)| err(&format!("health.{k}"), m))?)
        }
        Some(_) => return Err(err("health", "must be a mapping".into())),
    };
    let service = Service {
        name: name.into(),
        image,
        command,
        ports,
        volumes,
        env,
        labels,
        health,
        replicas,
        options: ContainerOptions::default(),
    };
    if service.replicas > 1 && service.binds_host_ports() {
        return Err(err(
            "ports",
            "a host port can be bound by one replica only: use replicas: 1 or drop the host port"
                .into(),
        ));
    }
    Ok(service)
}

/// `[host_ip:][host_port:]container_port[/proto]`.
pub(crate) fn parse_port(p: &str) -> Result<PortMap, String> {
    let (spec, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    if proto != "tcp" && proto != "udp" {
        return Err(format!("{p:?}: protocol must be tcp or udp"));
    }
    let num = |s: &str| -> Result<u16, String> {
        s.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{p:?}: {s:?} is not a port number"))
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (host_ip, host_port, container) = match parts[..] {
        [c] => (None, None, c),
        [h, c] => (None, Some(num(h)?), c),
        [ip, h, c] => (
            Some(ip.to_string()),
            if h.is_empty() { None } else { Some(num(h)?) },
            c,
        ),
        _ => return Err(format!("{p:?} is not [ip:][host:]container[/proto]")),
    };
    Ok(PortMap {
        host_ip,
        host_port,
        container_port: num(container)?,
        proto: proto.into(),
    })
}

/// `"10s"`, `"500ms"`, `"2m"`, or a bare number of seconds (the agent's duration syntax),
/// positive and under a day.
pub fn parse_duration(v: &Value) -> Result<Duration, String> {
    let ms = crate::duration::yaml_duration(v)?;
    if ms == 0 || ms >= 86_400_000 {
        return Err(format!("{ms} ms must be positive and under a day"));
    }
    Ok(Duration::from_millis(ms))
}

fn parse_health(h: &Value) -> Result<Health, (String, String)> {
    let get_str = |k: &str| -> Result<Option<String>, (String, String)> {
        match h.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err((k.into(), "must be a string".into())),
        }
    };
    let http = get_str("http")?;
    if let Some(u) = &http {
        let rest = u
            .strip_prefix("http://")
            .ok_or_else(|| ("http".to_string(), format!("{u:?} must start with http://")))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(("http".into(), format!("{u:?} has no host")));
        }
    }
    let tcp = get_str("tcp")?;
    if let Some(t) = &tcp {
        let ok = t
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            return Err(("tcp".into(), format!("{t:?} is not host:port")));
        }
    }
    let dur = |k: &str, default: Duration| match h.get(k) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => parse_duration(v).map_err(|m| (k.to_string(), m)),
    };
    let retries = match h.get("retries") {
        None | Some(Value::Null) => 12,
        Some(v) => v
            .as_u64()
            .filter(|r| (1..=1000).contains(r))
            .ok_or_else(|| {
                (
                    "retries".to_string(),
                    "must be a whole number from 1 to 1000".to_string(),
                )
            })? as u32,
    };
    Ok(Health {
        http,
        tcp,
        interval: dur("interval", Duration::from_secs(10))?,
        timeout: dur("timeout", Duration::from_secs(2))?,
        retries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
dominion: { root_env_var: FORGE_DOMINION_ROOT, service_ttl_minutes: 180 }
provider:
  kind: docker
  network: brh_net
services:
  api:
    image: brh-test/web:1
    command: ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: ["18080:8080", "127.0.0.1::9090/udp"]
    volumes: ["/srv/data:/data:ro"]
    env: { LOG_LEVEL: debug, WORKERS: 4 }
    labels: { team: core }
    health: { http: "http://127.0.0.1:18080/health", interval: 500ms, timeout: 1s, retries: 5 }
  worker:
    image: brh-test/sleep:1
    command: sleep 100
    env: ["A=1", "B=x=y"]
    replicas: 3
"#;

    #[test]
    fn parses_the_full_schema() {
        let m = Manifest::parse(FULL).unwrap();
        assert_eq!(m.network, "brh_net");
        assert_eq!(m.services.len(), 2);
        let api = &m.services[0];
        assert_eq!(api.name, "api");
        assert_eq!(api.ports[0].host_port, Some(18080));
        assert_eq!(api.ports[1].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(api.ports[1].host_port, None);
        assert_eq!(api.ports[1].proto, "udp");
        assert_eq!(api.env["WORKERS"], "4");
        let h = api.health.as_ref().unwrap();
        assert_eq!(
            (h.interval, h.timeout, h.retries),
            (Duration::from_millis(500), Duration::from_secs(1), 5)
        );
        let w = m.service("worker").unwrap();
        assert_eq!(
            w.command.as_deref(),
            Some(&["sleep".to_string(), "100".to_string()][..])
        );
        assert_eq!(w.env["B"], "x=y");
        assert_eq!(w.replicas, 3);
        assert!(w.health.is_none());
    }

    #[test]
    fn errors_name_the_service_and_key() {
        let cases = [
            (
                "services: { api: { } }",
                "service \"api\": image: is required",
            ),
            (
                "services: { api: { image: \"Bad/Name\" } }",
                "service \"api\": image:",
            ),
            (
                "services: { api: { image: a, ports: [\"x:80\"] } }",
                "service \"api\": ports[0]:",
            ),
            (
                "services: { api: { image: a, replicas: 0 } }",
                "service \"api\": replicas:",
            ),
            (
                "services: { api: { image: a, health: { interval: 5h } } }",
                "service \"api\": health.interval:",
            ),
            (
                "services: { api: { image: a, health: { http: \"ftp://x\" } } }",
                "service \"api\": health.http:",
            ),
            (
                "services: { api: { image: a, labels: { brh.owner: me } } }",
                "service \"api\": labels.brh.owner:",
            ),
            (
                "services: { api: { image: a, env: { BRH_TOKEN: x } } }",
                "service \"api\": env.BRH_TOKEN:",
            ),
            (
                "services: { api: { image: a, imgae: b } }",
                "service \"api\": imgae: unknown key",
            ),
            (
                "services: { api: { image: a, ports: [\"80:80\"], replicas: 2 } }",
                "service \"api\": ports:",
            ),
            (
                "services: { \"a b\": { image: a } }",
                "service \"a b\": name:",
            ),
            ("provider: { kind: podman }", "provider.kind:"),
            ("services: [a]", "services:"),
            ("services: {", "not valid YAML"),
        ];
        for (yaml, want) in cases {
            let e = Manifest::parse(yaml).unwrap_err().to_string();
            assert!(e.contains(want), "{yaml}\n  got: {e}\n want: {want}");
        }
    }

    #[test]
    fn defaults() {
        let m =
            Manifest::parse("services: { s: { image: a, health: { tcp: \"{ip}:80\" } } }").unwrap();
        assert_eq!(m.network, "brh_net");
        let h = m.services[0].health.as_ref().unwrap();
        assert_eq!(
            (h.interval, h.timeout, h.retries),
            (Duration::from_secs(10), Duration::from_secs(2), 12)
        );
        assert_eq!(Manifest::parse("").unwrap().services.len(), 0);
    }
}
