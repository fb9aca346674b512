//! `kv` mode: KV *is* the register. Each step loads the env from KV, runs the event, and
//! writes the keys that differ ([`layout::plan_save`]); nothing of the env stays in memory, so
//! a step whose write failed is simply not answered (the rule of every store).
use std::cell::RefCell;

use brh_shared::election::EnvState;
use brh_shared::replay::NonceMark;
use brh_shared::Timing;

use super::{layout, plausible_cursor, Kv};
use crate::store::{
    step_in_memory, Answer, EnvSlot, Event, HistoryPage, StepError, Stepped, Store, StoreError,
};
use crate::vecmap::VecMap;

/// Entries kept in [`KvModeStore::marks`] before it is cleared (bounded memory per isolate).
const MARKS_KEPT: usize = 20_000;

/// The key of one (env, node) in [`KvModeStore::marks`] (ids never contain a newline).
fn mark_key(env: &str, node: &str) -> String {
    format!("{env}\n{node}")
}

/// Whether mark `a` is ahead of mark `b` (accepted later by the same node).
fn mark_ahead(a: &NonceMark, b: &NonceMark) -> bool {
    if a.boot_id == b.boot_id {
        a.seq > b.seq
    } else {
        a.retired.contains(&b.boot_id)
    }
}

pub struct KvModeStore {
    pub kv: Kv,
    /// How often a peer key must be refreshed (ttl − interval).
    timing: Timing,
    /// The newest replay mark this isolate accepted per (env, node). Peer keys are not
    /// rewritten on every beat, so KV's mark can lag; merging this in at load refuses a
    /// replayed request in the isolate that saw the original. (Across isolates a replay is
    /// possible until the node's key is refreshed — ≤ ttl − interval — part of kv mode's
    /// documented weakness.)
    /// Keyed by [`mark_key`] (a `VecMap`: no hash table code in the Wasm for this one map).
    marks: RefCell<VecMap<NonceMark>>,
}

impl KvModeStore {
    pub fn new(kv: Kv, timing: Timing) -> Self {
        KvModeStore {
            kv,
            timing,
            marks: RefCell::default(),
        }
    }

    /// The env as KV holds it, with this isolate's newer replay marks.
    async fn load(&self, env: &str) -> Result<Option<EnvState>, StoreError> {
        let Some(mut state) = self.kv.load(env).await? else {
            return Ok(None);
        };
        let marks = self.marks.borrow();
        if !marks.is_empty() {
            for (node, p) in state.peers.iter_mut() {
                if let Some(m) = marks.get(&mark_key(env, node)) {
                    if mark_ahead(m, &p.nonce) {
                        p.nonce = m.clone();
                    }
                }
            }
        }
        Ok(Some(state))
    }
}

impl Store for KvModeStore {
    async fn step<T>(
        &self,
        env: &str,
        now_ms: u64,
        event: Event<'_>,
        answer: Answer<'_, T>,
    ) -> Result<Stepped<T>, StepError> {
        let before = self.load(env).await?;
        let mut slot = EnvSlot {
            state: before.clone().unwrap_or_default(),
            history: Default::default(),
        };
        let stepped =
            step_in_memory(&mut slot, now_ms, event, answer).map_err(StepError::Refused)?;
        let refresh = self
            .timing
            .lease_ttl_ms
            .saturating_sub(self.timing.heartbeat_interval_ms);
        let ops = layout::plan_save(
            env,
            before.as_ref(),
            &slot.state,
            &stepped.outcome.history,
            refresh,
        );
        self.kv.apply_all(ops).await?;
        let mut marks = self.marks.borrow_mut();
        if marks.len() > MARKS_KEPT {
            marks.clear();
        }
        for (node, p) in &slot.state.peers {
            let before_mark = before
                .as_ref()
                .and_then(|b| b.peers.get(node))
                .map(|p| &p.nonce);
            if before_mark != Some(&p.nonce) {
                marks.insert(mark_key(env, node), p.nonce.clone());
            }
        }
        Ok(stepped)
    }

    async fn read<T>(
        &self,
        env: &str,
        _now_ms: u64,
        f: Answer<'_, T>,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.load(env).await?.map(|s| f(&s)))
    }

    async fn history(
        &self,
        env: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        self.kv.history(env, cursor, limit).await
    }

    async fn envs(&self) -> Result<Vec<String>, StoreError> {
        self.kv.envs().await
    }

    fn valid_history_cursor(&self, cursor: &str) -> bool {
        plausible_cursor(cursor)
    }
}
