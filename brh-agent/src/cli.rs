//! Command line: `run`, `status`, `root generate|verify`, `deploy`, `api-key`, `up`.
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use brh_shared::root::{DominionRoot, SCHEME_HTTP, SCHEME_HTTPS};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::client::{self, ForgeClient};
use crate::clock;
use crate::config::{self, Config, RunArgs};
use crate::keeper::NoHooks;

#[derive(Debug, Parser)]
#[command(
    name = "brh-agent",
    version,
    about = "BRH node agent: leader lease keeping, local API, CLI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the agent: heartbeat to the forge, keep the role, serve the local API.
    Run(Box<RunArgs>),
    /// Show the env's leader, term and peers as the forge sees them.
    Status(StatusArgs),
    /// Generate or verify a dominion root (replaces generate_forge_root.sh).
    Root {
        #[command(subcommand)]
        cmd: RootCmd,
    },
    /// Ask an agent to deploy an image (authenticated with the seal-derived API key).
    Deploy(DeployArgs),
    /// Print the API key of an env (derived from the seal) for `deploy --api-key`.
    ApiKey(ApiKeyArgs),
    /// Start a local federation: the embedded forge plus N agents with fresh keys.
    Up(crate::up::UpArgs),
}

#[derive(Debug, Args)]
pub struct ForgeAccess {
    #[arg(long, env = "FORGE_DOMINION_ROOT")]
    pub forge_root: Option<String>,
    #[arg(long, env = "BRH_FORGE_URL")]
    pub forge_url: Option<String>,
    #[arg(long, env = "DOMINION_SEAL", hide_env_values = true)]
    pub seal: Option<String>,
    #[arg(long, env = "BRH_INSECURE_DEV", value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_dev: Option<bool>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub forge: ForgeAccess,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RootCmd {
    /// Print a signed root for HOST[:PORT] (seal from DOMINION_SEAL).
    Generate {
        /// host[:port] of the forge.
        #[arg(long)]
        host: String,
        #[arg(long, env = "BRH_ENV", default_value = "dev")]
        env: String,
        /// Unix seconds (default: now).
        #[arg(long)]
        epoch: Option<u64>,
        /// Plain HTTP (`dominion+http://`), for a local forge only.
        #[arg(long)]
        http: bool,
        #[arg(long, env = "DOMINION_SEAL", hide_env_values = true)]
        seal: Option<String>,
        #[arg(long, env = "BRH_INSECURE_DEV", value_parser = clap::builder::BoolishValueParser::new())]
        insecure_dev: Option<bool>,
    },
    /// Check a root's signature and epoch; prints the forge URL and env.
    Verify {
        /// The root (default: FORGE_DOMINION_ROOT).
        #[arg(env = "FORGE_DOMINION_ROOT")]
        root: String,
        #[arg(long, env = "DOMINION_SEAL", hide_env_values = true)]
        seal: Option<String>,
        #[arg(long, env = "BRH_INSECURE_DEV", value_parser = clap::builder::BoolishValueParser::new())]
        insecure_dev: Option<bool>,
        #[arg(long, env = "BRH_EPOCH_SKEW_SECONDS", default_value_t = config::DEFAULT_EPOCH_SKEW_S)]
        epoch_skew_seconds: u64,
        /// Also refuse roots older than this many seconds.
        #[arg(long)]
        max_age_seconds: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The agent's API (usually the leader's).
    #[arg(long, env = "BRH_AGENT_URL", default_value = "http://127.0.0.1:7878")]
    pub agent: String,
    /// Image reference (Docker's grammar), e.g. `registry.example.com/app:1.2`.
    #[arg(long)]
    pub image: String,
    /// The manifest service to deploy (may be left out when the manifest has one service).
    #[arg(long)]
    pub service: Option<String>,
    /// Pull policy: never, missing or always.
    #[arg(long, default_value = "missing", value_parser = ["never", "missing", "always"])]
    pub pull: String,
    #[arg(long)]
    pub branch: Option<String>,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The env's API key (64 hex); alternatively give the seal.
    #[arg(long, env = "BRH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    #[arg(long, env = "DOMINION_SEAL", hide_env_values = true)]
    pub seal: Option<String>,
    #[arg(long, env = "BRH_ENV", default_value = "dev")]
    pub env: String,
    /// The caller's name, shown in the agent's events.
    #[arg(long, env = "USER", default_value = "brh-cli")]
    pub caller: String,
}

#[derive(Debug, Args)]
pub struct ApiKeyArgs {
    #[arg(long, env = "DOMINION_SEAL", hide_env_values = true)]
    pub seal: Option<String>,
    #[arg(long, env = "BRH_ENV", default_value = "dev")]
    pub env: String,
}

/// Parses, runs, prints one line on error; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    init_tracing();
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

fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BRH_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

async fn dispatch(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Run(args) => run(*args).await,
        Cmd::Status(a) => status(a).await,
        Cmd::Root { cmd } => root(cmd),
        Cmd::Deploy(a) => deploy(a).await,
        Cmd::ApiKey(a) => {
            let seal = config::resolve_seal(a.seal.as_deref(), false)?;
            println!(
                "{}",
                brh_shared::hex::encode(&crate::auth::derive_api_key(&seal, &a.env))
            );
            Ok(())
        }
        Cmd::Up(a) => crate::up::up(a).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let cfg = Config::resolve(args, clock::wall_ms() / 1000)?;
    if cfg.insecure {
        tracing::warn!(
            "running with --insecure-dev: the seal is public, anyone can take the lease"
        );
    }
    let cancel = CancellationToken::new();
    let agent = crate::start_agent(cfg, Arc::new(NoHooks), cancel.clone()).await?;
    let mut done = agent.done;
    let result = tokio::select! {
        _ = crate::shutdown_signal() => {
            cancel.cancel();
            (&mut done).await
        }
        r = &mut done => r,
    };
    result.context("the agent task failed")?
}

