//! An in-memory [`ContainerEngine`] for unit tests of the orchestrator, and a lease guard the
//! test controls. The engine keeps the contracts of the real one (managed containers only,
//! idempotent start/stop/remove, 409 on a taken name) and records every mutation that reaches
//! it with what the guard said at that moment and the target's labels, so a test can check
//! that nothing reached it that the fence should have stopped.
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::broadcast;

use super::engine::{
    ContainerEngine, ContainerEvent, CreateSpec, EngineError, HealthStatus, Inspected, Listed,
    Observed,
};
use super::manifest::NetworkSpec;
use super::{labels, LeaseGuard, NotLeader};

/// A guard the test controls: leader of `term` while `leading`; `lose_after` counts down the
/// checks still answered before the lease is lost (a loss at any point of a step).
pub struct TestGuard {
    pub term: AtomicU64,
    pub leading: AtomicBool,
    /// `usize::MAX`: never lost by counting.
    pub lose_after: AtomicUsize,
}

impl TestGuard {
    pub fn leader(term: u64) -> Arc<Self> {
        Arc::new(TestGuard {
            term: AtomicU64::new(term),
            leading: AtomicBool::new(true),
            lose_after: AtomicUsize::new(usize::MAX),
        })
    }

    pub fn lose(&self) {
        self.leading.store(false, Ordering::SeqCst);
    }

    /// Leader again, of `term`.
    pub fn regain(&self, term: u64) {
        self.term.store(term, Ordering::SeqCst);
        self.lose_after.store(usize::MAX, Ordering::SeqCst);
        self.leading.store(true, Ordering::SeqCst);
    }

    /// The lease is lost at the `n + 1`-th check from now.
    pub fn lose_after(&self, n: usize) {
        self.lose_after.store(n, Ordering::SeqCst);
    }

    /// What a check would answer now, without counting as one.
    pub fn peek(&self) -> Option<u64> {
        self.leading
            .load(Ordering::SeqCst)
            .then(|| self.term.load(Ordering::SeqCst))
    }
}

