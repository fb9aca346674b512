//! Agent configuration: flags, environment variables (the original's names) and the optional
//! `bridge.runtime.yaml`. Precedence: flag > env > file > default (clap resolves flag > env;
//! the file and defaults fill whatever is still unset).
//!
//! Everything is validated here, once, at start-up: an unsafe or invalid setting stops the
//! agent with one line naming the setting (see [`ConfigError`]).
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use brh_shared::ids::validate_id;
use brh_shared::root::{DominionRoot, RootKey};
use brh_shared::Timing;
use clap::Args;
use serde::Deserialize;

use crate::containers::policy::DemotePolicy;
use crate::containers::Manifest;

/// Seal used with `--insecure-dev` only. Public by design: anyone can forge with it.
pub const INSECURE_DEV_SEAL: &str = "brh-insecure-development-seal";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
pub const DEFAULT_CONSENSUS_INTERVAL_MS: u64 = 180_000;
/// The original's `BRH_EPOCH_SKEW_SECONDS` default.
pub const DEFAULT_EPOCH_SKEW_S: u64 = 3600;

/// One line naming the setting at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {message}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub message: String,
}

fn err(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        message: message.into(),
    }
}

/// `brh-agent run` flags. Every value is optional here so that the file can fill the gaps.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// This node's id (`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`).
    #[arg(long, env = "BRH_NODE_ID")]
    pub node_id: Option<String>,
    /// The environment (federation) to join; must match the root's `env` if both are set.
    #[arg(long, env = "BRH_ENV")]
    pub env: Option<String>,
    /// Signed forge address: `dominion://host[:port]?env=&epoch=&sig=` (HTTPS) or
    /// `dominion+http://…` (explicit plain HTTP for a local forge).
    #[arg(long, env = "FORGE_DOMINION_ROOT")]
    pub forge_root: Option<String>,
    /// Override the forge base URL (e.g. `http://127.0.0.1:8787`); the root is still verified.
    /// Several forge replicas: `URL,URL,…`, tried in order (the agent stays on the one that
    /// answers and moves to the next when it is unreachable or a standby).
    #[arg(long, env = "BRH_FORGE_URL")]
    pub forge_url: Option<String>,
    /// Extra CA certificates (PEM) to trust for the forge's HTTPS, e.g. a self-signed
    /// forge's own certificate; the built-in public roots stay trusted.
    #[arg(long, env = "BRH_FORGE_CA")]
    pub forge_ca: Option<PathBuf>,
    /// A file of `KEY='value'` lines as `brh-agent enroll NODE` prints them: the host's
    /// credentials (and its node id, env, root, federation). Its values win over the
    /// environment. On SIGHUP the agent re-reads it and takes the new keys without a restart
    /// (same node, env and federation): a re-enrolment (after a revocation, or while the
    /// root secret is rotated) without a leader change.
    #[arg(long, env = "BRH_CREDENTIALS_FILE")]
    pub credentials_file: Option<PathBuf>,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub seal: SealArgs,
    /// Send heartbeats (and so take part in the election).
    #[arg(long, env = "BRH_HEARTBEAT_ENABLED", value_parser = clap::builder::BoolishValueParser::new())]
    pub heartbeat_enabled: Option<bool>,
    /// Heartbeat, resign and report consensus over the forge's stream (a WebSocket at
    /// /federation/stream) when the forge offers one, and take its pushes: a new holder
    /// learns in one message. HTTP is used whenever the stream is down; the lease rules are
    /// the same on both. Default true.
    #[arg(long, env = "BRH_FORGE_STREAM", value_parser = clap::builder::BoolishValueParser::new())]
    pub forge_stream: Option<bool>,
    /// Heartbeat interval: seconds (`5`, `0.5`) or with a unit (`500ms`, `5s`). Unset (the
    /// default): follow the forge's. Set: pinned, and the agent refuses to run against a forge
    /// with another value.
    #[arg(long, env = "BRH_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<String>,
    /// Lease ttl, same format; ≥ 3 × the heartbeat interval. Unset: follow the forge's.
    /// Set: pinned, like the interval.
    #[arg(long, env = "BRH_LEASE_TTL")]
    pub lease_ttl: Option<String>,
    /// Send consensus reports to the forge.
    #[arg(long, env = "BRH_CONSENSUS_ENABLED", value_parser = clap::builder::BoolishValueParser::new())]
    pub consensus_enabled: Option<bool>,
    /// Consensus report interval, same format.
    #[arg(long, env = "BRH_CONSENSUS_INTERVAL")]
    pub consensus_interval: Option<String>,
    /// Election priority (higher wins).
    #[arg(long, env = "BRH_PRIORITY", allow_hyphen_values = true)]
    pub priority: Option<i32>,
    /// Where the local API listens. Loopback unless told otherwise.
    #[arg(long, env = "BRH_API_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The API address advertised to the forge (default: `http://<listen>`).
    #[arg(long, env = "BRH_API_ADVERTISE")]
    pub advertise: Option<String>,
    /// CORS origins for the local API, comma-separated; empty means `*`.
    #[arg(long, env = "BRH_ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,
    /// How far in the future the root's epoch may be (seconds).
    #[arg(long, env = "BRH_EPOCH_SKEW_SECONDS")]
    pub epoch_skew_seconds: Option<u64>,
    /// Optional `bridge.runtime.yaml`.
    #[arg(long, env = "BRH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Append leadership intervals as JSON lines to this file.
    #[arg(long, env = "BRH_EVENT_LOG")]
    pub event_log: Option<PathBuf>,
    /// What a demoted leader does with its containers: `relinquish` (keep them running and
    /// stop managing them; the next leader adopts them in place) or `drain` (stop with the
    /// stop timeout and remove those this node created; for one engine per host).
    #[arg(long, env = "BRH_DEMOTE_POLICY")]
    pub demote_policy: Option<String>,
    /// Restart managed containers that die (leader only, driven by Docker events).
    #[arg(long, env = "BRH_RECOVERY_ENABLED", value_parser = clap::builder::BoolishValueParser::new())]
    pub recovery_enabled: Option<bool>,
    /// Chaos drills: kill a random managed container now and then (leader only). Off by default.
    #[arg(long, env = "BRH_CHAOS_ENABLED", value_parser = clap::builder::BoolishValueParser::new())]
    pub chaos_enabled: Option<bool>,
    /// Interval between chaos draws (default 600 s).
    #[arg(long, env = "BRH_CHAOS_INTERVAL")]
    pub chaos_interval: Option<String>,
    /// Probability of a kill at each chaos draw (default 0.15).
    #[arg(long, env = "BRH_KILL_PROB")]
    pub kill_prob: Option<f64>,
    /// How long a container gets to stop before it is killed (default 10 s).
    #[arg(long, env = "BRH_STOP_TIMEOUT")]
    pub stop_timeout: Option<String>,
    /// A command run (`sh -c`) when this node becomes leader, while it holds the lease: e.g.
    /// move a floating IP. Its environment has BRH_HOOK=promote, BRH_ROLE=leader, BRH_ENV,
    /// BRH_NODE, BRH_TERM and BRH_LEASE_TOKEN; killed if the lease goes while it runs.
    #[arg(long, env = "BRH_ON_PROMOTE")]
    pub on_promote: Option<String>,
    /// A command run (`sh -c`) when this node stops being leader (also on shutdown):
    /// BRH_HOOK=demote, BRH_ROLE=witness, BRH_ENV, BRH_NODE, BRH_TERM (the term that ended).
    #[arg(long, env = "BRH_ON_DEMOTE")]
    pub on_demote: Option<String>,
    /// How long a hook may run before its whole process group is killed (default 30 s).
    #[arg(long, env = "BRH_HOOK_TIMEOUT")]
    pub hook_timeout: Option<String>,
    /// This federation's id, the `brh.federation` label on every container it creates: a
    /// leader never touches a container labelled with another federation's id (an older
    /// federation's on the same engine), and adopts unlabelled ones (made before the label).
    /// Default: derived from the forge key (16 hex digits, as `brh-agent enroll` prints it).
    /// Set it when the operator rotates the root secret: the forge key changes, and the
    /// federation must keep its old id so its containers stay its own. 16 lowercase hex
    /// digits or an id (letters, digits, '.', '_', '-'; at most 63).
    #[arg(long, env = "BRH_FEDERATION")]
    pub federation: Option<String>,
    /// `api` runs without the container layer even if the manifest has services.
    #[arg(long, env = "BRH_RUNTIME")]
    pub runtime: Option<String>,
    /// TEST ONLY: offset the wall clock used for `x-brh-ts` (ms, may be negative). Role
    /// keeping uses the monotonic clock and is unaffected; this exists to prove it.
    #[arg(long, hide = true, allow_hyphen_values = true)]
    pub test_clock_skew_ms: Option<i64>,
}

