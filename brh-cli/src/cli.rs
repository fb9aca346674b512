//! Command line: `run`, `status`, `switchover`, `restart`, `drain`, `deploy`,
//! `root generate|verify`, `enroll`, `operator issue`, `up`. Operator commands live in
//! `ops.rs`, enrolment in `enroll.rs`.

use anyhow::{anyhow, Context};
use brh_agent::client;
use brh_agent::clock;
use brh_agent::config::{self, Config, RunArgs};
use brh_shared::root::{DominionRoot, RootKey, SCHEME_HTTP, SCHEME_HTTPS};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "brh-agent",
    version,
    about = "BRH node agent: leader lease keeping, local API, CLI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
    /// Log lines as text, or as one JSON object per line (node, env and term of role
    /// changes as fields) for a log pipeline.
    #[arg(
        long,
        global = true,
        env = "BRH_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the agent: heartbeat to the forge, keep the role, serve the local API.
    Run(Box<RunArgs>),
    /// Show the env's leader, term and every node's role, liveness and last beat, as the
    /// forge sees them (public reads: no secret needed; with DOMINION_SEAL they are verified).
    Status(brh_agent::ops::StatusArgs),
    /// Hand leadership to another live node (`--to NODE`) or the best one: the leader stops
    /// acting, resigns naming the successor, and the forge grants it to that node only.
    Switchover(brh_agent::ops::SwitchoverArgs),
    /// Restart a managed container through the leader's API (stop, start, health check).
    Restart(brh_agent::ops::ContainerArgs),
    /// Stop and remove a managed container through the leader's API.
    Drain(brh_agent::ops::ContainerArgs),
    /// Generate or verify a dominion root (replaces generate_forge_root.sh).
    Root {
        #[command(subcommand)]
        cmd: RootCmd,
    },
    /// Deploy an image to a manifest service through the leader's API: replicas replaced one
    /// at a time, each health-checked, rolled back on failure.
    Deploy(brh_agent::ops::DeployArgs),
    /// Print a new random federation secret (64 hex) for DOMINION_SEAL.
    Seal,
    /// Print a host's environment (`KEY='value'` lines): its node id, env, root, the forge's
    /// and the operator's public keys and its own node key. Run where DOMINION_SEAL is; the
    /// host gets no other secret.
    Enroll(brh_agent::enroll::EnrollArgs),
    /// Revoke a node's credential at the forge: its requests are refused from the next one
    /// on (durably), and it is no longer a candidate. Needs the top operator (DOMINION_SEAL)
    /// or an operator credential with the `nodes` scope. Prints how to re-enrol the host.
    Revoke(brh_agent::ops::RevokeArgs),
    /// Lease tokens: `token verify` checks one offline with the forge's public key (what a
    /// service in front of the containers does before it accepts a write).
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Operator credentials: `operator issue` prints a scoped one (env, scopes, expiry) for
    /// someone who should not hold DOMINION_SEAL.
    Operator {
        #[command(subcommand)]
        cmd: OperatorCmd,
    },
    /// Start a local federation: the embedded forge plus N agents with fresh keys.
    Up(crate::up::UpArgs),
    /// Manifests: `manifest check FILE` validates a bridge.runtime.yaml or a Compose file
    /// without running anything.
    Manifest {
        #[command(subcommand)]
        cmd: ManifestCmd,
    },
}