impl LeaseGuard for TestGuard {
    fn check(&self) -> Result<u64, NotLeader> {
        let left = self.lose_after.load(Ordering::SeqCst);
        if left != usize::MAX {
            if left == 0 {
                self.leading.store(false, Ordering::SeqCst);
            } else {
                self.lose_after.store(left - 1, Ordering::SeqCst);
            }
        }
        self.peek().ok_or(NotLeader {
            leader: None,
            reason: "witness",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeContainer {
    pub id: String,
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    pub env_vars: Vec<String>,
    pub running: bool,
    /// Whether it was created with an (enabled) engine healthcheck.
    pub has_healthcheck: bool,
    /// The exit status after it ran and exited (`None`: running or never started).
    pub exit_code: Option<i64>,
}

impl FakeContainer {
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels.get(k).map(String::as_str)
    }

    fn observed(&self) -> Option<Observed> {
        if self.label(labels::MANAGED) != Some("true") {
            return None;
        }
        Some(Observed {
            id: self.id.clone(),
            name: self.name.clone(),
            env: self.label(labels::ENV).unwrap_or_default().into(),
            service: self.label(labels::SERVICE).unwrap_or_default().into(),
            replica: self.label(labels::REPLICA).and_then(|r| r.parse().ok()),
            term: self
                .label(labels::TERM)
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
            owner: self.label(labels::OWNER).unwrap_or_default().into(),
            image: self.image.clone(),
            running: self.running,
            federation: self.label(labels::FEDERATION).map(Into::into),
        })
    }
}

/// One mutation that reached the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Network(String),
    Pull(String),
    Create(String),
    Start(String),
    Stop(String),
    Remove(String),
    Kill(String),
    Rename(String, String),
}

/// A mutation with what the guard answered at that moment (`None`: not leading) and the
/// labels of the container it acted on (the created one's for a create).
#[derive(Debug, Clone)]
pub struct Record {
    pub op: Op,
    pub guard: Option<u64>,
    pub target: Option<FakeContainer>,
}

#[derive(Default)]
struct State {
    containers: Vec<FakeContainer>,
    next_id: u64,
    networks: HashSet<String>,
    images: HashSet<String>,
    records: Vec<Record>,
    unavailable: bool,
    /// Starts that fail (by container name prefix), to exercise rollbacks.
    failing_starts: Vec<String>,
    /// Containers (by name prefix) whose healthcheck fails; the others' passes at once.
    unhealthy: Vec<String>,
    /// The order containers were started in, by name.
    started: Vec<String>,
}

/// A test's hook, run after each mutation.
type Hook = Box<dyn FnMut(&Op) + Send>;

#[derive(Clone)]
pub struct FakeEngine {
    state: Arc<Mutex<State>>,
    guard: Option<Arc<TestGuard>>,
    events: broadcast::Sender<ContainerEvent>,
    /// Run after each mutation: a test's way to change the world in the middle of a step.
    after: Arc<Mutex<Option<Hook>>>,
}

impl FakeEngine {
    /// An engine whose records note what `guard` answers at each mutation.
    pub fn new(guard: Option<Arc<TestGuard>>) -> Self {
        FakeEngine {
            state: Arc::default(),
            guard,
            events: broadcast::channel(256).0,
            after: Arc::default(),
        }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake engine lock")
    }

    /// Puts a container on the engine "from outside" (another leader, an operator).
    pub fn add(&self, name: &str, labels: &[(&str, &str)], running: bool) -> String {
        let mut st = self.st();
        st.next_id += 1;
        let id = format!("{:064x}", 0x00c0_ffee_0000_u64 + st.next_id);
        st.containers.push(FakeContainer {
            id: id.clone(),
            name: name.into(),
            image: "brh-test/sleep:1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            env_vars: Vec::new(),
            running,
            has_healthcheck: false,
            exit_code: None,
        });
        id
    }

    /// The healthchecks of containers named `name_prefix…` fail.
    pub fn fail_health_of(&self, name_prefix: &str) {
        self.st().unhealthy.push(name_prefix.into());
    }

    /// The healthchecks of containers named `name_prefix…` pass again, with the engine's
    /// `health_status: healthy` event for each running one.
    pub fn heal_health_of(&self, name_prefix: &str) {
        let ids: Vec<String> = {
            let mut st = self.st();
            st.unhealthy.retain(|p| p != name_prefix);
            st.containers
                .iter()
                .filter(|c| c.running && c.has_healthcheck && c.name.starts_with(name_prefix))
                .map(|c| c.id.clone())
                .collect()
        };
        for id in ids {
            let _ = self.events.send(ContainerEvent {
                action: Some("health_status: healthy".into()),
                id: Some(id),
            });
        }
    }

    /// The names of the containers started so far, in order.
    pub fn start_order(&self) -> Vec<String> {
        self.st().started.clone()
    }

    pub fn add_image(&self, image: &str) {
        self.st().images.insert(image.into());
    }

    pub fn fail_starts_of(&self, name_prefix: &str) {
        self.st().failing_starts.push(name_prefix.into());
    }

    pub fn set_unavailable(&self, down: bool) {
        self.st().unavailable = down;
    }

    pub fn after_each_mutation(&self, f: impl FnMut(&Op) + Send + 'static) {
        *self.after.lock().unwrap() = Some(Box::new(f));
    }

    /// The container dies (as if its process exited with status 1), with the engine's `die`
    /// event.
    pub fn crash(&self, id: &str) {
        self.exit(id, 1);
    }

    /// The container's process exits with `code`, with the engine's `die` event.
    pub fn exit(&self, id: &str, code: i64) {
        if let Some(c) = self.st().containers.iter_mut().find(|c| c.id == id) {
            c.running = false;
            c.exit_code = Some(code);
        }
        let _ = self.events.send(ContainerEvent {
            action: Some("die".into()),
            id: Some(id.into()),
        });
    }

    pub fn containers(&self) -> Vec<FakeContainer> {
        self.st().containers.clone()
    }

    pub fn get(&self, id: &str) -> Option<FakeContainer> {
        self.st().containers.iter().find(|c| c.id == id).cloned()
    }

    pub fn by_name(&self, name: &str) -> Option<FakeContainer> {
        self.st()
            .containers
            .iter()
            .find(|c| c.name == name)
            .cloned()
    }

    pub fn records(&self) -> Vec<Record> {
        self.st().records.clone()
    }

    pub fn ops(&self) -> Vec<Op> {
        self.st().records.iter().map(|r| r.op.clone()).collect()
    }

    pub fn clear_records(&self) {
        self.st().records.clear();
    }

    fn up(&self) -> Result<(), EngineError> {
        if self.st().unavailable {
            return Err(EngineError::Unavailable("fake engine is down".into()));
        }
        Ok(())
    }

    /// The container `id_or_name` names: by id, id prefix or name, like Docker.
    fn find(st: &State, id_or_name: &str) -> Result<usize, EngineError> {
        st.containers
            .iter()
            .position(|c| {
                c.id == id_or_name || c.name == id_or_name || c.id.starts_with(id_or_name)
            })
            .ok_or_else(|| EngineError::NotFound(format!("No such container: {id_or_name}")))
    }

    /// Records a mutation that reached the engine, whether it then succeeds or not, with the
    /// guard's answer and the target as they are now.
    fn record(&self, st: &mut State, op: &Op, target: Option<FakeContainer>) {
        st.records.push(Record {
            op: op.clone(),
            guard: self.guard.as_ref().and_then(|g| g.peek()),
            target,
        });
    }

    fn after(&self, op: &Op) {
        if let Some(f) = self.after.lock().unwrap().as_mut() {
            f(op);
        }
    }

    /// A mutation of container `id`: recorded, then `f` applies it.
    fn mutate(
        &self,
        id: &str,
        op: Op,
        f: impl FnOnce(&mut State, usize) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        self.up()?;
        let r = {
            let mut st = self.st();
            let found = Self::find(&st, id);
            let target = found.as_ref().ok().map(|i| st.containers[*i].clone());
            self.record(&mut st, &op, target);
            found.and_then(|i| f(&mut st, i))
        };
        self.after(&op);
        r
    }
}

impl ContainerEngine for FakeEngine {
    async fn ping(&self) -> Result<(), EngineError> {
        self.up()
    }

    async fn list_managed(&self, env: &str, federation: &str) -> Result<Listed, EngineError> {
        self.up()?;
        let (ours, foreign) = self
            .st()
            .containers
            .iter()
            .filter_map(FakeContainer::observed)
            .filter(|o| o.env == env)
            .partition(|o| o.is_ours(federation));
        Ok(Listed { ours, foreign })
    }

    async fn inspect_managed(
        &self,
        id_or_name: &str,
        federation: &str,
    ) -> Result<Inspected, EngineError> {
        self.up()?;
        let st = self.st();
        let c = &st.containers[Self::find(&st, id_or_name)?];
        let health = (c.has_healthcheck && c.running).then(|| {
            if st.unhealthy.iter().any(|p| c.name.starts_with(p)) {
                HealthStatus::Unhealthy("check failed".into())
            } else {
                HealthStatus::Healthy
            }
        });
        match c.observed() {
            Some(o) if o.is_ours(federation) => Ok(Inspected {
                observed: o,
                started_at: None,
                ip: Some("127.0.0.1".into()),
                env_vars: c.env_vars.clone(),
                health,
                exit_code: c.exit_code.filter(|_| !c.running),
            }),
            _ => Err(EngineError::NotFound(format!(
                "{id_or_name} is not one of ours"
            ))),
        }
    }

    async fn holder(&self, id_or_name: &str) -> Result<Option<Observed>, EngineError> {
        self.up()?;
        let st = self.st();
        Ok(st.containers[Self::find(&st, id_or_name)?].observed())
    }

    async fn ensure_network(&self, net: &NetworkSpec) -> Result<String, EngineError> {
        self.up()?;
        let name = net.name.as_str();
        let op = Op::Network(name.into());
        {
            let mut st = self.st();
            self.record(&mut st, &op, None);
            st.networks.insert(name.into());
        }
        self.after(&op);
        Ok(format!("net-{name}"))
    }

    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        self.up()?;
        Ok(self.st().images.contains(image))
    }

    async fn pull(&self, image: &str) -> Result<(), EngineError> {
        self.up()?;
        let op = Op::Pull(image.into());
        {
            let mut st = self.st();
            self.record(&mut st, &op, None);
            if image.contains("missing") {
                return Err(EngineError::NotFound(format!("no such image {image}")));
            }
            st.images.insert(image.into());
        }
        self.after(&op);
        Ok(())
    }

    async fn create(&self, spec: &CreateSpec) -> Result<String, EngineError> {
        self.up()?;
        let op = Op::Create(spec.name.clone());
        let r = {
            let mut st = self.st();
            st.next_id += 1;
            let c = FakeContainer {
                id: format!("{:064x}", st.next_id),
                name: spec.name.clone(),
                image: spec.image.clone(),
                labels: spec.labels.clone(),
                env_vars: spec.env.clone(),
                running: false,
                has_healthcheck: spec
                    .options
                    .healthcheck
                    .as_ref()
                    .is_some_and(|h| h.is_enabled()),
                exit_code: None,
            };
            self.record(&mut st, &op, Some(c.clone()));
            if st.containers.iter().any(|x| x.name == spec.name) {
                Err(EngineError::Conflict(format!(
                    "name {} is already in use",
                    spec.name
                )))
            } else {
                st.containers.push(c.clone());
                Ok(c.id)
            }
        };
        self.after(&op);
        r
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.mutate(id, Op::Start(id.into()), |st, i| {
            let name = st.containers[i].name.clone();
            if st.failing_starts.iter().any(|p| name.starts_with(p)) {
                return Err(EngineError::Refused(format!("500: cannot start {name}")));
            }
            st.containers[i].running = true;
            st.containers[i].exit_code = None;
            st.started.push(name);
            Ok(())
        })
    }

    async fn stop(&self, id: &str, _timeout: Duration) -> Result<(), EngineError> {
        self.mutate(id, Op::Stop(id.into()), |st, i| {
            st.containers[i].running = false;
            st.containers[i].exit_code = Some(143);
            Ok(())
        })
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        match self.mutate(id, Op::Remove(id.into()), |st, i| {
            st.containers.remove(i);
            Ok(())
        }) {
            Err(EngineError::NotFound(_)) => Ok(()),
            r => r,
        }
    }

    async fn kill(&self, id: &str) -> Result<(), EngineError> {
        self.mutate(id, Op::Kill(id.into()), |st, i| {
            st.containers[i].running = false;
            st.containers[i].exit_code = Some(137);
            Ok(())
        })
    }

    async fn rename(&self, id: &str, new_name: &str) -> Result<(), EngineError> {
        self.mutate(id, Op::Rename(id.into(), new_name.into()), |st, i| {
            if st.containers.iter().any(|c| c.name == new_name) {
                return Err(EngineError::Conflict(format!("{new_name} is in use")));
            }
            st.containers[i].name = new_name.into();
            Ok(())
        })
    }

    fn events(
        &self,
        _env: &str,
    ) -> impl Stream<Item = Result<ContainerEvent, EngineError>> + Send + use<> {
        futures_util::stream::unfold(self.events.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => return Some((Ok(ev), rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }
}
