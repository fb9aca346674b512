//! Leader changes leave the forge two ways: a log line, and (with `LEDGER_URL`) a signed POST
//! to the ledger, off the request path.
use brh_shared::sign;
use worker::{console_log, console_warn, Fetch, Headers};

use super::request::json_post;
use crate::forge::LeaderChange;

/// One log line per leader change.
pub fn log_change(c: &LeaderChange) {
    match &c.entry.leader {
        Some(l) => console_log!(
            "[FORGE] env={} term={} leader={} ({})",
            c.env,
            c.entry.term,
            l,
            c.entry.reason
        ),
        None => console_log!(
            "[FORGE] env={} term={} lease ended ({})",
            c.env,
            c.entry.term,
            c.entry.reason
        ),
    }
}

/// POSTs each leader change to the ledger: the JSON of [`LeaderChange`], with `x-brh-sig` the
/// forge key's Ed25519 signature of the body (128 hex), so the ledger checks it with the
/// forge's public key and holds no secret. Best effort: failures are logged.
pub async fn forward_to_ledger(
    url: String,
    forge: ed25519_dalek::SigningKey,
    changes: Vec<LeaderChange>,
) {
    for c in changes {
        let body = serde_json::to_string(&c).unwrap_or_default();
        let sig = brh_shared::keys::sign_hex(&forge, body.as_bytes());
        let send = async {
            let headers = Headers::new();
            headers.set("content-type", "application/json")?;
            headers.set(sign::HEADER_SIG, &sig)?;
            let req = json_post(&url, &headers, &body)?;
            Fetch::Request(req).send().await
        };
        match send.await {
            Ok(r) if r.status_code() < 300 => {}
            Ok(r) => console_warn!("ledger {url} answered {}", r.status_code()),
            Err(e) => console_warn!("ledger {url}: {e}"),
        }
    }
}
