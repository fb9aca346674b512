//! The Cloudflare Worker: thin glue around the same [`Forge::handle`] the native forge runs.
//!
//! Two modes, chosen by the bindings present (docs/design.md §5.5, §5.6):
//! - `kv` (only the KV namespace `BRH_KV` is bound): the election step runs in the Worker over
//!   Workers KV ([`kv::KvLayout`]), and every read of an env's state comes from KV. Safe within
//!   one location; across locations two leaders are possible while KV disagrees. No stream.
//! - `durable-object` (the Durable Object namespace `LEASES` is bound too): the Worker forwards
//!   to the Durable Object named by the env ([`durable::LeaseRegister`]) every federation write
//!   (heartbeat, resign, consensus, revoke), the env's reads (`/federation/leader`, `/peers`,
//!   `/history`, and `/metrics?env=`: answered fresh from the register's memory, no KV
//!   operation), the stream's upgrade, and the cron sweep of the env. The register runs the same
//!   handler over its transactional storage — a linearizable lease register — and mirrors the
//!   results into KV in the same layout. The Worker itself answers `/`, `/health`,
//!   `/manifest/resolve`, its own `/metrics` (no `env`), and `/federation/envs` from KV's env
//!   index.
//!
//! Settings (vars, or secrets for the seals): `DOMINION_SEAL` (secret; without it the core
//! answers 503 `no_seal`), `DOMINION_SEAL_PREVIOUS` (secret, while rotating the root secret),
//! `BRH_LEASE_TTL_MS` and `BRH_HEARTBEAT_INTERVAL_MS` (default 15000 / 5000, checked with the
//! timing rule), `BRH_SKEW_MS` (default 30000), `FORGE_DOMINION_ROOT`, `LEDGER_URL` (optional:
//! every leader change is POSTed there, signed, off the request path),
//! `BRH_LEGACY_SEAL_SIGNATURES` (one release of compatibility with seal-signed agents) and
//! `BRH_TEST_FAULTS` (tests only).
//! A bad timing var or a missing KV binding does not fail silently: every endpoint but the
//! dashboard page answers 503 `no_seal` with a message naming the setting to fix.
pub mod durable;
pub mod kv;
pub mod layout;
pub mod stream;

use std::cell::RefCell;
use std::rc::Rc;

use brh_shared::election::ElectionConfig;
use brh_shared::ids::validate_id;
use brh_shared::route::{self, Endpoint};
use brh_shared::sign;
use brh_shared::wire::{ErrorBody, ErrorCode, HistoryEntry, MAX_BODY_BYTES, STREAM_PATH};
use brh_shared::Timing;
use futures_util::future::join_all;
use futures_util::StreamExt;
use worker::wasm_bindgen::JsValue;
use worker::{console_error, console_log, console_warn, event, js_sys};
use worker::{Context, Env, Fetch, Headers, Method, RequestInit, ScheduleContext, ScheduledEvent};

use crate::forge::{Forge, ForgeConfig, LeaderChange};
use crate::http::{Request, Response};
use kv::KvLayout;

pub const KV_BINDING: &str = "BRH_KV";
pub const DO_BINDING: &str = "LEASES";
/// Response header from the Durable Object to the Worker: the leader changes a request caused
/// (for the ledger and the Worker's metrics). Stripped before the answer leaves the Worker.
const CHANGES_HEADER: &str = "x-brh-internal-changes";
/// The Durable Object's internal sweep route (only the cron handler calls it, via the stub).
const SWEEP_PATH: &str = "/__brh/sweep";
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Kv,
    DurableObject,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Kv => "kv",
            Mode::DurableObject => "durable-object",
        }
    }
}

/// A var or secret as a string (numbers in `[vars]` are accepted too).
fn env_string(env: &Env, name: &str) -> Option<String> {
    let v = js_sys::Reflect::get(env, &JsValue::from_str(name)).ok()?;
    match v.as_string() {
        Some(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        None => v.as_f64().map(|n| format!("{n}")),
    }
}

fn env_ms(env: &Env, name: &str, default: u64) -> Result<u64, String> {
    match env_string(env, name) {
        None => Ok(default),
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| format!("{name}={s:?} is not a whole number of milliseconds")),
    }
}

