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
use super::error::OrchestratorError;
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

    pub async fn ensure_network(&self, net: &super::manifest::NetworkSpec) -> Result<String> {
        self.term()?;
        Ok(self.engine.ensure_network(net).await?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::fake_engine::{FakeEngine, TestGuard};
    use crate::containers::spec::{container_spec, ContainerToken, Creator};
    use crate::containers::Manifest;

    const FED: &str = "0123456789abcdef";

    fn observed(term: u64, env: &str, federation: Option<&str>) -> Observed {
        Observed {
            id: "c1".into(),
            name: "brh_dev_web_1".into(),
            env: env.into(),
            service: "web".into(),
            replica: Some(1),
            term,
            owner: "node-a".into(),
            image: "brh-test/sleep:1".into(),
            running: true,
            federation: federation.map(Into::into),
        }
    }

    #[test]
    fn the_fence_admits_our_containers_of_terms_up_to_ours() {
        for (term, fed) in [(0, None), (4, Some(FED)), (5, Some(FED)), (5, None)] {
            assert_eq!(fence(&observed(term, "dev", fed), 5, "dev", FED), Ok(()));
        }
        assert_eq!(
            fence(&observed(6, "dev", Some(FED)), 5, "dev", FED),
            Err(OrchestratorError::Fenced {
                id: "c1".into(),
                theirs: 6,
                ours: 5
            })
        );
        // Another federation's or env's container is not ours at all, whatever its term.
        for o in [
            observed(1, "dev", Some("other")),
            observed(1, "prod", Some(FED)),
        ] {
            assert!(matches!(
                fence(&o, 5, "dev", FED),
                Err(OrchestratorError::Engine(EngineError::NotFound(_)))
            ));
        }
    }

    fn fenced(guard: Arc<TestGuard>) -> (FakeEngine, FencedEngine<FakeEngine>) {
        let engine = FakeEngine::new(Some(guard.clone()));
        let e = engine.clone();
        let connector = FencedConnector::new(
            Box::new(move || {
                let e = e.clone();
                Box::pin(async move { Ok(e) })
            }),
            guard,
            "dev",
            FED,
            "node-a",
        );
        let f = futures_util::FutureExt::now_or_never(connector.connect())
            .expect("the fake connects at once")
            .unwrap();
        (engine, f)
    }

    #[tokio::test]
    async fn reads_pass_while_every_mutation_is_refused_without_the_lease() {
        let guard = TestGuard::leader(3);
        let (engine, f) = fenced(guard.clone());
        let id = engine.add(
            "brh_dev_web_1",
            &[
                (labels::MANAGED, "true"),
                (labels::ENV, "dev"),
                (labels::TERM, "3"),
            ],
            false,
        );
        guard.lose();
        assert!(f.list().await.unwrap().ours.len() == 1);
        assert!(f.inspect(&id).await.is_ok());
        let refused = |r: Result<()>| matches!(r, Err(OrchestratorError::NotLeader(_)));
        assert!(refused(f.start(&id).await));
        assert!(refused(f.stop(&id, Duration::ZERO).await));
        assert!(refused(f.remove(&id).await));
        assert!(refused(f.kill(&id).await));
        assert!(refused(f.rename(&id, "x").await));
        assert!(refused(f.pull("brh-test/sleep:1").await));
        assert!(matches!(
            f.ensure_network(&crate::containers::manifest::NetworkSpec {
                name: "brh".into(),
                ..Default::default()
            })
            .await,
            Err(OrchestratorError::NotLeader(_))
        ));
        assert!(engine.records().is_empty());
    }

    #[tokio::test]
    async fn a_create_must_label_the_container_as_ours_under_a_term_not_newer() {
        let guard = TestGuard::leader(3);
        let (engine, f) = fenced(guard);
        let svc = Manifest::parse("services:\n  web: { image: brh-test/sleep:1 }\n")
            .unwrap()
            .services[0]
            .clone();
        let spec = |term, federation| {
            let creator = Creator {
                env: "dev",
                node: "node-a",
                federation,
                epoch: 1,
            };
            let token = ContainerToken::Node("N".into());
            container_spec(
                creator,
                &svc,
                &svc.image,
                "n".into(),
                1,
                term,
                &token,
                "b",
                &|n| n.to_string(),
            )
        };
        assert!(matches!(
            f.create(&spec(4, FED)).await,
            Err(OrchestratorError::Fenced {
                theirs: 4,
                ours: 3,
                ..
            })
        ));
        assert!(matches!(
            f.create(&spec(3, "other")).await,
            Err(OrchestratorError::BadRequest(_))
        ));
        assert!(engine.records().is_empty());
        assert!(f.create(&spec(3, FED)).await.is_ok());
        // A gone container's removal is done; its start is not found.
        assert_eq!(f.remove("gone").await, Ok(()));
        assert!(matches!(
            f.start("gone").await,
            Err(OrchestratorError::Engine(EngineError::NotFound(_)))
        ));
    }
}
