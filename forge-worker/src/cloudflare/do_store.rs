//! [`Store`] over a Durable Object's transactional storage, the env's state held in memory
//! ([`Resident`]): the lease register's storage in `durable-object` mode.
//!
//! Rows (one object per env, so one env per storage):
//! ```text
//! lease/{env}          the lease record: the env state without its peers (JSON)
//! peer/{env}/{node}    one peer (JSON)
//! hist/{env}/{key}     one leader-history row, keyed as in KV (newest first)
//! state/{env}          a whole env, as an older release wrote it (read, never written)
//! ```
//!
//! A renewal (or a witness's liveness beat) writes **nothing**; only a step whose outcome is
//! durable (`brh_shared::election::durable`) writes rows — the lease record and the peers it
//! names, plus history rows — in one atomic `put`, then queues the same change for the KV
//! mirror. A cold instance (eviction, redeploy, hibernation) reads the lease row and the peer
//! rows and applies the restart rule (docs/design.md §5.2): the holder's lease is extended to
//! now + ttl, never shortened. A failed write evicts the env, so it is reloaded, never
//! answered.
use std::rc::Rc;

use brh_shared::election::{ElectionConfig, EnvState, Outcome, Record};
use brh_shared::wire::HistoryEntry;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{js_sys, Storage};

use super::kv::layout::{self, Op};
use super::kv::mirror::{KvMirror, Pending};
use crate::metrics::{count_op, StoreOps};
use crate::store::{
    Answer, EnvSlot, Event, Held, HistoryPage, Resident, StepError, Stepped, Store, StoreError,
};

fn do_err(what: &str, e: worker::Error) -> StoreError {
    StoreError(format!("durable object storage {what}: {e}"))
}

fn lease_row(env: &str) -> String {
    format!("lease/{env}")
}

fn peer_prefix(env: &str) -> String {
    format!("peer/{env}/")
}

fn legacy_state_row(env: &str) -> String {
    format!("state/{env}")
}

fn history_prefix(env: &str) -> String {
    format!("hist/{env}/")
}

/// `storage.get(key)` for a text row, called directly: worker's typed `get` decodes through
/// serde_wasm_bindgen, whose error formatting alone keeps kilobytes of float formatting in the
/// Wasm. `None` if there is no such row.
async fn get_text(storage: &Storage, key: &str) -> worker::Result<Option<String>> {
    let v = JsFuture::from(storage.as_raw().get(key)?).await?;
    if v.is_undefined() {
        return Ok(None);
    }
    v.as_string()
        .map(Some)
        .ok_or_else(|| worker::Error::RustError(format!("row {key} is not text")))
}

/// `storage.list({prefix, start?, limit?})`, the options built directly (worker's
/// `ListOptions` goes through serde_wasm_bindgen).
async fn list(
    storage: &Storage,
    prefix: &str,
    start: Option<&str>,
    limit: Option<usize>,
) -> worker::Result<js_sys::Map> {
    let opts = js_sys::Object::new();
    js_sys::Reflect::set(&opts, &"prefix".into(), &prefix.into())?;
    if let Some(start) = start {
        js_sys::Reflect::set(&opts, &"start".into(), &start.into())?;
    }
    if let Some(limit) = limit {
        js_sys::Reflect::set(&opts, &"limit".into(), &JsValue::from(limit as u32))?;
    }
    let v = JsFuture::from(storage.as_raw().list_with_options(opts)?).await?;
    Ok(v.dyn_into()?)
}

/// [`Store`] over the Durable Object's storage with the env's state held in memory.
pub struct DoStore {
    storage: Storage,
    cfg: ElectionConfig,
    envs: Resident,
    mirror: Rc<KvMirror>,
    pub ops: StoreOps,
    /// Tests only (`BRH_TEST_FAULTS=do-storage`): every storage write fails.
    fail_writes: bool,
}

