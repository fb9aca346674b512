//! `durable-object` mode: one Durable Object per env (`id_from_name(env)`) is the env's lease
//! register. It runs the same [`Forge::handle`] over its own transactional storage and mirrors
//! the result into KV (same layout as the `kv` mode) so the Worker serves reads from KV.
//!
//! Why the read-modify-write cannot interleave:
//! - Cloudflare runs at most one instance of a given Durable Object id in the world, and that
//!   instance is single-threaded.
//! - Within the instance, concurrency only happens at `await` points. The input gate already
//!   holds other events back while a *storage* operation is in flight, but any other I/O (the KV
//!   mirror, a fetch) opens it. So [`LeaseRegister::fetch`] runs the whole request — load, the
//!   election step, save, KV mirror — inside `state.blockConcurrencyWhile`, which delivers no
//!   other event to the object until that future completes. Requests to one env are therefore
//!   applied strictly one after another, in arrival order: a linearizable register.
//! - The state is also cached in memory ([`DoStore`]); a cold instance loads it from storage
//!   first. Saves are `put`s of the state plus the new history rows in one call (atomic), and
//!   the answer is only returned after the put resolved; the output gate additionally holds
//!   any outgoing message until the write is durable. Terms therefore never go back, across
//!   evictions and restarts too.
//! - The KV mirror is best effort: if a KV write fails, the register state is still committed,
//!   and the next request mirrors the difference again (it remembers what KV was last known to
//!   hold; a cold instance reads KV first), so KV converges without rewriting unchanged keys.
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use brh_shared::election::EnvState;
use brh_shared::wire::HistoryEntry;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{
    console_error, durable_object, js_sys, DurableObject, Env, ListOptions, State, Storage,
};

use super::kv::KvLayout;
use super::layout;
use super::{
    changes_to_wire, read_request, to_worker, Mode, Setup, CHANGES_HEADER, KV_BINDING, SWEEP_PATH,
};
use crate::forge::Forge;
use crate::http::{Request, Response};
use crate::store::{HistoryPage, Store, StoreError};
use brh_shared::wire::ErrorCode;

fn do_err(what: &str, e: worker::Error) -> StoreError {
    StoreError(format!("durable object storage {what}: {e}"))
}

fn state_key(env: &str) -> String {
    format!("state/{env}")
}

fn history_prefix(env: &str) -> String {
    format!("hist/{env}/")
}

/// [`Store`] over the Durable Object's storage, with the state cached in memory. Values are
/// JSON strings (exact u64s, no JS number rounding).
pub struct DoStore {
    storage: Storage,
    cache: RefCell<BTreeMap<String, Option<EnvState>>>,
    /// History rows saved but not yet mirrored to KV, per env.
    unmirrored: RefCell<BTreeMap<String, Vec<HistoryEntry>>>,
}

impl DoStore {
    fn new(storage: Storage) -> Self {
        DoStore {
            storage,
            cache: RefCell::default(),
            unmirrored: RefCell::default(),
        }
    }
}

impl Store for DoStore {
    async fn load(&self, env: &str) -> Result<Option<EnvState>, StoreError> {
        if let Some(hit) = self.cache.borrow().get(env) {
            return Ok(hit.clone());
        }
        let key = state_key(env);
        let text: Option<String> = self.storage.get(&key).await.map_err(|e| do_err("get", e))?;
        let state = text
            .map(|t| serde_json::from_str::<EnvState>(&t))
            .transpose()
            .map_err(|e| StoreError(format!("corrupt state in durable object {key}: {e}")))?;
        self.cache
            .borrow_mut()
            .insert(env.to_string(), state.clone());
        Ok(state)
    }

    async fn save(
        &self,
        env: &str,
        _before: Option<&EnvState>,
        after: &EnvState,
        history: &[HistoryEntry],
    ) -> Result<(), StoreError> {
        let obj = js_sys::Object::new();
        let set = |k: &str, v: String| {
            js_sys::Reflect::set(&obj, &JsValue::from_str(k), &JsValue::from_str(&v))
                .map(|_| ())
                .map_err(|_| StoreError("cannot build the storage batch".into()))
        };
        set(
            &state_key(env),
            serde_json::to_string(after).unwrap_or_default(),
        )?;
        let prefix = history_prefix(env);
        for (i, h) in history.iter().enumerate() {
            set(
                &layout::history_key(&prefix, h, i),
                serde_json::to_string(h).unwrap_or_default(),
            )?;
        }
        // One put of all keys: atomic.
        self.storage
            .put_multiple_raw(obj)
            .await
            .map_err(|e| do_err("put", e))?;
        self.cache
            .borrow_mut()
            .insert(env.to_string(), Some(after.clone()));
        self.unmirrored
            .borrow_mut()
            .entry(env.to_string())
            .or_default()
            .extend_from_slice(history);
        Ok(())
    }

