//! The operator's commands beside `run`: `status` (reads the forge's public endpoints, no
//! secret needed), and `switchover`, `restart`, `drain` (signed requests to the leader's API,
//! found through the forge unless `--agent` names one).
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use brh_shared::root::{DominionRoot, RootKey};
use brh_shared::route::Endpoint;
use brh_shared::wire::{LeaderView, PeerSummary};
use clap::Args;

use crate::client::{self, join};
use crate::clock;
use crate::config::{self, SealArgs};
use crate::forge_urls::ForgeUrls;

/// Where the forge is and which env to look at.
#[derive(Debug, Args, Clone, Default)]
pub struct ForgeAccess {
    /// The signed forge address (`dominion://…?env=…&epoch=…&sig=…`, from `root generate`
    /// or `.brh/up/up.env`).
    #[arg(long, env = "FORGE_DOMINION_ROOT")]
    pub forge_root: Option<String>,
    /// The forge's URL (`http(s)://host[:port]`): overrides the root's, or replaces the root
    /// for reading. Several, comma-separated (forge replicas): tried in order.
    #[arg(long, env = "BRH_FORGE_URL")]
    pub forge_url: Option<String>,
    /// The env (default: the root's env, else `dev`).
    #[arg(long, env = "BRH_ENV")]
    pub env: Option<String>,
    /// Extra CA certificates (PEM) to trust for the forge's HTTPS (a self-signed forge).
    #[arg(long, env = "BRH_FORGE_CA")]
    pub forge_ca: Option<std::path::PathBuf>,
    /// The forge's public key (64 hex): checks the root and the forge's public views
    /// without any secret. Default: derived from DOMINION_SEAL when it is set.
    #[arg(long, env = "BRH_FORGE_KEY")]
    pub forge_key: Option<String>,
}

impl ForgeAccess {
    /// `FORGE_DOMINION_ROOT`, an empty value counting as unset.
    fn root(&self) -> Option<&str> {
        self.forge_root.as_deref().filter(|v| !v.trim().is_empty())
    }

    /// `BRH_FORGE_URL`, an empty value counting as unset.
    fn url(&self) -> Option<&str> {
        self.forge_url.as_deref().filter(|v| !v.trim().is_empty())
    }
}

/// Signed requests to an agent's API.
#[derive(Debug, Args, Clone)]
pub struct CallerArgs {
    /// The agent API to call (default: the leader's, as advertised to the forge).
    #[arg(long, env = "BRH_AGENT_URL")]
    pub agent: Option<String>,
    /// A scoped operator's credential (from `brh-agent operator issue`): signs with its own
    /// key and carries its certificate. Default: the top operator's key, derived from
    /// DOMINION_SEAL.
    #[arg(long, env = "BRH_OPERATOR_CREDENTIAL", hide_env_values = true)]
    pub operator_credential: Option<String>,
    /// The caller's name, recorded in the agent's events.
    #[arg(long, env = "USER", default_value = "brh-cli")]
    pub caller: String,
}

/// Read access to one env of a forge. Answers are verified when the forge's public key is
/// known (`BRH_FORGE_KEY`, or derived from the seal).
pub struct Federation {
    /// The forge's addresses (replicas), tried in order.
    urls: ForgeUrls,
    env: String,
    keys: Option<crate::role::ViewKeys>,
    http: reqwest::Client,
}