/// The deployment's settings, read once per isolate (a change of vars or secrets deploys a new
/// version, hence new isolates).
pub struct Setup {
    pub cfg: ForgeConfig,
    pub mode: Mode,
    /// Why the forge cannot serve (bad timing vars, missing KV binding).
    pub error: Option<String>,
    pub ledger_url: Option<String>,
    /// `BRH_TEST_FAULTS` (tests only, comma-separated): `kv` makes every KV call fail,
    /// `do-storage` every Durable Object storage write.
    pub test_faults: Vec<String>,
}

impl Setup {
    pub fn from_env(env: &Env, mode: Mode) -> Setup {
        let seal = env_string(env, "DOMINION_SEAL").map(String::into_bytes);
        let previous = env_string(env, "DOMINION_SEAL_PREVIOUS").map(String::into_bytes);
        let mut cfg = ForgeConfig::new(seal, mode.as_str()).with_previous_seal(previous);
        let mut errors = Vec::new();
        let timing = env_ms(
            env,
            "BRH_HEARTBEAT_INTERVAL_MS",
            Timing::DEFAULT.heartbeat_interval_ms,
        )
        .and_then(|hb| {
            let ttl = env_ms(env, "BRH_LEASE_TTL_MS", Timing::DEFAULT.lease_ttl_ms)?;
            let t = Timing {
                heartbeat_interval_ms: hb,
                lease_ttl_ms: ttl,
            };
            t.validate()
                .map(|()| t)
                .map_err(|e| format!("BRH_LEASE_TTL_MS/BRH_HEARTBEAT_INTERVAL_MS: {e}"))
        });
        match timing {
            Ok(t) => cfg.election = ElectionConfig::new(t),
            Err(e) => errors.push(e),
        }
        match env_ms(env, "BRH_SKEW_MS", sign::DEFAULT_SKEW_MS) {
            Ok(s) => cfg.skew_ms = s,
            Err(e) => errors.push(e),
        }
        if env.kv(KV_BINDING).is_err() {
            errors.push(format!("the KV namespace binding {KV_BINDING} is missing"));
        }
        cfg.dominion_root = env_string(env, "FORGE_DOMINION_ROOT");
        // One release of compatibility: agents of the previous release sign with the seal.
        cfg.legacy_seal_signatures = env_string(env, "BRH_LEGACY_SEAL_SIGNATURES")
            .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
        Setup {
            cfg,
            mode,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
            ledger_url: env_string(env, "LEDGER_URL"),
            test_faults: env_string(env, "BRH_TEST_FAULTS")
                .map(|s| s.split(',').map(|f| f.trim().to_string()).collect())
                .unwrap_or_default(),
        }
    }

    /// The answer to anything but the dashboard page while the forge is misconfigured.
    fn refusal(&self, req: &Request) -> Option<Response> {
        let error = self.error.as_ref()?;
        (req.path != "/").then(|| {
            Response::error(
                ErrorCode::NoSeal,
                format!("the forge is not configured: {error}"),
            )
        })
    }
}

pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

fn too_large() -> Response {
    Response::error(
        ErrorCode::TooLarge,
        format!("body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

/// Converts a Workers request, reading at most 64 KiB of body: a declared `content-length`
/// over the cap is refused before reading, a streamed body as soon as it passes the cap. The
/// core checks the size again.
pub(crate) async fn read_request(
    req: &mut worker::Request,
) -> worker::Result<Result<Request, Response>> {
    // The raw URL string, not `req.url()`: parsing it with the `url` crate would ship its
    // IDNA tables in the Wasm (~100 KB) for a path and a query we only split.
    let path_and_query = path_and_query_of(&req.inner().url());
    let mut core = Request::new(&req.inner().method(), &path_and_query);
    for (k, v) in req.headers().entries() {
        core.add_header(&k, &v);
    }
    let declared = core
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Ok(Err(too_large()));
    }
    if req.inner().body().is_some() {
        let mut stream = req.stream()?;
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            // A broken framing (bad chunked encoding, a client gone mid-body) is the
            // client's error, not the Worker's.
            let Ok(chunk) = chunk else {
                return Ok(Err(Response::error(
                    ErrorCode::BadRequest,
                    "the request body is malformed",
                )));
            };
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Ok(Err(too_large()));
            }
            body.extend_from_slice(&chunk);
        }
        core.body = body;
    }
    Ok(Ok(core))
}