/// The parts of `bridge.runtime.yaml` the agent reads (the original's schema; other keys,
/// such as `services`, are ignored here).
#[derive(Debug, Default, Deserialize)]
pub struct FileConfig {
    #[serde(default)]
    pub runtime: FileRuntime,
    /// Top-level `consensus` as in the original's manifest.
    #[serde(default)]
    pub consensus: Option<FileConsensus>,
    /// `chaos{enabled, interval, probability}` as in the original's manifest.
    #[serde(default)]
    pub chaos: Option<FileChaos>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileChaos {
    pub enabled: Option<bool>,
    pub interval: Option<serde_norway::Value>,
    pub probability: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileRuntime {
    #[serde(default)]
    pub federation: FileFederation,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileFederation {
    #[serde(default)]
    pub heartbeat: FileHeartbeat,
    #[serde(default)]
    pub consensus: Option<FileConsensus>,
    #[serde(default)]
    pub priority: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileHeartbeat {
    pub enabled: Option<bool>,
    /// Seconds, or a string with a unit.
    pub interval: Option<serde_norway::Value>,
    /// The lease ttl (the original's heartbeat validity), seconds or with a unit.
    pub ttl: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FileConsensus {
    pub enabled: Option<bool>,
    pub interval: Option<serde_norway::Value>,
    pub election_method: Option<String>,
}

impl FileConfig {
    /// Reads the file; returns the agent's settings and the text (for the manifest).
    pub fn load(path: &Path) -> Result<(Self, String), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err("BRH_CONFIG", format!("cannot read {}: {e}", path.display())))?;
        let file = serde_norway::from_str(&text).map_err(|e| {
            err(
                "BRH_CONFIG",
                format!("{} is not valid: {e}", path.display()),
            )
        })?;
        Ok((file, text))
    }
}

pub use crate::duration::{parse_duration_ms, yaml_duration};

/// Where the services come from: BRH's own `bridge.runtime.yaml`, or a Compose file.
pub enum ManifestSource {
    None,
    Brh(String),
    Compose(Manifest),
}

/// Reads `--config`: a Compose file (by name or content, `containers::compose`) or BRH's own
/// schema. A Compose file carries no agent settings (they come from flags and variables).
pub fn load_config(path: &Path) -> Result<(FileConfig, ManifestSource), ConfigError> {
    use crate::containers::compose;
    let text = std::fs::read_to_string(path)
        .map_err(|e| err("BRH_CONFIG", format!("cannot read {}: {e}", path.display())))?;
    let doc: serde_norway::Value = serde_norway::from_str(&text).map_err(|e| {
        err(
            "BRH_CONFIG",
            format!("{} is not valid: {e}", path.display()),
        )
    })?;
    if compose::is_compose(path, &doc) {
        let project = compose::load(path, &|k| std::env::var(k).ok())
            .map_err(|e| err("BRH_CONFIG", e.to_string()))?;
        for w in &project.warnings {
            tracing::warn!("[CONFIG] {}: {w}", path.display());
        }
        tracing::info!(
            "[CONFIG] {}: Compose project {:?}, {} service(s)",
            path.display(),
            project.name,
            project.manifest.services.len()
        );
        return Ok((
            FileConfig::default(),
            ManifestSource::Compose(project.manifest),
        ));
    }
    let (file, text) = FileConfig::load(path)?;
    Ok((file, ManifestSource::Brh(text)))
}

/// The validated configuration of a running agent.
#[derive(Clone)]
pub struct Config {
    pub node_id: String,
    pub env: String,
    pub root: DominionRoot,
    pub forge_url: String,
    /// This host's credentials at start: its own node key and the public keys it trusts
    /// (`Shared::credentials` holds the current ones after a reload).
    pub credentials: Credentials,
    /// `BRH_CREDENTIALS_FILE`: re-read on SIGHUP.
    pub credentials_file: Option<PathBuf>,
    /// The starting timing. Unless pinned, the forge's answers replace it (docs/design.md §4.3).
    pub timing: Timing,
    /// The settings that pinned the timing (empty: follow the forge). A pinned agent refuses
    /// to run against a forge with other values instead of flapping.
    pub timing_pinned_by: Vec<&'static str>,
    pub heartbeat_enabled: bool,
    /// Heartbeats over the forge's stream when it is up (`BRH_FORGE_STREAM`).
    pub forge_stream: bool,
    pub consensus_enabled: bool,
    pub consensus_interval_ms: u64,
    pub priority: i32,
    pub listen: SocketAddr,
    pub advertise: String,
    pub allowed_origins: Vec<String>,
    pub event_log: Option<PathBuf>,
    pub clock_skew_ms: i64,
    pub insecure: bool,
    /// This federation's id (`BRH_FEDERATION`, default derived from the forge key): the
    /// `brh.federation` label of its containers.
    pub federation: String,
    /// The container layer's settings; `None` without a manifest with services (or with
    /// `BRH_RUNTIME=api`).
    pub containers: Option<ContainerSettings>,
    /// Role-change hooks; `None` when neither `BRH_ON_PROMOTE` nor `BRH_ON_DEMOTE` is set.
    pub hooks: Option<HookSettings>,
}

/// The operator's role-change hook commands (`BRH_ON_PROMOTE`, `BRH_ON_DEMOTE`) and their
/// bound (`BRH_HOOK_TIMEOUT`); `hooks.rs` runs them.
#[derive(Debug, Clone)]
pub struct HookSettings {
    pub on_promote: Option<String>,
    pub on_demote: Option<String>,
    pub timeout: Duration,
}

/// What the container layer needs from the configuration.
#[derive(Debug, Clone)]
pub struct ContainerSettings {
    pub manifest: Manifest,
    pub demote_policy: DemotePolicy,
    pub recovery: bool,
    pub chaos: Option<(Duration, f64)>,
    pub stop_timeout: Duration,
    /// Lifetime of each container's `BRH_TOKEN` (the original's `service_ttl_minutes`).
    pub token_ttl: Duration,
}

type DurFn<'a> = dyn Fn(&'static str, &Option<String>, &Option<serde_norway::Value>, u64) -> Result<u64, ConfigError>
    + 'a;

/// The run arguments the container layer reads.
struct ContainerArgs<'a> {
    runtime: Option<&'a str>,
    demote_policy: Option<&'a str>,
    recovery_enabled: Option<bool>,
    chaos_enabled: Option<bool>,
    chaos_interval: &'a Option<String>,
    kill_prob: Option<f64>,
    stop_timeout: &'a Option<String>,
}

fn container_settings(
    args: ContainerArgs<'_>,
    file: &FileConfig,
    source: ManifestSource,
    dur: &DurFn<'_>,
) -> Result<Option<ContainerSettings>, ConfigError> {
    // Checked even when there is nothing to run: a typo must not wait for the first service.
    let demote_policy = match args.demote_policy {
        None => DemotePolicy::Relinquish,
        Some(p) => p.parse().map_err(|m: String| err("BRH_DEMOTE_POLICY", m))?,
    };
    let stop_timeout = dur("BRH_STOP_TIMEOUT", args.stop_timeout, &None, 10_000)?;
    match args.runtime {
        None | Some("") | Some("docker") => {}
        Some("api") => return Ok(None),
        Some(other) => {
            return Err(err(
                "BRH_RUNTIME",
                format!("{other:?} is not a runtime (docker, or api for no containers)"),
            ))
        }
    }
    let manifest = match source {
        ManifestSource::None => Manifest::default(),
        ManifestSource::Brh(text) if text.is_empty() => Manifest::default(),
        ManifestSource::Brh(text) => {
            Manifest::parse(&text).map_err(|e| err("BRH_CONFIG", e.to_string()))?
        }
        ManifestSource::Compose(m) => m,
    };
    if manifest.services.is_empty() {
        return Ok(None);
    }
    let chaos_file = file.chaos.as_ref();
    let chaos_enabled = args
        .chaos_enabled
        .or(chaos_file.and_then(|c| c.enabled))
        .unwrap_or(false);
    let chaos = if chaos_enabled {
        let interval = dur(
            "BRH_CHAOS_INTERVAL",
            args.chaos_interval,
            &chaos_file.and_then(|c| c.interval.clone()),
            600_000,
        )?;
        if interval < 100 {
            return Err(err("BRH_CHAOS_INTERVAL", "must be at least 100 ms"));
        }
        let p = args
            .kill_prob
            .or(chaos_file.and_then(|c| c.probability))
            .unwrap_or(0.15);
        if !(0.0..=1.0).contains(&p) {
            return Err(err("BRH_KILL_PROB", "must be between 0 and 1"));
        }
        Some((Duration::from_millis(interval), p))
    } else {
        None
    };
    Ok(Some(ContainerSettings {
        manifest,
        demote_policy,
        recovery: args.recovery_enabled.unwrap_or(true),
        chaos,
        stop_timeout: Duration::from_millis(stop_timeout),
        token_ttl: Duration::from_secs(180 * 60),
    }))
}

impl std::fmt::Debug for Config {
    // Hand-written so that the seal can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("node_id", &self.node_id)
            .field("env", &self.env)
            .field("forge_url", &self.forge_url)
            .field("node_key", &"<redacted>")
            .field("timing", &self.timing)
            .field("priority", &self.priority)
            .field("listen", &self.listen)
            .field("federation", &self.federation)
            .finish_non_exhaustive()
    }
}

