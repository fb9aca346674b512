//! `durable-object` mode: one Durable Object per env (`id_from_name(env)`) is the env's lease
//! register. It runs the same [`Forge::handle`] over its own transactional storage, serves
//! the env's reads fresh from memory, and mirrors changes into KV.
//!
//! Cost per operation (the point of this module):
//! - A renewal (or a witness's liveness beat) writes **nothing**: no storage row, no KV key.
//!   The state lives in the object's memory; only a step whose outcome is durable
//!   (`brh_shared::election::durable`) writes rows — the lease record and the peers it names,
//!   plus history rows — in one atomic `put`.
//! - KV is written only when the leader, the term or the membership changes, *after* the
//!   register's critical section (`waitUntil`), by one mirror task per object that drains
//!   changes in order. A KV failure never delays, fails or reorders a grant; the mirror
//!   retries on the next change or alarm, and `brh_forge_store_operations_total{op="kv_mirror_failures"}`
//!   counts the failures.
//! - Lease expiry is driven by an alarm set at the lease's expiry: it fires, sweeps (expiring
//!   and electing if the holder stopped renewing) and re-arms at the new expiry — one alarm
//!   write per lease ttl at most, not one per beat.
//!
//! Why the read-modify-write cannot interleave: Cloudflare runs at most one instance of a
//! given object id, single-threaded; [`LeaseRegister::fetch`] and `alarm` run each step inside
//! `blockConcurrencyWhile`, which delivers no other event until the step's storage write has
//! resolved. So requests to one env apply strictly one after another: a linearizable register.
//! If a write fails, the in-memory state is dropped and reloaded from storage (restart rule)
//! before the next step, so nothing unwritten is ever answered.
//!
//! Eviction or redeploy: a cold instance reads the lease row and the peer rows (or, where there
//! is no lease row, a whole-env `state/{env}` row) and applies the restart rule
//! (docs/design.md §5.2) — the holder's lease is extended to now + ttl, never shortened.
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use brh_shared::election::{ElectionConfig, EnvState, Outcome, Record};
use brh_shared::wire::{ErrorCode, HistoryEntry};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{
    console_error, durable_object, js_sys, DurableObject, Env, ListOptions, State, Storage,
    WebSocket, WebSocketIncomingMessage, WebSocketPair,
};

use super::kv::KvLayout;
use super::layout;
use super::stream::{self, Socket};
use super::{
    changes_to_wire, read_request, to_worker, Mode, Setup, CHANGES_HEADER, KV_BINDING, SWEEP_PATH,
};
use crate::forge::{Forge, LeaderChange};
use crate::http::{Request, Response};
use crate::metrics::{count_op, StoreOps};
use crate::store::{
    step_in_memory, Answer, EnvSlot, Event, HistoryPage, StepError, Stepped, Store, StoreError,
};

/// The register's test-only eviction route (see `LeaseRegister::fetch`).
const EVICT_PATH: &str = "/__brh/evict";

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

/// What the KV mirror still has to write, per env, in order.
#[derive(Default)]
struct Pending {
    /// The env is new to KV: write its index key.
    new_env: bool,
    lease: bool,
    peers: BTreeSet<String>,
    history: Vec<HistoryEntry>,
}

/// [`Store`] over the Durable Object's storage with the env's state held in memory.
pub struct DoStore {
    storage: Storage,
    cfg: ElectionConfig,
    envs: RefCell<BTreeMap<String, EnvSlot>>,
    pending: RefCell<BTreeMap<String, Pending>>,
    ops: StoreOps,
    /// Tests only (`BRH_TEST_FAULTS=do-storage`): every storage write fails.
    fail_writes: bool,
}

impl DoStore {
    fn new(storage: Storage, cfg: ElectionConfig, ops: StoreOps, fail_writes: bool) -> Self {
        DoStore {
            storage,
            cfg,
            envs: RefCell::default(),
            pending: RefCell::default(),
            ops,
            fail_writes,
        }
    }

