//! Where the forge keeps each env's state. The core only needs these few operations; each
//! runtime provides them over its own storage (a log file, Workers KV, Durable Object storage).
//!
//! The contract is "durable on change, volatile on renewal" (`brh_shared::election::durable`):
//! a store holds the env's [`EnvState`] in memory, runs an election step on it in place, and
//! persists only what the step's [`Outcome`] asks for — nothing for a renewal. So a renewal
//! costs no write anywhere, and no step clones or serializes the whole env.
use std::cell::RefCell;
use std::collections::VecDeque;

use crate::vecmap::VecMap;

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

/// An env held in memory by a store: its slot, plus what the store keeps beside it (an open
/// log file for the native store; nothing for the others).
#[derive(Debug, Default)]
pub struct Held<X> {
    pub slot: EnvSlot,
    pub extra: X,
}

/// The envs a store holds in memory over its durable storage, and the one rule every such
/// store follows: **a step whose write failed is never answered, and its env leaves memory**,
/// so the next use reloads it from storage and applies the restart rule. Nothing the caller
/// was never told about survives in memory, and nothing it was told is lost.
///
/// The file store, the Durable Object store and the memory store are this type over their
/// own `persist`. (The `kv` mode store holds nothing in memory: it loads, steps and writes on
/// every request, so a failed write is simply not answered.)
pub struct Resident<X = ()> {
    envs: RefCell<VecMap<Held<X>>>,
}

/// The held envs as a map (what the unit tests compare before and after a refused request).
impl<X: std::fmt::Debug> std::fmt::Debug for Resident<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.envs.borrow().iter()).finish()
    }
}

impl<X> Default for Resident<X> {
    fn default() -> Self {
        Resident {
            envs: RefCell::default(),
        }
    }
}

impl<X> Resident<X> {
    pub fn contains(&self, env: &str) -> bool {
        self.envs.borrow().contains_key(env)
    }

    /// Holds a loaded env (replacing what was held).
    pub fn insert(&self, env: &str, held: Held<X>) {
        self.envs.borrow_mut().insert(env.to_string(), held);
    }

    /// Forgets an env (it is reloaded from storage on its next use).
    pub fn evict(&self, env: &str) {
        self.envs.borrow_mut().remove(env);
    }

    /// Forgets every env, as an eviction of the whole process does.
    pub fn clear(&self) {
        self.envs.borrow_mut().clear();
    }

    pub fn names(&self) -> Vec<String> {
        self.envs.borrow().keys().cloned().collect()
    }

    /// Runs `f` on a held env; `None` if it is not held.
    pub fn with<R>(&self, env: &str, f: impl FnOnce(&Held<X>) -> R) -> Option<R> {
        self.envs.borrow().get(env).map(f)
    }

    /// Runs `f` on a held env, mutably; `None` if it is not held.
    pub fn with_mut<R>(&self, env: &str, f: impl FnOnce(&mut Held<X>) -> R) -> Option<R> {
        self.envs.borrow_mut().get_mut(env).map(f)
    }

    /// Runs `f` over every held env.
    pub fn fold<R>(&self, init: R, mut f: impl FnMut(R, &str, &Held<X>) -> R) -> R {
        self.envs
            .borrow()
            .iter()
            .fold(init, |acc, (k, v)| f(acc, k, v))
    }

    /// One election step on a held env (`fresh()` starts an env that is not held: the caller
    /// has loaded anything storage had). A refused event changes nothing. A durable outcome
    /// is handed to `persist` (told whether the env is new) after the state's borrow is
    /// released; if it fails the env is evicted and the step fails, so it is never answered.
    pub async fn step<T>(
        &self,
        env: &str,
        now_ms: u64,
        event: Event<'_>,
        answer: Answer<'_, T>,
        fresh: impl FnOnce() -> X,
        persist: impl AsyncFnOnce(&Outcome, bool) -> Result<(), StoreError>,
    ) -> Result<Stepped<T>, StepError> {
        let (stepped, new_env) = {
            let mut envs = self.envs.borrow_mut();
            let new_env = !envs.contains_key(env);
            let held = envs.get_or_insert_with(env, || Held {
                slot: EnvSlot::default(),
                extra: fresh(),
            });
            match step_in_memory(&mut held.slot, now_ms, event, answer) {
                Ok(s) => (s, new_env),
                Err(e) => {
                    if new_env {
                        envs.remove(env);
                    }
                    return Err(StepError::Refused(e));
                }
            }
        };
        if !stepped.outcome.is_volatile() {
            if let Err(e) = persist(&stepped.outcome, new_env).await {
                self.evict(env);
                return Err(StepError::Store(e));
            }
        }
        Ok(stepped)
    }
}

/// An in-memory store: for unit tests, and the model the durable stores follow.
#[derive(Debug, Default)]
pub struct MemoryStore {
    pub envs: Resident,
}

impl Store for MemoryStore {
    async fn step<T>(
        &self,
        env: &str,
        now_ms: u64,
        event: Event<'_>,
        answer: Answer<'_, T>,
    ) -> Result<Stepped<T>, StepError> {
        self.envs
            .step(env, now_ms, event, answer, || (), async |_, _| Ok(()))
            .await
    }

    async fn read<T>(
        &self,
        env: &str,
        _now_ms: u64,
        f: Answer<'_, T>,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.envs.with(env, |h| f(&h.slot.state)))
    }

    async fn history(
        &self,
        env: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        Ok(self
            .envs
            .with(env, |h| h.slot.page(cursor, limit))
            .unwrap_or_default())
    }

    async fn envs(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.envs.names())
    }
}
