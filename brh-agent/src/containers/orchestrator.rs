//! The leader's hands on the engine: promotion-time reconciliation, demotion policy, deploys,
//! restarts, drains, and the recovery and chaos loops. The orchestrator reaches the engine
//! only through a [`FencedEngine`], which admits each mutation immediately before making it:
//! the lease guard ([`LeaseGuard::check`]) and the fence (only BRH-managed containers of this
//! env and this federation, never one whose `brh.term` is greater than ours; other
//! federations' are reported, never touched). So the invariant does not depend on where the
//! steps below check anything: the checks left here decide up front (refusing a request
//! before any work, or a deploy before it creates a replacement it could not finish). The
//! decisions themselves are made by the pure modules beside it (`plan`, `spec`, `deploy`,
//! `backoff`, `chaos`): this one reads the engine, the clock and the lease, and carries them
//! out. Generic over the engine ([`ContainerEngine`]): [`Engine`] in the agent, an in-memory
//! one in the unit tests.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::backoff::{Backoff, RestartBackoff};
use super::chaos::Drill;
use super::deploy::{Replacement, Step, Undo};
use super::engine::{
    ContainerEngine, CreateSpec, Engine, EngineError, HealthStatus, Inspected, Listed, Observed,
};
pub use super::error::OrchestratorError;
use super::fenced::{Connect, FencedConnector, FencedEngine};
use super::health;
use super::manifest::{Condition, Manifest, NetworkSpec, Service};
use super::plan::{self, Action, Seen};
use super::policy::{DemotePolicy, PullPolicy};
use super::spec::{self, ContainerToken, Creator};
use super::{reference, LeaseGuard};

#[derive(Debug, Clone)]
pub struct OrchestratorConfig {
    pub env: String,
    pub node: String,
    /// This federation's id (`brh.federation` on every container it creates): a container
    /// labelled with another id is foreign and never touched; an unlabelled one is ours.
    pub federation: String,
    /// The dominion root's epoch, passed to containers as `BRH_EPOCH` and label `brh.epoch`.
    pub epoch: u64,
    /// What node tokens are signed with (this node's key): `BRH_TOKEN` when the forge gave
    /// no lease token for the container's term.
    pub token_key: Vec<u8>,
    /// The newest lease token the forge gave this node, `(term, token)`: `BRH_TOKEN` and
    /// `BRH_LEASE_TOKEN` of a container created in that term.
    pub lease_token: std::sync::Arc<std::sync::Mutex<Option<(u64, String)>>>,
    /// Lifetime of the `BRH_TOKEN` minted for each container.
    pub token_ttl: Duration,
    pub stop_timeout: Duration,
    pub demote_policy: DemotePolicy,
    /// Opt-in chaos drills: kill a random managed container every `interval` with `probability`.
    pub chaos: Option<(Duration, f64)>,
}

type Result<T> = std::result::Result<T, OrchestratorError>;

/// What a promotion did, for logs, events and tests.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReconcileReport {
    pub term: u64,
    pub adopted: Vec<String>,
    pub started: Vec<String>,
    pub created: Vec<String>,
    pub removed: Vec<String>,
    pub fenced: Vec<String>,
    pub orphans: Vec<String>,
    /// Other federations' containers, left alone.
    pub foreign: Vec<String>,
    pub unhealthy: Vec<String>,
    /// One-shot jobs that have exited 0: done, left as they are.
    pub completed: Vec<String>,
    /// Services not started because a dependency (`depends_on: service_healthy` /
    /// `service_completed_successfully`) is not met yet, with why. Retried while leading
    /// ([`Orchestrator::run_dependency_retry`]).
    pub blocked: Vec<String>,
}

/// How a reconcile treats what it must wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// At promotion: dependencies are waited for (health up to its patience, a job up to
    /// [`COMPLETION_PATIENCE`]), every container is checked.
    Promotion,
    /// A later retry of blocked services: dependencies are looked at once, not waited for
    /// (the retry comes again at the next event), and only what this pass starts is checked.
    Retry,
}

/// How long a promotion waits for a one-shot dependency (`service_completed_successfully`)
/// to exit before it reports its dependents blocked; the retry starts them when it does.
const COMPLETION_PATIENCE: Duration = Duration::from_secs(60);

/// How often blocked services are looked at again when no engine event comes first.
const DEPENDENCY_RETRY: Duration = Duration::from_secs(5);

/// What a deploy did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeployOutcome {
    pub status: &'static str,
    pub service: String,
    pub image: String,
    pub previous_image: String,
    pub replaced: Vec<ReplicaChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReplicaChange {
    pub replica: u32,
    pub old_id: Option<String>,
    pub new_id: String,
}

/// The engine's standing, for `/status`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EngineStatus {
    pub available: bool,
    pub last_error: Option<String>,
}

pub struct Orchestrator<E: ContainerEngine = Engine> {
    cfg: OrchestratorConfig,
    /// Consulted directly only for up-front refusals and the leader-only loops; every
    /// mutation is admitted by the [`FencedEngine`] itself.
    guard: Arc<dyn LeaseGuard>,
    manifest: RwLock<Manifest>,
    /// Gives engines only behind the fence: no raw engine is ever held here.
    connect: FencedConnector<E>,
    engine: tokio::sync::Mutex<Option<FencedEngine<E>>>,
    status: Mutex<EngineStatus>,
    /// Serializes mutations: reconcile, deploy, restart, drain and recovery never interleave.
    ops: tokio::sync::Mutex<()>,
    /// Containers we stop ourselves, so the recovery loop does not "recover" them.
    expected_stops: Mutex<HashMap<String, Instant>>,
    /// Network name → id, resolved at promotion (names can be ambiguous on a shared engine).
    network_ids: Mutex<HashMap<String, String>>,
    /// Where the original's event lines go (the agent's `/events`).
    event_sink: std::sync::OnceLock<EventSink>,
    /// Services the last reconcile could not start (a dependency not met yet).
    blocked: Mutex<Vec<String>>,
    /// Poked by engine events that can unblock a service (a container died or changed health).
    unblock: tokio::sync::Notify,
    /// Recoveries so far per container, for `restart: on-failure:N`.
    recoveries: Mutex<HashMap<String, u32>>,
}

