//! `brh-agent up`: a local federation in one command — the embedded native forge plus N
//! agents in this process, with a freshly generated seal. Prints the dashboard URL and each
//! agent's API, and on Ctrl-C stops the agents (each resigns if it leads) and then the forge.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use brh_shared::root::{DominionRoot, SCHEME_HTTP};
use brh_shared::Timing;
use clap::{Args, ValueEnum};
use forge_worker::native::{start, ServeOptions};
use tokio_util::sync::CancellationToken;

use crate::client::random_hex;
use crate::clock;
use crate::config::{Config, RunArgs};
use crate::keeper::NoHooks;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Profile {
    /// Heartbeat 5 s, lease 15 s.
    Default,
    /// Heartbeat 1 s, lease 3 s.
    Fast,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of agents.
    #[arg(long, default_value_t = 3)]
    pub agents: usize,
    /// Timing profile.
    #[arg(long, value_enum, default_value = "fast")]
    pub profile: Profile,
    /// The forge's address (the dashboard is at its root). Port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub forge_listen: SocketAddr,
    /// First agent API port; the others follow. 0 picks free ports.
    #[arg(long, default_value_t = 7878)]
    pub api_port: u16,
    #[arg(long, env = "BRH_ENV", default_value = "dev")]
    pub env: String,
    /// Where the forge keeps its state and the agents their event logs.
    #[arg(long, default_value = ".brh/up")]
    pub data: PathBuf,
    /// A `bridge.runtime.yaml` with services: the agents then share the Docker engine of
    /// `DOCKER_HOST`, and the leader runs the manifest (handover adopts it in place).
    #[arg(long, env = "BRH_CONFIG")]
    pub config: Option<PathBuf>,
}

pub async fn up(a: UpArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=32).contains(&a.agents),
        "invalid --agents: must be 1 to 32"
    );
    let timing = match a.profile {
        Profile::Default => Timing::DEFAULT,
        Profile::Fast => Timing::FAST,
    };
    std::fs::create_dir_all(&a.data)
        .with_context(|| format!("cannot create {}", a.data.display()))?;
    // Fresh keys every time: nothing from a previous run can be replayed into this one. The
    // forge's store is per seal, so start from an empty one.
    let seal = random_hex(32);
    let forge_dir = a.data.join("forge");
    let _ = std::fs::remove_dir_all(&forge_dir);
    let mut opts = ServeOptions::new(a.forge_listen, forge_dir.clone(), seal.as_bytes().to_vec());
    opts.timing = timing;
    let forge = match start(opts.clone()).await {
        Ok(f) => f,
        Err(_) if a.forge_listen.port() != 0 => {
            // The usual port is taken: any free one will do for a local federation.
            opts.listen = SocketAddr::new(a.forge_listen.ip(), 0);
            start(opts)
                .await
                .context("cannot start the embedded forge")?
        }
        Err(e) => return Err(e.context("cannot start the embedded forge")),
    };
    let root = DominionRoot::sign(
        seal.as_bytes(),
        SCHEME_HTTP,
        &forge.addr.to_string(),
        &a.env,
        clock::wall_ms() / 1000,
    )
    .map_err(|e| anyhow::anyhow!("invalid --env: {e}"))?;

    // The secrets go to a private file, never to the terminal or the logs.
    let env_file = a.data.join("up.env");
    // Single-quoted: the root holds `&`, which a shell sourcing the file would otherwise run
    // as background jobs. None of the values can contain a quote (hex, a URI of ids, an id).
    // The timing is written too, so an agent started from this file matches the forge.
    write_private(
        &env_file,
        &format!(
            "DOMINION_SEAL='{seal}'\nFORGE_DOMINION_ROOT='{root}'\nBRH_ENV='{}'\n\
             BRH_HEARTBEAT_INTERVAL='{}ms'\nBRH_LEASE_TTL='{}ms'\n",
            a.env, timing.heartbeat_interval_ms, timing.lease_ttl_ms
        ),
    )?;

    let all = CancellationToken::new();
    let mut agents = Vec::new();
    for i in 0..a.agents {
        let node = format!("brh-node-{:02}", i + 1);
        let port = if a.api_port == 0 {
            0
        } else {
            a.api_port.saturating_add(i as u16)
        };
        let args = RunArgs {
            node_id: Some(node.clone()),
            forge_root: Some(root.to_string()),
            seal: Some(seal.clone()),
            consensus_interval: Some("30s".into()),
            listen: Some(SocketAddr::new([127, 0, 0, 1].into(), port)),
            event_log: Some(a.data.join(format!("{node}.leadership.jsonl"))),
            config: a.config.clone(),
            ..RunArgs::default()
        };
        let cfg = Config::resolve(args.clone(), clock::wall_ms() / 1000)?;
        let started = match crate::start_agent(cfg, Arc::new(NoHooks), all.child_token()).await {
            Ok(s) => s,
            Err(_) if port != 0 => {
                let args = RunArgs {
                    listen: Some(SocketAddr::new([127, 0, 0, 1].into(), 0)),
                    ..args
                };
                let cfg = Config::resolve(args, clock::wall_ms() / 1000)?;
                crate::start_agent(cfg, Arc::new(NoHooks), all.child_token()).await?
            }
            Err(e) => return Err(e),
        };
        agents.push((node, started));
    }

    println!();
    println!(
        "BRH local federation (env {}, heartbeat {} ms, lease {} ms)",
        a.env, timing.heartbeat_interval_ms, timing.lease_ttl_ms
    );
    println!("  dashboard: http://{}/", forge.addr);
    for (node, ag) in &agents {
        println!("  {node}: http://{}/status", ag.api_addr);
    }
    println!(
        "  keys:      {} (source it to use `brh-agent status` / `deploy`)",
        env_file.display()
    );
    println!("Ctrl-C stops everything (the leader resigns first).");
    println!();

    crate::shutdown_signal().await;
    all.cancel();
    for (node, ag) in agents {
        if let Ok(Err(e)) = ag.done.await {
            tracing::warn!("{node} stopped with an error: {e:#}");
        }
    }
    forge.shutdown().await;
    tracing::info!("local federation stopped");
    Ok(())
}

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.create(true).write(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