impl Federation {
    pub fn open(f: &ForgeAccess, seal: Option<Vec<u8>>) -> anyhow::Result<Self> {
        if let Some(ca) = &f.forge_ca {
            crate::forge_ca::trust_forge_ca(ca)
                .map_err(|e| anyhow!("invalid setting BRH_FORGE_CA: {e}"))?;
        }
        let forge = match (&f.forge_key, &seal) {
            (Some(k), _) => Some(config::public_key("BRH_FORGE_KEY", k)?),
            (None, Some(seal)) => Some(brh_shared::keys::forge_signing_key(seal).verifying_key()),
            (None, None) => None,
        };
        let (base, root_env) = match (f.root(), f.url()) {
            (Some(text), over) => {
                let root = DominionRoot::parse(text)
                    .map_err(|e| anyhow!("invalid setting FORGE_DOMINION_ROOT: {e}"))?;
                let key = match (&seal, &forge) {
                    (Some(seal), _) => Some(RootKey::Seal(seal)),
                    (None, Some(pk)) => Some(RootKey::Forge(pk)),
                    (None, None) => None,
                };
                if let Some(key) = key {
                    root.verify(
                        key,
                        clock::wall_ms() / 1000,
                        config::DEFAULT_EPOCH_SKEW_S,
                        None,
                    )
                    .map_err(|e| anyhow!("invalid setting FORGE_DOMINION_ROOT: {e}"))?;
                }
                (config::forge_base_url(&root, over)?, Some(root.env))
            }
            (None, Some(url)) => (config::check_forge_url(url)?, None),
            (None, None) => bail!(
                "invalid setting FORGE_DOMINION_ROOT: missing (or give BRH_FORGE_URL to read a \
                 forge by its URL)"
            ),
        };
        let env = f.env.clone().or(root_env).unwrap_or_else(|| "dev".into());
        brh_shared::ids::validate_id(&env).map_err(|e| anyhow!("invalid setting BRH_ENV: {e}"))?;
        Ok(Federation {
            urls: ForgeUrls::parse(&base),
            env,
            keys: forge.map(|forge| crate::role::ViewKeys { node: None, forge }),
            http: client::http_client(Duration::from_secs(5)),
        })
    }

    pub fn env(&self) -> &str {
        &self.env
    }

    pub fn verified(&self) -> bool {
        self.keys.is_some()
    }

    /// The leader view; its signature is checked when the forge's key is known.
    pub async fn leader(&self) -> anyhow::Result<LeaderView> {
        let path = Endpoint::Leader.path();
        let view: LeaderView = client::get_json_any(&self.http, &self.urls, path, &self.env)
            .await
            .with_context(|| format!("cannot read the leader from the forge at {}", self.urls))?;
        if let Some(keys) = &self.keys {
            crate::role::VerifiedView::check(keys, &self.env, None, view.clone())
                .map_err(|e| anyhow!("the forge at {}: {e}", self.urls.current().1))?;
        }
        Ok(view)
    }

    /// The current leader and the API address it advertises.
    pub async fn leader_api(&self) -> anyhow::Result<(String, String)> {
        let env = &self.env;
        let leader =
            self.leader().await?.leader.ok_or_else(|| {
                anyhow!("env {env} has no leader right now (see `brh-agent status`)")
            })?;
        let api = self
            .peers()
            .await?
            .into_iter()
            .find(|p| p.node == leader)
            .and_then(|p| p.api)
            .ok_or_else(|| {
                anyhow!("the leader {leader} advertises no API address; give --agent URL")
            })?;
        Ok((api, leader))
    }

    pub async fn peers(&self) -> anyhow::Result<Vec<PeerSummary>> {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default)]
            peers: Vec<PeerSummary>,
        }
        let path = Endpoint::Peers.path();
        match client::get_json_any::<Body>(&self.http, &self.urls, path, &self.env).await {
            Ok(b) => Ok(b.peers),
            // An env no node has joined yet: no peers (the leader view says the same).
            Err(client::ClientError::Refused { status: 404, .. }) => Ok(Vec::new()),
            Err(e) => Err(anyhow::Error::new(e))
                .with_context(|| format!("cannot read the peers from the forge at {}", self.urls)),
        }
    }
}

/// `brh-agent status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub forge: ForgeAccess,
    #[command(flatten)]
    pub seal: SealArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One node's line in `status`: what the forge knows, in the operator's words.
pub fn node_role(view: &LeaderView, p: &PeerSummary) -> &'static str {
    if view.leader.as_deref() == Some(p.node.as_str()) {
        "leader"
    } else if p.alive {
        "witness"
    } else {
        "down"
    }
}

fn ago(forge_now_ms: u64, at_ms: u64) -> String {
    let s = forge_now_ms.saturating_sub(at_ms) as f64 / 1000.0;
    if s < 120.0 {
        format!("{s:.1}s ago")
    } else if s < 7200.0 {
        format!("{:.0}m ago", s / 60.0)
    } else {
        format!("{:.1}h ago", s / 3600.0)
    }
}

