//! What the operator hands out: a host's enrolment (`brh-agent enroll NODE`) and a scoped
//! operator's credential (`brh-agent operator issue`). Both run where `DOMINION_SEAL` is, and
//! print only what the receiver needs: no root secret, and no credential of anyone else.
use anyhow::{anyhow, Context};
use brh_shared::keys;
use brh_shared::operator::{self, Scope};
use brh_shared::root::{DominionRoot, RootKey};
use clap::Args;

use crate::clock;
use crate::config::{self, SealArgs};

/// `brh-agent enroll NODE`.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The node to enrol (its `BRH_NODE_ID`).
    pub node: String,
    /// The root the host will use (the env comes from it).
    #[arg(long, env = "FORGE_DOMINION_ROOT")]
    pub forge_root: String,
    /// Also print `BRH_FORGE_URL` (the forge's URL as this host reaches it; several,
    /// comma-separated, for forge replicas).
    #[arg(long)]
    pub forge_url: Option<String>,
    /// The federation's id to print as `BRH_FEDERATION` (default: derived from the forge
    /// key). Set it after rotating the root secret, to the id the federation had before, so
    /// its containers stay its own.
    #[arg(long, env = "BRH_FEDERATION")]
    pub federation: Option<String>,
    /// The node key's generation: 0 for a first enrolment; after `brh-agent revoke NODE`,
    /// the generation it printed (the forge refuses every older one).
    #[arg(long, default_value_t = 0)]
    pub key_generation: u32,
    #[command(flatten)]
    pub seal: SealArgs,
}

/// The lines of a host's environment file (`KEY='value'`, sourceable; values never contain a
/// quote: ids, roots and hex only). `federation`: the checked `BRH_FEDERATION` (see
/// [`config::federation_id`]).
pub fn enrolment(
    seal: &[u8],
    root: &DominionRoot,
    node: &str,
    forge_url: Option<&str>,
    federation: &str,
) -> String {
    enrolment_generation(seal, root, node, 0, forge_url, federation)
}

/// [`enrolment`] with generation `generation` of the node key (a re-enrolment after
/// `brh-agent revoke`).
pub fn enrolment_generation(
    seal: &[u8],
    root: &DominionRoot,
    node: &str,
    generation: u32,
    forge_url: Option<&str>,
    federation: &str,
) -> String {
    let c = config::Credentials::derive_generation(seal, &root.env, node, generation);
    let mut out = format!(
        "# brh-agent enroll: node {node} of env {env}. Keep this file private: BRH_NODE_KEY\n\
         # speaks for this node (and only it). No other secret is here.\n\
         BRH_NODE_ID='{node}'\n\
         BRH_ENV='{env}'\n\
         FORGE_DOMINION_ROOT='{root}'\n",
        env = root.env
    );
    if let Some(url) = forge_url {
        out.push_str(&format!("BRH_FORGE_URL='{url}'\n"));
    }
    out.push_str(&format!(
        "BRH_FORGE_KEY='{}'\nBRH_OPERATOR_KEY='{}'\nBRH_NODE_KEY='{}'\n",
        keys::public_hex(&c.forge_key),
        keys::public_hex(&c.operator_key),
        keys::format_node_credential(generation, &c.node_key),
    ));
    out.push_str(&format!("BRH_FEDERATION='{federation}'\n"));
    out
}

pub fn enroll(a: EnrollArgs) -> anyhow::Result<()> {
    brh_shared::ids::validate_id(&a.node).map_err(|e| anyhow!("invalid NODE: {e}"))?;
    let seal = a.seal.required()?;
    let root = DominionRoot::parse(&a.forge_root)
        .map_err(|e| anyhow!("invalid setting FORGE_DOMINION_ROOT: {e}"))?;
    root.verify(
        RootKey::Seal(&seal),
        clock::wall_ms() / 1000,
        config::DEFAULT_EPOCH_SKEW_S,
        None,
    )
    .map_err(|e| anyhow!("invalid setting FORGE_DOMINION_ROOT: {e}"))?;
    let forge_url = match &a.forge_url {
        Some(u) => Some(config::check_forge_url(u)?),
        None => None,
    };
    let forge_key = keys::forge_signing_key(&seal).verifying_key();
    let federation = config::federation_id(a.federation.as_deref(), &forge_key)?;
    print!(
        "{}",
        enrolment_generation(
            &seal,
            &root,
            &a.node,
            a.key_generation,
            forge_url.as_deref(),
            &federation
        )
    );
    Ok(())
}

