//! The one store type the Worker's forge runs over, whichever runtime role it plays, so the
//! core ([`Forge::handle`](crate::forge::Forge::handle) and everything under it) is compiled
//! into the Wasm once rather than once per store.
use std::rc::Rc;

use super::do_store::DoStore;
use super::kv::js::KvNs;
use super::kv::reader::KvReader;
use super::kv::store::KvModeStore;
use crate::store::{Answer, Event, HistoryPage, StepError, Stepped, Store, StoreError};

pub enum WorkerStore {
    /// The Worker in `kv` mode: KV is the register.
    Kv(KvModeStore),
    /// The Worker in `durable-object` mode: reads the env index only.
    Reader(KvReader),
    /// An env's lease register (the Durable Object).
    Register(Rc<DoStore>),
}

impl WorkerStore {
    /// Binds the request's KV namespace (the Worker's stores; the register binds its mirror
    /// once, at construction).
    pub fn bind(&self, kv: KvNs) {
        match self {
            WorkerStore::Kv(s) => s.kv.bind(kv),
            WorkerStore::Reader(s) => s.kv.bind(kv),
            WorkerStore::Register(_) => {}
        }
    }
}

impl Store for WorkerStore {
    async fn step<T>(
        &self,
        env: &str,
        now_ms: u64,
        event: Event<'_>,
        answer: Answer<'_, T>,
    ) -> Result<Stepped<T>, StepError> {
        match self {
            WorkerStore::Kv(s) => s.step(env, now_ms, event, answer).await,
            WorkerStore::Reader(s) => s.step(env, now_ms, event, answer).await,
            WorkerStore::Register(s) => s.step(env, now_ms, event, answer).await,
        }
    }

    async fn read<T>(
        &self,
        env: &str,
        now_ms: u64,
        f: Answer<'_, T>,
    ) -> Result<Option<T>, StoreError> {
        match self {
            WorkerStore::Kv(s) => s.read(env, now_ms, f).await,
            WorkerStore::Reader(s) => s.read(env, now_ms, f).await,
            WorkerStore::Register(s) => s.read(env, now_ms, f).await,
        }
    }

    async fn history(
        &self,
        env: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        match self {
            WorkerStore::Kv(s) => s.history(env, cursor, limit).await,
            WorkerStore::Reader(s) => s.history(env, cursor, limit).await,
            WorkerStore::Register(s) => s.history(env, cursor, limit).await,
        }
    }

    async fn envs(&self) -> Result<Vec<String>, StoreError> {
        match self {
            WorkerStore::Kv(s) => s.envs().await,
            WorkerStore::Reader(s) => s.envs().await,
            WorkerStore::Register(s) => s.envs().await,
        }
    }

    fn valid_history_cursor(&self, cursor: &str) -> bool {
        match self {
            WorkerStore::Kv(s) => s.valid_history_cursor(cursor),
            WorkerStore::Reader(s) => s.valid_history_cursor(cursor),
            WorkerStore::Register(s) => s.valid_history_cursor(cursor),
        }
    }
}
