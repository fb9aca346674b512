//! `forge`: the embedded native forge as a command.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use brh_http_server::{Limits, Tls};
use brh_shared::Timing;
use clap::{Parser, Subcommand, ValueEnum};
use forge_worker::native::{start, ServeOptions};

#[derive(Parser)]
#[command(
    name = "forge",
    version,
    about = "BRH forge: grants leadership leases to brh-agents (native, single binary)",
    long_about = "The BRH forge grants each env's leadership as a lease with a fencing term. \
This is the embedded native forge: the same handler code as the Cloudflare Worker, served over \
HTTP with an on-disk store, so terms, peers and history survive a restart."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Log lines as text, or as one JSON object per line for a log pipeline.
    #[arg(
        long,
        global = true,
        env = "BRH_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Profile {
    /// Heartbeat 5 s, lease 15 s.
    Default,
    /// Heartbeat 1 s, lease 3 s (local networks).
    Fast,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the forge until Ctrl-C / SIGTERM.
    Serve {
        /// Address to listen on (127.0.0.1:0 picks a free port).
        #[arg(long, env = "FORGE_LISTEN", default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        /// Directory for the forge's state (terms, peers, history).
        #[arg(long, env = "FORGE_DATA", default_value = ".brh/forge")]
        data: PathBuf,
        /// The federation's root secret (the forge's and the top operator's; hosts hold
        /// only their own node keys, printed by `brh-agent enroll`).
        #[arg(long = "seal", env = "DOMINION_SEAL", hide_env_values = true)]
        seal: Option<String>,
        /// While rotating the root secret: the seal being replaced. Hosts enrolled under it
        /// keep working (their requests are checked, and answered, with its keys) until they
        /// are re-enrolled; then restart the forge without it. Everything public is signed
        /// with the new seal's forge key.
        #[arg(
            long = "previous-seal",
            env = "DOMINION_SEAL_PREVIOUS",
            hide_env_values = true
        )]
        previous_seal: Option<String>,
        /// Timing profile; --lease-ttl-ms / --heartbeat-interval-ms override it.
        #[arg(
            long,
            env = "BRH_TIMING_PROFILE",
            value_enum,
            default_value = "default"
        )]
        profile: Profile,
        /// Lease duration granted to a leader.
        #[arg(long, env = "BRH_LEASE_TTL_MS")]
        lease_ttl_ms: Option<u64>,
        /// The agents' heartbeat interval (checked against the lease: ttl >= 3 x interval).
        #[arg(long, env = "BRH_HEARTBEAT_INTERVAL_MS")]
        heartbeat_interval_ms: Option<u64>,
        /// Accepted clock distance for signed requests.
        #[arg(long, env = "FORGE_SKEW_MS", default_value_t = brh_shared::sign::DEFAULT_SKEW_MS)]
        skew_ms: u64,
        /// How often leases are swept without waiting for a heartbeat.
        #[arg(long, env = "FORGE_SWEEP_INTERVAL_MS", default_value_t = 500)]
        sweep_interval_ms: u64,
        /// Echoed by /manifest/resolve (seed compatibility).
        #[arg(long, env = "FORGE_DOMINION_ROOT")]
        dominion_root: Option<String>,
        /// Serve HTTPS: PEM certificate chain, leaf first (with --tls-key). Agents reach it
        /// with a `dominion://` root; a self-signed one needs `brh-agent run --forge-ca`.
        #[arg(long, env = "FORGE_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
        #[arg(long, env = "FORGE_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// One release of compatibility: also accept requests signed with DOMINION_SEAL
        /// (agents of the previous release) and answer them under it (a warning at start).
        /// Off by default: with it, whoever holds the seal speaks for any node.
        #[arg(
            long,
            env = "FORGE_LEGACY_SEAL_SIGNATURES",
            num_args = 0..=1,
            default_missing_value = "true",
            value_parser = clap::builder::BoolishValueParser::new()
        )]
        legacy_seal_signatures: Option<bool>,
        /// Connections one source address may hold in all (default: half the connection
        /// cap). Raise it for a load generator or a proxy in front of many agents.
        #[arg(long, env = "FORGE_MAX_PER_SOURCE")]
        max_per_source: Option<usize>,
        /// Connections one source address may hold that have not completed a request yet
        /// (default: an eighth of the cap): what one slow client can take.
        #[arg(long, env = "FORGE_MAX_UNPROVEN_PER_SOURCE")]
        max_unproven_per_source: Option<usize>,
    },
}

