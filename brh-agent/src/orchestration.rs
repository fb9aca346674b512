//! Glue between the agent (role keeping, events) and the container layer: the lease guard,
//! following role changes, and the leader-only loops. It lives beside the node rather than
//! in `containers/`, so the container layer never imports the agent above it.
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::ContainerSettings;
use crate::containers::orchestrator::{Orchestrator, OrchestratorConfig};
use crate::containers::{LeaseGuard, NotLeader};
use crate::node::Shared;
use crate::role::Transition;

/// The agent's own guard (`Shared::guard`, evaluated on the monotonic clock at each call).
pub struct SharedGuard(pub Arc<Shared>);

impl LeaseGuard for SharedGuard {
    fn check(&self) -> Result<u64, NotLeader> {
        self.0.guard()
    }
}

/// Builds the orchestrator of a running agent.
pub fn orchestrator(shared: &Arc<Shared>, settings: &ContainerSettings) -> Arc<Orchestrator> {
    let cfg = &shared.cfg;
    let orch = Orchestrator::new(
        OrchestratorConfig {
            env: cfg.env.clone(),
            node: cfg.node_id.clone(),
            federation: cfg.federation.clone(),
            epoch: cfg.root.epoch,
            token_key: cfg.credentials.node_key.to_vec(),
            lease_token: shared.lease_token.clone(),
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

/// What the container layer does at each role change: reconcile on promotion, the demotion
/// policy on demotion. Run by [`Shared::follow`], one at a time, so a demotion never runs
/// before the promotion it ends has finished (every step is guarded anyway: a reconcile
/// still running when the lease goes is refused step by step).
pub async fn on_role_change(orch: &Orchestrator, t: Transition) {
    match t {
        Transition::Promote { term, .. } => promoted(orch, term).await,
        Transition::Demote { term, .. } => demoted(orch, term).await,
    }
}

async fn promoted(orch: &Orchestrator, term: u64) {
    match orch.promote().await {
        Ok(r) => orch.event(format!(
            "PROMOTION: term {term}: adopted {}, started {}, created {}, fenced {}, unhealthy {}{}{}",
            r.adopted.len(),
            r.started.len(),
            r.created.len(),
            r.fenced.len(),
            r.unhealthy.len(),
            match (r.completed.len(), r.blocked.len()) {
                (0, 0) => String::new(),
                (c, b) => format!(", completed jobs {c}, blocked {b}"),
            },
            // Only when there are any: the line is otherwise the same as before the label.
            match r.foreign.len() {
                0 => String::new(),
                n => format!(", left {n} of other federations alone"),
            }
        )),
        Err(e) => {
            tracing::warn!("[PROMOTE] reconcile failed: {e}");
            orch.event(format!("PROMOTION: term {term}: reconcile failed: {e}"));
        }
    }
}

async fn demoted(orch: &Orchestrator, term: u64) {
    match orch.demote(term).await {
        Ok(drained) if !drained.is_empty() => {
            orch.event(format!("DEMOTION: drained {} containers", drained.len()))
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("[DEMOTE] policy failed: {e}"),
    }
}

/// Starts the leader-only loops (each checks the guard itself before acting); they end when
/// `stop` fires, and the caller awaits the handles (no task outlives the agent).
pub fn spawn_loops(
    orch: &Arc<Orchestrator>,
    settings: &ContainerSettings,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if settings.recovery {
        tasks.push(tokio::spawn(
            orch.clone().run_recovery(stop.clone()).in_current_span(),
        ));
    }
    // Services blocked on a dependency start when it is met (a Compose file's depends_on).
    tasks.push(tokio::spawn(
        orch.clone()
            .run_dependency_retry(stop.clone())
            .in_current_span(),
    ));
    if settings.chaos.is_some() {
        tasks.push(tokio::spawn(
            orch.clone().run_chaos(stop.clone()).in_current_span(),
        ));
    }
    tasks
}