pub async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let fed = Federation::open(&a.forge, a.seal.optional())?;
    let view = fed.leader().await?;
    let peers = fed.peers().await?;
    if a.json {
        let nodes: Vec<_> = peers
            .iter()
            .map(|p| {
                serde_json::json!({
                    "node": p.node, "role": node_role(&view, p), "alive": p.alive,
                    "last_seen_ms": p.last_seen_ms,
                    "last_seen_ago_ms": view.issued_at_ms.saturating_sub(p.last_seen_ms),
                    "priority": p.priority, "draining": p.draining, "uptime_s": p.uptime_s,
                    "version": p.version, "api": p.api,
                })
            })
            .collect();
        let j = serde_json::json!({
            "env": view.env, "leader": view.leader, "term": view.term, "lease": view.lease,
            "peers_alive": view.peers_alive, "mode": view.mode,
            "heartbeat_interval_ms": view.heartbeat_interval_ms, "lease_ttl_ms": view.lease_ttl_ms,
            "verified": fed.verified(), "peers": nodes,
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    println!(
        "env {}  leader {}  term {}  lease {}  mode {}  timing {}ms/{}ms",
        view.env,
        view.leader.as_deref().unwrap_or("none"),
        view.term,
        if view.lease.is_some() {
            format!("{:.1}s left", view.lease_remaining_ms() as f64 / 1000.0)
        } else {
            "-".into()
        },
        view.mode,
        view.heartbeat_interval_ms,
        view.lease_ttl_ms,
    );
    if !fed.verified() {
        println!("(signatures not checked: no DOMINION_SEAL)");
    }
    println!(
        "{:<24} {:<8} {:<6} {:>10} {:>8} {:>9} {:<10} API",
        "NODE", "ROLE", "ALIVE", "LAST SEEN", "PRIORITY", "UPTIME_S", "VERSION"
    );
    for p in &peers {
        println!(
            "{:<24} {:<8} {:<6} {:>10} {:>8} {:>9} {:<10} {}",
            p.node,
            node_role(&view, p),
            if p.alive { "yes" } else { "no" },
            ago(view.issued_at_ms, p.last_seen_ms),
            format!("{}{}", p.priority, if p.draining { " (dr)" } else { "" }),
            p.uptime_s,
            p.version,
            p.api.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

/// `brh-agent switchover`.
#[derive(Debug, Args)]
pub struct SwitchoverArgs {
    /// The successor (a live, non-draining node); default: the best live candidate.
    #[arg(long, value_name = "NODE")]
    pub to: Option<String>,
    #[command(flatten)]
    pub access: LeaderAccess,
}

/// `brh-agent restart NAME` / `brh-agent drain NAME`.
#[derive(Debug, Args)]
pub struct ContainerArgs {
    /// The managed container's name (as in `GET /status` of the leader, e.g. `web-1`).
    pub name: String,
    #[command(flatten)]
    pub access: LeaderAccess,
}

/// `brh-agent deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Image reference (Docker's grammar), e.g. `registry.example.com/app:1.2`.
    #[arg(long)]
    pub image: String,
    /// The manifest service to deploy (may be left out when the manifest has one service).
    #[arg(long)]
    pub service: Option<String>,
    /// Pull policy: never, missing or always.
    #[arg(long, default_value = "missing", value_parser = ["never", "missing", "always"])]
    pub pull: String,
    /// The source branch, recorded in the agent's events (the original's `branch`).
    #[arg(long)]
    pub branch: Option<String>,
    #[command(flatten)]
    pub access: LeaderAccess,
}

pub async fn deploy(a: DeployArgs) -> anyhow::Result<()> {
    crate::containers::reference::validate(&a.image)
        .map_err(|m| anyhow!("invalid --image: {m}"))?;
    let t = a.access.target().await?;
    let body = serde_json::to_vec(&serde_json::json!({
        "image": a.image, "service": a.service, "pull": a.pull, "branch": a.branch
    }))?;
    // A deploy health-checks every replica: allow it time.
    let j = a
        .access
        .call(&t, "/deploy", body, Duration::from_secs(600))
        .await?;
    println!("{j}");
    if j.get("status").and_then(|s| s.as_str()) == Some("ignored") {
        bail!(
            "the agent at {} is not the leader; send the deploy to the leader",
            t.agent
        );
    }
    Ok(())
}

/// How an operator command reaches the leader's API: the forge (to find it), the secret (or
/// the API key) to sign with, and the caller's name.
#[derive(Debug, Args)]
pub struct LeaderAccess {
    #[command(flatten)]
    pub forge: ForgeAccess,
    #[command(flatten)]
    pub seal: SealArgs,
    #[command(flatten)]
    pub caller: CallerArgs,
}

/// The agent a command talks to.
struct Target {
    /// Its API base URL.
    agent: String,
    /// Its node id, when the forge named it (else the client reads its `/health`).
    node: Option<String>,
    env: String,
}

impl LeaderAccess {
    /// `--agent`, or the leader's advertised API as the forge lists it.
    async fn target(&self) -> anyhow::Result<Target> {
        let (forge, caller) = (&self.forge, &self.caller);
        let given = caller
            .agent
            .as_deref()
            .map(|a| a.trim_end_matches('/').to_string());
        let (agent, node, env) = match given {
            // Only an agent URL: no forge to ask; the env is BRH_ENV's.
            Some(agent) if forge.root().is_none() && forge.url().is_none() => (
                agent,
                None,
                forge.env.clone().unwrap_or_else(|| "dev".into()),
            ),
            given => {
                let fed = Federation::open(forge, self.seal.optional())?;
                let env = fed.env().to_string();
                match given {
                    Some(agent) => (agent, None, env),
                    None => {
                        let (agent, leader) = fed.leader_api().await?;
                        (agent, Some(leader), env)
                    }
                }
            }
        };
        Ok(Target { agent, node, env })
    }

    /// The operator's signer: a scoped credential, else the top operator's key.
    fn signer(&self) -> anyhow::Result<crate::auth::OperatorSigner> {
        if let Some(text) = &self.caller.operator_credential {
            let c = brh_shared::operator::Credential::parse(text)
                .map_err(|e| anyhow!("invalid setting BRH_OPERATOR_CREDENTIAL: {e}"))?;
            return Ok(crate::auth::OperatorSigner::scoped(c));
        }
        let s = self.seal.required().map_err(|_| {
            anyhow!(
                "invalid setting BRH_OPERATOR_CREDENTIAL: missing (give an operator credential \
                 from `brh-agent operator issue`, or DOMINION_SEAL to act as the top operator)"
            )
        })?;
        Ok(crate::auth::OperatorSigner::top(&s))
    }

    /// Posts a request to the target, signed with the operator's key.
    async fn call(
        &self,
        t: &Target,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        call(
            &t.agent,
            t.node.as_deref(),
            path,
            body,
            &self.signer()?,
            &self.caller.caller,
            timeout,
        )
        .await
    }
}

/// Posts a signed request and turns a refusal into one line naming the agent's reason.
async fn call(
    agent: &str,
    to: Option<&str>,
    path: &str,
    body: Vec<u8>,
    signer: &crate::auth::OperatorSigner,
    caller: &str,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let http = client::http_client(timeout);
    let (status, j) = client::agent_post(&http, agent, to, path, body, signer, caller).await?;
    if (200..300).contains(&status) {
        return Ok(j);
    }
    // An error body, or (a deploy rolled back: 422) the agent's whole report.
    let msg = j
        .pointer("/error/message")
        .and_then(|m| m.as_str())
        .map_or_else(|| j.to_string(), str::to_string);
    let code = j
        .pointer("/error/code")
        .or_else(|| j.get("status"))
        .and_then(|m| m.as_str())
        .unwrap_or("?");
    Err(anyhow!(
        "the agent at {agent} refused ({status} {code}): {msg}"
    ))
}

/// `brh-agent revoke NODE`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The node whose credential to revoke (its `BRH_NODE_ID`).
    pub node: String,
    /// The newest key generation to revoke: 0 (the default) is a first enrolment; after a
    /// re-enrolment with `--key-generation N`, revoke N. Every older one goes with it.
    #[arg(long, default_value_t = 0)]
    pub generation: u32,
    #[command(flatten)]
    pub forge: ForgeAccess,
    #[command(flatten)]
    pub seal: SealArgs,
    /// A scoped operator's credential with the `nodes` scope (default: the top operator's
    /// key, derived from DOMINION_SEAL).
    #[arg(long, env = "BRH_OPERATOR_CREDENTIAL", hide_env_values = true)]
    pub operator_credential: Option<String>,
    /// The caller's name, sent to the forge.
    #[arg(long, env = "USER", default_value = "brh-cli")]
    pub caller: String,
}

pub async fn revoke(a: RevokeArgs) -> anyhow::Result<()> {
    use brh_shared::sign::{canonical_for, Audience, SignedHeaders};
    brh_shared::ids::validate_id(&a.node).map_err(|e| anyhow!("invalid NODE: {e}"))?;
    let fed = Federation::open(&a.forge, a.seal.optional())?;
    let signer = LeaderAccess {
        forge: a.forge.clone(),
        seal: a.seal.clone(),
        caller: CallerArgs {
            agent: None,
            operator_credential: a.operator_credential.clone(),
            caller: a.caller.clone(),
        },
    }
    .signer()?;
    let caller = match signer.name() {
        Some(name) => name.to_string(),
        None if brh_shared::ids::validate_id(&a.caller).is_ok() => a.caller.clone(),
        None => "brh-cli".into(),
    };
    let path = Endpoint::Revoke.path();
    let body = serde_json::to_vec(&serde_json::json!({
        "env": fed.env(), "node": a.node, "generation": a.generation,
    }))?;
    // To each forge address in turn until one serves (a standby answers 503, a dead replica
    // not at all); each attempt signed afresh, with its own nonce.
    let mut answer = None;
    let mut unreachable = Vec::new();
    for at in fed.urls.from_current() {
        let base = fed.urls.get(at);
        let nonce = brh_shared::replay::Nonce::new(client::random_hex(8), 1);
        let ts_ms = clock::wall_ms();
        let msg = canonical_for(Audience::Forge, "POST", path, &caller, ts_ms, &nonce, &body);
        let h = SignedHeaders {
            node: caller.clone(),
            ts_ms,
            sig: brh_shared::keys::sign_hex(&signer.key, msg.as_bytes()),
            nonce,
        };
        let mut req = client::signed_post(&fed.http, join(base, path), &h, body.clone());
        if let Some(cert) = &signer.cert {
            req = req.header(brh_shared::operator::HEADER_OPERATOR, cert.to_string());
        }
        match req.send().await {
            Ok(res) if res.status().as_u16() == 503 && fed.urls.len() > 1 => {
                unreachable.push(format!("{base}: 503 (not the active replica)"));
            }
            Ok(res) => {
                answer = Some((base.to_string(), res));
                break;
            }
            Err(e) => unreachable.push(format!("{base}: {}", client::short(&e))),
        }
    }
    let Some((base, res)) = answer else {
        bail!("cannot reach the forge ({})", unreachable.join("; "));
    };
    let status = res.status().as_u16();
    let j: serde_json::Value = res.json().await.unwrap_or(serde_json::Value::Null);
    if !(200..300).contains(&status) {
        let code = j
            .pointer("/error/code")
            .and_then(|c| c.as_str())
            .unwrap_or("?");
        let msg = j
            .pointer("/error/message")
            .and_then(|m| m.as_str())
            .unwrap_or("");
        bail!("the forge at {base} refused ({status} {code}): {msg}");
    }
    let from = j.get("accepted_from").and_then(|g| g.as_u64()).unwrap_or(0);
    println!(
        "revoked node {} in env {}: the forge refuses its key generations below {from}.\n\
         To let the host back in, re-enrol it: brh-agent enroll {} --key-generation {from}",
        a.node,
        fed.env(),
        a.node
    );
    Ok(())
}

pub async fn switchover(a: SwitchoverArgs) -> anyhow::Result<()> {
    if let Some(to) = &a.to {
        brh_shared::ids::validate_id(to).map_err(|e| anyhow!("invalid --to: {e}"))?;
    }
    let t = a.access.target().await?;
    if let (Some(to), Some(leader)) = (&a.to, &t.node) {
        if to == leader {
            // Already where the operator wants it: nothing to hand over (and not an error,
            // so the command can be repeated safely).
            println!(
                "switchover: {to} already leads env {}; nothing to do",
                t.env
            );
            return Ok(());
        }
    }
    let body = match &a.to {
        Some(to) => serde_json::to_vec(&serde_json::json!({ "to": to }))?,
        None => b"{}".to_vec(),
    };
    let j = a
        .access
        .call(&t, "/switchover", body, Duration::from_secs(15))
        .await?;
    let to = j["to"].as_str().unwrap_or("?");
    // Done when the successor acts, not only when the forge granted it: the next command
    // (another switchover, a deploy) then reaches a leader that knows it leads.
    if t.node.is_some() {
        successor_acts(&a.access, to).await;
    }
    println!(
        "switchover: {} → {to} (term {})",
        j["from"].as_str().unwrap_or("?"),
        j["term"]
    );
    Ok(())
}

/// Waits (at most 5 s) until `to`, as the forge lists it, says on its `/status` that it
/// leads. Best effort: the handover itself is already done.
async fn successor_acts(access: &LeaderAccess, to: &str) {
    let http = client::http_client(Duration::from_secs(1));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Ok(t) = access.target().await {
            if t.node.as_deref() == Some(to) {
                let status = http.get(join(&t.agent, "/status")).send().await;
                if let Ok(r) = status {
                    let j: serde_json::Value = r.json().await.unwrap_or_default();
                    if j["role"] == "leader" {
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn container(action: &str, a: ContainerArgs) -> anyhow::Result<()> {
    brh_shared::ids::validate_id(&a.name).map_err(|e| anyhow!("invalid NAME: {e}"))?;
    let t = a.access.target().await?;
    // A restart waits for the container's stop timeout and its health check.
    let path = format!("/{action}/{}", a.name);
    let j = a
        .access
        .call(&t, &path, Vec::new(), Duration::from_secs(300))
        .await?;
    println!(
        "{}: {} ({})",
        j["status"].as_str().unwrap_or(action),
        j["name"].as_str().unwrap_or(&a.name),
        j["id"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `brh-agent token verify`.
#[derive(Debug, Args)]
pub struct TokenVerifyArgs {
    /// The token (default: BRH_LEASE_TOKEN, as a container sees it).
    #[arg(env = "BRH_LEASE_TOKEN")]
    pub token: String,
    /// The forge's public key (64 hex). Default: derived from DOMINION_SEAL.
    #[arg(long, env = "BRH_FORGE_KEY")]
    pub forge_key: Option<String>,
    /// Refuse a token whose term is below this: the highest term the caller has seen (the
    /// fencing rule).
    #[arg(long)]
    pub min_term: Option<u64>,
    /// Also require this env.
    #[arg(long)]
    pub env: Option<String>,
    #[command(flatten)]
    pub seal: SealArgs,
}

pub fn token_verify(a: TokenVerifyArgs) -> anyhow::Result<()> {
    let forge = match (&a.forge_key, a.seal.optional()) {
        (Some(k), _) => config::public_key("BRH_FORGE_KEY", k)?,
        (None, Some(seal)) => brh_shared::keys::forge_signing_key(&seal).verifying_key(),
        (None, None) => bail!(
            "invalid setting BRH_FORGE_KEY: missing (the forge's public key checks the token; \
             `brh-agent enroll` prints it)"
        ),
    };
    let c = brh_shared::token::verify_lease(&forge, &a.token, clock::wall_ms() / 1000).map_err(
        |e| match e {
            brh_shared::token::TokenError::Malformed => {
                anyhow!("not a lease token (brhlt1:env:holder:term:expires:sig)")
            }
            brh_shared::token::TokenError::BadSignature => {
                anyhow!("the lease token is not signed by this forge")
            }
            brh_shared::token::TokenError::Expired => anyhow!("the lease token has expired"),
        },
    )?;
    if let Some(env) = &a.env {
        if *env != c.env {
            bail!("the lease token is for env {}, not {env}", c.env);
        }
    }
    let mut gate = brh_shared::token::FencingGate {
        highest_term: a.min_term.unwrap_or(0),
    };
    gate.admit(&c).map_err(|f| {
        anyhow!(
            "fenced: the lease token is of term {}, below term {} already seen (a deposed leader)",
            f.term,
            f.highest_term
        )
    })?;
    println!(
        "ok: lease token of {} in env {}, term {}, valid until unix {}",
        c.holder, c.env, c.term, c.expires_at_s
    );
    Ok(())
}