/// `BRH_API_ADVERTISE` must be an absolute http(s) URL peers and operators can reach.
fn check_advertise(a: &str) -> Result<String, ConfigError> {
    let a = a.trim().trim_end_matches('/');
    let rest = a
        .strip_prefix("http://")
        .or_else(|| a.strip_prefix("https://"));
    let ok = rest.is_some_and(|host| {
        !host.is_empty()
            && !host.starts_with(':')
            && !host.contains(['?', '#', ' ', '@'])
            && a.len() <= 256
    });
    if ok {
        Ok(a.to_string())
    } else {
        Err(err(
            "BRH_API_ADVERTISE",
            format!("{a:?} is not an http(s)://host[:port] URL"),
        ))
    }
}

/// A host's credentials, as `brh-agent enroll NODE` prints them.
#[derive(Debug, Args, Clone, Default)]
pub struct KeyArgs {
    /// This node's own key (64 hex digits, or GENERATION:HEX after a re-enrolment; never
    /// logged): signs its requests to the forge and checks the forge's answers to it. It
    /// speaks for this node in this env only. `brh-agent enroll NODE` prints it.
    #[arg(long, env = "BRH_NODE_KEY", hide_env_values = true)]
    pub node_key: Option<String>,
    /// The forge's public key (64 hex digits): checks roots and public views. Public.
    #[arg(long, env = "BRH_FORGE_KEY")]
    pub forge_key: Option<String>,
    /// The top operator's public key (64 hex digits): checks operator requests to this
    /// agent's API (deploy, restart, drain, switchover). Public.
    #[arg(long, env = "BRH_OPERATOR_KEY")]
    pub operator_key: Option<String>,
    /// Compatibility for one release: run with `DOMINION_SEAL` (the federation's root secret)
    /// on this host instead of its own credentials, deriving them. Whoever reads this host's
    /// environment then owns the fleet; enrol the host instead (`brh-agent enroll NODE`).
    #[arg(
        long,
        env = "BRH_LEGACY_SEAL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub legacy_seal: Option<bool>,
}