/// `brh-agent operator issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The operator's name (recorded in the agents' events).
    #[arg(long)]
    pub name: String,
    /// What the credential allows, comma-separated: `read`, `switchover`, `containers`
    /// (deploy, restart, drain).
    #[arg(long)]
    pub scopes: String,
    /// The env it is valid in (each credential is for one env).
    #[arg(long, env = "BRH_ENV", default_value = "dev")]
    pub env: String,
    /// How long it is valid: `30m`, `12h`, `7d` (or seconds, `90s`, `2m`).
    #[arg(long, default_value = "24h")]
    pub ttl: String,
    #[command(flatten)]
    pub seal: SealArgs,
}

/// A credential's lifetime: hours and days besides what `parse_duration_ms` reads.
fn credential_ttl_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let scaled = |n: &str, unit: u64| {
        n.parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .ok_or_else(|| format!("{s:?} is not a duration (use 30m, 12h, 7d)"))
    };
    match (s.strip_suffix('d'), s.strip_suffix('h')) {
        (Some(n), _) => scaled(n, 86_400_000),
        (_, Some(n)) => scaled(n, 3_600_000),
        _ => config::parse_duration_ms(s),
    }
}

pub fn issue(a: IssueArgs) -> anyhow::Result<()> {
    let seal = a.seal.required()?;
    let scopes: Vec<Scope> =
        operator::parse_scopes(&a.scopes).map_err(|e| anyhow!("invalid --scopes: {e}"))?;
    let ttl_ms = credential_ttl_ms(&a.ttl).map_err(|e| anyhow!("invalid --ttl: {e}"))?;
    if ttl_ms < 1000 {
        return Err(anyhow!("invalid --ttl: must be at least 1 s"));
    }
    let seed = brh_shared::hex::decode32(&crate::client::random_hex(32)).context("random seed")?;
    let expires_s = clock::wall_ms() / 1000 + ttl_ms / 1000;
    let c = operator::issue_credential(
        &keys::operator_signing_key(&seal),
        &a.name,
        &a.env,
        &scopes,
        expires_s,
        seed,
    )
    .map_err(|e| anyhow!("cannot issue the credential: {e}"))?;
    println!(
        "# operator {} in env {}: {} until unix {}; keep it private\nBRH_OPERATOR_CREDENTIAL='{}'",
        a.name,
        a.env,
        operator::describe_scopes(&c.cert.scopes),
        expires_s,
        c.to_text()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_lifetimes() {
        assert_eq!(credential_ttl_ms("24h"), Ok(86_400_000));
        assert_eq!(credential_ttl_ms("7d"), Ok(7 * 86_400_000));
        assert_eq!(credential_ttl_ms("10m"), Ok(600_000));
        assert!(credential_ttl_ms("xh").is_err());
        assert!(credential_ttl_ms("99999999999999999d").is_err());
    }

    /// What `enroll` prints: exactly the host's lines, no root secret.
    #[test]
    fn an_enrolment_holds_no_root_secret() {
        let seal = b"enrol-test-seal-0123456789";
        let forge = keys::forge_signing_key(seal);
        let root =
            DominionRoot::sign(&forge, brh_shared::root::SCHEME_HTTP, "h:1", "dev", 1).unwrap();
        let federation = keys::federation_id(&forge.verifying_key());
        let text = enrolment(seal, &root, "n1", None, &federation);
        let keys_: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        assert_eq!(
            keys_,
            [
                "BRH_NODE_ID",
                "BRH_ENV",
                "FORGE_DOMINION_ROOT",
                "BRH_FORGE_KEY",
                "BRH_OPERATOR_KEY",
                "BRH_NODE_KEY",
                "BRH_FEDERATION"
            ]
        );
        assert!(
            text.lines()
                .any(|l| l == format!("BRH_FEDERATION='{federation}'")),
            "{text}"
        );
        assert_eq!(federation.len(), 16);
        // A kept id (after a rotation) is printed as given.
        assert!(enrolment(seal, &root, "n1", None, "0123456789abcdef")
            .ends_with("BRH_FEDERATION='0123456789abcdef'\n"));
        assert!(!text.contains(std::str::from_utf8(seal).unwrap()));
        assert!(!text.contains(&brh_shared::hex::encode(
            keys::operator_signing_key(seal).as_bytes()
        )));
    }
}
