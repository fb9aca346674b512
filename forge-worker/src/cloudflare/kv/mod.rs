//! Workers KV in the forge's layout ([`layout`]): the calls, counted, and the test faults.
//! Who uses it, for what:
//! - [`store::KvModeStore`]: `kv` mode, KV *is* the register (loaded and written per step);
//! - [`reader::KvReader`]: the Worker in `durable-object` mode, which only reads the env index
//!   (every write and every env read goes to the env's register);
//! - [`mirror::KvMirror`]: the register's write-behind copy of its durable changes.
//!
//! KV is eventually consistent and has no compare-and-swap: `kv` mode is safe within one
//! location, two leaders are possible across locations while KV disagrees (docs/design.md
//! §5.6).
pub mod js;
pub mod layout;
pub mod mirror;
pub mod reader;
pub mod store;

use std::cell::{Cell, RefCell};

use crate::cloudflare::join::{join, join_all};
use brh_shared::election::{EnvState, Peer};
use brh_shared::wire::HistoryEntry;
use js::KvNs;

use crate::metrics::{count_op, StoreOps};
use crate::store::{HistoryPage, StoreError};
use layout::Op;

/// KV lists return at most 1000 keys per call.
const LIST_PAGE: u64 = 1000;

fn kv_err(what: &str, e: worker::KvError) -> StoreError {
    StoreError(format!("kv {what}: {e:?}"))
}

/// The KV namespace, bound on every request (the binding is taken from that request's `Env`).
pub struct Kv {
    kv: RefCell<Option<KvNs>>,
    ops: StoreOps,
    /// Tests only (`BRH_TEST_FAULTS=kv`): every KV call fails.
    fail: Cell<bool>,
}

impl Kv {
    pub fn new(ops: StoreOps, fail: bool) -> Self {
        Kv {
            kv: RefCell::new(None),
            ops,
            fail: Cell::new(fail),
        }
    }

    pub fn bind(&self, kv: KvNs) {
        *self.kv.borrow_mut() = Some(kv);
    }

    fn count(&self, op: &str, n: u64) {
        count_op(&self.ops, op, n);
    }

    fn kv(&self) -> Result<KvNs, StoreError> {
        if self.fail.get() {
            return Err(StoreError("kv: injected fault (BRH_TEST_FAULTS=kv)".into()));
        }
        self.kv
            .borrow()
            .clone()
            .ok_or_else(|| StoreError("the KV binding is not available".into()))
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

    async fn peers(&self, kv: &KvNs, env: &str) -> Result<Vec<(String, Peer)>, StoreError> {
        let prefix = layout::peer_prefix(env);
        let mut out = Vec::new();
        let mut missing = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = kv
                .list(&prefix, LIST_PAGE, cursor.take().as_deref())
                .await
                .map_err(|e| kv_err("list peers", e))?;
            self.count("kv_list", 1);
            for key in page.keys {
                let node = key.name[prefix.len()..].to_string();
                let from_meta = key
                    .metadata
                    .as_ref()
                    .and_then(|m| brh_shared::json::from_json::<Peer>(m.as_bytes()).ok());
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
        let reads = missing.iter().map(|(_, key)| kv.get_text(key));
        for ((node, key), got) in missing.iter().zip(join_all(reads).await) {
            let text = got.map_err(|e| kv_err("get peer", e))?;
            // A peer deleted between the list and the get is simply gone.
            if let Some(text) = text {
                let peer = brh_shared::json::from_json::<Peer>(text.as_bytes())
                    .map_err(|e| StoreError(format!("corrupt peer in kv {key}: {e}")))?;
                out.push((node.clone(), peer));
            }
        }
        Ok(out)
    }

    async fn apply(&self, kv: &KvNs, op: Op) -> Result<(), StoreError> {
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
                // As bytes (as before: KV stores bytes either way; `get_text` reads them back).
                kv.put(&key, value.as_bytes(), metadata.as_deref(), ttl_s)
                    .await
                    .map_err(|e| kv_err(&format!("put {key}"), e))
            }
            Op::Delete { key } => kv
                .delete(&key)
                .await
                .map_err(|e| kv_err(&format!("delete {key}"), e)),
        }
    }

    /// The env's state as KV holds it: the lease key and the peer table, in parallel.
    pub async fn load(&self, env: &str) -> Result<Option<EnvState>, StoreError> {
        let kv = self.kv()?;
        let lease_key = layout::lease_key(env);
        let (lease, peers) = join(kv.get_text(&lease_key), self.peers(&kv, env)).await;
        self.count("kv_read", 1);
        let Some(text) = lease.map_err(|e| kv_err("get lease", e))? else {
            return Ok(None);
        };
        let mut state: EnvState = brh_shared::json::from_json(text.as_bytes())
            .map_err(|e| StoreError(format!("corrupt state in kv {lease_key}: {e}")))?;
        state.peers = peers?.into_iter().collect();
        Ok(Some(state))
    }

    /// Leader history, newest first, from the history keys.
    pub async fn history(
        &self,
        env: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let kv = self.kv()?;
        let page = kv
            .list(
                &layout::history_prefix(env),
                limit.clamp(1, LIST_PAGE as usize) as u64,
                cursor.and_then(|c| c.strip_prefix(CURSOR_TAG)),
            )
            .await
            .map_err(|e| kv_err("list history", e))?;
        self.count("kv_list", 1);
        let mut entries = Vec::with_capacity(page.keys.len());
        for key in page.keys {
            let from_meta = key
                .metadata
                .as_ref()
                .and_then(|m| brh_shared::json::from_json::<HistoryEntry>(m.as_bytes()).ok());
            let entry = match from_meta {
                Some(e) => Some(e),
                None => match kv
                    .get_text(&key.name)
                    .await
                    .inspect(|_| self.count("kv_read", 1))
                {
                    Ok(Some(t)) => brh_shared::json::from_json(t.as_bytes()).ok(),
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

    /// Every env in the index.
    pub async fn envs(&self) -> Result<Vec<String>, StoreError> {
        let kv = self.kv()?;
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = kv
                .list(layout::INDEX_PREFIX, LIST_PAGE, cursor.take().as_deref())
                .await
                .map_err(|e| kv_err("list envs", e))?;
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