#[tokio::main]
async fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if let Some(line) = value_error(&e) {
                eprintln!("forge: error: {line}");
                std::process::exit(2);
            }
            e.exit()
        }
    };
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => fmt.init(),
        LogFormat::Json => fmt.with_ansi(false).json().flatten_event(true).init(),
    }
    if let Err(e) = run(cli).await {
        eprintln!("forge: {e:#}");
        std::process::exit(2);
    }
}

/// A bad value, in one line naming the option and its variable (clap's own message spans
/// several lines and names only the flag, which a service's environment never typed).
fn value_error(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use clap::CommandFactory;
    use std::error::Error;
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let ContextValue::String(arg) = e.get(ContextKind::InvalidArg)? else {
        return None;
    };
    let ContextValue::String(value) = e.get(ContextKind::InvalidValue)? else {
        return None;
    };
    let flag = arg.split_whitespace().next()?;
    fn env_of(cmd: &clap::Command, long: &str) -> Option<String> {
        cmd.get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_env())
            .map(|v| v.to_string_lossy().into_owned())
            .or_else(|| cmd.get_subcommands().find_map(|c| env_of(c, long)))
    }
    let name = match env_of(&Cli::command(), flag.strip_prefix("--")?) {
        Some(var) => format!("{flag} ({var})"),
        None => flag.to_string(),
    };
    let why = match (e.source(), e.get(ContextKind::ValidValue)) {
        (Some(src), _) => src.to_string(),
        (None, Some(ContextValue::Strings(valid))) => {
            format!("expected one of {}", valid.join(", "))
        }
        _ => "not accepted".into(),
    };
    Some(format!("invalid {name}: {value:?}: {why}"))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cmd::Serve {
        listen,
        data,
        seal,
        previous_seal,
        profile,
        lease_ttl_ms,
        heartbeat_interval_ms,
        skew_ms,
        sweep_interval_ms,
        dominion_root,
        tls_cert,
        tls_key,
        max_per_source,
        max_unproven_per_source,
        legacy_seal_signatures,
    } = cli.cmd;
    let log_format = cli.log_format;
    let seal = seal.filter(|s| !s.is_empty()).ok_or_else(|| {
        anyhow::anyhow!("DOMINION_SEAL is not set: the forge refuses to run without a secret (set it in the environment or pass --seal)")
    })?;
    let base = match profile {
        Profile::Default => Timing::DEFAULT,
        Profile::Fast => Timing::FAST,
    };
    let timing = Timing {
        heartbeat_interval_ms: heartbeat_interval_ms.unwrap_or(base.heartbeat_interval_ms),
        lease_ttl_ms: lease_ttl_ms.unwrap_or(base.lease_ttl_ms),
    };
    timing
        .validate()
        .map_err(|e| anyhow::anyhow!("--lease-ttl-ms/--heartbeat-interval-ms: {e}"))?;
    anyhow::ensure!(
        sweep_interval_ms > 0,
        "--sweep-interval-ms must be positive"
    );
    let tls = match (&tls_cert, &tls_key) {
        (Some(cert), Some(key)) => Some(
            Tls::from_pem_files(cert, key)
                .map_err(|e| anyhow::anyhow!("--tls-cert/--tls-key: {e:#}"))?,
        ),
        _ => None,
    };
    let opts = ServeOptions {
        timing,
        skew_ms,
        sweep_interval: Duration::from_millis(sweep_interval_ms),
        dominion_root,
        legacy_seal_signatures: legacy_seal_signatures.unwrap_or(false),
        previous_seal: previous_seal
            .filter(|s| !s.is_empty())
            .map(String::into_bytes),
        limits: {
            let d = Limits::default();
            Limits {
                tls,
                max_per_source: max_per_source.unwrap_or(d.max_per_source).max(1),
                max_unproven_per_source: max_unproven_per_source
                    .unwrap_or(d.max_unproven_per_source)
                    .max(1),
                ..d
            }
        },
        ..ServeOptions::new(listen, data, seal.into_bytes())
    };
    let signal = shutdown_signal();
    let forge = start(opts).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The line scripts wait for, whatever RUST_LOG filters out. In JSON, stderr stays one
    // object per line: `start` logged the same as an event.
    if matches!(log_format, LogFormat::Text) {
        eprintln!("forge listening on {scheme}://{}", forge.addr);
    }
    signal.await;
    tracing::info!("shutting down");
    forge.shutdown().await;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called (before
/// "listening" is printed), so a signal sent right after start-up shuts down cleanly instead
/// of killing the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! { _ = wait(term) => {}, _ = wait(int) => {} }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
