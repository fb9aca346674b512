//! The Worker's entry points (`fetch`, `scheduled`) and its per-isolate forge: answers what it
//! can itself, routes each env's writes and reads to the env's lease register in
//! `durable-object` mode (a typed [`RegisterCall`]), and hands the stream's upgrade over.
use std::cell::RefCell;
use std::rc::Rc;

use super::join::join_all;
use brh_shared::ids::validate_id;
use brh_shared::route::{self, Endpoint};
use brh_shared::wire::{ErrorCode, STREAM_PATH};
use worker::{console_error, event};
use worker::{Context, Env, ScheduleContext, ScheduledEvent};

use super::kv::js::KvNs;
use super::kv::reader::KvReader;
use super::kv::store::KvModeStore;
use super::kv::Kv;
use super::ledger::{forward_to_ledger, log_change};
use super::lock::IsolateLock;
use super::message::{self, Forwarded, RegisterCall, RegisterReply};
use super::request::{path_and_query_of, read_request, to_worker};
use super::setup::{now_ms, Mode, Setup, ASSETS_BINDING, DO_BINDING, KV_BINDING};
use super::store::WorkerStore;
use crate::forge::{Forge, LeaderChange};
use crate::http::{Request, Response};
use crate::metrics::Metrics;

/// An env's write (`route::Route::writes_env`): in `durable-object` mode it runs inside the
/// env's Durable Object.
fn writes_env(req: &Request) -> bool {
    route::route(&req.path).is_some_and(|r| r.writes_env && req.method == r.method)
}

/// A read of one env (`route::Route::reads_env`): in `durable-object` mode the register
/// answers it from memory (fresh, no KV operation; a DO request costs less than a KV read).
fn reads_env(req: &Request) -> bool {
    (req.method == "GET" || req.method == "HEAD")
        && (route::route(&req.path).is_some_and(|r| r.reads_env)
            || (req.path == Endpoint::Metrics.path() && req.query_param("env").is_some()))
}

/// The Worker's per-isolate state: the forge over KV (reads in both modes; writes too in
/// `kv` mode). Its counters count what this isolate served.
struct WorkerForge {
    setup: Setup,
    forge: Forge<WorkerStore>,
    /// `kv` mode: one election step at a time in this isolate. An isolate serves requests
    /// concurrently, interleaving at every KV await; without this, two heartbeats after an
    /// expiry could both load the vacant lease and grant the same term to two nodes. (Across
    /// isolates and locations KV offers no such guarantee: that is the documented weakness of
    /// the `kv` mode, and the reason for the `durable-object` mode.)
    write_lock: IsolateLock,
}

thread_local! {
    static WORKER: RefCell<Option<Rc<WorkerForge>>> = const { RefCell::new(None) };
}

fn worker_forge(env: &Env) -> Rc<WorkerForge> {
    let wf = WORKER.with(|w| {
        w.borrow_mut()
            .get_or_insert_with(|| {
                let mode = if env.durable_object(DO_BINDING).is_ok() {
                    Mode::DurableObject
                } else {
                    Mode::Kv
                };
                let setup = Setup::from_env(env, mode);
                let metrics = Metrics::default();
                let kv = Kv::new(
                    metrics.store_ops.clone(),
                    setup.test_faults.iter().any(|f| f == "kv"),
                );
                let store = match mode {
                    Mode::Kv => WorkerStore::Kv(KvModeStore::new(kv, setup.cfg.election.timing)),
                    Mode::DurableObject => WorkerStore::Reader(KvReader { kv }),
                };
                let mut cfg = setup.cfg.clone();
                cfg.env_gauges = mode == Mode::Kv;
                Rc::new(WorkerForge {
                    forge: Forge {
                        cfg,
                        store,
                        metrics,
                    },
                    setup,
                    write_lock: IsolateLock::default(),
                })
            })
            .clone()
    });
    if let Ok(kv) = KvNs::from_env(env, KV_BINDING) {
        wf.forge.store.bind(kv);
    }
    wf
}