impl DoStore {
    pub fn new(
        storage: Storage,
        cfg: ElectionConfig,
        mirror: Rc<KvMirror>,
        ops: StoreOps,
        fail_writes: bool,
    ) -> Self {
        DoStore {
            storage,
            cfg,
            envs: Resident::default(),
            mirror,
            ops,
            fail_writes,
        }
    }

    /// Forgets every env held in memory (tests: an eviction).
    pub fn forget_all(&self) {
        self.envs.clear();
    }

    /// The KV writes that bring the mirror to this env's current state for `p`; `None` if
    /// the env is not held.
    pub fn plan_mirror(&self, env: &str, p: &Pending) -> Option<Vec<Op>> {
        self.envs.with(env, |h| {
            layout::plan_mirror(
                env,
                &h.slot.state,
                p.new_env,
                p.lease,
                p.peers.keys(),
                &p.history,
            )
        })
    }

    /// The env in memory, read from storage if it is not.
    async fn ensure_loaded(&self, env: &str, now_ms: u64) -> Result<bool, StoreError> {
        if self.envs.contains(env) {
            return Ok(true);
        }
        match self.load(env, now_ms).await? {
            Some(slot) => {
                self.envs.insert(env, Held { slot, extra: () });
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Reads the env's rows (cold start) and applies the restart rule.
    async fn load(&self, env: &str, now_ms: u64) -> Result<Option<EnvSlot>, StoreError> {
        let lease = get_text(&self.storage, &lease_row(env))
            .await
            .map_err(|e| do_err("get", e))?;
        count_op(&self.ops, "do_rows_read", 1);
        let mut state = match lease {
            Some(text) => brh_shared::json::from_json::<EnvState>(text.as_bytes())
                .map_err(|e| StoreError(format!("corrupt lease row of env {env}: {e}")))?,
            None => {
                let legacy = get_text(&self.storage, &legacy_state_row(env))
                    .await
                    .map_err(|e| do_err("get", e))?;
                count_op(&self.ops, "do_rows_read", 1);
                match legacy {
                    Some(text) => brh_shared::json::from_json::<EnvState>(text.as_bytes())
                        .map_err(|e| StoreError(format!("corrupt state row of env {env}: {e}")))?,
                    None => return Ok(None),
                }
            }
        };
        let map = list(&self.storage, &peer_prefix(env), None, None)
            .await
            .map_err(|e| do_err("list", e))?;
        let prefix = peer_prefix(env);
        for item in map.entries() {
            let Ok(pair) = item.and_then(|p| p.dyn_into::<js_sys::Array>()) else {
                continue;
            };
            count_op(&self.ops, "do_rows_read", 1);
            let key = pair.get(0).as_string().unwrap_or_default();
            let Some(node) = key.strip_prefix(&prefix) else {
                continue;
            };
            let text = pair.get(1).as_string().unwrap_or_default();
            let peer = brh_shared::json::from_json(text.as_bytes())
                .map_err(|e| StoreError(format!("corrupt peer row {key}: {e}")))?;
            state.apply_record(Record::Peer {
                node: node.to_string(),
                peer,
            });
        }
        state.recover(&self.cfg, now_ms);
        Ok(Some(EnvSlot {
            state,
            history: Default::default(),
        }))
    }

    /// Writes the outcome's rows in one atomic put.
    async fn persist(&self, env: &str, outcome: &Outcome) -> Result<(), StoreError> {
        let obj = js_sys::Object::new();
        let mut rows = 0u64;
        let mut set = |k: &str, v: String| -> Result<(), StoreError> {
            rows += 1;
            js_sys::Reflect::set(&obj, &JsValue::from_str(k), &JsValue::from_str(&v))
                .map(|_| ())
                .map_err(|_| StoreError("cannot build the storage batch".into()))
        };
        let mut deletes = Vec::new();
        for r in &outcome.records {
            match r {
                Record::Lease(l) => set(&lease_row(env), json(l))?,
                Record::Peer { node, peer } => {
                    set(&format!("{}{node}", peer_prefix(env)), json(peer))?
                }
                Record::Forget { node } => deletes.push(format!("{}{node}", peer_prefix(env))),
            }
        }
        let hp = history_prefix(env);
        for (i, h) in outcome.history.iter().enumerate() {
            set(&layout::history_key(&hp, h, i), json(h))?;
        }
        if self.fail_writes {
            return Err(StoreError(
                "durable object storage put: injected fault (BRH_TEST_FAULTS)".into(),
            ));
        }
        self.storage
            .put_multiple_raw(obj)
            .await
            .map_err(|e| do_err("put", e))?;
        count_op(&self.ops, "do_rows_written", rows);
        if !deletes.is_empty() {
            count_op(&self.ops, "do_rows_deleted", deletes.len() as u64);
            self.storage
                .delete_multiple(deletes)
                .await
                .map_err(|e| do_err("delete", e))?;
        }
        Ok(())
    }

    pub fn lease_expiry(&self) -> Option<u64> {
        self.envs.fold(None, |min: Option<u64>, _, h| {
            match (min, h.slot.state.next_deadline_ms()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        })
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl Store for DoStore {
    async fn step<T>(
        &self,
        env: &str,
        now_ms: u64,
        event: Event<'_>,
        answer: Answer<'_, T>,
    ) -> Result<Stepped<T>, StepError> {
        self.ensure_loaded(env, now_ms).await?;
        self.envs
            .step(
                env,
                now_ms,
                event,
                answer,
                || (),
                async |outcome, new_env| {
                    self.persist(env, outcome).await?;
                    self.mirror.queue(env, outcome, new_env);
                    Ok(())
                },
            )
            .await
    }

    async fn read<T>(
        &self,
        env: &str,
        now_ms: u64,
        f: Answer<'_, T>,
    ) -> Result<Option<T>, StoreError> {
        if !self.ensure_loaded(env, now_ms).await? {
            return Ok(None);
        }
        Ok(self.envs.with(env, |h| f(&h.slot.state)))
    }

    async fn history(
        &self,
        env: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let prefix = history_prefix(env);
        let start = cursor.filter(|c| c.starts_with(prefix.as_str()));
        let map = list(&self.storage, &prefix, start, Some(limit + 1))
            .await
            .map_err(|e| do_err("list", e))?;
        let mut entries = Vec::new();
        let mut next = None;
        for item in map.entries() {
            let Ok(pair) = item.and_then(|p| p.dyn_into::<js_sys::Array>()) else {
                continue;
            };
            count_op(&self.ops, "do_rows_read", 1);
            let key = pair.get(0).as_string().unwrap_or_default();
            if entries.len() == limit {
                next = Some(key);
                break;
            }
            if let Some(e) = pair
                .get(1)
                .as_string()
                .and_then(|t| brh_shared::json::from_json::<HistoryEntry>(t.as_bytes()).ok())
            {
                entries.push(e);
            }
        }
        Ok(HistoryPage { entries, next })
    }

    async fn envs(&self) -> Result<Vec<String>, StoreError> {
        let mut out = self.envs.names();
        if out.is_empty() {
            // A cold instance woken by its alarm: which env is this object for?
            for prefix in ["lease/", "state/"] {
                let map = list(&self.storage, prefix, None, Some(1))
                    .await
                    .map_err(|e| do_err("list", e))?;
                count_op(&self.ops, "do_rows_read", 1);
                out.extend(
                    map.keys()
                        .into_iter()
                        .filter_map(|k| k.ok()?.as_string())
                        .filter_map(|k| k.strip_prefix(prefix).map(str::to_string)),
                );
                if !out.is_empty() {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn valid_history_cursor(&self, cursor: &str) -> bool {
        cursor.starts_with("hist/") && cursor.len() < 300
    }
}