/// What a running agent holds: its own key, and public keys.
#[derive(Clone)]
pub struct Credentials {
    pub node_key: [u8; 32],
    /// The node key's generation (0 until the node is revoked and re-enrolled).
    pub key_generation: u32,
    pub forge_key: ed25519_dalek::VerifyingKey,
    pub operator_key: ed25519_dalek::VerifyingKey,
    /// Derived from the seal on this host (`--legacy-seal` or `--insecure-dev`).
    pub from_seal: bool,
}

impl Credentials {
    /// Everything a node derives from the seal (what `enroll` prints, and what a legacy host
    /// computes for itself).
    pub fn derive(seal: &[u8], env: &str, node: &str) -> Self {
        Self::derive_generation(seal, env, node, 0)
    }

    /// The same, for generation `generation` of the node key (a re-enrolment after a
    /// revocation).
    pub fn derive_generation(seal: &[u8], env: &str, node: &str, generation: u32) -> Self {
        use brh_shared::keys;
        Credentials {
            node_key: keys::node_key_gen(seal, env, node, generation),
            key_generation: generation,
            forge_key: keys::forge_signing_key(seal).verifying_key(),
            operator_key: keys::operator_signing_key(seal).verifying_key(),
            from_seal: true,
        }
    }

    /// The keys this node checks the forge's word with.
    pub fn view_keys(&self, node: &str) -> crate::role::ViewKeys {
        crate::role::ViewKeys {
            node: Some((node.into(), self.node_key)),
            forge: self.forge_key,
        }
    }
}

/// A public key setting: 64 hex digits, or an error naming the variable.
pub fn public_key(
    setting: &'static str,
    v: &str,
) -> Result<ed25519_dalek::VerifyingKey, ConfigError> {
    brh_shared::keys::parse_public(v).ok_or_else(|| {
        err(
            setting,
            "must be an Ed25519 public key: 64 lowercase hex digits",
        )
    })
}

impl KeyArgs {
    /// The forge's public key when it is known: `BRH_FORGE_KEY`, else derived from `seal`.
    pub fn forge_key(
        &self,
        seal: Option<&[u8]>,
    ) -> Result<Option<ed25519_dalek::VerifyingKey>, ConfigError> {
        match (&self.forge_key, seal) {
            (Some(k), _) => public_key("BRH_FORGE_KEY", k).map(Some),
            (None, Some(seal)) => Ok(Some(
                brh_shared::keys::forge_signing_key(seal).verifying_key(),
            )),
            (None, None) => Ok(None),
        }
    }

    /// A running agent's credentials. The host's own (`BRH_NODE_KEY`, `BRH_FORGE_KEY`,
    /// `BRH_OPERATOR_KEY`) unless it runs with the seal: only behind `--legacy-seal` (or the
    /// public `--insecure-dev` seal), because the seal on a host makes that host the fleet.
    pub fn resolve(
        &self,
        seal: &SealArgs,
        env: Option<&str>,
        node: &str,
    ) -> Result<(Credentials, Option<Vec<u8>>), ConfigError> {
        let insecure = seal.insecure_dev.unwrap_or(false);
        let has_seal = seal.seal.as_deref().is_some_and(|s| !s.is_empty());
        match &self.node_key {
            Some(k) => {
                if has_seal {
                    return Err(err(
                        "DOMINION_SEAL",
                        "set next to BRH_NODE_KEY: a host needs only its own credentials; unset DOMINION_SEAL (the federation's root secret) on this host",
                    ));
                }
                let (key_generation, node_key) = brh_shared::keys::parse_node_credential(k)
                    .ok_or_else(|| {
                        err(
                            "BRH_NODE_KEY",
                            "must be 64 lowercase hex digits, or GENERATION:HEX after a \
                             re-enrolment (as `brh-agent enroll` prints it)",
                        )
                    })?;
                let need = |setting: &'static str, v: &Option<String>| {
                    let v = v.as_deref().ok_or_else(|| {
                        err(setting, "missing: `brh-agent enroll NODE` prints it with the node key")
                    })?;
                    public_key(setting, v)
                };
                Ok((
                    Credentials {
                        node_key,
                        key_generation,
                        forge_key: need("BRH_FORGE_KEY", &self.forge_key)?,
                        operator_key: need("BRH_OPERATOR_KEY", &self.operator_key)?,
                        from_seal: false,
                    },
                    None,
                ))
            }
            None if has_seal && !insecure && !self.legacy_seal.unwrap_or(false) => Err(err(
                "BRH_NODE_KEY",
                "missing, and this host has DOMINION_SEAL, the federation's root secret: whoever reads this host's environment would own the fleet. Give the host its own credentials (`brh-agent enroll NODE` on the operator's machine prints them) and unset DOMINION_SEAL, or pass --legacy-seal for this release",
            )),
            None if has_seal || insecure => {
                let seal = resolve_seal(seal.seal.as_deref(), insecure)?;
                // The root's env decides; `env` is only known once the root is read.
                let env = env.ok_or_else(|| err("BRH_ENV", "missing"))?;
                Ok((Credentials::derive(&seal, env, node), Some(seal)))
            }
            None => Err(err(
                "BRH_NODE_KEY",
                "missing: every host needs its own credentials; `brh-agent enroll NODE`, run where DOMINION_SEAL is, prints them",
            )),
        }
    }
}

