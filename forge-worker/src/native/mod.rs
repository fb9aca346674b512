//! The embedded native forge: the same core as the Worker, served over HTTP with an on-disk
//! store. One dedicated thread owns the store and applies every request and sweep in arrival
//! order, so the lease register is linearizable by construction; the HTTP server only
//! translates requests and waits for answers.
pub mod etcd;
pub mod etcd_store;
pub mod file_store;
pub mod replica;
mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::any;
use axum::Router;
use brh_http_server as server;
use brh_shared::election::ElectionConfig;
use brh_shared::wire::{ErrorCode, MAX_BODY_BYTES};
use brh_shared::Timing;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::forge::{Forge, ForgeConfig};
use crate::http::{Request, Response};
use crate::store::Store;
use etcd_store::EtcdStore;
use file_store::FileStore;

/// Where the native forge keeps its state.
// Built once at start: its size costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Default)]
pub enum StoreChoice {
    /// `--data`: one process, a snapshot + log per env on local disk (the default).
    #[default]
    File,
    /// `--store etcd`: one of several replicas over an etcd cluster; the active one serves.
    Etcd {
        etcd: etcd::EtcdOptions,
        replica: replica::ReplicaOptions,
    },
}

/// What the core thread needs of a store beyond [`Store`].
pub trait CoreStore: Store {
    /// The earliest lease expiry held in memory: the core sweeps right then.
    fn lease_expiry(&self) -> Option<u64>;
    /// Whether this process answers now (a standby replica does not sweep).
    fn serving(&self) -> bool {
        true
    }
}

impl CoreStore for FileStore {
    fn lease_expiry(&self) -> Option<u64> {
        FileStore::lease_expiry(self)
    }
}

impl CoreStore for EtcdStore {
    fn lease_expiry(&self) -> Option<u64> {
        EtcdStore::lease_expiry(self)
    }
    fn serving(&self) -> bool {
        EtcdStore::serving(self)
    }
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub seal: Vec<u8>,
    pub timing: Timing,
    pub skew_ms: u64,
    /// How often the sweep expires leases and elects without waiting for a heartbeat.
    pub sweep_interval: Duration,
    pub dominion_root: Option<String>,
    /// Read timeouts, connection cap and shutdown grace of the HTTP server.
    pub limits: server::Limits,
    /// `ForgeConfig::legacy_seal_signatures` (one release of compatibility).
    pub legacy_seal_signatures: bool,
    /// `DOMINION_SEAL_PREVIOUS`: a rotation's overlap window (`ForgeConfig::previous`).
    pub previous_seal: Option<Vec<u8>>,
    pub store: StoreChoice,
}

impl ServeOptions {
    pub fn new(listen: SocketAddr, data_dir: PathBuf, seal: Vec<u8>) -> Self {
        ServeOptions {
            listen,
            data_dir,
            seal,
            timing: Timing::DEFAULT,
            skew_ms: brh_shared::sign::DEFAULT_SKEW_MS,
            sweep_interval: Duration::from_millis(500),
            dominion_root: None,
            limits: server::Limits::default(),
            legacy_seal_signatures: false,
            previous_seal: None,
            store: StoreChoice::File,
        }
    }
}

/// A forge serving in the background.
pub struct RunningForge {
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    core: std::thread::JoinHandle<()>,
    /// The replica's campaign (etcd store): hands the active key back at shutdown.
    replica: Option<tokio::task::JoinHandle<()>>,
    /// Kept so the streams' `serving` never reads as closed (file store: always serving).
    _serving: Option<tokio::sync::watch::Sender<bool>>,
}

impl RunningForge {
    /// Stops accepting, finishes requests in flight, and stops the core thread.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Some(replica) = self.replica {
            let _ = replica.await;
        }
        let _ = self.server.await;
        let _ = tokio::task::spawn_blocking(move || self.core.join()).await;
    }

    /// Waits until the server ends (it ends only through [`RunningForge::shutdown`] or an error).
    pub async fn wait(&mut self) {
        let _ = (&mut self.server).await;
    }
}

#[derive(Clone)]
struct AppState {
    jobs: mpsc::Sender<Job>,
    limits: server::Limits,
    /// The envs whose leader changed, as the core applies them (the streams push on each).
    changes: broadcast::Sender<String>,
    /// Open streams, capped like connections: an upgraded socket leaves the HTTP server's
    /// connection count.
    streams: std::sync::Arc<tokio::sync::Semaphore>,
    stop: tokio::sync::watch::Receiver<bool>,
    /// False while this process does not answer (a standby or unproven etcd replica): no
    /// stream is opened, and open ones close so their agents try the next forge URL.
    serving: tokio::sync::watch::Receiver<bool>,
}

