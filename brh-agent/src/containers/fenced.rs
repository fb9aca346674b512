//! The engine as the orchestrator is allowed to see it: every mutation re-checks, immediately
//! before it reaches the engine, that this agent may act (the lease guard, or for a demoted
//! agent its witness authority) and that the target container may be acted on (the fence:
//! BRH-managed, of this env and this federation, and labelled with a term not newer than
//! ours). Reads pass through. The orchestrator holds only a [`FencedEngine`], never the raw
//! engine, so the invariant holds whatever order its steps call things in.
//!
//! The target's labels are read from the engine at each mutation, not taken from the caller:
//! labels are immutable after create, but a fresh read also covers ids the caller got from
//! anywhere (an event, an API request).
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::engine::{
    ContainerEngine, ContainerEvent, CreateSpec, EngineError, Inspected, Listed, Observed,
};
use super::orchestrator::OrchestratorError;
use super::{labels, LeaseGuard, NotLeader};

type Result<T> = std::result::Result<T, OrchestratorError>;

/// Where the right to mutate comes from.
#[derive(Clone)]
enum Authority {
    /// The lease: the guard's term at each call; refused while the guard refuses.
    Lease(Arc<dyn LeaseGuard>),
    /// A demoted agent that held `last_term`: no lease any more, so it may only act on
    /// containers this node created in a term not newer than that one, and never create.
    Witness { last_term: u64 },
}

/// Connects to an engine (again).
pub type Connect<E> =
    Box<dyn Fn() -> BoxFuture<'static, std::result::Result<E, EngineError>> + Send + Sync>;

/// Where the orchestrator gets its engines: each one it hands out is already fenced, so the
/// raw engine never leaves this module.
pub struct FencedConnector<E> {
    connect: Connect<E>,
    guard: Arc<dyn LeaseGuard>,
    env: String,
    federation: String,
    node: String,
}

impl<E: ContainerEngine> FencedConnector<E> {
    /// Engines from `connect`, behind `guard`, acting for node `node` on env `env` of
    /// federation `federation`.
    pub fn new(
        connect: Connect<E>,
        guard: Arc<dyn LeaseGuard>,
        env: &str,
        federation: &str,
        node: &str,
    ) -> Self {
        FencedConnector {
            connect,
            guard,
            env: env.into(),
            federation: federation.into(),
            node: node.into(),
        }
    }

    pub async fn connect(&self) -> std::result::Result<FencedEngine<E>, EngineError> {
        Ok(FencedEngine {
            engine: (self.connect)().await?,
            authority: Authority::Lease(Arc::clone(&self.guard)),
            env: self.env.clone(),
            federation: self.federation.clone(),
            node: self.node.clone(),
        })
    }
}

/// An engine behind the lease guard and the fence. Cheap to clone (the engine is a handle).
#[derive(Clone)]
pub struct FencedEngine<E> {
    engine: E,
    authority: Authority,
    env: String,
    federation: String,
    node: String,
}

/// The refusal of a witness's create, or of a mutation of a container it did not create.
const WITNESS: NotLeader = NotLeader {
    leader: None,
    reason: "witness",
};

/// The fence, for a container labelled `target` and an agent acting under `term`: refused
/// unless the container is of env `env` and federation `federation` ([`super::plan::is_ours`],
/// so an unlabelled one is ours) and its `brh.term` is not greater than `term`. Another env's
/// or federation's container is reported as not found, as the engine's inspection does.
pub fn fence(target: &Observed, term: u64, env: &str, federation: &str) -> Result<()> {
    if !target.is_ours(federation) {
        return Err(EngineError::NotFound(format!(
            "{} belongs to another federation (brh.federation={})",
            target.id,
            target.federation.as_deref().unwrap_or_default()
        ))
        .into());
    }
    if target.env != env {
        return Err(EngineError::NotFound(format!(
            "{} belongs to env {}, not {env}",
            target.id, target.env
        ))
        .into());
    }
    if target.term > term {
        return Err(OrchestratorError::Fenced {
            id: target.id.clone(),
            theirs: target.term,
            ours: term,
        });
    }
    Ok(())
}

impl<E: ContainerEngine> FencedEngine<E> {
    /// The same engine for an agent demoted from `last_term` (the demotion policy's drain):
    /// mutations no longer need the lease, but only reach containers this node created under a
    /// term not newer than `last_term`; nothing can be created.
    pub fn witness(&self, last_term: u64) -> Self {
        FencedEngine {
            authority: Authority::Witness { last_term },
            ..self.clone()
        }
    }

    /// The term mutations are made under now: the guard's answer (a witness has none).
    pub fn term(&self) -> Result<u64> {
        match &self.authority {
            Authority::Lease(guard) => Ok(guard.check()?),
            Authority::Witness { .. } => Err(WITNESS.into()),
        }
    }