fn forge_client(f: &ForgeAccess) -> anyhow::Result<ForgeClient> {
    let seal = config::resolve_seal(f.seal.as_deref(), f.insecure_dev.unwrap_or(false))?;
    let text = f
        .forge_root
        .as_deref()
        .ok_or_else(|| anyhow!("invalid setting FORGE_DOMINION_ROOT: missing"))?;
    let root = DominionRoot::parse(text)
        .map_err(|e| anyhow!("invalid setting FORGE_DOMINION_ROOT: {e}"))?;
    root.verify(
        &seal,
        clock::wall_ms() / 1000,
        config::DEFAULT_EPOCH_SKEW_S,
        None,
    )
    .map_err(|e| anyhow!("invalid setting FORGE_DOMINION_ROOT: {e}"))?;
    let base = config::forge_base_url(&root, f.forge_url.as_deref())?;
    Ok(ForgeClient::new(
        base,
        seal,
        "brh-cli",
        root.env,
        Duration::from_secs(5),
    ))
}

async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let c = forge_client(&a.forge)?;
    let view = c
        .leader()
        .await
        .context("cannot read the leader from the forge")?;
    let peers = c
        .peers()
        .await
        .context("cannot read the peers from the forge")?;
    let v = view.view();
    if a.json {
        let j = serde_json::json!({
            "env": v.env, "leader": v.leader, "term": v.term, "lease": v.lease,
            "peers_alive": v.peers_alive, "mode": v.mode, "peers": peers,
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    let left = v.lease_remaining_ms();
    println!(
        "env {}  leader {}  term {}  lease {}  mode {}",
        v.env,
        v.leader.as_deref().unwrap_or("none"),
        v.term,
        if v.lease.is_some() {
            format!("{:.1}s left", left as f64 / 1000.0)
        } else {
            "-".into()
        },
        v.mode
    );
    println!(
        "{:<24} {:<8} {:<7} {:>8} {:>10} {:<10} API",
        "NODE", "ROLE", "ALIVE", "PRIORITY", "UPTIME_S", "VERSION"
    );
    for p in peers {
        let role = if v.leader.as_deref() == Some(p.node.as_str()) {
            "leader"
        } else {
            "witness"
        };
        println!(
            "{:<24} {:<8} {:<7} {:>8} {:>10} {:<10} {}",
            p.node,
            role,
            if p.alive { "yes" } else { "no" },
            p.priority,
            p.uptime_s,
            p.version,
            p.api.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

fn root(cmd: RootCmd) -> anyhow::Result<()> {
    match cmd {
        RootCmd::Generate {
            host,
            env,
            epoch,
            http,
            seal,
            insecure_dev,
        } => {
            let seal = config::resolve_seal(seal.as_deref(), insecure_dev.unwrap_or(false))?;
            let scheme = if http { SCHEME_HTTP } else { SCHEME_HTTPS };
            let epoch = epoch.unwrap_or(clock::wall_ms() / 1000);
            let r = DominionRoot::sign(&seal, scheme, &host, &env, epoch)
                .map_err(|e| anyhow!("cannot sign the root: {e}"))?;
            println!("{r}");
            Ok(())
        }
        RootCmd::Verify {
            root,
            seal,
            insecure_dev,
            epoch_skew_seconds,
            max_age_seconds,
        } => {
            let seal = config::resolve_seal(seal.as_deref(), insecure_dev.unwrap_or(false))?;
            let r = DominionRoot::parse(&root).map_err(|e| anyhow!("{e}"))?;
            r.verify(
                &seal,
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

/// The API key from `--api-key` or derived from the seal.
pub fn api_key(k: &KeyArgs) -> anyhow::Result<[u8; 32]> {
    if let Some(hex) = &k.api_key {
        return brh_shared::hex::decode32(hex.trim())
            .ok_or_else(|| anyhow!("invalid setting BRH_API_KEY: must be 64 hex digits"));
    }
    let seal = config::resolve_seal(k.seal.as_deref(), false)
        .map_err(|_| anyhow!("invalid setting BRH_API_KEY: give --api-key or DOMINION_SEAL"))?;
    Ok(crate::auth::derive_api_key(&seal, &k.env))
}

async fn deploy(a: DeployArgs) -> anyhow::Result<()> {
    crate::containers::reference::validate(&a.image)
        .map_err(|m| anyhow!("invalid --image: {m}"))?;
    let key = api_key(&a.key)?;
    let body = serde_json::to_vec(&serde_json::json!({
        "image": a.image, "service": a.service, "pull": a.pull, "branch": a.branch
    }))?;
    let (status, j) = client::agent_post(
        // A deploy health-checks every replica: allow it time.
        &client::http_client(Duration::from_secs(600)),
        &a.agent,
        None,
        "/deploy",
        body,
        &key,
        &a.key.caller,
    )
    .await?;
    println!("{j}");
    if (200..300).contains(&status) {
        if j.get("status").and_then(|s| s.as_str()) == Some("ignored") {
            return Err(anyhow!(
                "the agent is not the leader; send the deploy to the leader"
            ));
        }
        Ok(())
    } else {
        let msg = j
            .pointer("/error/message")
            .and_then(|m| m.as_str())
            .unwrap_or("no message");
        Err(anyhow!("the agent answered {status}: {msg}"))
    }
}
