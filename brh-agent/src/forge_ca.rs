//! The private roots an operator adds for the forge's HTTPS and stream (`BRH_FORGE_CA`):
//! process-wide, set once at start-up, read by every HTTP client and the stream's TLS client.
/// Extra roots for the forge's HTTPS (`--forge-ca` / `BRH_FORGE_CA`), trusted by every
/// client `client::http_client` builds, beside the built-in public roots (webpki-roots). Set at
/// start-up by [`crate::config::Config::resolve`]; additive, never removes a root.
static FORGE_CA: std::sync::RwLock<Vec<reqwest::Certificate>> = std::sync::RwLock::new(Vec::new());
static FORGE_CA_PEM: std::sync::RwLock<Vec<Vec<u8>>> = std::sync::RwLock::new(Vec::new());

/// Reads a PEM file of one or more certificates (a private CA, or a self-signed forge's own
/// certificate) and trusts them for HTTPS from now on.
pub fn trust_forge_ca(path: &std::path::Path) -> Result<(), String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{} is not a PEM certificate bundle: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    FORGE_CA
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .extend(certs);
    FORGE_CA_PEM
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .push(pem);
    Ok(())
}

/// The PEM bundles `trust_forge_ca` accepted (the stream's TLS client reads them too).
pub fn forge_ca_pems() -> Vec<Vec<u8>> {
    FORGE_CA_PEM
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

pub fn with_forge_ca(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    let roots = FORGE_CA.read().unwrap_or_else(|e| e.into_inner());
    roots
        .iter()
        .fold(builder, |b, c| b.add_root_certificate(c.clone()))
}
