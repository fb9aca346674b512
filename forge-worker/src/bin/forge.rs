//! `forge`: the embedded native forge as a command.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use brh_http_server::{Limits, Tls};
use brh_shared::Timing;
use clap::{Parser, Subcommand, ValueEnum};
use forge_worker::native::etcd::EtcdOptions;
use forge_worker::native::replica::ReplicaOptions;
use forge_worker::native::{start, ServeOptions, StoreChoice};

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

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum StoreKind {
    /// One forge process; state in --data on local disk.
    File,
    /// Several forge replicas over one etcd cluster (v3 API); the active one serves, the
    /// others stand by and take over within about --etcd-lease-ttl.
    Etcd,
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
        /// Directory for the forge's state (terms, peers, history), with --store file.
        #[arg(long, env = "FORGE_DATA", default_value = ".brh/forge")]
        data: PathBuf,
        /// Where the state lives: `file` (one process, --data) or `etcd` (replicas over an
        /// etcd cluster, --etcd-endpoints; docs/replicas.md).
        #[arg(long, env = "FORGE_STORE", value_enum, default_value = "file")]
        store: StoreKind,
        /// etcd client URLs, comma-separated (`http://` or `https://`), tried in order.
        #[arg(long, env = "FORGE_ETCD_ENDPOINTS", value_delimiter = ',')]
        etcd_endpoints: Vec<String>,
        /// Key prefix of this federation in etcd (one etcd can hold several federations).
        #[arg(long, env = "FORGE_ETCD_PREFIX", default_value = "brh/")]
        etcd_prefix: String,
        /// PEM CA bundle for https:// etcd endpoints.
        #[arg(long, env = "FORGE_ETCD_CA")]
        etcd_ca: Option<PathBuf>,
        /// PEM client certificate for etcd's --client-cert-auth (with --etcd-key).
        #[arg(long, env = "FORGE_ETCD_CERT", requires = "etcd_key")]
        etcd_cert: Option<PathBuf>,
        /// PEM private key of --etcd-cert.
        #[arg(long, env = "FORGE_ETCD_KEY", requires = "etcd_cert")]
        etcd_key: Option<PathBuf>,
        /// etcd user (etcd's own authentication), with FORGE_ETCD_PASSWORD.
        #[arg(long, env = "FORGE_ETCD_USER")]
        etcd_user: Option<String>,
        /// Password of --etcd-user (set it in the environment, not on the command line).
        #[arg(long, env = "FORGE_ETCD_PASSWORD", hide_env_values = true)]
        etcd_password: Option<String>,
        /// Seconds of the etcd lease behind the active replica's key: a dead active replica
        /// is replaced after about this long (etcd raises values below its minimum, 2 s by
        /// default). Keep it well under the agents' lease so leaders ride through a failover.
        #[arg(long, env = "FORGE_ETCD_LEASE_TTL", default_value_t = 3)]
        etcd_lease_ttl: u64,
        /// The URL agents reach this replica at (a standby names the active one's in its
        /// refusals). Default: the listen address.
        #[arg(long, env = "FORGE_ADVERTISE_URL")]
        advertise_url: Option<String>,
        /// This replica's name in logs and in etcd (default: the advertised URL).
        #[arg(long, env = "FORGE_REPLICA_ID")]
        replica_id: Option<String>,
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
        store,
        etcd_endpoints,
        etcd_prefix,
        etcd_ca,
        etcd_cert,
        etcd_key,
        etcd_user,
        etcd_password,
        etcd_lease_ttl,
        advertise_url,
        replica_id,
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
    let scheme = if tls.is_some() { "https" } else { "http" };
    let store = match store {
        StoreKind::File => StoreChoice::File,
        StoreKind::Etcd => {
            let endpoints: Vec<String> = etcd_endpoints
                .iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect();
            anyhow::ensure!(
                !endpoints.is_empty(),
                "--store etcd needs --etcd-endpoints (FORGE_ETCD_ENDPOINTS): the etcd client URLs, comma-separated"
            );
            for e in &endpoints {
                anyhow::ensure!(
                    (e.starts_with("http://") || e.starts_with("https://")) && e.len() > 8,
                    "invalid --etcd-endpoints (FORGE_ETCD_ENDPOINTS): {e:?}: expected http://HOST:PORT or https://HOST:PORT"
                );
            }
            anyhow::ensure!(
                (1..=3600).contains(&etcd_lease_ttl),
                "invalid --etcd-lease-ttl (FORGE_ETCD_LEASE_TTL): {etcd_lease_ttl}: expected 1 to 3600 seconds"
            );
            if etcd_lease_ttl * 1000 * 2 > timing.lease_ttl_ms {
                tracing::warn!(
                    "--etcd-lease-ttl {etcd_lease_ttl} s is more than half the agents' lease \
                     ({} ms): a replica failover will make leaders step down",
                    timing.lease_ttl_ms
                );
            }
            let read = |what: &str, p: &Option<PathBuf>| -> anyhow::Result<Option<Vec<u8>>> {
                p.as_ref()
                    .map(|p| {
                        std::fs::read(p).map_err(|e| anyhow::anyhow!("{what} {}: {e}", p.display()))
                    })
                    .transpose()
            };
            let identity = match (
                read("--etcd-cert", &etcd_cert)?,
                read("--etcd-key", &etcd_key)?,
            ) {
                (Some(mut c), Some(k)) => {
                    c.push(b'\n');
                    c.extend_from_slice(&k);
                    Some(c)
                }
                _ => None,
            };
            let user = match (etcd_user.filter(|u| !u.is_empty()), etcd_password) {
                (Some(u), Some(p)) => Some((u, p)),
                (Some(_), None) => {
                    anyhow::bail!("--etcd-user needs FORGE_ETCD_PASSWORD (or --etcd-password)")
                }
                (None, _) => None,
            };
            let advertise_url = advertise_url.unwrap_or_else(|| {
                if listen.ip().is_unspecified() || listen.port() == 0 {
                    tracing::warn!(
                        "--advertise-url (FORGE_ADVERTISE_URL) is not set and --listen {listen} \
                         is no address a client can use: standbys will name this replica as \
                         {scheme}://{listen}; set it to the URL agents reach this replica at"
                    );
                }
                format!("{scheme}://{listen}")
            });
            StoreChoice::Etcd {
                etcd: EtcdOptions {
                    endpoints,
                    ca_pem: read("--etcd-ca", &etcd_ca)?,
                    identity_pem: identity,
                    user,
                    timeout: Duration::from_secs(2),
                },
                replica: ReplicaOptions {
                    id: replica_id.unwrap_or_else(|| advertise_url.clone()),
                    advertise_url,
                    prefix: etcd_prefix,
                    lease_ttl: Duration::from_secs(etcd_lease_ttl),
                },
            }
        }
    };
    let opts = ServeOptions {
        store,
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