/// `https://host:port/a/b?x=1#f` → `/a/b?x=1`.
fn path_and_query_of(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let pq = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    pq.split('#').next().unwrap_or("/").to_string()
}

pub(crate) fn to_worker(r: Response) -> worker::Result<worker::Response> {
    let headers = Headers::new();
    for (k, v) in &r.headers {
        headers.append(k, v)?;
    }
    let resp = if r.body.is_empty() {
        worker::Response::empty()?
    } else {
        worker::Response::from_bytes(r.body)?
    };
    Ok(resp.with_status(r.status).with_headers(headers))
}

/// Leader changes as they cross from the Durable Object to the Worker.
type WireChanges = Vec<(String, HistoryEntry)>;

fn changes_to_wire(changes: &[LeaderChange]) -> String {
    let wire: WireChanges = changes
        .iter()
        .map(|c| (c.env.clone(), c.entry.clone()))
        .collect();
    serde_json::to_string(&wire).unwrap_or_default()
}

fn changes_from_wire(s: &str) -> Vec<LeaderChange> {
    serde_json::from_str::<WireChanges>(s)
        .unwrap_or_default()
        .into_iter()
        .map(|(env, entry)| LeaderChange { env, entry })
        .collect()
}

fn log_change(c: &LeaderChange) {
    match &c.entry.leader {
        Some(l) => console_log!(
            "[FORGE] env={} term={} leader={} ({})",
            c.env,
            c.entry.term,
            l,
            c.entry.reason
        ),
        None => console_log!(
            "[FORGE] env={} term={} lease ended ({})",
            c.env,
            c.entry.term,
            c.entry.reason
        ),
    }
}

/// The Worker's per-isolate state: the forge over KV (reads in both modes; writes too in
/// `kv` mode). Its counters count what this isolate served.
struct WorkerForge {
    setup: Setup,
    forge: Forge<KvLayout>,
    /// `kv` mode: one election step at a time in this isolate. An isolate serves requests
    /// concurrently, interleaving at every KV await; without this, two heartbeats after an
    /// expiry could both load the vacant lease and grant the same term to two nodes. (Across
    /// isolates and locations KV offers no such guarantee: that is the documented weakness of
    /// the `kv` mode, and the reason for the `durable-object` mode.)
    write_lock: IsolateLock,
}

/// A lock over the requests of one isolate. workerd cancels a request that waits on a promise
/// only another request can resolve ("hung"), so a waker-based async mutex cannot be used
/// across requests; a waiter polls on its own timer instead (2 ms; KV calls take longer).
#[derive(Default)]
struct IsolateLock {
    busy: std::cell::Cell<bool>,
}

struct IsolateGuard<'a>(&'a IsolateLock);

impl Drop for IsolateGuard<'_> {
    fn drop(&mut self) {
        self.0.busy.set(false);
    }
}

impl IsolateLock {
    /// Waits up to 10 s; `None` if the lock stayed busy that long.
    async fn lock(&self) -> Option<IsolateGuard<'_>> {
        for _ in 0..5000 {
            if !self.busy.replace(true) {
                return Some(IsolateGuard(self));
            }
            worker::Delay::from(std::time::Duration::from_millis(2)).await;
        }
        None
    }
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
                let metrics = crate::metrics::Metrics::default();
                let store = KvLayout::new(mode == Mode::DurableObject, metrics.store_ops.clone())
                    .with_timing(setup.cfg.election.timing);
                store.inject_failures(setup.test_faults.iter().any(|f| f == "kv"));
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
    if let Ok(kv) = env.kv(KV_BINDING) {
        wf.forge.store.bind(kv);
    }
    wf
}

/// The env a federation write is for, if the body names a valid one. A body without one is
/// answered by the core in the Worker (signature, JSON and field checks come before any
/// state is touched, so it never reaches the store).
fn routable_env(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct EnvOnly {
        env: String,
    }
    let e = serde_json::from_slice::<EnvOnly>(body).ok()?.env;
    validate_id(&e).is_ok().then_some(e)
}

fn do_stub(env: &Env, name: &str) -> worker::Result<worker::Stub> {
    env.durable_object(DO_BINDING)?
        .id_from_name(name)?
        .get_stub()
}

