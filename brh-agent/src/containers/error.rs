//! What a container-layer action can end in. Its own module because both the orchestrator and
//! the fenced engine (which refuses mutations) produce it.
use super::engine::EngineError;
use super::health::Unhealthy;
use super::NotLeader;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrchestratorError {
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("container {id} belongs to term {theirs}, newer than ours ({ours}); not touched")]
    Fenced { id: String, theirs: u64, ours: u64 },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{service}: {source}")]
    Unhealthy { service: String, source: Unhealthy },
}

impl OrchestratorError {
    /// The guard or the fence refused the action: nothing reached the engine.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            OrchestratorError::NotLeader(_) | OrchestratorError::Fenced { .. }
        )
    }
}