    /// Whether a mutation of `target` would be admitted now, by the same rule as the
    /// mutations themselves, without making one: for steps that must refuse up front rather
    /// than halfway. Returns the term to act under.
    pub fn admits(&self, target: &Observed) -> Result<u64> {
        let term = match &self.authority {
            Authority::Lease(guard) => guard.check()?,
            Authority::Witness { last_term } => {
                if target.owner != self.node {
                    return Err(WITNESS.into());
                }
                *last_term
            }
        };
        fence(target, term, &self.env, &self.federation)?;
        Ok(term)
    }

    /// The authority and the fence for the container `id`, read from the engine now. `Ok(None)`:
    /// the container is gone.
    async fn admit_target(&self, id: &str) -> Result<Option<u64>> {
        // Refuse before asking the engine anything when the lease is already gone.
        self.term_or_witness()?;
        let target = match self.engine.holder(id).await {
            Ok(Some(o)) => o,
            Ok(None) => {
                return Err(EngineError::NotFound(format!("{id} is not managed by BRH")).into())
            }
            Err(EngineError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // Checked again after the inspection, as close to the mutation as it can be.
        self.admits(&target).map(Some)
    }

    fn term_or_witness(&self) -> Result<()> {
        match &self.authority {
            Authority::Lease(guard) => guard.check().map(|_| ()).map_err(Into::into),
            Authority::Witness { .. } => Ok(()),
        }
    }

    /// `admit_target`, for a mutation of a container that must exist.
    async fn admit_existing(&self, id: &str) -> Result<()> {
        match self.admit_target(id).await? {
            Some(_) => Ok(()),
            None => Err(EngineError::NotFound(format!("No such container: {id}")).into()),
        }
    }

    // Reads: no authority needed.

    pub async fn ping(&self) -> Result<()> {
        Ok(self.engine.ping().await?)
    }

    /// The managed containers of this env: this federation's and others'.
    pub async fn list(&self) -> Result<Listed> {
        Ok(self
            .engine
            .list_managed(&self.env, &self.federation)
            .await?)
    }

    /// One of this federation's containers (another federation's is not found).
    pub async fn inspect(&self, id: &str) -> Result<Inspected> {
        Ok(self.engine.inspect_managed(id, &self.federation).await?)
    }

    /// Who holds a name: for error messages only.
    pub async fn holder(&self, name: &str) -> Result<Option<Observed>> {
        Ok(self.engine.holder(name).await?)
    }

    pub async fn image_exists(&self, image: &str) -> Result<bool> {
        Ok(self.engine.image_exists(image).await?)
    }

    pub fn events(
        &self,
    ) -> impl futures_util::Stream<Item = std::result::Result<ContainerEvent, EngineError>> + Send + use<E>
    {
        self.engine.events(&self.env)
    }

    // Mutations: each one admitted immediately before it is made.

    pub async fn ensure_network(&self, name: &str) -> Result<String> {
        self.term()?;
        Ok(self.engine.ensure_network(name).await?)
    }

    pub async fn pull(&self, image: &str) -> Result<()> {
        self.term()?;
        Ok(self.engine.pull(image).await?)
    }

    /// Creates a container under the current term: the spec must label it as managed, of this
    /// env and federation, with a term not newer than the guard's.
    pub async fn create(&self, spec: &CreateSpec) -> Result<String> {
        let term = self.term()?;
        let label = |k: &str| spec.labels.get(k).map(String::as_str);
        let spec_term = label(labels::TERM).and_then(|t| t.parse::<u64>().ok());
        if label(labels::MANAGED) != Some("true")
            || label(labels::ENV) != Some(self.env.as_str())
            || label(labels::FEDERATION) != Some(self.federation.as_str())
            || spec_term.is_none()
        {
            return Err(OrchestratorError::BadRequest(format!(
                "refusing to create {}: not labelled as a container of env {} and this federation",
                spec.name, self.env
            )));
        }
        if let Some(theirs) = spec_term.filter(|t| *t > term) {
            return Err(OrchestratorError::Fenced {
                id: spec.name.clone(),
                theirs,
                ours: term,
            });
        }
        Ok(self.engine.create(spec).await?)
    }

    pub async fn start(&self, id: &str) -> Result<()> {
        self.admit_existing(id).await?;
        Ok(self.engine.start(id).await?)
    }

    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
        self.admit_existing(id).await?;
        Ok(self.engine.stop(id, timeout).await?)
    }

    /// Removes `id` (forced); a container already gone is not an error, as with the engine.
    pub async fn remove(&self, id: &str) -> Result<()> {
        match self.admit_target(id).await? {
            Some(_) => Ok(self.engine.remove(id).await?),
            None => Ok(()),
        }
    }

    pub async fn kill(&self, id: &str) -> Result<()> {
        self.admit_existing(id).await?;
        Ok(self.engine.kill(id).await?)
    }

    pub async fn rename(&self, id: &str, new_name: &str) -> Result<()> {
        self.admit_existing(id).await?;
        Ok(self.engine.rename(id, new_name).await?)
    }
}