/// Work for the core thread, which owns the store: every request, stream frame and push
/// view is computed there, in arrival order.
enum Job {
    Http {
        req: Request,
        reply: oneshot::Sender<Response>,
    },
    Frame {
        env: String,
        bound: Option<String>,
        frame: Vec<u8>,
        reply: oneshot::Sender<crate::stream::StreamOutcome>,
    },
    View {
        env: String,
        node: Option<String>,
        basis: Option<String>,
        reply: oneshot::Sender<Option<brh_shared::wire::StreamMessage>>,
    },
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Opens the store, binds the socket and starts serving. Returns once the socket is bound.
pub async fn start(opts: ServeOptions) -> anyhow::Result<RunningForge> {
    opts.timing
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid timing: {e}"))?;
    anyhow::ensure!(!opts.seal.is_empty(), "DOMINION_SEAL is empty");
    let metrics = crate::metrics::Metrics::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut replica_task = None;
    let mut keep_serving = None;
    let (store, serving) = match &opts.store {
        StoreChoice::File => {
            let store = FileStore::open(
                &opts.data_dir,
                ElectionConfig::new(opts.timing),
                now_ms(),
                metrics.store_ops.clone(),
            )
            .with_context(|| format!("opening forge data dir {}", opts.data_dir.display()))?;
            let (tx, rx) = tokio::sync::watch::channel(true);
            keep_serving = Some(tx);
            (Stores::File(store), rx)
        }
        StoreChoice::Etcd { etcd: eo, replica } => {
            let activity = replica::Activity::default();
            // Two clients: the core thread's runtime and the campaign's are not the same.
            let core_etcd = etcd::Etcd::new(eo).context("--etcd-endpoints")?;
            let mut campaign_opts = eo.clone();
            campaign_opts.timeout = campaign_opts.timeout.min(replica.lease_ttl / 3);
            let campaign_etcd = etcd::Etcd::new(&campaign_opts).context("--etcd-endpoints")?;
            let store = EtcdStore::new(
                core_etcd,
                replica.prefix.clone(),
                ElectionConfig::new(opts.timing),
                activity.clone(),
                metrics.store_ops.clone(),
            );
            let serving = activity.serving();
            replica_task = Some(tokio::spawn(replica::run(
                campaign_etcd,
                replica.clone(),
                activity,
                stop_rx.clone(),
            )));
            (Stores::Etcd(store), serving)
        }
    };
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;

    let mut cfg = ForgeConfig::new(Some(opts.seal.clone()), "native")
        .with_previous_seal(opts.previous_seal.clone());
    if cfg.previous.is_some() {
        tracing::warn!(
            "rotating the root secret: requests signed with keys of DOMINION_SEAL_PREVIOUS are \
             accepted; re-enrol every host, then restart the forge without it"
        );
    }
    cfg.election = ElectionConfig::new(opts.timing);
    cfg.skew_ms = opts.skew_ms;
    cfg.dominion_root = opts.dominion_root.clone();
    cfg.legacy_seal_signatures = opts.legacy_seal_signatures;
    if opts.legacy_seal_signatures {
        tracing::warn!(
            "--legacy-seal-signatures is on: requests signed with DOMINION_SEAL are accepted \
             (agents of the previous release); turn it off once every host is enrolled"
        );
    }
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>(1024);
    // A stream that falls this far behind reads the current view once instead.
    let (changes_tx, _) = broadcast::channel::<String>(64);
    let core_changes = changes_tx.clone();
    let sweep_every = opts.sweep_interval;
    let core_stop = stop_rx.clone();
    let core = std::thread::Builder::new()
        .name("forge-core".into())
        .spawn(move || match store {
            Stores::File(store) => run_core(
                Forge {
                    cfg,
                    store,
                    metrics,
                },
                jobs_rx,
                sweep_every,
                core_changes,
                core_stop,
            ),
            Stores::Etcd(store) => run_core(
                Forge {
                    cfg,
                    store,
                    metrics,
                },
                jobs_rx,
                sweep_every,
                core_changes,
                core_stop,
            ),
        })?;

    let limits = opts.limits;
    let app = Router::new()
        .route(brh_shared::wire::STREAM_PATH, any(stream::upgrade))
        .fallback(serve_one)
        .with_state(AppState {
            jobs: jobs_tx,
            limits,
            changes: changes_tx,
            streams: std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections)),
            stop: stop_rx.clone(),
            serving,
        });
    let mut stop_rx_srv = stop_rx;
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_rx_srv.wait_for(|s| *s).await;
        };
        server::serve(listener, app, limits, shutdown).await;
    });
    let scheme = if opts.limits.tls.is_some() {
        "https"
    } else {
        "http"
    };
    match &opts.store {
        StoreChoice::File => tracing::info!(
            "forge listening on {scheme}://{addr} (mode native, data {})",
            opts.data_dir.display()
        ),
        StoreChoice::Etcd { etcd, replica } => tracing::info!(
            "forge listening on {scheme}://{addr} (mode native, store etcd {}, prefix {:?}, \
             replica {}, advertised as {})",
            etcd.endpoints.join(","),
            replica.prefix,
            replica.id,
            replica.advertise_url
        ),
    }
    Ok(RunningForge {
        addr,
        stop: stop_tx,
        server,
        core,
        replica: replica_task,
        _serving: keep_serving,
    })
}

