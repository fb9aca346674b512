//! `brh-agent`: the BRH node agent, as a library (the `brh-agent` binary is `brh-cli`).
//!
//! One module per concern: `config` (flags, env, file) and `duration`, `client` (signed
//! forge requests), `role` (pure role keeping: deadlines, transitions, guard, heartbeat
//! timing), `node` (the state the keeper writes and the API reads), `keeper` (the single task
//! doing forge I/O), `switchover` (successor choice and the handover flow), `api` + `auth`
//! (local HTTP API), `events`, `metrics`, `ops` + `enroll` (operator subcommands) and
//! `containers/`. It knows nothing about the forge's code: it speaks to a forge only over the
//! wire (`brh-shared`).
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod api;
pub mod auth;
pub mod client;
pub mod clock;
pub mod config;
pub mod containers;
pub mod duration;
pub mod enroll;
pub mod events;
pub mod exchange;
pub mod forge_ca;
pub mod forge_stream;
pub mod forge_urls;
pub mod hooks;
pub mod keeper;
pub mod metrics;
pub mod node;
pub mod ops;
pub mod orchestration;
pub mod role;
pub mod switchover;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Config;
use crate::node::Shared;

/// A started agent: its API address and a handle to wait for it.
pub struct RunningAgent {
    pub api_addr: std::net::SocketAddr,
    pub shared: Arc<Shared>,
    /// Ends with the agent; an error when it had to stop on its own (timing mismatch).
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts the API and the keeper. Both stop when `cancel` fires: the keeper first demotes
/// and resigns, then the API closes.
pub async fn start_agent(cfg: Config, cancel: CancellationToken) -> anyhow::Result<RunningAgent> {
    let timeout = client::request_timeout(&cfg.timing);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| {
            format!(
                "invalid setting BRH_API_LISTEN: cannot listen on {}",
                cfg.listen
            )
        })?;
    let api_addr = listener.local_addr()?;
    let mut cfg = cfg;
    if cfg.listen.port() == 0 {
        cfg.listen = api_addr;
        cfg.advertise = format!("http://{api_addr}");
    }
    let operator_key = cfg.credentials.operator_key;
    let limits = brh_http_server::Limits::default();
    let shared = Shared::new(cfg).context("cannot open the event log (BRH_EVENT_LOG)")?;
    // The keeper's client and the API's reader share one current forge address.
    let client = client::ForgeClient::new(
        shared.forge_urls.clone(),
        &shared.cfg.credentials,
        shared.cfg.node_id.clone(),
        shared.cfg.env.clone(),
        timeout,
    )
    .with_clock_skew(shared.cfg.clock_skew_ms);
    let reader = client::ForgeClient::new(
        shared.forge_urls.clone(),
        &shared.cfg.credentials,
        shared.cfg.node_id.clone(),
        shared.cfg.env.clone(),
        timeout,
    );
    // The container layer, when the manifest has services: role changes reach it over a
    // channel, in order; its leader-only loops run until the keeper has stepped down.
    let loops_stop = CancellationToken::new();
    let keeper_done = CancellationToken::new();
    let mut loops = Vec::new();
    let (role_task, orch) = match shared.cfg.containers.clone() {
        Some(settings) => {
            let orch = orchestration::orchestrator(&shared, &settings);
            loops = orchestration::spawn_loops(&orch, &settings, &loops_stop);
            let o = orch.clone();
            let task = shared.follow(keeper_done.clone(), move |t| {
                let o = o.clone();
                async move { orchestration::on_role_change(&o, t).await }
            });
            let settle = settings.stop_timeout * 2 + Duration::from_secs(10);
            (Some((task, settle)), Some(orch))
        }
        None => (None, None),
    };
    // Role-change hooks follow the same changes, in their own task: a slow hook never delays
    // the keeper or the containers.
    let hooks_task = shared.cfg.hooks.clone().map(|settings| {
        let settle = settings.timeout + Duration::from_secs(2);
        let (sh, settings) = (shared.clone(), Arc::new(settings));
        let task = shared.follow(keeper_done.clone(), move |t| {
            let (sh, settings) = (sh.clone(), settings.clone());
            async move { hooks::on_role_change(&sh, &settings, t).await }
        });
        (task, settle)
    });
    // Switchovers go to the keeper: it alone signs forge requests, in nonce order.
    let (switchover_tx, switchover_rx) = tokio::sync::mpsc::channel(4);
    let auth = Arc::new(auth::ApiAuth::new(operator_key, shared.cfg.node_id.clone()));
    #[cfg(unix)]
    if shared.cfg.credentials_file.is_some() {
        let span = tracing::info_span!("agent", node = %shared.cfg.node_id);
        tokio::spawn(
            reload_on_hangup(shared.clone(), auth.clone(), cancel.clone()).instrument(span),
        );
    }
    let state = api::ApiState {
        switchover: switchover_tx,
        shared: shared.clone(),
        auth,
        forge: Arc::new(reader),
        containers: orch,
        limits,
    };
    let app = api::router(state);
    let api_stop = CancellationToken::new();
    let api_stop2 = api_stop.clone();
    // Every line an agent logs names its node (`agent{node=…}:`), also when `up` runs
    // several agents in one process.
    let span = tracing::info_span!("agent", node = %shared.cfg.node_id);
    let server = tokio::spawn(
        async move {
            let stopped = async move { api_stop2.cancelled().await };
            brh_http_server::serve(listener, app, limits, stopped).await;
        }
        .instrument(span.clone()),
    );
    tracing::info!(
        "[API] {} listening on http://{api_addr}",
        shared.cfg.node_id
    );
    let keeper_shared = shared.clone();
    let done = tokio::spawn(
        async move {
            let result = keeper::run(keeper_shared, client, switchover_rx, cancel).await;
            keeper_done.cancel();
            // The demotion of the shutdown (a drain, the demote hook) finishes before the
            // process goes.
            let settling =
                role_task
                    .into_iter()
                    .chain(hooks_task)
                    .map(|(task, limit)| async move {
                        let _ = tokio::time::timeout(limit, task).await;
                    });
            futures_util::future::join_all(settling).await;
            // Shutdown in order: the keeper stepped down (demote → resign → nudge), the
            // demotion policy ran; now the leader-only loops, then the API.
            loops_stop.cancel();
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                futures_util::future::join_all(loops),
            )
            .await;
            api_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
            result.map_err(anyhow::Error::from)
        }
        .instrument(span),
    );
    Ok(RunningAgent {
        api_addr,
        shared,
        done,
    })
}

