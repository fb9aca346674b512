//! `durable-object` mode: one Durable Object per env (`id_from_name(env)`) is the env's lease
//! register. It runs the same [`Forge::handle`] over its own transactional storage
//! ([`DoStore`]), serves the env's reads fresh from memory, holds the env's streams, and
//! mirrors durable changes into KV ([`KvMirror`]). The Worker reaches it with a typed
//! [`RegisterCall`]; only the stream's upgrade arrives as a raw request.
//!
//! Cost per operation (the point of this module): a renewal writes nothing — no storage row,
//! no KV key; lease expiry is driven by an alarm set at the lease's expiry (one alarm write per
//! lease ttl at most, not one per beat); KV is written only on a durable change, after the
//! critical section.
//!
//! Why the read-modify-write cannot interleave: Cloudflare runs at most one instance of a
//! given object id, single-threaded; every call, stream frame and alarm runs its step inside
//! `blockConcurrencyWhile`, which delivers no other event until the step's storage write has
//! resolved. So requests to one env apply strictly one after another: a linearizable
//! register. If a write fails, the env leaves memory and is reloaded from storage (restart
//! rule) before the next step, so nothing unwritten is ever answered.
use std::cell::Cell;
use std::rc::Rc;

use brh_shared::wire::ErrorCode;
use worker::{
    console_error, durable_object, DurableObject, Env, State, Storage, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

use super::do_store::DoStore;
use super::kv::js::KvNs;
use super::kv::mirror::KvMirror;
use super::kv::Kv;
use super::ledger::{forward_to_ledger, log_change};
use super::message::{RegisterCall, RegisterReply, CALL_PATH};
use super::request::{path_and_query_of, read_request, to_worker};
use super::setup::{now_ms, Mode, Setup, KV_BINDING};
use super::store::WorkerStore;
use super::stream::{self, Socket};
use crate::forge::{Forge, Handled, LeaderChange};
use crate::http::Response;
use crate::metrics::count_op;

/// The answer to a sweep (`{"swept":true}`).
#[derive(serde::Serialize)]
struct Swept {
    swept: bool,
}

/// The register's logic, shared (`Rc`) with the futures run under `blockConcurrencyWhile`.
struct Register {
    setup: Setup,
    forge: Forge<WorkerStore>,
    /// The same store as `forge.store`, typed: for the alarm and the mirror.
    store: Rc<DoStore>,
    mirror: Rc<KvMirror>,
    /// When the alarm is set for (this instance's knowledge; `None` after a cold start).
    alarm_at: Cell<Option<u64>>,
}

impl Register {
    /// One call, inside the critical section.
    async fn serve(&self, call: RegisterCall) -> RegisterReply {
        let refused = |code, message: String| {
            RegisterReply::of(Handled {
                response: Response::error(code, message),
                leader_changes: Vec::new(),
                refusal: Some(code),
            })
        };
        let now = now_ms();
        match call {
            RegisterCall::Serve(forwarded) => {
                let req = forwarded.into_request();
                if let Some(r) = self.setup.refusal(&req) {
                    return RegisterReply::of(r.into());
                }
                RegisterReply::of(self.forge.handle(&req, now).await)
            }
            RegisterCall::Sweep => {
                if let Some(e) = &self.setup.error {
                    return refused(ErrorCode::NoSeal, format!("not configured: {e}"));
                }
                match self.forge.sweep(now).await {
                    Ok(changes) => RegisterReply::of(Handled {
                        response: Response::json(200, &Swept { swept: true }),
                        leader_changes: changes,
                        refusal: None,
                    }),
                    Err(e) => refused(ErrorCode::StoreUnavailable, e.to_string()),
                }
            }
            // Answered in `fetch`, outside the critical section.
            RegisterCall::Evict => refused(ErrorCode::NotFound, "no such call".into()),
        }
    }

    /// Sets the alarm at the lease's expiry if none is set: at most one write per lease ttl.
    async fn arm(&self, storage: &Storage) {
        let Some(expiry) = self.store.lease_expiry() else {
            return;
        };
        if self.alarm_at.get().is_some() {
            return;
        }
        let now = now_ms();
        let at = expiry.max(now + 1);
        // workers-rs reads an integer as an offset from now, not as a date: the alarm is set
        // `at - now` ahead. Given the expiry itself it would fire decades late, and failover
        // would wait for the next heartbeat.
        let offset = std::time::Duration::from_millis(at - now);
        match storage.set_alarm(offset).await {
            Ok(()) => {
                self.alarm_at.set(Some(at));
                count_op(&self.store.ops, "do_alarms_set", 1);
            }
            Err(e) => console_error!("cannot set the lease alarm: {e}"),
        }
    }

    /// Drains the mirror's queue to KV (off the request path, under `waitUntil`).
    async fn mirror_pending(self: Rc<Self>) {
        let store = self.store.clone();
        self.mirror.drain(&|env, p| store.plan_mirror(env, p)).await;
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
    /// A call from the Worker: the changes travel in the reply and the Worker forwards them.
    ByWorker,
    /// A stream message or the alarm: no Worker sees these, so the register forwards them.
    ByRegister,
}

impl LeaseRegister {
    async fn run(&self, call: RegisterCall, ledger: Ledger) -> worker::Result<RegisterReply> {
        let register = self.register.clone();
        // Errors are answers (`Ok`): an `Err` here would reset the object.
        let reply = self
            .state
            .block_concurrency_while(async move { Ok(register.serve(call).await) })
            .await?;
        self.after_step(&reply.changes(), ledger).await;
        Ok(reply)
    }

    /// Outside the critical section: the pushes first (a new holder learns before anything
    /// else is awaited), then the alarm, the KV mirror and the ledger.
    async fn after_step(&self, changes: &[LeaderChange], ledger: Ledger) {
        if !changes.is_empty() {
            self.push_all().await;
        }
        let setup = &self.register.setup;
        if ledger == Ledger::ByRegister && !changes.is_empty() {
            changes.iter().for_each(log_change);
            if let (Some(url), Some(forge)) =
                (setup.ledger_url.clone(), setup.cfg.forge_key.clone())
            {
                self.state
                    .wait_until(forward_to_ledger(url, forge, changes.to_vec()));
            }
        }
        self.register.arm(&self.state.storage()).await;
        if !self.register.mirror.is_idle() {
            self.state
                .wait_until(self.register.clone().mirror_pending());
        }
    }

    /// After a leader change: every socket of this register gets the view as its node sees
    /// it, unless that tells it nothing new. Reads from memory; writes no storage.
    async fn push_all(&self) {
        let now = now_ms();
        for ws in self.state.get_websockets() {
            let Some(mut socket) = Socket::of(&ws) else {
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
        Socket {
            env,
            ..Socket::default()
        }
        .keep(&pair.server)?;
        count_op(&self.register.store.ops, "do_streams_opened", 1);
        worker::Response::from_websocket(pair.client)
    }

    /// A call that is not a valid [`RegisterCall`] (only this crate sends calls, so this is a
    /// deployment mismatch or a probe through the namespace).
    fn bad_call(why: String) -> worker::Result<worker::Response> {
        to_worker(Response::error(ErrorCode::BadRequest, why))
    }
}

impl DurableObject for LeaseRegister {
    fn new(state: State, env: Env) -> Self {
        let setup = Setup::from_env(&env, Mode::DurableObject);
        let metrics = crate::metrics::Metrics::default();
        let has = |f: &str| setup.test_faults.iter().any(|t| t == f);
        let kv = Kv::new(metrics.store_ops.clone(), has("kv"));
        if let Ok(binding) = KvNs::from_env(&env, KV_BINDING) {
            kv.bind(binding);
        }
        let mirror = Rc::new(KvMirror::new(kv));
        let store = Rc::new(DoStore::new(
            state.storage(),
            setup.cfg.election,
            mirror.clone(),
            metrics.store_ops.clone(),
            has("do-storage"),
        ));
        let forge = Forge {
            cfg: setup.cfg.clone(),
            store: WorkerStore::Register(store.clone()),
            metrics,
        };
        LeaseRegister {
            state,
            register: Rc::new(Register {
                setup,
                forge,
                store,
                mirror,
                alarm_at: Cell::new(None),
            }),
        }
    }

    async fn fetch(&self, mut req: worker::Request) -> worker::Result<worker::Response> {
        // The raw URL and method strings: `req.path()` would parse the URL with the `url`
        // crate and ship its tables in the Wasm.
        let is_call =
            path_and_query_of(&req.inner().url()) == CALL_PATH && req.inner().method() == "POST";
        if is_call {
            let text = req.text().await?;
            let call = match brh_shared::json::from_json::<RegisterCall>(text.as_bytes()) {
                Ok(call) => call,
                Err(e) => return Self::bad_call(format!("not a register call: {e}")),
            };
            if let RegisterCall::Evict = call {
                // Tests only (`BRH_TEST_FAULTS=evictable`, reached through the namespace,
                // never through the Worker): forget everything in memory, as an eviction or a
                // hibernation does. The next event reloads from storage and applies the
                // restart rule; sockets keep their attachments (the runtime holds them).
                if !self
                    .register
                    .setup
                    .test_faults
                    .iter()
                    .any(|f| f == "evictable")
                {
                    return Self::bad_call("evict is for tests (BRH_TEST_FAULTS=evictable)".into());
                }
                self.register.store.forget_all();
                self.register.alarm_at.set(None);
                count_op(&self.register.store.ops, "do_test_evictions", 1);
                return worker::Response::ok("evicted");
            }
            let reply = self.run(call, Ledger::ByWorker).await?;
            return worker::Response::from_json(&reply);
        }
        let req = match read_request(&mut req).await? {
            Ok(r) => r,
            Err(refused) => return to_worker(refused),
        };
        match crate::stream::upgrade_target(&req) {
            Some(target) => {
                if let Some(r) = self.register.setup.refusal(&req) {
                    return to_worker(r);
                }
                match target {
                    Ok(env) => self.accept(env),
                    Err(r) => to_worker(r),
                }
            }
            None => Self::bad_call(format!("the register takes calls on {CALL_PATH} only")),
        }
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
        count_op(&self.register.store.ops, "do_stream_messages", 1);
        let Some(mut socket) = Socket::of(&ws) else {
            let _ = ws.close(Some(1011), Some("lost the socket's state; reconnect"));
            return Ok(());
        };
        let register = self.register.clone();
        let (env, bound) = (socket.env.clone(), socket.node.clone());
        // One step at a time, like `fetch`: no other event interleaves with the frame's.
        let out = self
            .state
            .block_concurrency_while(async move {
                let now = now_ms();
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
        count_op(&self.register.store.ops, "do_alarms_fired", 1);
        let reply = self.run(RegisterCall::Sweep, Ledger::ByRegister).await?;
        if reply.status != 200 {
            console_error!("lease alarm sweep: {} {}", reply.status, reply.body);
        }
        worker::Response::ok("swept")
    }
}
