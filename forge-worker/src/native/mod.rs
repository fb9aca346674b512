//! The embedded native forge: the same core as the Worker, served over HTTP with an on-disk
//! store. One dedicated thread owns the store and applies every request and sweep in arrival
//! order, so the lease register is linearizable by construction; the HTTP server only
//! translates requests and waits for answers.
pub mod file_store;
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
use file_store::FileStore;

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
        }
    }
}

/// A forge serving in the background.
pub struct RunningForge {
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    core: std::thread::JoinHandle<()>,
}

impl RunningForge {
    /// Stops accepting, finishes requests in flight, and stops the core thread.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
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
    let store = FileStore::open(
        &opts.data_dir,
        ElectionConfig::new(opts.timing),
        now_ms(),
        metrics.store_ops.clone(),
    )
    .with_context(|| format!("opening forge data dir {}", opts.data_dir.display()))?;
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
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // A stream that falls this far behind reads the current view once instead.
    let (changes_tx, _) = broadcast::channel::<String>(64);
    let core_changes = changes_tx.clone();
    let sweep_every = opts.sweep_interval;
    let core_stop = stop_rx.clone();
    let core = std::thread::Builder::new()
        .name("forge-core".into())
        .spawn(move || {
            let forge = Forge {
                cfg,
                store,
                metrics,
            };
            run_core(forge, jobs_rx, sweep_every, core_changes, core_stop)
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
        });
    let mut stop_rx_srv = stop_rx;
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_rx_srv.wait_for(|s| *s).await;
        };
        server::serve(listener, app, limits, shutdown).await;
    });
    tracing::info!(
        "forge listening on {}://{addr} (mode native, data {})",
        if opts.limits.tls.is_some() {
            "https"
        } else {
            "http"
        },
        opts.data_dir.display()
    );
    Ok(RunningForge {
        addr,
        stop: stop_tx,
        server,
        core,
    })
}

/// The core thread: applies requests, frames and sweeps one at a time, and announces every
/// env whose leader changed.
fn run_core(
    forge: Forge<FileStore>,
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
        .enable_time()
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
            let expiry = forge.store.lease_expiry().filter(|e| *e >= now);
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