/// The env a federation write is for, if the body names a valid one. A body without one is
/// answered by the core in the Worker (signature, JSON and field checks come before any
/// state is touched, so it never reaches the store).
fn routable_env(body: &[u8]) -> Option<String> {
    let doc = brh_shared::json::parse(body).ok()?;
    let e: String = doc.fields().ok()?.req("env").ok()?;
    validate_id(&e).is_ok().then_some(e)
}

fn do_stub(env: &Env, name: &str) -> worker::Result<worker::Stub> {
    env.durable_object(DO_BINDING)?
        .id_from_name(name)?
        .get_stub()
}
impl WorkerForge {
    async fn serve(&self, env: &Env, req: &Request, now: u64) -> (Response, Vec<LeaderChange>) {
        if let Some(r) = self.setup.refusal(req) {
            return (r, Vec::new());
        }
        if self.setup.mode == Mode::DurableObject {
            let write = writes_env(req);
            let read = reads_env(req);
            let name = if write {
                routable_env(&req.body)
            } else if read {
                // An invalid env is refused by the core below, without a DO request.
                Some(
                    req.query_param("env")
                        .unwrap_or_else(|| crate::forge::DEFAULT_ENV.into()),
                )
                .filter(|e| validate_id(e).is_ok())
            } else {
                None
            };
            // A body that is not UTF-8 cannot be JSON: the core below refuses it.
            if let Some((name, forwarded)) = name.zip(Forwarded::of(req)) {
                let call = RegisterCall::Serve(forwarded);
                let reply = match do_stub(env, &name) {
                    Ok(stub) => message::call(&stub, &call).await,
                    Err(e) => Err(e),
                };
                return match reply {
                    Ok(reply) => {
                        let changes = reply.changes();
                        self.count_forwarded(req, &name, &reply, &changes);
                        (reply.response(), changes)
                    }
                    Err(e) => {
                        console_error!("durable object for env {name}: {e}");
                        self.forge.metrics.store_failures.inc();
                        (
                            Response::error(
                                ErrorCode::StoreUnavailable,
                                format!("the lease register of env {name} is unavailable; retry shortly"),
                            )
                            .with_header("retry-after", crate::forge::STORE_RETRY_AFTER_S),
                            Vec::new(),
                        )
                    }
                };
            }
        }
        let serial = if writes_env(req) {
            match self.write_lock.lock().await {
                Some(guard) => Some(guard),
                None => {
                    let busy = "the forge is overloaded (election steps queued for 10 s): retry";
                    return (
                        Response::error(ErrorCode::StoreUnavailable, busy)
                            .with_header("retry-after", crate::forge::STORE_RETRY_AFTER_S),
                        Vec::new(),
                    );
                }
            }
        } else {
            None
        };
        // The clock is read after the lock: a step waiting behind another must not apply an
        // older time after a newer one.
        let now = if serial.is_some() { now_ms() } else { now };
        let handled = self.forge.handle(req, now).await;
        drop(serial);
        (handled.response, handled.leader_changes)
    }

    /// Counts a request the register served, so this isolate's `/metrics` shows it, from
    /// the reply's typed fields (never by parsing the answer).
    fn count_forwarded(
        &self,
        req: &Request,
        env: &str,
        reply: &RegisterReply,
        changes: &[LeaderChange],
    ) {
        let m = &self.forge.metrics;
        let endpoint = route::route(&req.path).map(|r| r.endpoint);
        if reply.status == 200 && endpoint == Some(Endpoint::Heartbeat) {
            m.heartbeats.get_or_create(&Metrics::env(env)).inc();
        }
        if let Some(code) = reply.refusal {
            m.reject(code.as_str());
        }
        self.count_changes(changes);
    }

    fn count_changes(&self, changes: &[LeaderChange]) {
        for c in changes {
            log_change(c);
            if c.entry.leader.is_some() {
                self.forge
                    .metrics
                    .leader_changes
                    .get_or_create(&Metrics::env(&c.env))
                    .inc();
            }
        }
    }