#[derive(Debug, Subcommand)]
pub enum ManifestCmd {
    /// Load FILE as the agent would (a Compose file by its name or keys, else BRH's schema):
    /// exit 0 and a summary when it loads, exit 1 and the one-line refusal when it does not.
    /// Variables are interpolated from this environment and the file's `.env`.
    Check {
        /// The manifest: a `bridge.runtime.yaml` or a Compose file.
        file: std::path::PathBuf,
        /// Print the normalized model as JSON (the shape of `docker compose config --format
        /// json`, for the keys BRH runs).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RootCmd {
    /// Print a signed root for HOST[:PORT] (seal from DOMINION_SEAL).
    Generate {
        /// host[:port] of the forge, as agents reach it (for a Worker: its workers.dev or
        /// custom domain host).
        #[arg(long)]
        host: String,
        /// The env the root admits agents to.
        #[arg(long, env = "BRH_ENV", default_value = "dev")]
        env: String,
        /// Unix seconds (default: now).
        #[arg(long)]
        epoch: Option<u64>,
        /// Plain HTTP (`dominion+http://`), for a local forge only.
        #[arg(long)]
        http: bool,
        #[command(flatten)]
        seal: brh_agent::config::SealArgs,
    },
    /// Check a root's signature and epoch; prints the forge URL and env.
    Verify {
        /// The root (default: FORGE_DOMINION_ROOT).
        #[arg(env = "FORGE_DOMINION_ROOT")]
        root: String,
        /// The forge's public key (64 hex) the root must be signed with. Default: derived
        /// from DOMINION_SEAL (which also accepts the original's HMAC roots).
        #[arg(long, env = "BRH_FORGE_KEY")]
        forge_key: Option<String>,
        #[command(flatten)]
        seal: brh_agent::config::SealArgs,
        /// Accept roots whose epoch is up to this many seconds in the future.
        #[arg(long, env = "BRH_EPOCH_SKEW_SECONDS", default_value_t = config::DEFAULT_EPOCH_SKEW_S)]
        epoch_skew_seconds: u64,
        /// Also refuse roots older than this many seconds.
        #[arg(long)]
        max_age_seconds: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Check a lease token (`BRH_TOKEN` / `BRH_LEASE_TOKEN` of a managed container): the
    /// forge's signature and expiry; prints env, holder and term. Exit 1 if it is not valid,
    /// or fenced by --min-term.
    Verify(brh_agent::ops::TokenVerifyArgs),
}

#[derive(Debug, Subcommand)]
pub enum OperatorCmd {
    /// Issue a scoped operator credential, signed by the top operator (DOMINION_SEAL).
    Issue(brh_agent::enroll::IssueArgs),
}

/// Parses, runs, prints one line on error; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            if let Some(line) = env_error(&e) {
                eprintln!("brh-agent: error: {line}");
                return 2;
            }
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    init_tracing(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("brh-agent: error: cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(dispatch(cli.cmd)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("brh-agent: error: {}", one_line(&e));
            1
        }
    }
}

/// A bad value that came from an environment variable is reported under that variable's
/// name, in one line (clap names the flag, which the operator never typed).
fn env_error(e: &clap::Error) -> Option<String> {
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
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let ContextValue::String(value) = e.get(ContextKind::InvalidValue)? else {
        return None;
    };
    let flag = format!("--{long}");
    if std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}="))) {
        return None;
    }
    fn env_of(cmd: &clap::Command, long: &str) -> Option<String> {
        cmd.get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_env())
            .map(|v| v.to_string_lossy().into_owned())
            .or_else(|| cmd.get_subcommands().find_map(|c| env_of(c, long)))
    }
    let var = env_of(&Cli::command(), long)?;
    if std::env::var(&var).ok().as_deref() != Some(value.as_str()) {
        return None;
    }
    let why = match (e.source(), e.get(ContextKind::ValidValue)) {
        (Some(src), _) => src.to_string(),
        (None, Some(ContextValue::Strings(valid))) => {
            format!("expected one of {}", valid.join(", "))
        }
        _ => "not accepted".into(),
    };
    Some(format!("invalid setting {var}: {value:?}: {why}"))
}

fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BRH_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => fmt
            // Colour only for a person at a terminal: a log file or journald gets plain text.
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init(),
        // Event fields at the top level (`node`, `env`, `term` beside `message`), the
        // agent's span (`span.node`) beside them.
        LogFormat::Json => fmt
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

async fn dispatch(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Run(args) => run(*args).await,
        Cmd::Status(a) => brh_agent::ops::status(a).await,
        Cmd::Switchover(a) => brh_agent::ops::switchover(a).await,
        Cmd::Restart(a) => brh_agent::ops::container("restart", a).await,
        Cmd::Drain(a) => brh_agent::ops::container("drain", a).await,
        Cmd::Root { cmd } => root(cmd),
        Cmd::Deploy(a) => brh_agent::ops::deploy(a).await,
        Cmd::Seal => {
            println!("{}", client::random_hex(32));
            Ok(())
        }
        Cmd::Enroll(a) => brh_agent::enroll::enroll(a),
        Cmd::Revoke(a) => brh_agent::ops::revoke(a).await,
        Cmd::Operator {
            cmd: OperatorCmd::Issue(a),
        } => brh_agent::enroll::issue(a),
        Cmd::Token {
            cmd: TokenCmd::Verify(a),
        } => brh_agent::ops::token_verify(a),
        Cmd::Up(a) => crate::up::up(a).await,
        Cmd::Manifest {
            cmd: ManifestCmd::Check { file, json },
        } => manifest_check(&file, json),
    }
}

