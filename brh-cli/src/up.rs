//! `brh-agent up`: a local federation in one command — the embedded native forge plus N
//! agents in this process. The first run generates a seal; later runs in the same data
//! directory reuse it and the forge's state (terms, history), so a restart continues the
//! federation; `--fresh` starts a new one. Prints the dashboard URL and each agent's API, and
//! on Ctrl-C stops the agents (each resigns if it leads) and then the forge.
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use brh_agent::client::random_hex;
use brh_agent::clock;
use brh_agent::config::{Config, RunArgs};
use brh_shared::root::{DominionRoot, SCHEME_HTTP};
use brh_shared::Timing;
use clap::{Args, ValueEnum};
use forge_worker::native::{start, ServeOptions};
use tokio_util::sync::CancellationToken;

/// `println!` that ignores a closed stdout (`brh-agent up | head`): the federation keeps
/// running and still stops cleanly on Ctrl-C.
macro_rules! say {
    () => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout());
    }};
    ($($t:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

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
    /// The env the agents join.
    #[arg(long, env = "BRH_ENV", default_value = "dev")]
    pub env: String,
    /// Where the forge keeps its state, the agents their event logs, and `up.env` the keys.
    #[arg(long, default_value = ".brh/up")]
    pub data: PathBuf,
    /// Start a new federation: new keys, and the forge's state of earlier runs deleted.
    #[arg(long)]
    pub fresh: bool,
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
    // The forge's store belongs to one seal: keep both, or (with --fresh, or when the keys
    // are gone) start both anew.
    let env_file = a.data.join("up.env");
    let forge_dir = a.data.join("forge");
    let earlier = previous_seal(&env_file);
    let kept = if a.fresh { None } else { earlier.clone() };
    let seal = match kept {
        Some(seal) => {
            say!(
                "continuing the federation in {} (--fresh starts a new one)",
                a.data.display()
            );
            seal
        }
        None => {
            if forge_dir.exists() {
                std::fs::remove_dir_all(&forge_dir)
                    .with_context(|| format!("cannot reset {}", forge_dir.display()))?;
            }
            random_hex(32)
        }
    };
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
        &brh_shared::keys::forge_signing_key(seal.as_bytes()),
        SCHEME_HTTP,
        &forge.addr.to_string(),
        &a.env,
        clock::wall_ms() / 1000,
    )
    .map_err(|e| anyhow::anyhow!("invalid --env: {e}"))?;

    // The secrets go to a private file, never to the terminal or the logs.
    // Single-quoted: the root holds `&`, which a shell sourcing the file would otherwise run
    // as background jobs. None of the values can contain a quote (hex, a URI of ids, an id).
    // No timing: an agent started from this file follows the forge's.
    // This is the operator's file (the root secret); each agent gets only its enrolment.
    // The federation's id is its forge key's (a new seal is a new federation: its agents
    // leave an earlier one's containers on the engine alone); never taken from the caller's
    // environment, where a sourced up.env of an earlier run would name the old one.
    if let (true, Some(old), Some(_)) = (a.fresh, &earlier, &a.config) {
        // The earlier federation was this command's own: its containers would hold our
        // services' names on the engine. Gone with it.
        remove_federation_containers(&a.env, old).await?;
    }
    let forge_public = brh_shared::keys::forge_signing_key(seal.as_bytes()).verifying_key();
    let forge_key = brh_shared::keys::public_hex(&forge_public);
    let federation = brh_shared::keys::federation_id(&forge_public);
    write_private(
        &env_file,
        &format!(
            "DOMINION_SEAL='{seal}'\nFORGE_DOMINION_ROOT='{root}'\nBRH_ENV='{}'\nBRH_FORGE_KEY='{forge_key}'\nBRH_FEDERATION='{federation}'\n",
            a.env
        ),
    )?;

    let all = CancellationToken::new();
    let signal = brh_agent::shutdown_signal();
    let mut agents = Vec::new();
    for i in 0..a.agents {
        let node = format!("brh-node-{:02}", i + 1);
        let port = if a.api_port == 0 {
            0
        } else {
            a.api_port.saturating_add(i as u16)
        };
        // Enrolled as the README tells an operator to enrol a host: the agent holds its own
        // key and the public keys, never the seal. The same lines go to `{node}.env`.
        let enrolment =
            brh_agent::enroll::enrolment(seal.as_bytes(), &root, &node, None, &federation);
        let enrolment_file = a.data.join(format!("{node}.env"));
        write_private(&enrolment_file, &enrolment)?;
        let creds = brh_agent::config::Credentials::derive(seal.as_bytes(), &root.env, &node);
        let args = RunArgs {
            node_id: Some(node.clone()),
            forge_root: Some(root.to_string()),
            keys: brh_agent::config::KeyArgs {
                node_key: Some(brh_shared::hex::encode(&creds.node_key)),
                forge_key: Some(brh_shared::keys::public_hex(&creds.forge_key)),
                operator_key: Some(brh_shared::keys::public_hex(&creds.operator_key)),
                legacy_seal: None,
            },
            consensus_interval: Some("30s".into()),
            listen: Some(SocketAddr::new([127, 0, 0, 1].into(), port)),
            event_log: Some(a.data.join(format!("{node}.leadership.jsonl"))),
            config: a.config.clone(),
            federation: Some(federation.clone()),
            // SIGHUP re-reads it, as for a host (a re-enrolment without a restart).
            credentials_file: Some(enrolment_file),
            ..RunArgs::default()
        };
        let cfg = Config::resolve(args.clone(), clock::wall_ms() / 1000)?;
        let stop = all.child_token();
        let started = match brh_agent::start_agent(cfg, stop.clone()).await {
            Ok(s) => s,
            Err(_) if port != 0 => {
                let args = RunArgs {
                    listen: Some(SocketAddr::new([127, 0, 0, 1].into(), 0)),
                    ..args
                };
                let cfg = Config::resolve(args, clock::wall_ms() / 1000)?;
                brh_agent::start_agent(cfg, stop.clone()).await?
            }
            Err(e) => return Err(e),
        };
        agents.push((node, started, stop));
    }

    say!();
    say!(
        "BRH local federation (env {}, heartbeat {} ms, lease {} ms)",
        a.env,
        timing.heartbeat_interval_ms,
        timing.lease_ttl_ms
    );
    say!("  dashboard: http://{}/", forge.addr);
    for (node, ag, _) in &agents {
        say!("  {node}: http://{}/status", ag.api_addr);
    }
    say!(
        "  keys:      {} (the operator's: source it to use `brh-agent status` / `deploy`)",
        env_file.display()
    );
    say!(
        "  hosts:     {}/brh-node-NN.env (each agent's own enrolment: no root secret)",
        a.data.display()
    );
    say!("Ctrl-C stops everything (the leader resigns first).");
    say!();

    signal.await;
    // Witnesses first (each tells the forge it is going), then the leader: its resign must
    // not hand the lease to a node that is itself stopping.
    let (leaders, witnesses): (Vec<_>, Vec<_>) = agents
        .into_iter()
        .partition(|(_, ag, _)| ag.shared.guard().is_ok());
    for group in [witnesses, leaders] {
        for (_, _, stop) in &group {
            stop.cancel();
        }
        for (node, ag, _) in group {
            if let Ok(Err(e)) = ag.done.await {
                tracing::warn!("{node} stopped with an error: {e:#}");
            }
        }
    }
    all.cancel();
    forge.shutdown().await;
    tracing::info!("local federation stopped");
    Ok(())
}