    /// Cron: every env's sweep, through its Durable Object in `durable-object` mode.
    async fn sweep(&self, env: &Env, now: u64) -> Vec<LeaderChange> {
        match self.setup.mode {
            Mode::Kv => {
                let swept = {
                    let _serial = self.write_lock.lock().await;
                    self.forge.sweep(now_ms().max(now)).await
                };
                match swept {
                    Ok(changes) => {
                        changes.iter().for_each(log_change);
                        changes
                    }
                    Err(e) => {
                        console_error!("sweep failed: {e}");
                        Vec::new()
                    }
                }
            }
            Mode::DurableObject => {
                let envs = match crate::store::Store::envs(&self.forge.store).await {
                    Ok(envs) => envs,
                    Err(e) => {
                        console_error!("sweep: cannot list envs: {e}");
                        return Vec::new();
                    }
                };
                let calls = envs.iter().map(|name| async move {
                    message::call(&do_stub(env, name)?, &RegisterCall::Sweep).await
                });
                let mut out = Vec::new();
                for (name, result) in envs.iter().zip(join_all(calls).await) {
                    match result {
                        Ok(reply) if reply.status == 200 => {
                            let changes = reply.changes();
                            self.count_changes(&changes);
                            out.extend(changes);
                        }
                        Ok(reply) => {
                            console_error!("sweep of env {name}: {} {}", reply.status, reply.body)
                        }
                        Err(e) => console_error!("sweep of env {name}: {e}"),
                    }
                }
                out
            }
        }
    }

    fn ledger(&self) -> Option<(String, ed25519_dalek::SigningKey)> {
        Some((
            self.setup.ledger_url.clone()?,
            self.setup.cfg.forge_key.clone()?,
        ))
    }
}

#[event(fetch)]
async fn fetch(
    mut req: worker::Request,
    env: Env,
    ctx: Context,
) -> worker::Result<worker::Response> {
    let wf = worker_forge(&env);
    let now = now_ms();
    let path_and_query = path_and_query_of(&req.inner().url());
    // The dashboard page is a static asset (wrangler.toml [assets]); without the binding the
    // core answers why it is missing.
    let method = req.inner().method();
    if path_and_query.split('?').next() == Some(Endpoint::Dashboard.path())
        && (method == "GET" || method == "HEAD")
    {
        if let Ok(assets) = env.assets(ASSETS_BINDING) {
            return assets.fetch_request(req).await;
        }
    }
    if path_and_query.split('?').next() == Some(STREAM_PATH) {
        return stream_upgrade(&wf, &env, req).await;
    }
    let req = match read_request(&mut req).await? {
        Ok(r) => r,
        Err(refused) => return to_worker(refused),
    };
    let (response, changes) = wf.serve(&env, &req, now).await;
    if !changes.is_empty() {
        if wf.setup.mode == Mode::Kv {
            changes.iter().for_each(log_change);
        }
        if let Some((url, forge)) = wf.ledger() {
            ctx.wait_until(forward_to_ledger(url, forge, changes));
        }
    }
    to_worker(response)
}

/// `GET /federation/stream`: handed, upgrade and all, to the env's register.
async fn stream_upgrade(
    wf: &WorkerForge,
    env: &Env,
    mut raw: worker::Request,
) -> worker::Result<worker::Response> {
    // An upgrade has no body; anything else is refused below, before `raw` is forwarded.
    let head = match read_request(&mut raw).await? {
        Ok(r) => r,
        Err(refused) => return to_worker(refused),
    };
    let Some(target) = crate::stream::upgrade_target(&head) else {
        return to_worker(Response::error(ErrorCode::NotFound, "no such endpoint"));
    };
    if let Some(r) = wf.setup.refusal(&head) {
        return to_worker(r);
    }
    if wf.setup.mode != Mode::DurableObject {
        return to_worker(Response::error(
            ErrorCode::NotFound,
            "the stream needs durable-object mode (bind the LEASES Durable Object); \
             use HTTP heartbeats",
        ));
    }
    match target {
        Err(r) => to_worker(r),
        Ok(name) => do_stub(env, &name)?.fetch_with_request(raw).await,
    }
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let wf = worker_forge(&env);
    if let Some(e) = &wf.setup.error {
        console_error!("sweep skipped: the forge is not configured: {e}");
        return;
    }
    let changes = wf.sweep(&env, now_ms()).await;
    if let (Some((url, forge)), false) = (wf.ledger(), changes.is_empty()) {
        forward_to_ledger(url, forge, changes).await;
    }
}