/// The federation's root secret, for the forge and the operator's commands.
#[derive(Debug, Args, Clone, Default)]
pub struct SealArgs {
    /// The federation's root secret (never logged): the forge's and the top operator's. A
    /// host needs it only with --legacy-seal; `enroll`, `root generate` and the operator
    /// commands derive what they sign with from it.
    #[arg(long, env = "DOMINION_SEAL", hide_env_values = true)]
    pub seal: Option<String>,
    /// Use a public, well-known seal when `DOMINION_SEAL` is unset. Development only: anyone
    /// can sign.
    #[arg(
        long,
        env = "BRH_INSECURE_DEV",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub insecure_dev: Option<bool>,
}

impl SealArgs {
    /// The seal, or an error naming `DOMINION_SEAL`.
    pub fn required(&self) -> anyhow::Result<Vec<u8>> {
        Ok(resolve_seal(
            self.seal.as_deref(),
            self.insecure_dev.unwrap_or(false),
        )?)
    }

    /// The seal when one was given.
    pub fn optional(&self) -> Option<Vec<u8>> {
        self.required().ok()
    }
}

/// Reads the seal (or the insecure development seal). Shared by `run` and the clients.
pub fn resolve_seal(seal: Option<&str>, insecure: bool) -> Result<Vec<u8>, ConfigError> {
    match seal {
        Some(s) if !s.is_empty() => Ok(s.as_bytes().to_vec()),
        _ if insecure => Ok(INSECURE_DEV_SEAL.as_bytes().to_vec()),
        _ => Err(err(
            "DOMINION_SEAL",
            "missing: set the federation secret (or pass --insecure-dev for local development)",
        )),
    }
}

/// Turns a checked root (and an optional override) into the forge's base URL.
pub fn forge_base_url(root: &DominionRoot, over: Option<&str>) -> Result<String, ConfigError> {
    match over {
        None => Ok(root.forge_base_url()),
        Some(u) => check_forge_url(u),
    }
}

/// `BRH_FORGE_URL`: `http(s)://host[:port][/path]`, no query; or several, comma-separated
/// (forge replicas, tried in order: see [`crate::forge_urls`]). Returns the list normalized
/// (`a,b`, no trailing slashes).
pub fn check_forge_url(list: &str) -> Result<String, ConfigError> {
    let mut urls = Vec::new();
    for (i, u) in list.split(',').enumerate() {
        let u = u.trim().trim_end_matches('/');
        let ok = (u.starts_with("http://") || u.starts_with("https://"))
            && !u.contains('?')
            && !u.contains('#')
            && !u.contains(char::is_whitespace)
            && u.len() > "https://".len();
        if !ok {
            let which = if list.contains(',') {
                format!("entry {} ({u:?}) ", i + 1)
            } else {
                String::new()
            };
            return Err(err(
                "BRH_FORGE_URL",
                format!(
                    "{which}must be http(s)://host[:port][/path] without query \
                     (several forge replicas: URL,URL,…)"
                ),
            ));
        }
        if urls.contains(&u) {
            return Err(err("BRH_FORGE_URL", format!("{u} is listed twice")));
        }
        urls.push(u);
    }
    Ok(urls.join(","))
}

/// The settings an enrolment file carries (`brh-agent enroll NODE` prints them).
const ENROLMENT_SETTINGS: [&str; 8] = [
    "BRH_NODE_ID",
    "BRH_ENV",
    "FORGE_DOMINION_ROOT",
    "BRH_FORGE_URL",
    "BRH_FORGE_KEY",
    "BRH_OPERATOR_KEY",
    "BRH_NODE_KEY",
    "BRH_FEDERATION",
];

/// Reads an enrolment file: `KEY='value'` lines (comments and blank lines allowed). A
/// setting that is not an enrolment's is refused, so a typo is not silently ignored.
pub fn read_enrolment(path: &std::path::Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let setting = "BRH_CREDENTIALS_FILE";
    let iter = dotenvy::from_path_iter(path)
        .map_err(|e| err(setting, format!("cannot read {}: {e}", path.display())))?;
    let mut out = BTreeMap::new();
    for item in iter {
        let (k, v) = item.map_err(|e| err(setting, format!("{}: {e}", path.display())))?;
        if !ENROLMENT_SETTINGS.contains(&k.as_str()) {
            return Err(err(
                setting,
                format!(
                    "{}: {k} is not an enrolment setting (known: {})",
                    path.display(),
                    ENROLMENT_SETTINGS.join(", ")
                ),
            ));
        }
        out.insert(k, v);
    }
    Ok(out)
}

impl RunArgs {
    /// The enrolment file's values, over what the environment and flags gave.
    fn apply_enrolment(&mut self, m: &BTreeMap<String, String>) {
        let set = |slot: &mut Option<String>, key: &str| {
            if let Some(v) = m.get(key) {
                *slot = Some(v.clone());
            }
        };
        set(&mut self.node_id, "BRH_NODE_ID");
        set(&mut self.env, "BRH_ENV");
        set(&mut self.forge_root, "FORGE_DOMINION_ROOT");
        set(&mut self.forge_url, "BRH_FORGE_URL");
        set(&mut self.federation, "BRH_FEDERATION");
        set(&mut self.keys.node_key, "BRH_NODE_KEY");
        set(&mut self.keys.forge_key, "BRH_FORGE_KEY");
        set(&mut self.keys.operator_key, "BRH_OPERATOR_KEY");
    }
}

