//! Where the forge keeps each env's state. The core only needs these few operations; each
//! runtime provides them over its own storage (a log file, Workers KV, Durable Object storage).
//!
//! The contract is "durable on change, volatile on renewal" (`brh_shared::election::durable`):
//! a store holds the env's [`EnvState`] in memory, runs an election step on it in place, and
//! persists only what the step's [`Outcome`] asks for — nothing for a renewal. So a renewal
//! costs no write anywhere, and no step clones or serializes the whole env.
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};

use brh_shared::election::{Change, ElectionError, Outcome};
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

/// Why a step did not complete: the election refused it (nothing changed), or the store
/// could not persist it (the store has dropped the unpersisted state; see [`Store::step`]).
#[derive(Debug)]
pub enum StepError {
    Refused(ElectionError),
    Store(StoreError),
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError::Store(e)
    }
}

/// One page of leader history, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    /// Opaque cursor for the next (older) page.
    pub next: Option<String>,
}

/// The result of a step: the changes it made and what the caller built from the new state.
#[derive(Debug)]
pub struct Stepped<T> {
    pub changes: Vec<Change>,
    pub outcome: Outcome,
    pub answer: T,
}

/// An election event: mutates the state in place, or refuses without changing anything.
pub type Event<'a> = Box<dyn FnOnce(&mut EnvState) -> Result<Vec<Change>, ElectionError> + 'a>;
/// Builds the answer from the state after the event (a view, counts), without cloning it.
pub type Answer<'a, T> = Box<dyn FnOnce(&EnvState) -> T + 'a>;

/// The storage the forge core runs over.
///
/// Futures are not required to be `Send`: the Worker runtime is single-threaded, and the native
/// forge applies every event on one thread, which is also what makes it linearizable.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// Runs `event` on the env's state (a new env starts empty) and persists what the step's
    /// [`Outcome`] requires before returning. A refused event changes nothing and persists
    /// nothing. If persisting fails, the store must not keep the unpersisted state in memory
    /// (the next step reloads from storage and applies the restart rule), so nothing that was
    /// not made durable is ever answered.
    async fn step<T>(
        &self,
        env: &str,
        now_ms: u64,
        event: Event<'_>,
        answer: Answer<'_, T>,
    ) -> Result<Stepped<T>, StepError>;

    /// Reads the env's state without changing it; `None` if the env was never seen.
    async fn read<T>(
        &self,
        env: &str,
        now_ms: u64,
        f: Answer<'_, T>,
    ) -> Result<Option<T>, StoreError>;

    /// Leader history, newest first, `limit` rows after `cursor`.
    async fn history(
        &self,
        env: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError>;

    /// Every env this forge has state for.
    async fn envs(&self) -> Result<Vec<String>, StoreError>;

    /// Whether `cursor` can be a `next` value this store returned (refuse others with 400).
    fn valid_history_cursor(&self, cursor: &str) -> bool {
        cursor.parse::<usize>().is_ok_and(|n| n <= HISTORY_KEPT)
    }
}

/// How many history rows a store keeps per env (older rows are dropped).
pub const HISTORY_KEPT: usize = 1000;

/// One env held in memory: the live state and the newest history rows.
#[derive(Debug, Default)]
pub struct EnvSlot {
    pub state: EnvState,
    /// Oldest first, at most [`HISTORY_KEPT`].
    pub history: VecDeque<HistoryEntry>,
}

impl EnvSlot {
    pub fn push_history(&mut self, rows: &[HistoryEntry]) {
        for r in rows {
            if self.history.len() == HISTORY_KEPT {
                self.history.pop_front();
            }
            self.history.push_back(r.clone());
        }
    }

    /// Newest first. The cursor is the number of rows already returned, validated by the
    /// caller; cost O(limit), whatever the history length.
    pub fn page(&self, cursor: Option<&str>, limit: usize) -> HistoryPage {
        let skip: usize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
        let entries: Vec<HistoryEntry> = self
            .history
            .iter()
            .rev()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect();
        let next =
            (skip + entries.len() < self.history.len()).then(|| (skip + entries.len()).to_string());
        HistoryPage { entries, next }
    }
}

/// Runs one step on an in-memory slot: the shared part of every store that keeps the state
/// in memory (memory, native log, Durable Object). Returns the outcome to persist.
pub fn step_in_memory<T>(
    slot: &mut EnvSlot,
    now_ms: u64,
    event: Event<'_>,
    answer: Answer<'_, T>,
) -> Result<Stepped<T>, ElectionError> {
    let changes = event(&mut slot.state)?;
    let outcome = slot.state.outcome(&changes, now_ms);
    slot.push_history(&outcome.history);
    let answer = answer(&slot.state);
    Ok(Stepped {
        changes,
        outcome,
        answer,
    })
}

/// An in-memory store: for unit tests, and the model the durable stores follow.
#[derive(Debug, Default)]
pub struct MemoryStore {
    pub envs: RefCell<BTreeMap<String, EnvSlot>>,
}

impl Store for MemoryStore {
    async fn step<T>(
        &self,
        env: &str,
        now_ms: u64,
        event: Event<'_>,
        answer: Answer<'_, T>,
    ) -> Result<Stepped<T>, StepError> {
        let mut envs = self.envs.borrow_mut();
        let known = envs.contains_key(env);
        let mut fresh = EnvSlot::default();
        let slot = match envs.get_mut(env) {
            Some(s) => s,
            None => &mut fresh,
        };
        let stepped = step_in_memory(slot, now_ms, event, answer).map_err(StepError::Refused)?;
        if !known {
            envs.insert(env.to_string(), fresh);
        }
        Ok(stepped)
    }

    async fn read<T>(
        &self,
        env: &str,
        _now_ms: u64,
        f: Answer<'_, T>,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.envs.borrow().get(env).map(|s| f(&s.state)))
    }

    async fn history(
        &self,
        env: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        Ok(self
            .envs
            .borrow()
            .get(env)
            .map(|s| s.page(cursor, limit))
            .unwrap_or_default())
    }

    async fn envs(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.envs.borrow().keys().cloned().collect())
    }
}
