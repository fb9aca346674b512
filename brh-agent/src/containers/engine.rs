//! The Docker engine, through bollard. Only this file knows bollard's types; everything above
//! it works with [`Observed`] and [`CreateSpec`], through the [`ContainerEngine`] trait, so the
//! orchestrator's steps run unchanged against an in-memory engine in unit tests.
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, EndpointIpamConfig, EndpointSettings,
    HealthConfig, HealthStatusEnum, HostConfig, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkingConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};

use super::labels;
use super::manifest::NetworkSpec;
use super::spec::Endpoint;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("docker engine unavailable: {0}")]
    Unavailable(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("docker engine refused: {0}")]
    Refused(String),
}

impl From<BollardError> for EngineError {
    fn from(e: BollardError) -> Self {
        match e {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => match status_code {
                404 => EngineError::NotFound(message),
                409 => EngineError::Conflict(message),
                _ => EngineError::Refused(format!("{status_code}: {message}")),
            },
            other => EngineError::Unavailable(other.to_string()),
        }
    }
}

/// A BRH-managed container as the engine shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub id: String,
    pub name: String,
    pub env: String,
    pub service: String,
    pub replica: Option<u32>,
    pub term: u64,
    pub owner: String,
    pub image: String,
    pub running: bool,
    /// Label `brh.federation`; `None` on containers of a release before it.
    pub federation: Option<String>,
}

impl Observed {
    /// Whether it belongs to federation `federation` ([`super::plan::is_ours`]).
    pub fn is_ours(&self, federation: &str) -> bool {
        super::plan::is_ours(self.federation.as_deref(), federation)
    }
}

/// The managed containers of one env, split by federation: everything above the engine acts
/// on `ours` only; `foreign` (another federation's) is there to be reported, never touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    pub ours: Vec<Observed>,
    pub foreign: Vec<Observed>,
}

/// Details only `inspect` gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub observed: Observed,
    pub started_at: Option<String>,
    pub ip: Option<String>,
    pub env_vars: Vec<String>,
    /// The engine's health status; `None` when the container has no healthcheck.
    pub health: Option<HealthStatus>,
    /// The exit status of a container that ran and exited; `None` while running, and for
    /// one created but never started.
    pub exit_code: Option<i64>,
}

/// What the engine's healthcheck says of a running container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthStatus {
    Starting,
    Healthy,
    /// With the last check's output.
    Unhealthy(String),
}

/// What `inspect` shows of any container (`observed` is `None` when BRH does not manage it).
struct AnyInspected {
    observed: Option<Observed>,
    started_at: Option<String>,
    ip: Option<String>,
    env_vars: Vec<String>,
    health: Option<HealthStatus>,
    exit_code: Option<i64>,
}

pub use super::spec::CreateSpec;

/// One container event of the engine's stream: what happened (`die`, `start`, …) to which
/// container id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub action: Option<String>,
    pub id: Option<String>,
}