impl Config {
    /// Re-reads `BRH_CREDENTIALS_FILE` (on SIGHUP): the new credentials, checked as at start.
    /// The file must name the same node, env and federation; its root, if any, must be signed
    /// by the new forge key. Nothing else is re-read.
    pub fn reload_credentials(&self, now_s: u64) -> Result<Credentials, ConfigError> {
        let path = self.credentials_file.as_deref().ok_or_else(|| {
            err(
                "BRH_CREDENTIALS_FILE",
                "not set: the agent has no file to reload its credentials from",
            )
        })?;
        let m = read_enrolment(path)?;
        for (key, mine) in [("BRH_NODE_ID", &self.node_id), ("BRH_ENV", &self.env)] {
            if let Some(v) = m.get(key).filter(|v| *v != mine) {
                return Err(err(
                    key,
                    format!("the file names {v:?}, this agent is {mine:?}: restart it to change"),
                ));
            }
        }
        let keys = KeyArgs {
            node_key: m.get("BRH_NODE_KEY").cloned(),
            forge_key: m.get("BRH_FORGE_KEY").cloned(),
            operator_key: m.get("BRH_OPERATOR_KEY").cloned(),
            legacy_seal: None,
        };
        let (c, _) = keys.resolve(&SealArgs::default(), Some(&self.env), &self.node_id)?;
        if let Some(text) = m.get("FORGE_DOMINION_ROOT") {
            let root =
                DominionRoot::parse(text).map_err(|e| err("FORGE_DOMINION_ROOT", e.to_string()))?;
            root.verify(
                RootKey::Forge(&c.forge_key),
                now_s,
                DEFAULT_EPOCH_SKEW_S,
                None,
            )
            .map_err(|e| err("FORGE_DOMINION_ROOT", e.to_string()))?;
            if root.env != self.env {
                return Err(err(
                    "FORGE_DOMINION_ROOT",
                    format!("names env {:?}, this agent is in {:?}", root.env, self.env),
                ));
            }
        }
        let federation = federation_id(m.get("BRH_FEDERATION").map(String::as_str), &c.forge_key)?;
        if federation != self.federation {
            return Err(err(
                "BRH_FEDERATION",
                format!(
                    "would become {federation} (was {}): a federation keeps its id across a \
                     rotation; put BRH_FEDERATION='{}' in the file",
                    self.federation, self.federation
                ),
            ));
        }
        Ok(c)
    }

    /// Resolves and validates. `now_s` is the wall clock, for the root's epoch check.
    pub fn resolve(args: RunArgs, now_s: u64) -> Result<Config, ConfigError> {
        let mut args = args;
        if let Some(path) = args.credentials_file.clone() {
            let m = read_enrolment(&path)?;
            args.apply_enrolment(&m);
        }
        // `--config`, else a Compose file in the working directory (as `docker compose` finds
        // it), else no services.
        let config_path = args
            .config
            .clone()
            .or_else(crate::containers::compose::default_file);
        let (file, source) = match &config_path {
            Some(p) => load_config(p)?,
            None => (FileConfig::default(), ManifestSource::None),
        };
        let hb = &file.runtime.federation.heartbeat;
        let cons = file
            .runtime
            .federation
            .consensus
            .as_ref()
            .or(file.consensus.as_ref());
        if let Some(m) = cons.and_then(|c| c.election_method.as_deref()) {
            if m != "lease" && m != "highest_epoch" {
                return Err(err(
                    "consensus.election_method",
                    format!("{m:?} is not known (the forge decides; use lease)"),
                ));
            }
        }

        let node_id = args
            .node_id
            .ok_or_else(|| err("BRH_NODE_ID", "missing: every agent needs a unique node id"))?;
        validate_id(&node_id).map_err(|e| err("BRH_NODE_ID", e.to_string()))?;

        let insecure = args.seal.insecure_dev.unwrap_or(false);

        let root_text = args
            .forge_root
            .ok_or_else(|| err("FORGE_DOMINION_ROOT", "missing: the signed forge address"))?;
        let root = DominionRoot::parse(&root_text)
            .map_err(|e| err("FORGE_DOMINION_ROOT", e.to_string()))?;
        let (credentials, seal) = args.keys.resolve(&args.seal, Some(&root.env), &node_id)?;
        let skew = args.epoch_skew_seconds.unwrap_or(DEFAULT_EPOCH_SKEW_S);
        let key = match &seal {
            Some(seal) => RootKey::Seal(seal),
            None => RootKey::Forge(&credentials.forge_key),
        };
        root.verify(key, now_s, skew, None)
            .map_err(|e| err("FORGE_DOMINION_ROOT", e.to_string()))?;
        let env = match args.env {
            Some(e) if e != root.env => {
                return Err(err(
                    "BRH_ENV",
                    format!("{e:?} differs from the root's env {:?}", root.env),
                ))
            }
            _ => root.env.clone(),
        };
        let forge_url = forge_base_url(&root, args.forge_url.as_deref())?;
        let federation = federation_id(args.federation.as_deref(), &credentials.forge_key)?;
        if let Some(ca) = &args.forge_ca {
            crate::forge_ca::trust_forge_ca(ca).map_err(|m| err("BRH_FORGE_CA", m))?;
        }

        let dur = |setting: &'static str,
                   flag: &Option<String>,
                   file: &Option<serde_norway::Value>,
                   default: u64|
         -> Result<u64, ConfigError> {
            match (flag, file) {
                (Some(s), _) => parse_duration_ms(s).map_err(|m| err(setting, m)),
                (None, Some(v)) => yaml_duration(v).map_err(|m| err(setting, m)),
                (None, None) => Ok(default),
            }
        };
        let interval = dur(
            "BRH_HEARTBEAT_INTERVAL",
            &args.heartbeat_interval,
            &hb.interval,
            Timing::DEFAULT.heartbeat_interval_ms,
        )?;
        // Default ttl follows the interval (3 ×: the default profile's 15 s when the interval is
        // the default) so that setting only the interval stays valid.
        let default_ttl = if interval == Timing::DEFAULT.heartbeat_interval_ms {
            Timing::DEFAULT.lease_ttl_ms
        } else {
            interval.saturating_mul(3)
        };
        let ttl = dur("BRH_LEASE_TTL", &args.lease_ttl, &hb.ttl, default_ttl)?;
        let timing = Timing {
            heartbeat_interval_ms: interval,
            lease_ttl_ms: ttl,
        };
        let timing_pinned_by = [
            (args.heartbeat_interval.is_some(), "BRH_HEARTBEAT_INTERVAL"),
            (args.lease_ttl.is_some(), "BRH_LEASE_TTL"),
            (hb.interval.is_some(), "the manifest's heartbeat.interval"),
            (hb.ttl.is_some(), "the manifest's heartbeat.ttl"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        timing.validate().map_err(|e| {
            let setting = match e {
                brh_shared::timing::TimingError::HeartbeatTooShort { .. } => {
                    "BRH_HEARTBEAT_INTERVAL"
                }
                _ => "BRH_LEASE_TTL",
            };
            err(setting, e.to_string())
        })?;
        let consensus_interval_ms = dur(
            "BRH_CONSENSUS_INTERVAL",
            &args.consensus_interval,
            &cons.and_then(|c| c.interval.clone()),
            DEFAULT_CONSENSUS_INTERVAL_MS,
        )?;
        if consensus_interval_ms < 1000 {
            return Err(err("BRH_CONSENSUS_INTERVAL", "must be at least 1 s"));
        }

        let listen = args
            .listen
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
        let advertise = match args.advertise {
            Some(a) => check_advertise(&a)?,
            None => format!("http://{listen}"),
        };
        let allowed_origins = parse_origins(args.allowed_origins.as_deref().unwrap_or(""))?;
        let containers = container_settings(
            ContainerArgs {
                runtime: args.runtime.as_deref(),
                demote_policy: args.demote_policy.as_deref(),
                recovery_enabled: args.recovery_enabled,
                chaos_enabled: args.chaos_enabled,
                chaos_interval: &args.chaos_interval,
                kill_prob: args.kill_prob,
                stop_timeout: &args.stop_timeout,
            },
            &file,
            source,
            &dur,
        )?;
        let hook_timeout = dur("BRH_HOOK_TIMEOUT", &args.hook_timeout, &None, 30_000)?;
        if hook_timeout == 0 {
            return Err(err("BRH_HOOK_TIMEOUT", "must be more than 0"));
        }
        let command = |setting: &'static str, c: Option<String>| match c {
            Some(c) if c.trim().is_empty() => Err(err(setting, "is empty (unset it for no hook)")),
            c => Ok(c),
        };
        let on_promote = command("BRH_ON_PROMOTE", args.on_promote)?;
        let on_demote = command("BRH_ON_DEMOTE", args.on_demote)?;
        let hooks = (on_promote.is_some() || on_demote.is_some()).then(|| HookSettings {
            on_promote,
            on_demote,
            timeout: Duration::from_millis(hook_timeout),
        });
        Ok(Config {
            node_id,
            env,
            root,
            forge_url,
            credentials,
            credentials_file: args.credentials_file,
            timing,
            timing_pinned_by,
            heartbeat_enabled: args.heartbeat_enabled.or(hb.enabled).unwrap_or(true),
            forge_stream: args.forge_stream.unwrap_or(true),
            consensus_enabled: args
                .consensus_enabled
                .or(cons.and_then(|c| c.enabled))
                .unwrap_or(true),
            consensus_interval_ms,
            priority: args
                .priority
                .or(file.runtime.federation.priority)
                .unwrap_or(0),
            listen,
            advertise,
            allowed_origins,
            event_log: args.event_log,
            clock_skew_ms: args.test_clock_skew_ms.unwrap_or(0),
            insecure,
            federation,
            containers,
            hooks,
        })
    }
}

/// `BRH_ALLOWED_ORIGINS`: comma-separated (trimmed, unlike the original); empty means `*`.
pub fn parse_origins(s: &str) -> Result<Vec<String>, ConfigError> {
    let v: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(String::from)
        .collect();
    for o in &v {
        if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
            return Err(err(
                "BRH_ALLOWED_ORIGINS",
                format!("{o:?} is not an origin (http(s)://host[:port] or *)"),
            ));
        }
    }
    Ok(v)
}

