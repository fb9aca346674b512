//! [`Store`] over Workers KV, in the layout of [`super::layout`].
//!
//! KV is eventually consistent and has no compare-and-swap: this store is what the `kv` mode
//! runs the election over (safe within one location, two leaders possible across locations
//! while KV disagrees — design §5), and what the `durable-object` mode mirrors into so the
//! Worker serves reads from KV in both modes.
use std::cell::RefCell;

use brh_shared::election::{EnvState, Peer};
use brh_shared::wire::HistoryEntry;
use futures_util::future::{join, join_all};
use worker::KvStore;

use super::layout::{self, Op};
use crate::store::{HistoryPage, Store, StoreError};

/// KV lists return at most 1000 keys per call.
const LIST_PAGE: u64 = 1000;

fn kv_err(what: &str, e: worker::KvError) -> StoreError {
    StoreError(format!("kv {what}: {e:?}"))
}

pub struct KvLayout {
    /// Bound on every request (the binding is taken from that request's `Env`).
    kv: RefCell<Option<KvStore>>,
    /// The Worker's store in `durable-object` mode: reads only, every write goes through the
    /// env's Durable Object. A save here is a bug; refuse it rather than bypass the register.
    read_only: bool,
}

impl KvLayout {
    pub fn new(read_only: bool) -> Self {
        KvLayout {
            kv: RefCell::new(None),
            read_only,
        }
    }

    pub fn bind(&self, kv: KvStore) {
        *self.kv.borrow_mut() = Some(kv);
    }

    fn kv(&self) -> Result<KvStore, StoreError> {
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

    async fn apply(kv: &KvStore, op: Op) -> Result<(), StoreError> {
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

impl Store for KvLayout {
    async fn load(&self, env: &str) -> Result<Option<EnvState>, StoreError> {
        let kv = self.kv()?;
        let lease_key = layout::lease_key(env);
        // The lease key and the peer table in parallel: one round trip on the request path.
        let (lease, peers) = join(kv.get(&lease_key).text(), self.peers(&kv, env)).await;
        let Some(text) = lease.map_err(|e| kv_err("get lease", e))? else {
            return Ok(None);
        };
        let mut state: EnvState = serde_json::from_str(&text)
            .map_err(|e| StoreError(format!("corrupt state in kv {lease_key}: {e}")))?;
        state.peers = peers?.into_iter().collect();
        Ok(Some(state))
    }

    async fn save(
        &self,
        env: &str,
        before: Option<&EnvState>,
        after: &EnvState,
        history: &[HistoryEntry],
    ) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError(
                "this Worker runs in durable-object mode: writes go through the Durable Object"
                    .into(),
            ));
        }
        let kv = self.kv()?;
        let ops = layout::plan_save(env, before, after, history);
        let results = join_all(ops.into_iter().map(|op| Self::apply(&kv, op))).await;
        results.into_iter().collect()
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
        if let Some(c) = cursor.filter(|c| !c.is_empty()) {
            list = list.cursor(c.to_string());
        }
        let page = list
            .execute()
            .await
            .map_err(|e| kv_err("list history", e))?;
        let mut entries = Vec::with_capacity(page.keys.len());
        for key in page.keys {
            let from_meta = key
                .metadata
                .as_ref()
                .and_then(|m| m.as_str())
                .and_then(|m| serde_json::from_str::<HistoryEntry>(m).ok());
            let entry = match from_meta {
                Some(e) => Some(e),
                None => match kv.get(&key.name).text().await {
                    Ok(Some(t)) => serde_json::from_str(&t).ok(),
                    Ok(None) => None,
                    Err(e) => return Err(kv_err("get history", e)),
                },
            };
            entries.extend(entry);
        }
        let next = page.cursor.filter(|c| !page.list_complete && !c.is_empty());
        Ok(HistoryPage { entries, next })
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
