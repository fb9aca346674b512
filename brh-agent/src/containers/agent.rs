//! Glue between the agent (role keeping, events) and the orchestrator: the lease guard,
//! the promote/demote hooks and the leader-only loops.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::orchestrator::{Orchestrator, OrchestratorConfig};
use super::{LeaseGuard, NotLeader};
use crate::config::ContainerSettings;
use crate::node::{RoleHooks, Shared};
use crate::role::DemoteReason;

/// The agent's own guard (`Shared::guard`, evaluated on the monotonic clock at each call).
pub struct SharedGuard(pub Arc<Shared>);

impl LeaseGuard for SharedGuard {
    fn check(&self) -> Result<u64, NotLeader> {
        self.0.guard().map_err(|_| NotLeader)
    }
}

/// Builds the orchestrator of a running agent.
pub fn orchestrator(shared: &Arc<Shared>, settings: &ContainerSettings) -> Arc<Orchestrator> {
    let cfg = &shared.cfg;
    let orch = Orchestrator::new(
        OrchestratorConfig {
            env: cfg.env.clone(),
            node: cfg.node_id.clone(),
            epoch: cfg.root.epoch,
            seal: cfg.seal.clone(),
            token_ttl: settings.token_ttl,
            stop_timeout: settings.stop_timeout,
            demote_policy: settings.demote_policy,
            chaos: settings.chaos,
        },
        settings.manifest.clone(),
        Arc::new(SharedGuard(shared.clone())),
    );
    let events = shared.clone();
    orch.set_event_sink(Box::new(move |m| events.events.log(m)));
    orch
}

/// Promote/demote hooks that reconcile or apply the demotion policy, in the background (the
/// keeper must never wait on the engine), then call the inner hooks.
pub struct ContainerHooks {
    pub inner: Arc<dyn RoleHooks>,
    pub orch: Arc<Orchestrator>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl ContainerHooks {
    pub fn new(inner: Arc<dyn RoleHooks>, orch: Arc<Orchestrator>) -> Arc<Self> {
        Arc::new(ContainerHooks {
            inner,
            orch,
            tasks: Mutex::new(Vec::new()),
        })
    }

    fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut t = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        t.retain(|h| !h.is_finished());
        t.push(tokio::spawn(f));
    }

    /// Waits for promotions and demotions still running (a drain on shutdown), up to `limit`.
    pub async fn settle(&self, limit: Duration) {
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = tokio::time::timeout(limit, futures_util::future::join_all(tasks)).await;
    }
}

impl RoleHooks for ContainerHooks {
    fn promoted(&self, term: u64) {
        let orch = self.orch.clone();
        self.spawn(async move {
            match orch.promote().await {
                Ok(r) => orch.event(format!(
                    "PROMOTION: term {term}: adopted {}, started {}, created {}, fenced {}, unhealthy {}",
                    r.adopted.len(),
                    r.started.len(),
                    r.created.len(),
                    r.fenced.len(),
                    r.unhealthy.len()
                )),
                Err(e) => {
                    tracing::warn!("[PROMOTE] reconcile failed: {e}");
                    orch.event(format!("PROMOTION: term {term}: reconcile failed: {e}"));
                }
            }
        });
        self.inner.promoted(term);
    }

    fn demoted(&self, term: u64, reason: DemoteReason) {
        let orch = self.orch.clone();
        self.spawn(async move {
            match orch.demote(term).await {
                Ok(drained) if !drained.is_empty() => {
                    orch.event(format!("DEMOTION: drained {} containers", drained.len()))
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("[DEMOTE] policy failed: {e}"),
            }
        });
        self.inner.demoted(term, reason);
    }
}

/// Starts the leader-only loops (each checks the guard itself before acting).
pub fn spawn_loops(
    orch: &Arc<Orchestrator>,
    settings: &ContainerSettings,
    stop: &CancellationToken,
) {
    if settings.recovery {
        tokio::spawn(orch.clone().run_recovery(stop.clone()));
    }
    if settings.chaos.is_some() {
        tokio::spawn(orch.clone().run_chaos(stop.clone()));
    }
}