    /// Reads the env's rows (cold start) and applies the restart rule.
    async fn load(&self, env: &str, now_ms: u64) -> Result<Option<EnvSlot>, StoreError> {
        let lease: Option<String> = self
            .storage
            .get(&lease_row(env))
            .await
            .map_err(|e| do_err("get", e))?;
        count_op(&self.ops, "do_rows_read", 1);
        let mut state = match lease {
            Some(text) => serde_json::from_str::<EnvState>(&text)
                .map_err(|e| StoreError(format!("corrupt lease row of env {env}: {e}")))?,
            None => {
                let legacy: Option<String> = self
                    .storage
                    .get(&legacy_state_row(env))
                    .await
                    .map_err(|e| do_err("get", e))?;
                count_op(&self.ops, "do_rows_read", 1);
                match legacy {
                    Some(text) => serde_json::from_str::<EnvState>(&text)
                        .map_err(|e| StoreError(format!("corrupt state row of env {env}: {e}")))?,
                    None => return Ok(None),
                }
            }
        };
        let map = self
            .storage
            .list_with_options(ListOptions::new().prefix(&peer_prefix(env)))
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
            let peer = serde_json::from_str(&text)
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

    /// Remembers what the KV mirror must write for this outcome.
    fn queue_mirror(&self, env: &str, outcome: &Outcome, new_env: bool) {
        if outcome.is_volatile() {
            return;
        }
        let mut pending = self.pending.borrow_mut();
        let p = pending.entry(env.to_string()).or_default();
        p.new_env |= new_env;
        for r in &outcome.records {
            match r {
                Record::Lease(_) => p.lease = true,
                Record::Peer { node, .. } | Record::Forget { node } => {
                    p.peers.insert(node.clone());
                }
            }
        }
        p.history.extend_from_slice(&outcome.history);
    }

    pub fn lease_expiry(&self) -> Option<u64> {
        self.envs
            .borrow()
            .values()
            .filter_map(|s| s.state.next_deadline_ms())
            .min()
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
        let loaded = self.envs.borrow().contains_key(env);
        let mut new_env = false;
        if !loaded {
            let slot = match self.load(env, now_ms).await? {
                Some(slot) => slot,
                None => {
                    new_env = true;
                    EnvSlot::default()
                }
            };
            self.envs.borrow_mut().insert(env.to_string(), slot);
        }
        let stepped = {
            let mut envs = self.envs.borrow_mut();
            let Some(slot) = envs.get_mut(env) else {
                return Err(StepError::Store(StoreError("env vanished".into())));
            };
            match step_in_memory(slot, now_ms, event, answer) {
                Ok(s) => s,
                Err(e) => {
                    if new_env {
                        envs.remove(env);
                    }
                    return Err(StepError::Refused(e));
                }
            }
        };
        if !stepped.outcome.is_volatile() {
            if let Err(e) = self.persist(env, &stepped.outcome).await {
                // Nothing unwritten may be answered later: reload from storage next time.
                self.envs.borrow_mut().remove(env);
                return Err(StepError::Store(e));
            }
            self.queue_mirror(env, &stepped.outcome, new_env);
        }
        Ok(stepped)
    }

    async fn read<T>(
        &self,
        env: &str,
        now_ms: u64,
        f: Answer<'_, T>,
    ) -> Result<Option<T>, StoreError> {
        if !self.envs.borrow().contains_key(env) {
            match self.load(env, now_ms).await? {
                Some(slot) => {
                    self.envs.borrow_mut().insert(env.to_string(), slot);
                }
                None => return Ok(None),
            }
        }
        Ok(self.envs.borrow().get(env).map(|s| f(&s.state)))
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
            count_op(&self.ops, "do_rows_read", 1);
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
        let mut out: Vec<String> = self.envs.borrow().keys().cloned().collect();
        if out.is_empty() {
            // A cold instance woken by its alarm: which env is this object for?
            for prefix in ["lease/", "state/"] {
                let map = self
                    .storage
                    .list_with_options(ListOptions::new().prefix(prefix).limit(1))
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

/// The register's logic, shared (`Rc`) with the futures run under `blockConcurrencyWhile`.
struct Register {
    setup: Setup,
    forge: Forge<DoStore>,
    mirror: KvLayout,
    /// When the alarm is set for (this instance's knowledge; `None` after a cold start).
    alarm_at: Cell<Option<u64>>,
    mirroring: Cell<bool>,
}

impl Register {
    async fn serve(&self, req: Request) -> (Response, Vec<LeaderChange>) {
        if let Some(r) = self.setup.refusal(&req) {
            return (r, Vec::new());
        }
        let now = super::now_ms();
        let (mut response, changes) = if req.path == SWEEP_PATH {
            match self.forge.sweep(now).await {
                Ok(changes) => (
                    Response::json(200, &serde_json::json!({"swept": true})),
                    changes,
                ),
                Err(e) => (
                    Response::error(ErrorCode::StoreUnavailable, e.to_string()),
                    Vec::new(),
                ),
            }
        } else {
            let handled = self.forge.handle(&req, now).await;
            (handled.response, handled.leader_changes)
        };
        if !changes.is_empty() {
            response = response.with_header(CHANGES_HEADER, &changes_to_wire(&changes));
        }
        (response, changes)
    }

    /// Sets the alarm at the lease's expiry if none is set: at most one write per lease ttl.
    async fn arm(&self, storage: &Storage) {
        let Some(expiry) = self.forge.store.lease_expiry() else {
            return;
        };
        if self.alarm_at.get().is_some() {
            return;
        }
        let now = super::now_ms();
        let at = expiry.max(now + 1);
        // workers-rs reads an integer as an offset from now, not as a date: the alarm is set
        // `at - now` ahead. Given the expiry itself it would fire decades late, and failover
        // would wait for the next heartbeat.
        let offset = std::time::Duration::from_millis(at - now);
        match storage.set_alarm(offset).await {
            Ok(()) => {
                self.alarm_at.set(Some(at));
                count_op(&self.forge.store.ops, "do_alarms_set", 1);
            }
            Err(e) => console_error!("cannot set the lease alarm: {e}"),
        }
    }

    /// Drains the queued mirror writes to KV, in order; one drain at a time per object.
    async fn mirror_pending(self: Rc<Self>) {
        if self.mirroring.replace(true) {
            return;
        }
        loop {
            let Some((env, p)) = self.forge.store.pending.borrow_mut().pop_first() else {
                break;
            };
            if let Err(e) = self.mirror_one(&env, &p).await {
                console_error!(
                    "mirroring env {env} to KV failed (retried on the next change): {e}"
                );
                count_op(&self.forge.store.ops, "kv_mirror_failures", 1);
                // Put it back, merged with anything queued meanwhile, and stop for now.
                let mut pending = self.forge.store.pending.borrow_mut();
                let q = pending.entry(env).or_default();
                q.new_env |= p.new_env;
                q.lease |= p.lease;
                q.peers.extend(p.peers);
                let mut history = p.history;
                history.append(&mut q.history);
                q.history = history;
                break;
            }
        }
        self.mirroring.set(false);
    }

    async fn mirror_one(&self, env: &str, p: &Pending) -> Result<(), StoreError> {
        // The current values (not the queued ones): the mirror converges to the register.
        let ops = {
            let envs = self.forge.store.envs.borrow();
            let Some(slot) = envs.get(env) else {
                return Ok(());
            };
            layout::plan_mirror(
                env,
                &slot.state,
                p.new_env,
                p.lease,
                p.peers.iter(),
                &p.history,
            )
        };
        self.mirror.apply_all(ops).await
    }
}

/// The Durable Object class (`LEASES` binding, class `LeaseRegister` in wrangler.toml).
#[durable_object]
pub struct LeaseRegister {
    state: State,
    register: Rc<Register>,
}

/// Who tells the ledger (`LEDGER_URL`) about a step's leader changes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ledger {
    /// A request from the Worker: it reads the changes from the answer's header and forwards
    /// them itself.
    ByWorker,
    /// A stream message or the alarm: no Worker sees these, so the register forwards them.
    ByRegister,
}

impl LeaseRegister {
    async fn run(&self, req: Request, ledger: Ledger) -> worker::Result<Response> {
        let register = self.register.clone();
        // Errors are answers (`Ok`): an `Err` here would reset the object.
        let (response, changes) = self
            .state
            .block_concurrency_while(async move { Ok(register.serve(req).await) })
            .await?;
        self.after_step(&changes, ledger).await;
        Ok(response)
    }

    /// Outside the critical section: the pushes first (a new holder learns before anything
    /// else is awaited), then the alarm, the KV mirror and the ledger.
    async fn after_step(&self, changes: &[LeaderChange], ledger: Ledger) {
        if !changes.is_empty() {
            self.push_all().await;
        }
        let setup = &self.register.setup;
        if ledger == Ledger::ByRegister && !changes.is_empty() {
            changes.iter().for_each(super::log_change);
            if let (Some(url), Some(forge)) =
                (setup.ledger_url.clone(), setup.cfg.forge_key.clone())
            {
                self.state
                    .wait_until(super::forward_to_ledger(url, forge, changes.to_vec()));
            }
        }
        self.register.arm(&self.state.storage()).await;
        if !self.register.forge.store.pending.borrow().is_empty() {
            self.state
                .wait_until(self.register.clone().mirror_pending());
        }
    }

    /// After a leader change: every socket of this register gets the view as its node sees
    /// it, unless that tells it nothing new. Reads from memory; writes no storage.
    async fn push_all(&self) {
        let now = super::now_ms();
        for ws in self.state.get_websockets() {
            let Ok(Some(mut socket)) = ws.deserialize_attachment::<Socket>() else {
                continue;
            };
            let forge = &self.register.forge;
            let node = socket.node.as_deref();
            let Some(m) = forge
                .stream_view(&socket.env, node, socket.basis.as_deref(), now)
                .await
            else {
                continue;
            };
            if crate::stream::Told::is_news(&m, socket.told.as_ref()) {
                stream::send(&ws, &mut socket, &m);
            }
        }
    }

    /// Accepts a stream for `env` (hibernatable: the runtime keeps the socket while the
    /// object sleeps).
    fn accept(&self, env: String) -> worker::Result<worker::Response> {
        let pair = WebSocketPair::new()?;
        self.state.accept_web_socket(&pair.server);
        pair.server.serialize_attachment(Socket {
            env,
            ..Socket::default()
        })?;
        count_op(&self.register.forge.store.ops, "do_streams_opened", 1);
        worker::Response::from_websocket(pair.client)
    }
}

impl DurableObject for LeaseRegister {
    fn new(state: State, env: Env) -> Self {
        let setup = Setup::from_env(&env, Mode::DurableObject);
        let metrics = crate::metrics::Metrics::default();
        let mirror = KvLayout::new(false, metrics.store_ops.clone());
        if let Ok(kv) = env.kv(KV_BINDING) {
            mirror.bind(kv);
        }
        mirror.inject_failures(setup.test_faults.iter().any(|f| f == "kv"));
        let store = DoStore::new(
            state.storage(),
            setup.cfg.election,
            metrics.store_ops.clone(),
            setup.test_faults.iter().any(|f| f == "do-storage"),
        );
        let forge = Forge {
            cfg: setup.cfg.clone(),
            store,
            metrics,
        };
        LeaseRegister {
            state,
            register: Rc::new(Register {
                setup,
                forge,
                mirror,
                alarm_at: Cell::new(None),
                mirroring: Cell::new(false),
            }),
        }
    }

    async fn fetch(&self, mut req: worker::Request) -> worker::Result<worker::Response> {
        let req = match read_request(&mut req).await? {
            Ok(r) => r,
            Err(refused) => return to_worker(refused),
        };
        // Tests only (`BRH_TEST_FAULTS=evictable`, reached through the namespace, never
        // through the Worker): forget everything in memory, as an eviction or a hibernation
        // does. The next event reloads from storage and applies the restart rule; sockets
        // keep their attachments (the runtime holds them).
        if req.path == EVICT_PATH
            && self
                .register
                .setup
                .test_faults
                .iter()
                .any(|f| f == "evictable")
        {
            self.register.forge.store.envs.borrow_mut().clear();
            self.register.alarm_at.set(None);
            count_op(&self.register.forge.store.ops, "do_test_evictions", 1);
            return worker::Response::ok("evicted");
        }
        if let Some(target) = crate::stream::upgrade_target(&req) {
            if let Some(r) = self.register.setup.refusal(&req) {
                return to_worker(r);
            }
            return match target {
                Ok(env) => self.accept(env),
                Err(r) => to_worker(r),
            };
        }
        to_worker(self.run(req, Ledger::ByWorker).await?)
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let frame = match message {
            WebSocketIncomingMessage::String(s) => s.into_bytes(),
            WebSocketIncomingMessage::Binary(b) => b,
        };
        count_op(&self.register.forge.store.ops, "do_stream_messages", 1);
        let Ok(Some(mut socket)) = ws.deserialize_attachment::<Socket>() else {
            let _ = ws.close(Some(1011), Some("lost the socket's state; reconnect"));
            return Ok(());
        };
        let register = self.register.clone();
        let (env, bound) = (socket.env.clone(), socket.node.clone());
        // One step at a time, like `fetch`: no other event interleaves with the frame's.
        let out = self
            .state
            .block_concurrency_while(async move {
                let now = super::now_ms();
                Ok(register
                    .forge
                    .handle_stream(&env, bound.as_deref(), &frame, now)
                    .await)
            })
            .await?;
        if let Some(node) = out.node {
            socket.node = Some(node);
        }
        if out.accepted.is_some() {
            socket.basis = out.accepted;
        }
        stream::send(&ws, &mut socket, &out.message);
        self.after_step(&out.leader_changes, Ledger::ByRegister)
            .await;
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> worker::Result<()> {
        // Complete the closing handshake; the runtime forgets the socket.
        let code = u16::try_from(code)
            .ok()
            .filter(|c| *c == 1000 || (3000..5000).contains(c));
        let _ = ws.close(code.or(Some(1000)), Some("bye"));
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        let _ = ws.close(Some(1011), Some("error"));
        Ok(())
    }

    async fn alarm(&self) -> worker::Result<worker::Response> {
        // The alarm that fired is spent; `run` re-arms at the current expiry if a lease exists.
        self.register.alarm_at.set(None);
        count_op(&self.register.forge.store.ops, "do_alarms_fired", 1);
        let response = self
            .run(Request::new("POST", SWEEP_PATH), Ledger::ByRegister)
            .await?;
        if response.status != 200 {
            console_error!(
                "lease alarm sweep: {} {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        worker::Response::ok("swept")
    }
}