async fn call_do(
    stub: &worker::Stub,
    method: Method,
    path_and_query: &str,
    headers: Headers,
    body: &[u8],
) -> worker::Result<(Response, Vec<LeaderChange>)> {
    let mut init = RequestInit::new();
    let post = method == Method::Post;
    init.with_method(method).with_headers(headers);
    if post {
        init.with_body(Some(js_sys::Uint8Array::from(body).into()));
    }
    let req = worker::Request::new_with_init(
        &format!("https://lease-register.internal{path_and_query}"),
        &init,
    )?;
    let mut resp = stub.fetch_with_request(req).await?;
    let mut changes = Vec::new();
    let mut out = Response {
        status: resp.status_code(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    for (k, v) in resp.headers().entries() {
        if k == CHANGES_HEADER {
            changes = changes_from_wire(&v);
        } else {
            out.headers.push((k, v));
        }
    }
    out.body = resp.bytes().await?;
    Ok((out, changes))
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
            if let Some(name) = name {
                return match self.forward(env, &name, req).await {
                    Ok((resp, changes)) => {
                        self.count_forwarded(req, &name, &resp, &changes);
                        (resp, changes)
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

    async fn forward(
        &self,
        env: &Env,
        name: &str,
        req: &Request,
    ) -> worker::Result<(Response, Vec<LeaderChange>)> {
        let headers = Headers::new();
        for (k, v) in &req.headers {
            if (k.starts_with("x-brh-") && k != CHANGES_HEADER) || k == "content-type" {
                headers.set(k, v)?;
            }
        }
        let pq = if req.query.is_empty() {
            req.path.clone()
        } else {
            format!("{}?{}", req.path, req.query)
        };
        let method = if req.method == "POST" {
            Method::Post
        } else {
            Method::Get
        };
        call_do(&do_stub(env, name)?, method, &pq, headers, &req.body).await
    }

    /// Counts a request the Durable Object served, so this isolate's `/metrics` shows it.
    fn count_forwarded(&self, req: &Request, env: &str, resp: &Response, changes: &[LeaderChange]) {
        let m = &self.forge.metrics;
        let endpoint = route::route(&req.path).map(|r| r.endpoint);
        if resp.status == 200 && endpoint == Some(Endpoint::Heartbeat) {
            m.heartbeats
                .get_or_create(&crate::metrics::Metrics::env(env))
                .inc();
        }
        if resp.status >= 400 {
            if let Ok(e) = serde_json::from_slice::<ErrorBody>(&resp.body) {
                m.reject(e.error.code.as_str());
            }
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
                    .get_or_create(&crate::metrics::Metrics::env(&c.env))
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
                    let stub = do_stub(env, name)?;
                    call_do(&stub, Method::Post, SWEEP_PATH, Headers::new(), b"").await
                });
                let mut out = Vec::new();
                for (name, result) in envs.iter().zip(join_all(calls).await) {
                    match result {
                        Ok((resp, changes)) if resp.status == 200 => {
                            self.count_changes(&changes);
                            out.extend(changes);
                        }
                        Ok((resp, _)) => console_error!(
                            "sweep of env {name}: {} {}",
                            resp.status,
                            String::from_utf8_lossy(&resp.body)
                        ),
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

/// POSTs each leader change to the ledger: the JSON of [`LeaderChange`], with `x-brh-sig` the
/// forge key's Ed25519 signature of the body (128 hex), so the ledger checks it with the
/// forge's public key and holds no secret. Best effort: failures are logged.
pub(crate) async fn forward_to_ledger(
    url: String,
    forge: ed25519_dalek::SigningKey,
    changes: Vec<LeaderChange>,
) {
    for c in changes {
        let body = serde_json::to_string(&c).unwrap_or_default();
        let sig = brh_shared::keys::sign_hex(&forge, body.as_bytes());
        let send = async {
            let headers = Headers::new();
            headers.set("content-type", "application/json")?;
            headers.set(sign::HEADER_SIG, &sig)?;
            let mut init = RequestInit::new();
            init.with_method(Method::Post)
                .with_headers(headers)
                .with_body(Some(JsValue::from_str(&body)));
            let req = worker::Request::new_with_init(&url, &init)?;
            Fetch::Request(req).send().await
        };
        match send.await {
            Ok(r) if r.status_code() < 300 => {}
            Ok(r) => console_warn!("ledger {url} answered {}", r.status_code()),
            Err(e) => console_warn!("ledger {url}: {e}"),
        }
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