/// Removes the containers of env `env` labelled with the federation of `seal` (an earlier
/// `up` run's), so a fresh federation can create its own under the same names.
async fn remove_federation_containers(env: &str, seal: &str) -> anyhow::Result<()> {
    let old = brh_shared::keys::federation_id(
        &brh_shared::keys::forge_signing_key(seal.as_bytes()).verifying_key(),
    );
    let engine = brh_agent::containers::Engine::connect().await.context(
        "--fresh: cannot reach the Docker engine to remove the earlier federation's containers",
    )?;
    let listed = engine
        .list_managed(env, &old)
        .await
        .context("--fresh: cannot list the earlier federation's containers")?;
    let theirs: Vec<_> = listed
        .ours
        .into_iter()
        .filter(|c| c.federation.as_deref() == Some(old.as_str()))
        .collect();
    for c in &theirs {
        engine
            .stop(&c.id, std::time::Duration::from_secs(10))
            .await
            .with_context(|| format!("--fresh: cannot stop {}", c.name))?;
        engine
            .remove(&c.id)
            .await
            .with_context(|| format!("--fresh: cannot remove {}", c.name))?;
    }
    if !theirs.is_empty() {
        say!(
            "--fresh: removed {} container(s) of the earlier federation ({old})",
            theirs.len()
        );
    }
    Ok(())
}

/// The seal of an earlier run, from its `up.env` (written by [`up`]).
fn previous_seal(env_file: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(env_file).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("DOMINION_SEAL="))
        .map(|v| v.trim().trim_matches('\'').to_string())
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
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
