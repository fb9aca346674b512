//! [`Store`] over Workers KV, in the layout of [`super::layout`].
//!
//! KV is eventually consistent and has no compare-and-swap: this store is what the `kv` mode
//! runs the election over (safe within one location, two leaders possible across locations
//! while KV disagrees — docs/design.md §5.6), and what the `durable-object` mode mirrors into
//! (§5.5), where the Worker reads only the env index from it and the register answers the
//! rest.
use std::cell::RefCell;

use brh_shared::election::{EnvState, Peer};
use brh_shared::replay::NonceMark;
use brh_shared::wire::HistoryEntry;
use brh_shared::Timing;
use futures_util::future::{join, join_all};
use worker::KvStore;

use super::layout::{self, Op};
use crate::metrics::{count_op, StoreOps};
use crate::store::{
    step_in_memory, Answer, EnvSlot, Event, HistoryPage, StepError, Stepped, Store, StoreError,
};

/// KV lists return at most 1000 keys per call.
const LIST_PAGE: u64 = 1000;

fn kv_err(what: &str, e: worker::KvError) -> StoreError {
    StoreError(format!("kv {what}: {e:?}"))
}

pub struct KvLayout {
    /// Bound on every request (the binding is taken from that request's `Env`).
    kv: RefCell<Option<KvStore>>,
    /// The Worker's store in `durable-object` mode: reads only, every write goes through the
    /// env's Durable Object. A step here is a bug; refuse it rather than bypass the register.
    read_only: bool,
    /// `kv` mode: the timing, for how often a peer key must be refreshed.
    timing: Timing,
    ops: StoreOps,
    /// Tests only (`BRH_TEST_FAULTS=kv`): every KV call fails.
    fail: std::cell::Cell<bool>,
    /// `kv` mode: the newest replay mark this isolate accepted per (env, node). Peer keys are
    /// not rewritten on every beat, so KV's mark can lag; merging this in at load refuses a
    /// replayed request in the isolate that saw the original. (Across isolates a replay is
    /// possible until the node's key is refreshed — ≤ ttl − interval — part of kv mode's
    /// documented weakness.)
    marks: RefCell<std::collections::HashMap<(String, String), NonceMark>>,
}

/// Entries kept in [`KvLayout::marks`] before it is cleared (bounded memory per isolate).
const MARKS_KEPT: usize = 20_000;

/// Whether mark `a` is ahead of mark `b` (accepted later by the same node).
fn mark_ahead(a: &NonceMark, b: &NonceMark) -> bool {
    if a.boot_id == b.boot_id {
        a.seq > b.seq
    } else {
        a.retired.contains(&b.boot_id)
    }
}

impl KvLayout {
    pub fn new(read_only: bool, ops: StoreOps) -> Self {
        KvLayout {
            kv: RefCell::new(None),
            read_only,
            timing: Timing::DEFAULT,
            ops,
            fail: std::cell::Cell::new(false),
            marks: RefCell::default(),
        }
    }

    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    pub fn inject_failures(&self, fail: bool) {
        self.fail.set(fail);
    }

    fn count(&self, op: &str, n: u64) {
        count_op(&self.ops, op, n);
    }

    /// Writes `ops` (in parallel: they touch distinct keys).
    pub async fn apply_all(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let kv = self.kv()?;
        let results = join_all(ops.into_iter().map(|op| self.apply(&kv, op))).await;
        results.into_iter().collect()
    }

    pub fn bind(&self, kv: KvStore) {
        *self.kv.borrow_mut() = Some(kv);
    }

    fn kv(&self) -> Result<KvStore, StoreError> {
        if self.fail.get() {
            return Err(StoreError("kv: injected fault (BRH_TEST_FAULTS=kv)".into()));
        }
        self.kv
            .borrow()
            .clone()
            .ok_or_else(|| StoreError("the KV binding is not available".into()))
    }