/// Re-reads `BRH_CREDENTIALS_FILE` on each SIGHUP and puts the new credentials in force: the
/// keeper signs its next request with them, the API trusts the new operator key, lease tokens
/// are checked with the new forge key. A file that does not check out changes nothing (one
/// error line; the agent keeps its current keys).
#[cfg(unix)]
async fn reload_on_hangup(shared: Arc<Shared>, auth: Arc<auth::ApiAuth>, stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let node = shared.cfg.node_id.clone();
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "{node}: cannot install the SIGHUP handler ({e}): credentials reload off"
            );
            return;
        }
    };
    let path = shared
        .cfg
        .credentials_file
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        match shared.cfg.reload_credentials(clock::wall_ms() / 1000) {
            Ok(c) => {
                let forge = brh_shared::keys::public_hex(&c.forge_key);
                let generation = c.key_generation;
                auth.set_operator(c.operator_key);
                let version = shared.set_credentials(c);
                tracing::info!(
                    "[KEYS] {node} credentials reloaded from {path} (#{version}): node key \
                     generation {generation}, forge key {}…",
                    &forge[..16]
                );
                shared.events.log(format!(
                    "KEYS: credentials reloaded from {path} (node key generation {generation})"
                ));
            }
            Err(e) => tracing::error!(
                "[KEYS] {node} credentials reload from {path} refused, keeping the current \
                 ones: {e}"
            ),
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is called,
/// not when it is first awaited: call it before announcing readiness, so a signal sent right
/// after the announcement steps down cleanly instead of killing the process.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
        async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stepping down"),
                _ = int.recv() => tracing::info!("SIGINT: stepping down"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