/// Receives event lines in the original's vocabulary (`RECOVERY: …`, `CHAOS: …`).
pub type EventSink = Box<dyn Fn(String) + Send + Sync>;

/// A container id as `docker ps` shows it.
fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// How often the engine's health status is read while waiting for `healthy`.
const HEALTH_POLL: Duration = Duration::from_millis(250);

fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Orchestrator<Engine> {
    /// An orchestrator of the Docker engine (`DOCKER_HOST`), connected on first use.
    pub fn new(
        cfg: OrchestratorConfig,
        manifest: Manifest,
        guard: Arc<dyn LeaseGuard>,
    ) -> Arc<Self> {
        Orchestrator::with_engine(
            cfg,
            manifest,
            guard,
            Box::new(|| Box::pin(Engine::connect())),
        )
    }
}

impl<E: ContainerEngine> Orchestrator<E> {
    /// An orchestrator of the engines `connect` gives.
    pub fn with_engine(
        cfg: OrchestratorConfig,
        manifest: Manifest,
        guard: Arc<dyn LeaseGuard>,
        connect: Connect<E>,
    ) -> Arc<Self> {
        let connect = FencedConnector::new(
            connect,
            Arc::clone(&guard),
            &cfg.env,
            &cfg.federation,
            &cfg.node,
        );
        Arc::new(Orchestrator {
            cfg,
            guard,
            manifest: RwLock::new(manifest),
            connect,
            engine: tokio::sync::Mutex::new(None),
            status: Mutex::new(EngineStatus::default()),
            ops: tokio::sync::Mutex::new(()),
            expected_stops: Mutex::new(HashMap::new()),
            network_ids: Mutex::new(HashMap::new()),
            event_sink: std::sync::OnceLock::new(),
            blocked: Mutex::new(Vec::new()),
            unblock: tokio::sync::Notify::new(),
            recoveries: Mutex::new(HashMap::new()),
        })
    }

    /// Sets where event lines go; only the first call has an effect.
    pub fn set_event_sink(&self, sink: EventSink) {
        let _ = self.event_sink.set(sink);
    }

    /// Logs an event line (and traces it).
    pub fn event(&self, line: String) {
        tracing::info!("{line}");
        if let Some(sink) = self.event_sink.get() {
            sink(line);
        }
    }

    pub fn manifest(&self) -> Manifest {
        self.manifest.read().expect("manifest lock").clone()
    }

    pub fn engine_status(&self) -> EngineStatus {
        self.status.lock().expect("status lock").clone()
    }

    /// Records what an engine call showed of the engine's standing: `Ok(())` for an answer,
    /// the error otherwise. Refusals by the guard or the fence say nothing about the engine.
    fn note_engine(&self, r: std::result::Result<(), &EngineError>) {
        let mut s = self.status.lock().expect("status lock");
        match r {
            Ok(()) => {
                s.available = true;
                s.last_error = None;
            }
            Err(EngineError::Unavailable(m)) => {
                if s.available || s.last_error.is_none() {
                    tracing::warn!("[ENGINE] degraded: {m}");
                }
                s.available = false;
                s.last_error = Some(m.clone());
            }
            Err(_) => s.available = true,
        }
    }

    /// The engine, behind the fence, connecting (again) if needed. bollard opens a connection
    /// per request, so once connected a client keeps working across an engine restart.
    async fn engine(&self) -> Result<FencedEngine<E>> {
        let mut slot = self.engine.lock().await;
        if let Some(e) = slot.as_ref() {
            return Ok(e.clone());
        }
        let connected = self.connect.connect().await;
        self.note_engine(connected.as_ref().map(|_| ()));
        let e = connected?;
        tracing::info!("[ENGINE] connected");
        *slot = Some(e.clone());
        Ok(e)
    }