    async fn peers(&self, kv: &KvStore, env: &str) -> Result<Vec<(String, Peer)>, StoreError> {
        let prefix = layout::peer_prefix(env);
        let mut out = Vec::new();
        let mut missing = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut list = kv.list().prefix(prefix.clone()).limit(LIST_PAGE);
            if let Some(c) = cursor.take() {
                list = list.cursor(c);
            }
            let page = list.execute().await.map_err(|e| kv_err("list peers", e))?;
            self.count("kv_list", 1);
            for key in page.keys {
                let node = key.name[prefix.len()..].to_string();
                let from_meta = key
                    .metadata
                    .as_ref()
                    .and_then(|m| m.as_str())
                    .and_then(|m| serde_json::from_str::<Peer>(m).ok());
                match from_meta {
                    Some(p) => out.push((node, p)),
                    None => missing.push((node, key.name)),
                }
            }
            match page.cursor.filter(|c| !page.list_complete && !c.is_empty()) {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        // Peers whose record did not fit in the metadata: read their values.
        self.count("kv_read", missing.len() as u64);
        let reads = missing.iter().map(|(_, key)| kv.get(key).text());
        for ((node, key), got) in missing.iter().zip(join_all(reads).await) {
            let text = got.map_err(|e| kv_err("get peer", e))?;
            // A peer deleted between the list and the get is simply gone.
            if let Some(text) = text {
                let peer = serde_json::from_str::<Peer>(&text)
                    .map_err(|e| StoreError(format!("corrupt peer in kv {key}: {e}")))?;
                out.push((node.clone(), peer));
            }
        }
        Ok(out)
    }

    async fn apply(&self, kv: &KvStore, op: Op) -> Result<(), StoreError> {
        match &op {
            Op::Put { .. } => self.count("kv_write", 1),
            Op::Delete { .. } => self.count("kv_delete", 1),
        }
        match op {
            Op::Put {
                key,
                value,
                metadata,
                ttl_s,
            } => {
                let mut put = kv.put(&key, value).map_err(|e| kv_err("put", e))?;
                if let Some(m) = metadata {
                    put = put.metadata(m).map_err(|e| kv_err("put", e))?;
                }
                if let Some(t) = ttl_s {
                    put = put.expiration_ttl(t);
                }
                put.execute()
                    .await
                    .map_err(|e| kv_err(&format!("put {key}"), e))
            }
            Op::Delete { key } => kv
                .delete(&key)
                .await
                .map_err(|e| kv_err(&format!("delete {key}"), e)),
        }
    }
}

impl KvLayout {
    /// The env's state as KV holds it: the lease key and the peer table, in parallel.
    async fn load(&self, env: &str) -> Result<Option<EnvState>, StoreError> {
        let kv = self.kv()?;
        let lease_key = layout::lease_key(env);
        let (lease, peers) = join(kv.get(&lease_key).text(), self.peers(&kv, env)).await;
        self.count("kv_read", 1);
        let Some(text) = lease.map_err(|e| kv_err("get lease", e))? else {
            return Ok(None);
        };
        let mut state: EnvState = serde_json::from_str(&text)
            .map_err(|e| StoreError(format!("corrupt state in kv {lease_key}: {e}")))?;
        state.peers = peers?.into_iter().collect();
        let marks = self.marks.borrow();
        if !marks.is_empty() {
            for (node, p) in state.peers.iter_mut() {
                if let Some(m) = marks.get(&(env.to_string(), node.clone())) {
                    if mark_ahead(m, &p.nonce) {
                        p.nonce = m.clone();
                    }
                }
            }
        }
        Ok(Some(state))
    }
}

impl Store for KvLayout {
    async fn step<T>(
        &self,
        env: &str,
        now_ms: u64,
        event: Event<'_>,
        answer: Answer<'_, T>,
    ) -> Result<Stepped<T>, StepError> {
        if self.read_only {
            return Err(StepError::Store(StoreError(
                "this Worker runs in durable-object mode: writes go through the Durable Object"
                    .into(),
            )));
        }
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
        self.apply_all(ops).await?;
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
                marks.insert((env.to_string(), node.clone()), p.nonce.clone());
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
        let kv = self.kv()?;
        let mut list = kv
            .list()
            .prefix(layout::history_prefix(env))
            .limit(limit.clamp(1, LIST_PAGE as usize) as u64);
        if let Some(c) = cursor.and_then(|c| c.strip_prefix(CURSOR_TAG)) {
            list = list.cursor(c.to_string());
        }
        let page = list
            .execute()
            .await
            .map_err(|e| kv_err("list history", e))?;
        self.count("kv_list", 1);
        let mut entries = Vec::with_capacity(page.keys.len());
        for key in page.keys {
            let from_meta = key
                .metadata
                .as_ref()
                .and_then(|m| m.as_str())
                .and_then(|m| serde_json::from_str::<HistoryEntry>(m).ok());
            let entry = match from_meta {
                Some(e) => Some(e),
                None => match kv
                    .get(&key.name)
                    .text()
                    .await
                    .inspect(|_| self.count("kv_read", 1))
                {
                    Ok(Some(t)) => serde_json::from_str(&t).ok(),
                    Ok(None) => None,
                    Err(e) => return Err(kv_err("get history", e)),
                },
            };
            entries.extend(entry);
        }
        let next = page
            .cursor
            .filter(|c| !page.list_complete && !c.is_empty())
            .map(|c| format!("{CURSOR_TAG}{c}"));
        Ok(HistoryPage { entries, next })
    }

    fn valid_history_cursor(&self, cursor: &str) -> bool {
        plausible_cursor(cursor)
    }

    async fn envs(&self) -> Result<Vec<String>, StoreError> {
        let kv = self.kv()?;
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut list = kv
                .list()
                .prefix(layout::INDEX_PREFIX.to_string())
                .limit(LIST_PAGE);
            if let Some(c) = cursor.take() {
                list = list.cursor(c);
            }
            let page = list.execute().await.map_err(|e| kv_err("list envs", e))?;
            self.count("kv_list", 1);
            out.extend(
                page.keys
                    .into_iter()
                    .map(|k| k.name[layout::INDEX_PREFIX.len()..].to_string()),
            );
            match page.cursor.filter(|c| !page.list_complete && !c.is_empty()) {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(out)
    }
}

/// Our history cursors are KV's opaque list cursor behind this tag, so a made-up cursor is
/// refused (400) instead of silently restarting from the first page.
const CURSOR_TAG: &str = "kv.";

pub fn plausible_cursor(c: &str) -> bool {
    c.strip_prefix(CURSOR_TAG).is_some_and(|k| {
        !k.is_empty() && k.len() <= 1024 && k.bytes().all(|b| b.is_ascii_graphic())
    })
}
