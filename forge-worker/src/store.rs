//! Where the forge keeps each env's state. The core only needs these few operations; each
//! runtime provides them over its own storage (a file, Workers KV, Durable Object storage).
use std::cell::RefCell;
use std::collections::BTreeMap;

use brh_shared::wire::HistoryEntry;
use brh_shared::EnvState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// One page of leader history, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    /// Opaque cursor for the next (older) page.
    pub next: Option<String>,
}

/// The storage the forge core runs over.
///
/// Futures are not required to be `Send`: the Worker runtime is single-threaded, and the native
/// forge applies every event on one task, which is also what makes it linearizable.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// The env's state, or `None` if the env was never seen.
    async fn load(&self, env: &str) -> Result<Option<EnvState>, StoreError>;

    /// Persists `after`. `before` is what [`Store::load`] returned, so a store that keeps the
    /// state in several keys can write only the ones that changed. `history` holds the new
    /// leader-history rows, oldest first.
    async fn save(
        &self,
        env: &str,
        before: Option<&EnvState>,
        after: &EnvState,
        history: &[HistoryEntry],
    ) -> Result<(), StoreError>;

    /// Leader history, newest first, `limit` rows after `cursor`.
    async fn history(
        &self,
        env: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError>;

    /// Every env this forge has state for.
    async fn envs(&self) -> Result<Vec<String>, StoreError>;
}

/// How many history rows a store keeps per env (older rows are dropped).
pub const HISTORY_KEPT: usize = 1000;

/// An in-memory store: the base of the native file store and of unit tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    pub envs: RefCell<BTreeMap<String, (EnvState, Vec<HistoryEntry>)>>,
}

/// Pages over `rows` (oldest first) newest first; the cursor is the count already returned.
pub fn page_newest_first(rows: &[HistoryEntry], cursor: Option<&str>, limit: usize) -> HistoryPage {
    let skip: usize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
    let entries: Vec<HistoryEntry> = rows.iter().rev().skip(skip).take(limit).cloned().collect();
    let next = (skip + entries.len() < rows.len()).then(|| (skip + entries.len()).to_string());
    HistoryPage { entries, next }
}

impl Store for MemoryStore {
    async fn load(&self, env: &str) -> Result<Option<EnvState>, StoreError> {
        Ok(self.envs.borrow().get(env).map(|(s, _)| s.clone()))
    }

    async fn save(
        &self,
        env: &str,
        _before: Option<&EnvState>,
        after: &EnvState,
        history: &[HistoryEntry],
    ) -> Result<(), StoreError> {
        let mut envs = self.envs.borrow_mut();
        let slot = envs.entry(env.to_string()).or_default();
        slot.0 = after.clone();
        slot.1.extend_from_slice(history);
        let excess = slot.1.len().saturating_sub(HISTORY_KEPT);
        slot.1.drain(..excess);
        Ok(())
    }

    async fn history(
        &self,
        env: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let envs = self.envs.borrow();
        Ok(envs
            .get(env)
            .map(|(_, h)| page_newest_first(h, cursor, limit))
            .unwrap_or_default())
    }

    async fn envs(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.envs.borrow().keys().cloned().collect())
    }
}