/// The core thread: applies requests, frames and sweeps one at a time, and announces every
/// env whose leader changed.
// Built once at start: its size costs nothing.
#[allow(clippy::large_enum_variant)]
/// The store the core thread owns (chosen at start).
enum Stores {
    File(FileStore),
    Etcd(EtcdStore),
}

fn run_core<S: CoreStore>(
    forge: Forge<S>,
    mut jobs: mpsc::Receiver<Job>,
    sweep_every: Duration,
    changes: broadcast::Sender<String>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let announce = |cs: &[crate::forge::LeaderChange]| {
        cs.iter().for_each(log_change);
        let mut envs: Vec<&str> = cs.iter().map(|c| c.env.as_str()).collect();
        envs.dedup();
        for env in envs {
            // No stream open: nobody to tell.
            let _ = changes.send(env.to_string());
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("forge core cannot start: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A lease's expiry is a sweep of its own: the best live candidate is granted and
            // pushed to the streams at once, not at the next periodic sweep. (An expiry already
            // past — the sweep found no candidate — waits for the periodic one.)
            let now = now_ms();
            let expiry = forge
                .store
                .serving()
                .then(|| forge.store.lease_expiry())
                .flatten()
                .filter(|e| *e >= now);
            let until_expiry = Duration::from_millis(expiry.map_or(0, |e| e - now + 1));
            tokio::select! {
                _ = tokio::time::sleep(until_expiry), if expiry.is_some() => {
                    match forge.sweep(now_ms()).await {
                        Ok(changes) => announce(&changes),
                        Err(e) => tracing::error!("sweep at lease expiry failed: {e}"),
                    }
                }
                job = jobs.recv() => match job {
                    None => break,
                    Some(Job::Http { req, reply }) => {
                        let handled = forge.handle(&req, now_ms()).await;
                        // Answer first: the request's sender learns before the pushes go.
                        let _ = reply.send(handled.response);
                        announce(&handled.leader_changes);
                    }
                    Some(Job::Frame { env, bound, frame, reply }) => {
                        let out = forge.handle_stream(&env, bound.as_deref(), &frame, now_ms()).await;
                        let changed = out.leader_changes.clone();
                        let _ = reply.send(out);
                        announce(&changed);
                    }
                    Some(Job::View { env, node, basis, reply }) => {
                        let v = forge.stream_view(&env, node.as_deref(), basis.as_deref(), now_ms()).await;
                        let _ = reply.send(v);
                    }
                },
                _ = sweep.tick() => {
                    if !forge.store.serving() {
                        continue;
                    }
                    match forge.sweep(now_ms()).await {
                        Ok(changes) => announce(&changes),
                        Err(e) => tracing::error!("sweep failed: {e}"),
                    }
                }
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    });
}

fn log_change(c: &crate::forge::LeaderChange) {
    match &c.entry.leader {
        Some(l) => tracing::info!(
            "[FORGE] env={} term={} leader={} ({})",
            c.env,
            c.entry.term,
            l,
            c.entry.reason
        ),
        None => tracing::info!(
            "[FORGE] env={} term={} lease ended ({})",
            c.env,
            c.entry.term,
            c.entry.reason
        ),
    }
}

async fn serve_one(
    State(app): State<AppState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let body = match server::read_body(
        &parts.headers,
        body,
        MAX_BODY_BYTES,
        app.limits.body_read_timeout,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => return e.into_response(MAX_BODY_BYTES),
    };
    let mut core_req = Request::new(
        parts.method.as_str(),
        parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
    );
    for (name, value) in &parts.headers {
        // Not valid text: treated as absent, so a signed request missing it is refused.
        if let Ok(v) = value.to_str() {
            core_req.add_header(name.as_str(), v);
        }
    }
    core_req.body = body.to_vec();
    let jobs = &app.jobs;
    let (reply, answer) = oneshot::channel();
    if jobs
        .send(Job::Http {
            req: core_req,
            reply,
        })
        .await
        .is_err()
    {
        return into_axum(Response::error(ErrorCode::Busy, "forge is shutting down"));
    }
    match answer.await {
        Ok(r) => into_axum(r),
        Err(_) => into_axum(Response::error(ErrorCode::Busy, "forge is shutting down")),
    }
}

pub(crate) fn into_axum(r: Response) -> axum::response::Response {
    let mut out = (
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Body::from(r.body),
    )
        .into_response();
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            out.headers_mut().insert(k, v);
        }
    }
    out
}