fn manifest_check(file: &std::path::Path, json: bool) -> anyhow::Result<()> {
    use brh_agent::config::{load_config, ManifestSource};
    use brh_agent::containers::{compose, Manifest};
    // The refusal itself (`compose: service "db": build: …`), without the setting's name.
    let (_, source) = load_config(file).map_err(|e| anyhow!("{}", e.message))?;
    let (kind, project, manifest) = match source {
        ManifestSource::Compose(m) => {
            let name = m
                .services
                .first()
                .and_then(|s| s.labels.get(brh_agent::containers::labels::COMPOSE_PROJECT))
                .cloned();
            ("Compose file", name, m)
        }
        ManifestSource::Brh(text) => (
            "bridge.runtime.yaml",
            None,
            Manifest::parse(&text).map_err(|e| anyhow!("{e}"))?,
        ),
        ManifestSource::None => ("empty file", None, Manifest::default()),
    };
    if json {
        // `{:#}`: serde_json's pretty form.
        println!("{:#}", compose::config_json(project.as_deref(), &manifest));
    } else {
        let names: Vec<&str> = manifest.services.iter().map(|s| s.name.as_str()).collect();
        println!(
            "ok: {} ({kind}{}): {} service(s): {}",
            file.display(),
            project
                .map(|p| format!(", project {p}"))
                .unwrap_or_default(),
            names.len(),
            names.join(", ")
        );
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let cfg = Config::resolve(args, clock::wall_ms() / 1000)?;
    if cfg.insecure {
        tracing::warn!(
            "running with --insecure-dev: the seal is public, anyone can take the lease"
        );
    } else if cfg.credentials.from_seal {
        tracing::warn!(
            "running with --legacy-seal: this host holds DOMINION_SEAL, the federation's root \
             secret, so whoever reads its environment owns the fleet. Enrol it instead \
             (`brh-agent enroll {}` where the seal is) and unset DOMINION_SEAL here; \
             --legacy-seal goes away in the next release",
            cfg.node_id
        );
    }
    let cancel = CancellationToken::new();
    let signal = brh_agent::shutdown_signal();
    let agent = brh_agent::start_agent(cfg, cancel.clone()).await?;
    let mut done = agent.done;
    let result = tokio::select! {
        _ = signal => {
            cancel.cancel();
            (&mut done).await
        }
        r = &mut done => r,
    };
    result.context("the agent task failed")?
}

fn root(cmd: RootCmd) -> anyhow::Result<()> {
    match cmd {
        RootCmd::Generate {
            host,
            env,
            epoch,
            http,
            seal,
        } => {
            let seal = seal.required()?;
            let scheme = if http { SCHEME_HTTP } else { SCHEME_HTTPS };
            let epoch = epoch.unwrap_or(clock::wall_ms() / 1000);
            let forge = brh_shared::keys::forge_signing_key(&seal);
            let r = DominionRoot::sign(&forge, scheme, &host, &env, epoch)
                .map_err(|e| anyhow!("cannot sign the root: {e}"))?;
            println!("{r}");
            Ok(())
        }
        RootCmd::Verify {
            root,
            seal,
            forge_key,
            epoch_skew_seconds,
            max_age_seconds,
        } => {
            let r = DominionRoot::parse(&root).map_err(|e| anyhow!("{e}"))?;
            let seal = seal.optional();
            let pinned = match &forge_key {
                Some(k) => Some(config::public_key("BRH_FORGE_KEY", k)?),
                None => None,
            };
            let key = match (&pinned, &seal) {
                (Some(pk), _) => RootKey::Forge(pk),
                (None, Some(seal)) => RootKey::Seal(seal),
                (None, None) => {
                    return Err(anyhow!(
                        "invalid setting BRH_FORGE_KEY: missing (the forge's public key checks \
                         the root; `brh-agent enroll` prints it)"
                    ))
                }
            };
            r.verify(
                key,
                clock::wall_ms() / 1000,
                epoch_skew_seconds,
                max_age_seconds,
            )
            .map_err(|e| anyhow!("{e}"))?;
            println!(
                "ok: forge {} env {} epoch {}",
                r.forge_base_url(),
                r.env,
                r.epoch
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every option of every subcommand explains itself in `--help`.
    #[test]
    fn every_option_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            assert!(
                cmd.get_about().is_some() || path.is_empty(),
                "{path} has no description"
            );
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id != "help" && id != "version" && a.get_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(
            missing.is_empty(),
            "options without a description: {missing:?}"
        );
        Cli::command().debug_assert();
    }
}