/// `BRH_FEDERATION`: the federation's id on its containers (`brh.federation`). Unset: derived
/// from the forge key (`keys::federation_id`, 16 lowercase hex digits); set (after a rotation
/// of the root secret, to keep the old id): 16 lowercase hex digits or an id.
pub fn federation_id(
    setting: Option<&str>,
    forge_key: &ed25519_dalek::VerifyingKey,
) -> Result<String, ConfigError> {
    let Some(id) = setting else {
        return Ok(brh_shared::keys::federation_id(forge_key));
    };
    validate_id(id).map_err(|e| {
        err(
            "BRH_FEDERATION",
            format!(
                "{id:?} is not a federation id ({e}): use 16 lowercase hex digits, as \
                 `brh-agent enroll` prints them, or an id of at most 63 letters, digits, '.', \
                 '_' and '-'"
            ),
        )
    })?;
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use brh_shared::root::SCHEME_HTTP;

    const NOW: u64 = 1_763_900_000;

    fn root(seal: &str) -> String {
        let forge = brh_shared::keys::forge_signing_key(seal.as_bytes());
        DominionRoot::sign(&forge, SCHEME_HTTP, "127.0.0.1:8787", "dev", NOW)
            .unwrap()
            .to_string()
    }

    /// An enrolled host's settings, from seal `seal`.
    fn keys(seal: &str, node: &str) -> KeyArgs {
        let c = Credentials::derive(seal.as_bytes(), "dev", node);
        KeyArgs {
            node_key: Some(brh_shared::hex::encode(&c.node_key)),
            forge_key: Some(brh_shared::keys::public_hex(&c.forge_key)),
            operator_key: Some(brh_shared::keys::public_hex(&c.operator_key)),
            legacy_seal: None,
        }
    }

    fn args() -> RunArgs {
        RunArgs {
            node_id: Some("n1".into()),
            forge_root: Some(root("s")),
            keys: keys("s", "n1"),
            ..RunArgs::default()
        }
    }

    fn with_seal(seal: &str) -> SealArgs {
        SealArgs {
            seal: Some(seal.into()),
            ..SealArgs::default()
        }
    }

    fn setting(r: Result<Config, ConfigError>) -> &'static str {
        r.expect_err("should be refused").setting
    }

    #[test]
    fn defaults() {
        let c = Config::resolve(args(), NOW).unwrap();
        assert_eq!(c.timing, Timing::DEFAULT);
        assert_eq!(c.forge_url, "http://127.0.0.1:8787");
        assert_eq!(
            check_forge_url(" http://a:1/, https://b/x ").unwrap(),
            "http://a:1,https://b/x"
        );
        for bad in [
            "http://a,",
            "http://a,ftp://b",
            "http://a,http://a",
            "http://a b",
        ] {
            assert!(check_forge_url(bad).is_err(), "{bad}");
        }
        assert_eq!(c.env, "dev");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(c.heartbeat_enabled && c.consensus_enabled);
        let node_key = brh_shared::hex::encode(&c.credentials.node_key);
        assert!(
            !format!("{c:?}").contains(&node_key),
            "the node key must not be printed"
        );
        assert!(!c.credentials.from_seal);
    }

    /// The seal on a host is refused unless asked for by name (`--legacy-seal`), and never
    /// mixed with a node key.
    #[test]
    fn a_host_runs_on_its_own_credentials() {
        let legacy = |flag: Option<bool>| RunArgs {
            keys: KeyArgs {
                legacy_seal: flag,
                ..KeyArgs::default()
            },
            seal: with_seal("s"),
            ..args()
        };
        let e = Config::resolve(legacy(None), NOW).unwrap_err();
        assert_eq!(e.setting, "BRH_NODE_KEY");
        assert!(e.message.contains("--legacy-seal"), "{e}");
        let c = Config::resolve(legacy(Some(true)), NOW).unwrap();
        assert!(c.credentials.from_seal);
        assert_eq!(
            c.credentials.node_key,
            Config::resolve(args(), NOW).unwrap().credentials.node_key,
            "a legacy host derives the key `enroll` would give it"
        );
        let both = RunArgs {
            seal: with_seal("s"),
            ..args()
        };
        assert_eq!(setting(Config::resolve(both, NOW)), "DOMINION_SEAL");
        for (missing, a) in [
            (
                "BRH_FORGE_KEY",
                RunArgs {
                    keys: KeyArgs {
                        forge_key: None,
                        ..keys("s", "n1")
                    },
                    ..args()
                },
            ),
            (
                "BRH_OPERATOR_KEY",
                RunArgs {
                    keys: KeyArgs {
                        operator_key: None,
                        ..keys("s", "n1")
                    },
                    ..args()
                },
            ),
            (
                "BRH_NODE_KEY",
                RunArgs {
                    keys: KeyArgs {
                        node_key: Some("zz".into()),
                        ..keys("s", "n1")
                    },
                    ..args()
                },
            ),
        ] {
            assert_eq!(setting(Config::resolve(a, NOW)), missing);
        }
    }

    #[test]
    fn refusals_name_the_setting() {
        let a = RunArgs {
            keys: KeyArgs::default(),
            ..args()
        };
        assert_eq!(setting(Config::resolve(a, NOW)), "BRH_NODE_KEY");
        // A root the forge key did not sign (another federation's).
        let a = RunArgs {
            keys: keys("other", "n1"),
            ..args()
        };
        assert_eq!(setting(Config::resolve(a, NOW)), "FORGE_DOMINION_ROOT");
        assert_eq!(
            setting(Config::resolve(args(), NOW - 7200)),
            "FORGE_DOMINION_ROOT"
        );
        let a = RunArgs {
            heartbeat_interval: Some("5".into()),
            lease_ttl: Some("10".into()),
            ..args()
        };
        assert_eq!(setting(Config::resolve(a, NOW)), "BRH_LEASE_TTL");
        let a = RunArgs {
            heartbeat_interval: Some("10ms".into()),
            ..args()
        };
        assert_eq!(setting(Config::resolve(a, NOW)), "BRH_HEARTBEAT_INTERVAL");
        let a = RunArgs {
            env: Some("prod".into()),
            ..args()
        };
        assert_eq!(setting(Config::resolve(a, NOW)), "BRH_ENV");
        let a = RunArgs {
            node_id: Some("bad id".into()),
            ..args()
        };
        assert_eq!(setting(Config::resolve(a, NOW)), "BRH_NODE_ID");
        let a = RunArgs {
            forge_url: Some("ftp://x".into()),
            ..args()
        };
        assert_eq!(setting(Config::resolve(a, NOW)), "BRH_FORGE_URL");
        let a = RunArgs {
            allowed_origins: Some("evil".into()),
            ..args()
        };
        assert_eq!(setting(Config::resolve(a, NOW)), "BRH_ALLOWED_ORIGINS");
        let a = RunArgs {
            seal: SealArgs {
                insecure_dev: Some(true),
                ..SealArgs::default()
            },
            keys: KeyArgs::default(),
            forge_root: Some(root(INSECURE_DEV_SEAL)),
            ..args()
        };
        assert!(Config::resolve(a, NOW).unwrap().insecure);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("5"), Ok(5000));
        assert_eq!(parse_duration_ms("0.5"), Ok(500));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("3s"), Ok(3000));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert!(parse_duration_ms("-1").is_err());
        assert!(parse_duration_ms("x").is_err());
        assert!(parse_duration_ms("1e30").is_err());
    }

    #[test]
    fn file_fills_gaps_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("brh-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bridge.runtime.yaml");
        std::fs::write(
            &p,
            "provider: {kind: docker}\nruntime:\n  federation:\n    heartbeat: {enabled: true, interval: 1, ttl: \"3s\", endpoint: x}\n    priority: 7\nconsensus: {enabled: false, interval: 60, election_method: highest_epoch}\nservices: {}\n",
        )
        .unwrap();
        let a = RunArgs {
            config: Some(p.clone()),
            ..args()
        };
        let c = Config::resolve(a, NOW).unwrap();
        assert_eq!(c.timing, Timing::FAST);
        assert_eq!(c.priority, 7);
        assert!(!c.consensus_enabled);
        assert_eq!(c.consensus_interval_ms, 60_000);
        let a = RunArgs {
            config: Some(p.clone()),
            priority: Some(-2),
            heartbeat_interval: Some("2".into()),
            lease_ttl: Some("6".into()),
            ..args()
        };
        let c = Config::resolve(a, NOW).unwrap();
        assert_eq!(c.priority, -2);
        assert_eq!(c.timing.heartbeat_interval_ms, 2000);
        std::fs::write(&p, "runtime: [").unwrap();
        let a = RunArgs {
            config: Some(p),
            ..args()
        };
        assert_eq!(setting(Config::resolve(a, NOW)), "BRH_CONFIG");
    }

    /// The federation's id: derived from the forge key unless set (kept across a rotation);
    /// anything that is not an id is refused, naming BRH_FEDERATION.
    #[test]
    fn the_federation_id_follows_the_forge_key_unless_set() {
        let c = Config::resolve(args(), NOW).unwrap();
        assert_eq!(
            c.federation,
            brh_shared::keys::federation_id(&c.credentials.forge_key)
        );
        assert_eq!(c.federation.len(), 16);
        let set = |v: &str| RunArgs {
            federation: Some(v.into()),
            ..args()
        };
        for ok in ["0123456789abcdef", "prod-fleet.1"] {
            assert_eq!(Config::resolve(set(ok), NOW).unwrap().federation, ok);
        }
        for bad in ["", "-x", "a b", "a=b", &"f".repeat(64)] {
            let e = Config::resolve(set(bad), NOW).unwrap_err();
            assert_eq!(e.setting, "BRH_FEDERATION", "{bad:?}");
            assert!(e.to_string().contains("BRH_FEDERATION"), "{e}");
        }
    }
}
