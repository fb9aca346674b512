//! The Worker's view of KV in `durable-object` mode: read only. Every write and every read of
//! an env is routed to that env's register; what is left for the Worker is the env index
//! (`/federation/envs`, the cron's list of envs to sweep).
use super::{plausible_cursor, Kv};
use crate::store::{Answer, Event, HistoryPage, StepError, Stepped, Store, StoreError};

pub struct KvReader {
    pub kv: Kv,
}

impl Store for KvReader {
    /// Never reached: the Worker routes every env write to the register, and answers in
    /// place only requests refused before any state is touched. Refused rather than
    /// bypassing the register.
    async fn step<T>(
        &self,
        _env: &str,
        _now_ms: u64,
        _event: Event<'_>,
        _answer: Answer<'_, T>,
    ) -> Result<Stepped<T>, StepError> {
        Err(StepError::Store(StoreError(
            "this Worker runs in durable-object mode: writes go through the Durable Object".into(),
        )))
    }

    /// The mirror's copy (not used by the Worker's routes: env reads go to the register).
    async fn read<T>(
        &self,
        env: &str,
        _now_ms: u64,
        f: Answer<'_, T>,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.kv.load(env).await?.map(|s| f(&s)))
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