    async fn call<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let r = f.await;
        match &r {
            Ok(_) => self.note_engine(Ok(())),
            Err(OrchestratorError::Engine(e)) => self.note_engine(Err(e)),
            Err(_) => {}
        }
        r
    }

    /// The managed containers of this env, ours and other federations': the one listing
    /// everything here acts on (only ever on `ours`).
    async fn list(&self, engine: &FencedEngine<E>) -> Result<Listed> {
        self.call(engine.list()).await
    }

    /// One of our containers (another federation's is not found, like an unmanaged one).
    async fn inspect(&self, engine: &FencedEngine<E>, id: &str) -> Result<Inspected> {
        self.call(engine.inspect(id)).await
    }

    /// A create or rename refused because `name` is taken (Docker's bare 409): say who holds
    /// the name and what to do. Other errors pass unchanged.
    async fn explain_name_taken(
        &self,
        engine: &FencedEngine<E>,
        name: &str,
        e: OrchestratorError,
    ) -> OrchestratorError {
        if !matches!(e, OrchestratorError::Engine(EngineError::Conflict(_))) {
            return e;
        }
        let why = match engine.holder(name).await {
            Ok(Some(o)) if !o.is_ours(&self.cfg.federation) => format!(
                "cannot create {name}: the name is taken by container {} of another federation \
                 (brh.federation={}), which this one never touches; remove it (docker rm -f \
                 {name}) if that federation is gone, or run this federation under another env",
                short(&o.id),
                o.federation.as_deref().unwrap_or_default()
            ),
            Ok(None) => format!(
                "cannot create {name}: the name is taken by a container BRH does not manage; \
                 rename or remove it (docker rm -f {name})"
            ),
            _ => return e,
        };
        OrchestratorError::Engine(EngineError::Conflict(why))
    }

    fn expect_stop(&self, id: &str) {
        let mut m = self.expected_stops.lock().expect("stops lock");
        m.retain(|_, t| t.elapsed() < Duration::from_secs(120));
        m.insert(id.to_string(), Instant::now());
    }

    /// Runs `f`, a stop or removal of `id` that the recovery loop must not undo: the stop is
    /// expected before the call (its `die` event can arrive before the call returns), and
    /// forgotten again when the guard or the fence refused it, since nothing was stopped.
    async fn stopping<T>(
        &self,
        id: &str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        self.expect_stop(id);
        let r = self.call(f).await;
        if r.as_ref().is_err_and(OrchestratorError::is_refusal) {
            self.was_expected(id);
        }
        r
    }

    /// How long a stop of `service`'s containers waits before SIGKILL: its
    /// `stop_grace_period`, else the agent's stop timeout.
    fn stop_timeout(&self, service: &str) -> Duration {
        self.manifest
            .read()
            .expect("manifest lock")
            .service(service)
            .and_then(|s| s.options.stop_grace_period)
            .unwrap_or(self.cfg.stop_timeout)
    }

    /// Stops (with the service's stop timeout) and removes `id`. The removal is admitted on
    /// its own, after the stop, which can take the whole timeout.
    async fn stop_and_remove(
        &self,
        engine: &FencedEngine<E>,
        id: &str,
        service: &str,
    ) -> Result<()> {
        self.stopping(id, engine.stop(id, self.stop_timeout(service)))
            .await?;
        self.call(engine.remove(id)).await
    }

    /// Waits until a started container is ready: the service's own probe (`health:` of a
    /// `bridge.runtime.yaml`) if it has one, else the engine's health status if the container
    /// has a healthcheck (the Compose file's or the image's). `required`: a container without
    /// a healthcheck is an error (a dependency waited on with `service_healthy`), not ready.
    async fn ready(
        &self,
        engine: &FencedEngine<E>,
        svc: &Service,
        id: &str,
        ip: Option<&str>,
        required: bool,
    ) -> std::result::Result<u32, health::Unhealthy> {
        if svc.health.is_some() {
            return health::wait_healthy(svc.health.as_ref(), ip).await;
        }
        let patience = svc
            .options
            .healthcheck
            .as_ref()
            .map(|h| h.patience())
            .unwrap_or(super::manifest::DEFAULT_HEALTH_PATIENCE);
        let started = Instant::now();
        let mut polls = 0u32;
        loop {
            polls += 1;
            let fail = |last: String| health::Unhealthy {
                attempts: polls,
                last,
            };
            match self.inspect(engine, id).await.map(|i| i.health) {
                Err(e) => return Err(fail(format!("cannot inspect {}: {e}", short(id)))),
                Ok(None) if required => {
                    return Err(fail(format!(
                        "{} has no healthcheck (service_healthy needs one)",
                        svc.name
                    )))
                }
                Ok(None) | Ok(Some(HealthStatus::Healthy)) => return Ok(polls),
                Ok(Some(HealthStatus::Unhealthy(out))) => {
                    return Err(fail(format!("the engine reports it unhealthy: {out}")))
                }
                Ok(Some(HealthStatus::Starting)) if started.elapsed() >= patience => {
                    return Err(fail(format!("still starting after {patience:?}")))
                }
                Ok(Some(HealthStatus::Starting)) => {
                    tokio::time::sleep(HEALTH_POLL).await;
                }
            }
        }
    }

    fn was_expected(&self, id: &str) -> bool {
        self.expected_stops
            .lock()
            .expect("stops lock")
            .remove(id)
            .is_some()
    }

    /// One replica's spec ([`spec::container_spec`]) under `term`: that term's lease token
    /// if the forge gave one, else a node token minted now; the network resolved at promotion.
    fn spec(
        &self,
        svc: &Service,
        image: &str,
        name: String,
        replica: u32,
        term: u64,
    ) -> Result<CreateSpec> {
        let newest = self
            .cfg
            .lease_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let token = match spec::lease_token_for(term, newest.as_ref()) {
            Some(lease) => ContainerToken::Lease(lease),
            None => ContainerToken::Node(
                brh_shared::token::mint(
                    &self.cfg.token_key,
                    &self.cfg.env,
                    &svc.name,
                    unix_s() + self.cfg.token_ttl.as_secs(),
                )
                .map_err(|_| {
                    OrchestratorError::BadRequest(format!(
                        "cannot mint a token for service {}",
                        svc.name
                    ))
                })?,
            ),
        };
        let ids = self.network_ids.lock().expect("network lock").clone();
        let default_network = self.manifest.read().expect("manifest lock").network.clone();
        let resolve = |n: &str| ids.get(n).cloned().unwrap_or_else(|| n.to_string());
        let creator = Creator {
            env: &self.cfg.env,
            node: &self.cfg.node,
            federation: &self.cfg.federation,
            epoch: self.cfg.epoch,
        };
        Ok(spec::container_spec(
            creator,
            svc,
            image,
            name,
            replica,
            term,
            &token,
            &default_network,
            &resolve,
        ))
    }

    /// Creates and starts one replica; returns its inspect data. A replica created but not
    /// started is removed again (the fence still applies: only while we lead).
    async fn create_started(
        &self,
        engine: &FencedEngine<E>,
        svc: &Service,
        image: &str,
        name: String,
        replica: u32,
    ) -> Result<Inspected> {
        let term = engine.term()?;
        let spec = self.spec(svc, image, name, replica, term)?;
        let id = match self.call(engine.create(&spec)).await {
            Ok(id) => id,
            Err(e) => return Err(self.explain_name_taken(engine, &spec.name, e).await),
        };
        let started = async {
            self.call(engine.start(&id)).await?;
            self.inspect(engine, &id).await
        }
        .await;
        if started.is_err() {
            // Created but not running: remove it, or the slot would have a second claimant
            // at the next promotion. Only while we still lead (a newer leader decides then),
            // which the fenced removal checks.
            let _ = self.stopping(&id, engine.remove(&id)).await;
        }
        started
    }

    /// Promotion: reconcile the manifest against the engine. Matching containers are adopted
    /// in place (same id, no restart); stopped ones are started; missing ones created; then
    /// everything started is health-checked.
    pub async fn promote(&self) -> Result<ReconcileReport> {
        self.reconcile(Pass::Promotion).await
    }

    /// Services the last reconcile left blocked on a dependency, with why.
    pub fn blocked(&self) -> Vec<String> {
        self.blocked.lock().expect("blocked lock").clone()
    }

    async fn reconcile(&self, pass: Pass) -> Result<ReconcileReport> {
        let _ops = self.ops.lock().await;
        // The term the plan is made for (and a refusal before connecting, when not leading).
        let term = self.guard.check()?;
        let engine = self.engine().await?;
        let manifest = self.manifest();
        let mut networks = manifest.networks.clone();
        if !networks.iter().any(|n| n.name == manifest.network) {
            networks.insert(
                0,
                NetworkSpec {
                    name: manifest.network.clone(),
                    ..Default::default()
                },
            );
        }
        let mut ids = HashMap::new();
        for net in &networks {
            let id = self.call(engine.ensure_network(net)).await?;
            ids.insert(net.name.clone(), id);
        }
        *self.network_ids.lock().expect("network lock") = ids;
        let listed = self.list(&engine).await?;
        // The plan sees other federations' containers too, to report them; every action on
        // one names only ours (`observed`).
        let observed = listed.ours;
        let mut seen = Vec::new();
        for o in observed.iter().chain(&listed.foreign) {
            // Whether a stopped one-shot job of ours exited 0 takes an inspect (a listing
            // does not say); nothing else needs one here.
            let one_shot = manifest
                .service(&o.service)
                .is_some_and(|s| s.options.restart.is_one_shot());
            let completed = one_shot
                && !o.running
                && o.is_ours(&self.cfg.federation)
                && self.inspect(&engine, &o.id).await?.exit_code == Some(0);
            seen.push(Seen {
                id: o.id.clone(),
                name: o.name.clone(),
                service: o.service.clone(),
                replica: o.replica,
                term: o.term,
                running: o.running,
                federation: o.federation.clone(),
                completed,
            });
        }
        let mut report = ReconcileReport {
            term,
            ..Default::default()
        };
        // Every container of the promotion by service, to check (and to wait on for the
        // services that depend on it), in start order; with whether this pass started it.
        let mut to_check: Vec<(Service, Option<String>, String, bool)> = Vec::new();
        // The one-shot jobs found done, by service.
        let mut done: Vec<(String, String)> = Vec::new();
        // `depends_on: service_healthy` results, by dependency: waited for once.
        let mut waited: HashMap<String, std::result::Result<(), String>> = HashMap::new();
        let plan = plan::reconcile(&manifest, &self.cfg.env, &self.cfg.federation, &seen, term);
        for action in plan {
            // A start waits for the dependencies' conditions (the plan lists services in
            // start order, dependencies first). Adoption starts nothing, so waits for nothing.
            if let Action::Start { service, .. } | Action::Create { service, .. } = &action {
                if let Some(svc) = manifest.service(service) {
                    if let Err(why) = self
                        .dependencies(&engine, &manifest, svc, &to_check, &done, pass, &mut waited)
                        .await
                    {
                        if pass == Pass::Promotion {
                            tracing::warn!("[PROMOTE] {service} not started: {why}");
                        }
                        let line = format!("{service}: {why}");
                        if !report.blocked.contains(&line) {
                            report.blocked.push(line);
                        }
                        continue;
                    }
                }
            }
            match action {
                Action::Adopt { id, service, .. } => {
                    report.adopted.push(id.clone());
                    let ip = self.inspect(&engine, &id).await?.ip;
                    if let Some(s) = manifest.service(&service) {
                        to_check.push((s.clone(), ip, id, false));
                    }
                }
                Action::Done { id, service, .. } => {
                    report.completed.push(id.clone());
                    done.push((service, id));
                }
                Action::Start { id, service, .. } => {
                    let one_shot = manifest
                        .service(&service)
                        .is_some_and(|s| s.options.restart.is_one_shot());
                    if pass == Pass::Retry && one_shot {
                        // A failed job is run again by a promotion (`up`) or its own
                        // `restart: on-failure`, not by every retry; its dependents see it.
                        if let Some(s) = manifest.service(&service) {
                            to_check.push((s.clone(), None, id, false));
                        }
                        continue;
                    }
                    self.call(engine.start(&id)).await?;
                    let ip = self.inspect(&engine, &id).await?.ip;
                    report.started.push(id.clone());
                    if let Some(s) = manifest.service(&service) {
                        to_check.push((s.clone(), ip, id, true));
                    }
                }
                Action::Create { service, replica } => {
                    let Some(svc) = manifest.service(&service) else {
                        continue;
                    };
                    let name = svc.container_name(&self.cfg.env, replica);
                    let c = self
                        .create_started(&engine, svc, &svc.image, name, replica)
                        .await?;
                    report.created.push(c.observed.id.clone());
                    to_check.push((svc.clone(), c.ip, c.observed.id, true));
                }
                Action::RemoveExtra { id, service } => {
                    self.stop_and_remove(&engine, &id, &service).await?;
                    report.removed.push(id);
                }
                Action::Fenced { id, term: theirs } => {
                    tracing::warn!(
                        "[PROMOTE] container {id} has term {theirs} > {term}: not touched"
                    );
                    report.fenced.push(id);
                }
                Action::Orphan { id, service } => {
                    tracing::info!("[PROMOTE] container {id} of service {service} is not in the manifest: left alone");
                    report.orphans.push(id);
                }
                Action::Foreign {
                    id,
                    name,
                    federation,
                } => {
                    tracing::warn!(
                        "[PROMOTE] container {name} belongs to another federation \
                         (brh.federation={federation}, ours is {}); left alone — remove it \
                         (docker rm -f {name}) if that federation is gone",
                        self.cfg.federation
                    );
                    report.foreign.push(id);
                }
            }
        }
        for (svc, ip, id, started) in &to_check {
            if pass == Pass::Retry && !started {
                continue;
            }
            let result = match waited.get(&svc.name) {
                Some(Ok(())) => continue,
                Some(Err(why)) => Err(why.clone()),
                None => self
                    .ready(&engine, svc, id, ip.as_deref(), false)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            if let Err(e) = result {
                tracing::warn!("[PROMOTE] {} ({}) unhealthy: {e}", svc.name, short(id));
                report.unhealthy.push(id.clone());
            }
        }
        *self.blocked.lock().expect("blocked lock") = report.blocked.clone();
        if pass == Pass::Retry {
            return Ok(report);
        }
        tracing::info!(
            "[PROMOTE] term {term}: adopted {}, started {}, created {}, removed {}, fenced {}, foreign {}, completed {}, unhealthy {}, blocked {}",
            report.adopted.len(),
            report.started.len(),
            report.created.len(),
            report.removed.len(),
            report.fenced.len(),
            report.foreign.len(),
            report.completed.len(),
            report.unhealthy.len(),
            report.blocked.len()
        );
        Ok(report)
    }

    /// Waits for what `svc` depends on: `service_started` dependencies were started before
    /// it (start order); `service_healthy` ones must be healthy, every replica;
    /// `service_completed_successfully` ones must have exited 0, every replica. Each
    /// dependency is waited for once per pass (the result is kept in `waited`); a
    /// [`Pass::Retry`] looks once instead of waiting.
    #[allow(clippy::too_many_arguments)]
    async fn dependencies(
        &self,
        engine: &FencedEngine<E>,
        manifest: &Manifest,
        svc: &Service,
        promoted: &[(Service, Option<String>, String, bool)],
        done: &[(String, String)],
        pass: Pass,
        waited: &mut HashMap<String, std::result::Result<(), String>>,
    ) -> std::result::Result<(), String> {
        for dep in &svc.options.depends_on {
            if dep.condition == Condition::Started || waited.contains_key(&dep.service) {
                if let Some(r) = waited.get(&dep.service) {
                    r.clone()?;
                }
                continue;
            }
            if !dep.required && manifest.service(&dep.service).is_none() {
                // `required: false` on a service that is not run (an inactive profile).
                continue;
            }
            let result = async {
                let dep_svc = manifest
                    .service(&dep.service)
                    .ok_or_else(|| format!("{} is not in the manifest", dep.service))?;
                let running: Vec<_> = promoted
                    .iter()
                    .filter(|(s, ..)| s.name == dep.service)
                    .collect();
                let finished = done.iter().filter(|(s, _)| *s == dep.service).count();
                if running.is_empty() && finished == 0 {
                    return Err(format!("{} has no container", dep.service));
                }
                for (_, ip, id, _) in running {
                    match dep.condition {
                        Condition::Started => {}
                        Condition::Healthy => self
                            .healthy(engine, dep_svc, id, ip.as_deref(), pass)
                            .await
                            .map_err(|e| {
                                format!("dependency {} is not healthy: {e}", dep.service)
                            })?,
                        Condition::Completed => {
                            self.completed(engine, id, pass).await.map_err(|e| {
                                format!("dependency {} has not completed: {e}", dep.service)
                            })?
                        }
                    }
                }
                if dep.condition == Condition::Healthy && finished > 0 {
                    return Err(format!(
                        "dependency {} is not healthy: it has exited",
                        dep.service
                    ));
                }
                Ok(())
            }
            .await;
            waited.insert(dep.service.clone(), result.clone());
            result?;
        }
        Ok(())
    }

    /// A `service_healthy` dependency's container: waited for at promotion, looked at once
    /// by a retry.
    async fn healthy(
        &self,
        engine: &FencedEngine<E>,
        svc: &Service,
        id: &str,
        ip: Option<&str>,
        pass: Pass,
    ) -> std::result::Result<(), String> {
        if pass == Pass::Promotion || svc.health.is_some() {
            return self
                .ready(engine, svc, id, ip, true)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        match self
            .inspect(engine, id)
            .await
            .map_err(|e| e.to_string())?
            .health
        {
            Some(HealthStatus::Healthy) => Ok(()),
            None => Err(format!(
                "{} has no healthcheck (service_healthy needs one)",
                svc.name
            )),
            Some(HealthStatus::Starting) => Err("still starting".into()),
            Some(HealthStatus::Unhealthy(out)) => {
                Err(format!("the engine reports it unhealthy: {out}"))
            }
        }
    }

    /// A `service_completed_successfully` dependency's container: it must exit 0. Waited
    /// for up to [`COMPLETION_PATIENCE`] at promotion, looked at once by a retry.
    async fn completed(
        &self,
        engine: &FencedEngine<E>,
        id: &str,
        pass: Pass,
    ) -> std::result::Result<(), String> {
        let started = Instant::now();
        loop {
            let c = self.inspect(engine, id).await.map_err(|e| e.to_string())?;
            match c.exit_code {
                Some(0) => return Ok(()),
                Some(code) => return Err(format!("it exited with status {code}")),
                None if pass == Pass::Retry || started.elapsed() >= COMPLETION_PATIENCE => {
                    return Err(format!("{} is still running", c.observed.name))
                }
                None => tokio::time::sleep(HEALTH_POLL).await,
            }
        }
    }

    /// The retry of services blocked on a dependency (leader only): after an engine event
    /// that can unblock one (a container died, its health changed), else every
    /// [`DEPENDENCY_RETRY`], a reconcile that waits for nothing starts those whose
    /// dependencies are met now. `docker compose up` waits in the foreground instead; a
    /// leader cannot, since deploys and drains share the one lane of mutations.
    pub async fn run_dependency_retry(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.unblock.notified() => {}
                _ = tokio::time::sleep(DEPENDENCY_RETRY) => {}
            }
            let before = self.blocked();
            if before.is_empty() || self.guard.check().is_err() {
                continue;
            }
            match self.reconcile(Pass::Retry).await {
                Ok(r) => {
                    let started: Vec<&String> = r.created.iter().chain(&r.started).collect();
                    if !started.is_empty() {
                        self.event(format!(
                            "DEPENDENCIES: started {} container(s) whose dependencies are met now; still blocked: {}",
                            started.len(),
                            r.blocked.len()
                        ));
                    }
                }
                Err(e) => tracing::warn!("[DEPENDENCIES] retry failed: {e}"),
            }
        }
    }

    /// Demotion: the configured policy. `last_term` is the term this agent held; it is a
    /// witness now, so the lease guard no longer applies — the fence and ownership do:
    /// `drain` removes only containers this node created under a term not newer than its own.
    pub async fn demote(&self, last_term: u64) -> Result<Vec<String>> {
        let _ops = self.ops.lock().await;
        if self.cfg.demote_policy == DemotePolicy::Relinquish {
            tracing::info!(
                "[DEMOTE] relinquish: containers keep running, no longer managed by {}",
                self.cfg.node
            );
            return Ok(Vec::new());
        }
        // No lease any more: the fence admits only containers this node created under a term
        // not newer than `last_term` (the ones chosen below).
        let engine = self.engine().await?.witness(last_term);
        let mut drained = Vec::new();
        for o in self.list(&engine).await?.ours {
            if o.owner != self.cfg.node || o.term > last_term {
                continue;
            }
            self.stop_and_remove(&engine, &o.id, &o.service).await?;
            self.event(format!("DEMOTION: drained container {}", o.name));
            drained.push(o.id);
        }
        Ok(drained)
    }

    /// One of our containers by name, id or id prefix (≥ 12). Another federation's is not
    /// found, with a message saying whose it is.
    async fn find_managed(&self, engine: &FencedEngine<E>, name: &str) -> Result<Observed> {
        let listed = self.list(engine).await?;
        let is = |o: &&Observed| {
            o.name == name || o.id == name || (name.len() >= 12 && o.id.starts_with(name))
        };
        if let Some(o) = listed.ours.iter().find(is) {
            return Ok(o.clone());
        }
        Err(OrchestratorError::NotFound(
            match listed.foreign.iter().find(is) {
                Some(o) => format!(
                    "container {} of env {} belongs to another federation \
                     (brh.federation={}); not touched",
                    o.name,
                    self.cfg.env,
                    o.federation.as_deref().unwrap_or_default()
                ),
                None => format!("no BRH-managed container {name:?} in env {}", self.cfg.env),
            },
        ))
    }

    /// `POST /restart/{name}`: only managed containers of this env.
    pub async fn restart(&self, name: &str) -> Result<Observed> {
        let _ops = self.ops.lock().await;
        self.guard.check()?;
        let engine = self.engine().await?;
        let o = self.find_managed(&engine, name).await?;
        self.stopping(&o.id, engine.stop(&o.id, self.stop_timeout(&o.service)))
            .await?;
        self.call(engine.start(&o.id)).await?;
        self.restart_dependents(&engine, &o.service).await?;
        Ok(o)
    }

    /// After an operator's restart or deploy of `service`: restarts the running containers
    /// of the services that depend on it with `restart: true` (Compose's rule), each behind
    /// the guard and the fence like every mutation.
    async fn restart_dependents(&self, engine: &FencedEngine<E>, service: &str) -> Result<()> {
        let manifest = self.manifest();
        let dependents: Vec<&Service> = manifest
            .services
            .iter()
            .filter(|s| {
                s.options
                    .depends_on
                    .iter()
                    .any(|d| d.service == service && d.restart)
            })
            .collect();
        if dependents.is_empty() {
            return Ok(());
        }
        for o in self.list(engine).await?.ours {
            if !o.running || !dependents.iter().any(|d| d.name == o.service) {
                continue;
            }
            self.stopping(&o.id, engine.stop(&o.id, self.stop_timeout(&o.service)))
                .await?;
            self.call(engine.start(&o.id)).await?;
            self.event(format!(
                "RESTART: {} restarted after {service} (depends_on restart: true)",
                o.name
            ));
        }
        Ok(())
    }

    /// `POST /drain/{name}`: stop with the timeout, then remove (admitted again after the
    /// stop: the lease can go while the container takes its time to stop).
    pub async fn drain(&self, name: &str) -> Result<Observed> {
        let _ops = self.ops.lock().await;
        self.guard.check()?;
        let engine = self.engine().await?;
        let o = self.find_managed(&engine, name).await?;
        self.stop_and_remove(&engine, &o.id, &o.service).await?;
        Ok(o)
    }

    /// `POST /deploy {service, image}`: replace the service's containers one at a time, each
    /// health-checked; if a new one fails, it is removed and the old one kept (or restarted),
    /// and the deploy stops there. Services that bind host ports are replaced stop-first (two
    /// copies cannot bind one port); others start-first, with no gap.
    pub async fn deploy(
        &self,
        service: &str,
        image: &str,
        pull: PullPolicy,
    ) -> Result<DeployOutcome> {
        reference::validate(image).map_err(OrchestratorError::BadRequest)?;
        let started = Instant::now();
        let _ops = self.ops.lock().await;
        self.guard.check()?;
        let svc = self.manifest().service(service).cloned().ok_or_else(|| {
            OrchestratorError::NotFound(format!("service {service:?} is not in the manifest"))
        })?;
        let engine = self.engine().await?;
        let present = self.call(engine.image_exists(image)).await?;
        match (pull, present) {
            (PullPolicy::Never, false) => {
                return Err(OrchestratorError::NotFound(format!(
                    "image {image} is not on the engine and the pull policy is never"
                )))
            }
            (PullPolicy::Always, _) | (PullPolicy::Missing, false) => {
                self.call(engine.pull(image)).await.map_err(|e| match e {
                    e @ (OrchestratorError::Engine(EngineError::Unavailable(_))
                    | OrchestratorError::NotLeader(_)) => e,
                    other => OrchestratorError::NotFound(format!("cannot pull {image}: {other}")),
                })?;
            }
            _ => {}
        }
        let current = self.list(&engine).await?.ours;
        let mut outcome = DeployOutcome {
            status: "deployed",
            service: service.into(),
            image: image.into(),
            previous_image: svc.image.clone(),
            replaced: Vec::new(),
            error: None,
            duration_ms: 0,
        };
        for replica in 1..=svc.replicas {
            let canonical = svc.container_name(&self.cfg.env, replica);
            let old = current
                .iter()
                .find(|o| o.service == service && o.replica.unwrap_or(1) == replica)
                .cloned();
            // Refused up front when the old replica is fenced: a start-first replacement
            // would otherwise create the new container before finding it cannot remove the
            // old one.
            if let Some(o) = &old {
                engine.admits(o)?;
            }
            match self
                .replace_one(&engine, &svc, image, replica, &canonical, old.as_ref())
                .await
            {
                Ok(new_id) => outcome.replaced.push(ReplicaChange {
                    replica,
                    old_id: old.map(|o| o.id),
                    new_id,
                }),
                Err(e @ OrchestratorError::Unhealthy { .. }) => {
                    outcome.status = "rolled-back";
                    outcome.error = Some(e.to_string());
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if outcome.status == "deployed" {
            {
                let mut m = self.manifest.write().expect("manifest lock");
                if let Some(s) = m.services.iter_mut().find(|s| s.name == service) {
                    s.image = image.into();
                }
            }
            self.restart_dependents(&engine, service).await?;
        }
        outcome.duration_ms = started.elapsed().as_millis() as u64;
        Ok(outcome)
    }

    /// Carries out one replica's [`Replacement`]: each step behind the guard it needs, and
    /// the plan's undo when a step fails.
    async fn replace_one(
        &self,
        engine: &FencedEngine<E>,
        svc: &Service,
        image: &str,
        replica: u32,
        canonical: &str,
        old: Option<&Observed>,
    ) -> Result<String> {
        let plan = Replacement {
            stop_first: svc.binds_host_ports(),
            has_old: old.is_some(),
        };
        // The plan names the old container only when there is one, and uses the new one
        // only after creating it.
        let old_id = || {
            old.map(|o| o.id.as_str())
                .expect("the plan has an old container")
        };
        let mut new: Option<Inspected> = None;
        let new_id = |new: &Option<Inspected>| {
            new.as_ref()
                .map(|c| c.observed.id.clone())
                .expect("the plan created the new container")
        };
        for step in plan.steps() {
            // A failed step is a value (`done`), which the plan's undo follows. A refusal by
            // the guard or the fence (every mutation below is admitted by the fenced engine)
            // returns at once, undoing nothing: the lease is gone, so the replacement stops
            // where it is and the next leader's reconcile takes over.
            let done: Result<()> = match step {
                Step::StopOld => {
                    self.stopping(
                        old_id(),
                        engine.stop(old_id(), self.stop_timeout(&svc.name)),
                    )
                    .await
                }
                Step::CreateNew => {
                    let term = engine.term()?;
                    let temp = format!("{canonical}_t{term}_{}", unix_s());
                    self.create_started(engine, svc, image, temp, replica)
                        .await
                        .map(|c| new = Some(c))
                }
                Step::WaitHealthy => {
                    let ip = new.as_ref().and_then(|c| c.ip.as_deref());
                    self.ready(engine, svc, &new_id(&new), ip, false)
                        .await
                        .map(|_attempts| ())
                        .map_err(|source| {
                            tracing::warn!(
                                "[DEPLOY] {} replica {replica} on {image} unhealthy: rolling back",
                                svc.name
                            );
                            OrchestratorError::Unhealthy {
                                service: svc.name.clone(),
                                source,
                            }
                        })
                }
                Step::StopAndRemoveOld => self.stop_and_remove(engine, old_id(), &svc.name).await,
                Step::Rename => match self.call(engine.rename(&new_id(&new), canonical)).await {
                    Err(e) => Err(self.explain_name_taken(engine, canonical, e).await),
                    ok => ok,
                },
            };
            if let Err(e) = done {
                if e.is_refusal() {
                    return Err(e);
                }
                for undo in plan.rollback(step) {
                    match undo {
                        Undo::RemoveNew => {
                            let id = new_id(&new);
                            let _ = self.stopping(&id, engine.remove(&id)).await;
                        }
                        Undo::StartOld => {
                            self.call(engine.start(old_id())).await?;
                        }
                        Undo::TryStartOld => {
                            let _ = self.call(engine.start(old_id())).await;
                        }
                    }
                }
                return Err(e);
            }
        }
        self.event(format!(
            "DEPLOY: {} replica {replica} now runs {image}",
            svc.name
        ));
        Ok(new_id(&new))
    }

    /// The recovery loop (leader only): restart managed containers of this env that die,
    /// driven by the engine's event stream, with exponential backoff per container. The
    /// stream is re-opened when the engine goes away; on reconnection a leader reconciles,
    /// since containers may have died while nobody was listening.
    pub async fn run_recovery(self: Arc<Self>, shutdown: CancellationToken) {
        let mut reconnect = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let restarts: Arc<Mutex<RestartBackoff>> = Arc::default();
        let mut first = true;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let engine = match self.engine().await {
                Ok(e) => e,
                Err(_) => {
                    let delay = reconnect.next_delay();
                    tokio::select! { _ = shutdown.cancelled() => return, _ = tokio::time::sleep(delay) => {} }
                    continue;
                }
            };
            let mut events = Box::pin(engine.events());
            if self.call(engine.ping()).await.is_ok() {
                reconnect.reset();
                if !first && self.guard.check().is_ok() {
                    if let Err(e) = self.promote().await {
                        tracing::warn!("[RECOVERY] reconcile after reconnect failed: {e}");
                    }
                }
                first = false;
            }
            loop {
                let ev = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    ev = events.next() => ev,
                };
                let Some(ev) = ev else { break };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        self.note_engine(Err(&e));
                        break;
                    }
                };
                let action = ev.action.as_deref().unwrap_or_default();
                if action == "die" || action.starts_with("health_status") {
                    // A job that exited, a dependency that turned healthy: a blocked
                    // dependent may start now.
                    self.unblock.notify_one();
                }
                if action != "die" {
                    continue;
                }
                let Some(id) = ev.id else {
                    continue;
                };
                if self.was_expected(&id) || self.guard.check().is_err() {
                    continue;
                }
                let me = Arc::clone(&self);
                let restarts = Arc::clone(&restarts);
                tokio::spawn(async move { me.recover(&id, &restarts).await });
            }
            let delay = reconnect.next_delay();
            tokio::select! { _ = shutdown.cancelled() => return, _ = tokio::time::sleep(delay) => {} }
        }
    }

    async fn recover(&self, id: &str, restarts: &Mutex<RestartBackoff>) {
        // The clock is read under the lock, so deaths reach the schedule in time order.
        let delay = restarts
            .lock()
            .expect("restarts lock")
            .on_death(id, Instant::now());
        tokio::time::sleep(delay).await;
        self.restart_dead(id).await;
    }

    /// Starts the dead container `id` again, if it is still dead, one of ours, and its
    /// service's `restart:` says so (a one-shot job that exited 0 is done).
    async fn restart_dead(&self, id: &str) {
        let _ops = self.ops.lock().await;
        let Ok(engine) = self.engine().await else {
            return;
        };
        // Not ours (another federation's, or gone): not found, nothing to do.
        let Ok(c) = self.inspect(&engine, id).await else {
            return;
        };
        if c.observed.running || c.observed.env != self.cfg.env {
            return;
        }
        let name = &c.observed.name;
        let restart = self
            .manifest()
            .service(&c.observed.service)
            .map(|s| s.options.restart)
            .unwrap_or_default();
        let code = c.exit_code.unwrap_or(-1);
        let so_far = self
            .recoveries
            .lock()
            .expect("recoveries lock")
            .get(id)
            .copied()
            .unwrap_or(0);
        if !restart.restarts_after(code, so_far) {
            self.event(if code == 0 && restart.is_one_shot() {
                format!(
                    "RECOVERY: {name} completed (exit 0); restart: {} leaves it done",
                    restart.as_compose()
                )
            } else {
                format!(
                    "RECOVERY: {name} exited with status {code}; restart: {} leaves it stopped{}",
                    restart.as_compose(),
                    if so_far > 0 {
                        format!(" after {so_far} restart(s)")
                    } else {
                        String::new()
                    }
                )
            });
            return;
        }
        match self.call(engine.start(id)).await {
            Ok(()) => {
                *self
                    .recoveries
                    .lock()
                    .expect("recoveries lock")
                    .entry(id.to_string())
                    .or_default() += 1;
                self.event(format!("RECOVERY: restarted container {name}"))
            }
            // No longer leading, or a newer term's container: not ours to restart.
            Err(e) if e.is_refusal() => {}
            Err(e) => tracing::warn!("[RECOVERY] cannot restart {name}: {e}"),
        }
    }

    /// Opt-in chaos drills (leader only): at each interval, with the configured probability,
    /// kill one random running managed container of this env. Recovery brings it back.
    pub async fn run_chaos(self: Arc<Self>, shutdown: CancellationToken) {
        let Some((interval, probability)) = self.cfg.chaos else {
            return;
        };
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        let mut drill = Drill::new(seed, probability);
        loop {
            tokio::select! { _ = shutdown.cancelled() => return, _ = tokio::time::sleep(interval) => {} }
            if !drill.strikes() || self.guard.check().is_err() {
                continue;
            }
            let _ops = self.ops.lock().await;
            let Ok(engine) = self.engine().await else {
                continue;
            };
            let Ok(list) = self.list(&engine).await else {
                continue;
            };
            let running: Vec<&Observed> = list.ours.iter().filter(|o| o.running).collect();
            let Some(victim) = drill.victim(running.len()).map(|i| running[i]) else {
                continue;
            };
            if self.call(engine.kill(&victim.id)).await.is_ok() {
                self.event(format!("CHAOS: killed container {}", victim.name));
            }
        }
    }

    /// The managed containers of this env and this federation, for `/status`.
    pub async fn containers(&self) -> Result<Vec<Observed>> {
        Ok(self.listed().await?.ours)
    }

    /// The managed containers of this env: this federation's and other federations'.
    pub async fn listed(&self) -> Result<Listed> {
        let engine = self.engine().await?;
        self.list(&engine).await
    }

    /// Ids of managed containers of this env and this federation (test and status helper).
    pub async fn managed_ids(&self) -> Result<HashSet<String>> {
        Ok(self.containers().await?.into_iter().map(|o| o.id).collect())
    }
}

#[cfg(test)]
mod tests;
