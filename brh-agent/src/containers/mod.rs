//! The container layer: the manifest, its reconciliation against a real Docker engine, and the
//! leader-only loops (recovery, chaos), deploys, restarts and drains.
//!
//! Split like the rest of BRH, policy apart from I/O. Pure, with no engine, clock or
//! randomness of their own: `manifest` and `reference` (parsing, validation), `policy` (the
//! operator's choices), `plan` (what promotion does given what the engine shows), `spec` (the
//! labels and variables of a container), `deploy` (the steps of replacing a replica and their
//! rollback), `backoff` (reconnect and restart delays, `now` passed in) and `chaos` (a seeded
//! drill's choices). I/O: `engine` (the [`ContainerEngine`] trait and its one bollard user),
//! `fenced` (the engine as the orchestrator sees it), `health` (the checks), `orchestrator`
//! (carries out those decisions); the tasks that follow the role live above, in
//! `orchestration.rs`. The orchestrator holds only a [`fenced::FencedEngine`], which admits
//! every mutation through [`LeaseGuard`] immediately before it, and never mutates a container
//! labelled with a term greater than its own (resource-side fencing, docs/design.md §6.4), nor one
//! labelled with another federation's id (`brh.federation`: such a container is foreign, see
//! `plan::is_ours`).
pub mod backoff;
pub mod chaos;
pub mod compose;
pub mod deploy;
pub mod engine;
pub mod error;
#[cfg(test)]
mod fake_engine;
pub mod fenced;
pub mod health;
pub mod manifest;
pub mod orchestrator;
pub mod plan;
pub mod policy;
pub mod reference;
pub mod spec;

pub use engine::{ContainerEngine, Engine, EngineError, Listed, Observed};
pub use manifest::{Manifest, ManifestError, Service};
pub use orchestrator::{DeployOutcome, Orchestrator, OrchestratorError};
pub use policy::{DemotePolicy, PullPolicy};

/// Labels BRH puts on the containers it creates. Labels are immutable after create, so they
/// carry identity and the creating term; ownership itself is the lease.
pub mod labels {
    pub const SERVICE: &str = "brh.service";
    pub const ENV: &str = "brh.env";
    pub const OWNER: &str = "brh.owner";
    pub const TERM: &str = "brh.term";
    pub const EPOCH: &str = "brh.epoch";
    pub const REPLICA: &str = "brh.replica";
    pub const MANAGED: &str = "brh.managed";
    /// The federation that created the container (`OrchestratorConfig::federation`): a
    /// leader never touches a container labelled with another federation's id.
    pub const FEDERATION: &str = "brh.federation";
    /// Compose's own labels on the containers of a Compose file (`docker compose ps -p`).
    pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
    pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
    pub const COMPOSE_NUMBER: &str = "com.docker.compose.container-number";
    pub const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";
    pub const COMPOSE_CONFIG_HASH: &str = "com.docker.compose.config-hash";
    pub const COMPOSE_NETWORK: &str = "com.docker.compose.network";
}

/// Refusal of an orchestration action because this agent does not (or no longer) lead: the
/// role guard's own refusal, with its reason (one type for the whole agent).
pub use crate::role::NotLeader;

/// The role guard every mutation passes: `Ok(term)` while this agent holds a lease whose
/// deadline has not passed, `Err(NotLeader)` otherwise. It is consulted immediately before
/// each engine call, not once per batch, so a lease lost halfway stops the batch.
pub trait LeaseGuard: Send + Sync {
    fn check(&self) -> Result<u64, NotLeader>;
}