/// The operations the orchestrator needs from a container engine. [`Engine`] is the real one
/// (bollard). Contracts every implementation keeps, because the orchestrator relies on them:
/// `list_managed` and `inspect_managed` show only BRH-managed containers (`brh.managed=true`),
/// `inspect_managed` reports unmanaged and other federations' containers as
/// [`EngineError::NotFound`]; `start` and `stop` of a container already in that state succeed;
/// `remove` is forced and succeeds when the container is already gone; `create` and `rename`
/// answer [`EngineError::Conflict`] when the name is taken.
///
/// Nothing here checks the lease or the fence: the orchestrator reaches an engine only through
/// [`super::fenced::FencedEngine`], which does before every mutation.
pub trait ContainerEngine: Clone + Send + Sync + 'static {
    fn ping(&self) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Every BRH-managed container of `env`, split into federation `federation`'s and others'.
    fn list_managed(
        &self,
        env: &str,
        federation: &str,
    ) -> impl Future<Output = Result<Listed, EngineError>> + Send;
    /// One container of federation `federation` by id or name.
    fn inspect_managed(
        &self,
        id_or_name: &str,
        federation: &str,
    ) -> impl Future<Output = Result<Inspected, EngineError>> + Send;
    /// Who holds a name or id: `None` when BRH does not manage it, `NotFound` when nothing does.
    fn holder(
        &self,
        id_or_name: &str,
    ) -> impl Future<Output = Result<Option<Observed>, EngineError>> + Send;
    /// The id of the network `net` names, created if missing (unless it is external).
    fn ensure_network(
        &self,
        net: &NetworkSpec,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    fn image_exists(&self, image: &str) -> impl Future<Output = Result<bool, EngineError>> + Send;
    fn pull(&self, image: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Creates the container (not started) and returns its id.
    fn create(&self, spec: &CreateSpec)
        -> impl Future<Output = Result<String, EngineError>> + Send;
    fn start(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn stop(
        &self,
        id: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn kill(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn rename(
        &self,
        id: &str,
        new_name: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Container events of the BRH-managed containers of `env`, until the engine goes away.
    fn events(
        &self,
        env: &str,
    ) -> impl futures_util::Stream<Item = Result<ContainerEvent, EngineError>> + Send + use<Self>;
}

impl ContainerEngine for Engine {
    async fn ping(&self) -> Result<(), EngineError> {
        Engine::ping(self).await
    }
    async fn list_managed(&self, env: &str, federation: &str) -> Result<Listed, EngineError> {
        Engine::list_managed(self, env, federation).await
    }
    async fn inspect_managed(
        &self,
        id_or_name: &str,
        federation: &str,
    ) -> Result<Inspected, EngineError> {
        Engine::inspect_managed(self, id_or_name, federation).await
    }
    async fn holder(&self, id_or_name: &str) -> Result<Option<Observed>, EngineError> {
        Engine::holder(self, id_or_name).await
    }
    async fn ensure_network(&self, net: &NetworkSpec) -> Result<String, EngineError> {
        Engine::ensure_network(self, net).await
    }
    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        Engine::image_exists(self, image).await
    }
    async fn pull(&self, image: &str) -> Result<(), EngineError> {
        Engine::pull(self, image).await
    }
    async fn create(&self, spec: &CreateSpec) -> Result<String, EngineError> {
        Engine::create(self, spec).await
    }
    async fn start(&self, id: &str) -> Result<(), EngineError> {
        Engine::start(self, id).await
    }
    async fn stop(&self, id: &str, timeout: Duration) -> Result<(), EngineError> {
        Engine::stop(self, id, timeout).await
    }
    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        Engine::remove(self, id).await
    }
    async fn kill(&self, id: &str) -> Result<(), EngineError> {
        Engine::kill(self, id).await
    }
    async fn rename(&self, id: &str, new_name: &str) -> Result<(), EngineError> {
        Engine::rename(self, id, new_name).await
    }
    fn events(
        &self,
        env: &str,
    ) -> impl futures_util::Stream<Item = Result<ContainerEvent, EngineError>> + Send + use<> {
        Engine::events(self, env)
    }
}

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

impl Engine {
    /// Connects through `DOCKER_HOST` (or the default socket) and negotiates the API version:
    /// bollard's default is newer than many daemons (Debian's 20.10 speaks 1.41).
    pub async fn connect() -> Result<Self, EngineError> {
        let docker = Docker::connect_with_defaults()
            .map_err(|e| EngineError::Unavailable(e.to_string()))?
            .with_timeout(Duration::from_secs(60));
        let docker = docker.negotiate_version().await?;
        Ok(Engine { docker })
    }

    pub async fn ping(&self) -> Result<(), EngineError> {
        self.docker.ping().await?;
        Ok(())
    }

    fn observed(
        id: Option<String>,
        name: Option<String>,
        image: Option<String>,
        labels_map: Option<HashMap<String, String>>,
        running: bool,
    ) -> Option<Observed> {
        let l = labels_map.unwrap_or_default();
        if l.get(labels::MANAGED).map(String::as_str) != Some("true") {
            return None;
        }
        Some(Observed {
            id: id?,
            name: name.unwrap_or_default().trim_start_matches('/').to_string(),
            env: l.get(labels::ENV).cloned().unwrap_or_default(),
            service: l.get(labels::SERVICE).cloned().unwrap_or_default(),
            replica: l.get(labels::REPLICA).and_then(|r| r.parse().ok()),
            term: l
                .get(labels::TERM)
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
            owner: l.get(labels::OWNER).cloned().unwrap_or_default(),
            image: image.unwrap_or_default(),
            running,
            federation: l.get(labels::FEDERATION).cloned(),
        })
    }

    /// Every BRH-managed container of `env`, running or not: federation `federation`'s
    /// (labelled with it, or unlabelled) and other federations'.
    pub async fn list_managed(&self, env: &str, federation: &str) -> Result<Listed, EngineError> {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{}=true", labels::MANAGED),
                format!("{}={env}", labels::ENV),
            ],
        )]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self.docker.list_containers(Some(opts)).await?;
        let (ours, foreign) = list
            .into_iter()
            .filter_map(|c| {
                let running = matches!(
                    c.state,
                    Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                );
                Self::observed(
                    c.id,
                    c.names.and_then(|n| n.into_iter().next()),
                    c.image,
                    c.labels,
                    running,
                )
            })
            .filter(|o| o.env == env)
            .partition(|o| o.is_ours(federation));
        Ok(Listed { ours, foreign })
    }

    /// Inspects a container of federation `federation` by id or name. Unmanaged containers,
    /// and other federations', are reported as not found, so nothing above this layer can
    /// act on them by accident.
    pub async fn inspect_managed(
        &self,
        id_or_name: &str,
        federation: &str,
    ) -> Result<Inspected, EngineError> {
        let c = self.inspect_any(id_or_name).await?;
        match c.observed {
            None => Err(EngineError::NotFound(format!(
                "{id_or_name} is not managed by BRH"
            ))),
            Some(o) if !o.is_ours(federation) => Err(EngineError::NotFound(format!(
                "{id_or_name} belongs to another federation (brh.federation={})",
                o.federation.as_deref().unwrap_or_default()
            ))),
            Some(observed) => Ok(Inspected {
                observed,
                started_at: c.started_at,
                ip: c.ip,
                env_vars: c.env_vars,
                health: c.health,
                exit_code: c.exit_code,
            }),
        }
    }

    /// Who holds a container name or id, managed or not, of any federation: for error
    /// messages only (nothing acts on the answer).
    pub async fn holder(&self, id_or_name: &str) -> Result<Option<Observed>, EngineError> {
        Ok(self.inspect_any(id_or_name).await?.observed)
    }

    async fn inspect_any(&self, id_or_name: &str) -> Result<AnyInspected, EngineError> {
        let c = self.docker.inspect_container(id_or_name, None).await?;
        let state = c.state.unwrap_or_default();
        let config = c.config.unwrap_or_default();
        let health = state.health.as_ref().and_then(|h| match h.status? {
            HealthStatusEnum::STARTING => Some(HealthStatus::Starting),
            HealthStatusEnum::HEALTHY => Some(HealthStatus::Healthy),
            HealthStatusEnum::UNHEALTHY => Some(HealthStatus::Unhealthy(
                h.log
                    .as_ref()
                    .and_then(|l| l.last())
                    .and_then(|r| r.output.clone())
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            )),
            _ => None,
        });
        let ip = c.network_settings.and_then(|n| {
            n.networks?
                .into_values()
                .find_map(|e| e.ip_address.filter(|ip| !ip.is_empty()))
        });
        let observed = Self::observed(
            c.id,
            c.name,
            config.image.clone(),
            config.labels.clone(),
            state.running.unwrap_or(false),
        );
        let exit_code = match state.status {
            Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD) => {
                state.exit_code
            }
            _ => None,
        };
        Ok(AnyInspected {
            observed,
            started_at: state.started_at,
            ip,
            env_vars: config.env.unwrap_or_default(),
            health,
            exit_code,
        })
    }

    /// Ids of the networks named exactly `name`, sorted. Docker allows several networks with
    /// one name (two agents creating it at once), and then refuses to resolve the name.
    async fn networks_named(&self, name: &str) -> Result<Vec<String>, EngineError> {
        let filters = HashMap::from([("name", vec![name.to_string()])]);
        let opts = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        let mut ids: Vec<String> = self
            .docker
            .list_networks(Some(opts))
            .await?
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| n.id)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Makes sure a network of that name exists and returns the id to attach containers to.
    /// When duplicates exist, every agent picks the same one (the smallest id), and a
    /// duplicate this call created itself is removed again.
    /// An `external` network is only looked up: someone else made it, and its absence is an
    /// error naming it.
    pub async fn ensure_network(&self, net: &NetworkSpec) -> Result<String, EngineError> {
        let name = net.name.as_str();
        // One creator at a time within this process; across processes duplicates are
        // cleaned up below.
        static CREATE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one = CREATE.lock().await;
        let existing = self.networks_named(name).await?;
        if net.external && existing.is_empty() {
            return Err(EngineError::NotFound(format!(
                "network {name} is declared external but does not exist: create it (docker network create {name})"
            )));
        }
        if let Some(first) = existing.first() {
            // Docker 20.10 refuses even id-based references while a name is ambiguous: drop
            // duplicates nobody uses (removal of one in use fails harmlessly).
            for dup in &existing[1..] {
                let _ = self.docker.remove_network(dup).await;
            }
            return Ok(first.clone());
        }
        let mut network_labels: HashMap<String, String> = net.labels.clone().into_iter().collect();
        network_labels.insert(labels::MANAGED.to_string(), "true".to_string());
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            internal: net.internal.then_some(true),
            ipam: (!net.subnets.is_empty()).then(|| Ipam {
                config: Some(
                    net.subnets
                        .iter()
                        .map(|s| IpamConfig {
                            subnet: Some(s.subnet.clone()),
                            gateway: s.gateway.clone(),
                            ip_range: s.ip_range.clone(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            labels: Some(network_labels),
            ..Default::default()
        };
        let created = self.docker.create_network(req).await?.id;
        let all = self.networks_named(name).await?;
        let chosen = all.first().cloned().unwrap_or_else(|| created.clone());
        for dup in all.iter().filter(|id| **id != chosen) {
            let _ = self.docker.remove_network(dup).await;
        }
        Ok(chosen)
    }

    pub async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    pub async fn pull(&self, image: &str) -> Result<(), EngineError> {
        let opts = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let mut stream = self.docker.create_image(Some(opts), None, None);
        while let Some(item) = stream.next().await {
            item?;
        }
        Ok(())
    }

    pub async fn create(&self, spec: &CreateSpec) -> Result<String, EngineError> {
        let mut exposed: Vec<String> = spec
            .options
            .expose
            .iter()
            .map(|e| match e.contains('/') {
                true => e.clone(),
                false => format!("{e}/tcp"),
            })
            .collect();
        let mut bindings = HashMap::new();
        for p in &spec.ports {
            let key = format!("{}/{}", p.container_port, p.proto);
            if !exposed.contains(&key) {
                exposed.push(key.clone());
            }
            if p.host_port.is_some() || p.host_ip.is_some() {
                bindings.insert(
                    key,
                    Some(vec![PortBinding {
                        host_ip: p.host_ip.clone(),
                        host_port: p.host_port.map(|h| h.to_string()),
                    }]),
                );
            }
        }
        let o = &spec.options;
        let nanos = |d: Option<Duration>| d.map(|d| d.as_nanos().min(i64::MAX as u128) as i64);
        let healthcheck = o.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: nanos(h.interval),
            timeout: nanos(h.timeout),
            retries: h.retries.map(i64::from),
            start_period: nanos(h.start_period),
            start_interval: nanos(h.start_interval),
        });
        let endpoint = |e: &Endpoint| EndpointSettings {
            aliases: (!e.aliases.is_empty()).then(|| e.aliases.clone()),
            ipam_config: e.ipv4_address.clone().map(|ip| EndpointIpamConfig {
                ipv4_address: Some(ip),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (first, more) = spec
            .networks
            .split_first()
            .ok_or_else(|| EngineError::Refused("a container needs a network".into()))?;
        let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.command.clone(),
            entrypoint: o.entrypoint.clone(),
            user: o.user.clone(),
            working_dir: o.working_dir.clone(),
            hostname: o.hostname.clone(),
            stop_signal: o.stop_signal.clone(),
            stop_timeout: o
                .stop_grace_period
                .map(|d| d.as_secs().min(i64::MAX as u64) as i64),
            healthcheck,
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            host_config: Some(HostConfig {
                // BRH's own services get tini as PID 1 (a plain `sleep` ignores SIGTERM and
                // every stop would wait for the whole timeout); Compose's get it on `init: true`.
                init: Some(o.init.unwrap_or(true)),
                network_mode: Some(first.network.clone()),
                port_bindings: (!bindings.is_empty()).then_some(bindings),
                binds: list(&spec.volumes),
                cap_add: list(&o.cap_add),
                cap_drop: list(&o.cap_drop),
                extra_hosts: list(&o.extra_hosts),
                tmpfs: (!o.tmpfs.is_empty())
                    .then(|| o.tmpfs.clone().into_iter().collect::<HashMap<_, _>>()),
                readonly_rootfs: o.read_only.then_some(true),
                ..Default::default()
            }),
            // Engines before API 1.44 take one network at create; the others are connected
            // below, before the container starts (as Compose does).
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(first.network.clone(), endpoint(first))])),
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let id = self.docker.create_container(Some(opts), body).await?.id;
        for e in more {
            let req = NetworkConnectRequest {
                container: id.clone(),
                endpoint_config: Some(endpoint(e)),
            };
            if let Err(err) = self.docker.connect_network(&e.network, req).await {
                // Not half-made: a container missing a network would be adopted as it is.
                let _ = self.remove(&id).await;
                return Err(err.into());
            }
        }
        Ok(id)
    }

    pub async fn start(&self, id: &str) -> Result<(), EngineError> {
        match self.docker.start_container(id, None).await {
            Ok(()) => Ok(()),
            // 304: already running.
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<(), EngineError> {
        let opts = StopContainerOptionsBuilder::default()
            .t(timeout.as_secs().min(i32::MAX as u64) as i32)
            .build();
        match self.docker.stop_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    pub async fn kill(&self, id: &str) -> Result<(), EngineError> {
        let opts = KillContainerOptionsBuilder::default()
            .signal("SIGKILL")
            .build();
        Ok(self.docker.kill_container(id, Some(opts)).await?)
    }

    /// Renames a container. Docker answers 409 if the new name is taken and 404 if the old one
    /// is gone, so a rename doubles as a compare-and-swap on the canonical name.
    pub async fn rename(&self, id: &str, new_name: &str) -> Result<(), EngineError> {
        let opts = RenameContainerOptionsBuilder::default()
            .name(new_name)
            .build();
        Ok(self.docker.rename_container(id, opts).await?)
    }

    /// Container events of BRH-managed containers of `env`.
    pub fn events(
        &self,
        env: &str,
    ) -> impl Stream<Item = Result<ContainerEvent, EngineError>> + Send + use<> {
        let filters = HashMap::from([
            ("type", vec!["container".to_string()]),
            (
                "label",
                vec![
                    format!("{}=true", labels::MANAGED),
                    format!("{}={env}", labels::ENV),
                ],
            ),
        ]);
        let opts = EventsOptionsBuilder::default().filters(&filters).build();
        self.docker.events(Some(opts)).map(|r| {
            r.map(|ev| ContainerEvent {
                action: ev.action,
                id: ev.actor.and_then(|a| a.id),
            })
            .map_err(EngineError::from)
        })
    }
}