    async fn history(
        &self,
        env: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let prefix = history_prefix(env);
        let mut opts = ListOptions::new().prefix(&prefix).limit(limit + 1);
        if let Some(c) = cursor.filter(|c| c.starts_with(prefix.as_str())) {
            opts = opts.start(c);
        }
        let map = self
            .storage
            .list_with_options(opts)
            .await
            .map_err(|e| do_err("list", e))?;
        let mut entries = Vec::new();
        let mut next = None;
        for item in map.entries() {
            let Ok(pair) = item.and_then(|p| p.dyn_into::<js_sys::Array>()) else {
                continue;
            };
            let key = pair.get(0).as_string().unwrap_or_default();
            if entries.len() == limit {
                next = Some(key);
                break;
            }
            if let Some(e) = pair
                .get(1)
                .as_string()
                .and_then(|t| serde_json::from_str::<HistoryEntry>(&t).ok())
            {
                entries.push(e);
            }
        }
        Ok(HistoryPage { entries, next })
    }

    async fn envs(&self) -> Result<Vec<String>, StoreError> {
        let map = self
            .storage
            .list_with_options(ListOptions::new().prefix("state/"))
            .await
            .map_err(|e| do_err("list", e))?;
        Ok(map
            .keys()
            .into_iter()
            .filter_map(|k| k.ok()?.as_string())
            .filter_map(|k| k.strip_prefix("state/").map(str::to_string))
            .collect())
    }
}

/// The register's logic, shared (`Rc`) with the future run under `blockConcurrencyWhile`.
struct Register {
    setup: Setup,
    forge: Forge<DoStore>,
    mirror: KvLayout,
    /// What KV is known to hold per env (`None` inside: nothing there). Absent: unknown.
    mirrored: RefCell<BTreeMap<String, Option<EnvState>>>,
}

impl Register {
    async fn serve(&self, req: Request) -> Response {
        if let Some(r) = self.setup.refusal(&req) {
            return r;
        }
        let now = super::now_ms();
        let (mut response, changes) = if req.path == SWEEP_PATH {
            match self.forge.sweep(now).await {
                Ok(changes) => (
                    Response::json(200, &serde_json::json!({"swept": true})),
                    changes,
                ),
                Err(e) => (
                    Response::error(ErrorCode::Internal, e.to_string()),
                    Vec::new(),
                ),
            }
        } else {
            let handled = self.forge.handle(&req, now).await;
            (handled.response, handled.leader_changes)
        };
        self.mirror_all().await;
        if !changes.is_empty() {
            response = response.with_header(CHANGES_HEADER, &changes_to_wire(&changes));
        }
        response
    }

    /// Writes to KV what changed since KV was last known to match, for every env with news.
    async fn mirror_all(&self) {
        let envs: Vec<String> = self.forge.store.cache.borrow().keys().cloned().collect();
        for env in envs {
            if let Err(e) = self.mirror(&env).await {
                console_error!("mirroring env {env} to KV failed (will retry): {e}");
                self.mirrored.borrow_mut().remove(&env);
            }
        }
    }

    async fn mirror(&self, env: &str) -> Result<(), StoreError> {
        let Some(Some(after)) = self.forge.store.cache.borrow().get(env).cloned() else {
            return Ok(());
        };
        let known = self.mirrored.borrow().get(env).cloned();
        let before = match known {
            Some(b) => b,
            None => self.mirror.load(env).await?,
        };
        let history = self
            .forge
            .store
            .unmirrored
            .borrow()
            .get(env)
            .cloned()
            .unwrap_or_default();
        if before.as_ref() != Some(&after) || !history.is_empty() {
            self.mirror
                .save(env, before.as_ref(), &after, &history)
                .await?;
        }
        self.forge.store.unmirrored.borrow_mut().remove(env);
        self.mirrored
            .borrow_mut()
            .insert(env.to_string(), Some(after));
        Ok(())
    }
}

/// The Durable Object class (`LEASES` binding, class `LeaseRegister` in wrangler.toml).
#[durable_object]
pub struct LeaseRegister {
    state: State,
    register: Rc<Register>,
}

impl DurableObject for LeaseRegister {
    fn new(state: State, env: Env) -> Self {
        let setup = Setup::from_env(&env, Mode::DurableObject);
        let mirror = KvLayout::new(false);
        if let Ok(kv) = env.kv(KV_BINDING) {
            mirror.bind(kv);
        }
        let forge = Forge::new(setup.cfg.clone(), DoStore::new(state.storage()));
        LeaseRegister {
            state,
            register: Rc::new(Register {
                setup,
                forge,
                mirror,
                mirrored: RefCell::default(),
            }),
        }
    }

    async fn fetch(&self, mut req: worker::Request) -> worker::Result<worker::Response> {
        let req = match read_request(&mut req).await? {
            Ok(r) => r,
            Err(refused) => return to_worker(refused),
        };
        let register = self.register.clone();
        // Errors are answers (`Ok`): an `Err` here would reset the object.
        let response = self
            .state
            .block_concurrency_while(async move { Ok(register.serve(req).await) })
            .await?;
        to_worker(response)
    }
}
