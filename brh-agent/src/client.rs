//! The forge client: signed requests (docs/design.md §3), verified answers, timeouts shorter than
//! the renew interval, and retries with backoff and jitter for the idempotent reads.
//!
//! Signed requests carry a nonce `<boot_id>:<seq>` whose seq must strictly increase per
//! boot, or the forge answers 409 `replay`. [`ForgeClient`] therefore takes `&mut self` for
//! them and is owned by one sequential task (the keeper), so no two signed requests of one
//! agent are ever in flight at once.
use std::time::Duration;

use brh_shared::replay::Nonce;
use brh_shared::route::Endpoint;
use brh_shared::sign::{
    sign_request, SignedHeaders, HEADER_BASIS, HEADER_BASIS_SIG, HEADER_KEY_GEN, HEADER_NODE,
    HEADER_NONCE, HEADER_SIG, HEADER_TS,
};
use brh_shared::wire::{
    ConsensusReport, ErrorBody, ErrorCode, Heartbeat, HistoryEntry, LeaderView, PeerSummary,
    ResignRequest, StreamMessage, StreamRequest, MAX_BODY_BYTES, STREAM_METHOD, STREAM_PATH,
};
use serde::Deserialize;

use crate::clock;
use crate::forge_ca;
use crate::forge_urls::ForgeUrls;
use crate::role::{VerifiedView, ViewError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("forge unreachable: {0}")]
    Unreachable(String),
    #[error("forge refused the request: {status} {}: {message}", code_name(.code))]
    Refused {
        status: u16,
        /// The forge's code; `None` when the answer was not a BRH error body (a proxy's page,
        /// or a code this agent does not know yet).
        code: Option<ErrorCode>,
        message: String,
    },
    #[error("forge answer not accepted: {0}")]
    BadAnswer(String),
    #[error(transparent)]
    View(#[from] ViewError),
}

fn code_name(code: &Option<ErrorCode>) -> &'static str {
    code.map_or("unknown", ErrorCode::as_str)
}

impl ClientError {
    /// Whether the forge refused with exactly this code.
    pub fn is_refusal(&self, code: ErrorCode) -> bool {
        matches!(self, ClientError::Refused { code: Some(c), .. } if *c == code)
    }

    /// Short label for metrics and status.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Unreachable(_) => "unreachable",
            ClientError::Refused { .. } => "refused",
            ClientError::BadAnswer(_) | ClientError::View(_) => "bad_answer",
        }
    }
}

/// Forge request timeout: shorter than the renew interval, so a hung request never eats
/// the next beat (and a leader gets several tries before its deadline).
pub fn request_timeout(timing: &brh_shared::Timing) -> Duration {
    Duration::from_millis((timing.heartbeat_interval_ms * 3 / 4).max(100))
}

/// A random id, 16 lowercase hex digits (boot ids, client ids, generated secrets).
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    // getrandom only fails if the OS has no entropy source at all; there is nothing safe to
    // fall back to, so refuse loudly.
    getrandom::getrandom(&mut b).expect("the OS random number generator is unavailable");
    brh_shared::hex::encode(&b)
}

/// Builds the shared HTTP client: rustls, connect and total timeouts.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    forge_ca::with_forge_ca(reqwest::Client::builder())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("brh-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a TLS backend is compiled in")
}

/// A JSON POST carrying the four `x-brh-*` authentication headers.
pub fn signed_post(
    http: &reqwest::Client,
    url: String,
    h: &brh_shared::sign::SignedHeaders,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    http.post(url)
        .header(HEADER_NODE, &h.node)
        .header(HEADER_TS, h.ts_ms.to_string())
        .header(HEADER_NONCE, h.nonce.to_string())
        .header(HEADER_SIG, &h.sig)
        .header("content-type", "application/json")
        .body(body)
}

/// Joins a base URL and an absolute path, never after a query (the original's bug).
pub fn join(base: &str, path: &str) -> String {
    debug_assert!(path.starts_with('/'));
    format!("{}{}", base.trim_end_matches('/'), path)
}

/// Signs and sends one request to an agent's mutating endpoint. Agent signatures name the
/// receiving agent; when its node id is not known (`to` is `None`, e.g. a CLI given only a
/// URL), it is read from the agent's public `GET /health` first.
pub async fn agent_post(
    http: &reqwest::Client,
    agent: &str,
    to: Option<&str>,
    path: &str,
    body: Vec<u8>,
    signer: &crate::auth::OperatorSigner,
    caller: &str,
) -> anyhow::Result<(u16, serde_json::Value)> {
    use anyhow::Context;
    // A scoped operator's requests carry its certificate's name.
    let caller = match signer.name() {
        Some(name) => name,
        None if brh_shared::ids::validate_id(caller).is_ok() => caller,
        None => "brh-cli",
    };
    let to = match to {
        Some(to) => to.to_string(),
        None => {
            let health: serde_json::Value = http
                .get(join(agent, "/health"))
                .send()
                .await
                .with_context(|| format!("cannot reach the agent at {agent}"))?
                .json()
                .await
                .with_context(|| {
                    format!("{agent}/health did not answer JSON: is it a brh-agent?")
                })?;
            health
                .get("node")
                .and_then(|n| n.as_str())
                .map(str::to_string)
                .with_context(|| {
                    format!("{agent}/health does not name its node: is it a brh-agent?")
                })?
        }
    };
    let h = crate::auth::sign_api_request(
        &signer.key,
        &to,
        "POST",
        path,
        caller,
        clock::wall_ms(),
        Nonce::new(random_hex(8), 1),
        &body,
    );
    let mut req = signed_post(http, join(agent, path), &h, body);
    if let Some(cert) = &signer.cert {
        req = req.header(brh_shared::operator::HEADER_OPERATOR, cert.to_string());
    }
    let res = req
        .send()
        .await
        .with_context(|| format!("cannot reach the agent at {agent}"))?;
    let status = res.status().as_u16();
    let j = res.json().await.unwrap_or(serde_json::Value::Null);
    Ok((status, j))
}

/// Appends `?env=` with the env percent-encoded (ids are already URL-safe; this is belt and
/// braces for callers that pass user input).
pub fn with_env(url: String, env: &str) -> String {
    let enc: String = env
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{url}?env={enc}")
}

pub struct ForgeClient {
    http: reqwest::Client,
    /// Where the forge is (several replicas: the one in use first; shared with the stream).
    urls: ForgeUrls,
    /// This node's own key: signs its requests.
    node_key: [u8; 32],
    /// Its generation, sent as `x-brh-key-gen` when not 0.
    key_generation: u32,
    /// What the forge's answers are checked with.
    keys: crate::role::ViewKeys,
    node: String,
    env: String,
    boot_id: String,
    seq: u64,
    clock_skew_ms: i64,
    request_timeout: Option<Duration>,
    timeout: Duration,
}

#[derive(Deserialize)]
struct PeersBody {
    #[serde(default)]
    peers: Vec<PeerSummary>,
}

#[derive(Deserialize)]
struct HistoryBody {
    #[serde(default, alias = "history")]
    entries: Vec<HistoryEntry>,
}

impl ForgeClient {
    pub fn new(
        urls: ForgeUrls,
        credentials: &crate::config::Credentials,
        node: impl Into<String>,
        env: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        let node = node.into();
        ForgeClient {
            http: http_client(timeout),
            urls,
            node_key: credentials.node_key,
            key_generation: credentials.key_generation,
            keys: credentials.view_keys(&node),
            node,
            env: env.into(),
            boot_id: random_hex(8),
            seq: 0,
            clock_skew_ms: 0,
            request_timeout: None,
            timeout,
        }
    }

    /// Signs and checks with `credentials` from the next request on (a reload).
    pub fn set_credentials(&mut self, credentials: &crate::config::Credentials) {
        self.node_key = credentials.node_key;
        self.key_generation = credentials.key_generation;
        self.keys = credentials.view_keys(&self.node);
    }

    /// Bounds each signed request (overrides the client's timeout): set when the agent
    /// adopts the forge's heartbeat interval, so a hung request never eats the next beat.
    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.request_timeout = Some(timeout);
    }

    /// How long one signed request may take (the stream uses the same bound as HTTP).
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout.unwrap_or(self.timeout)
    }

    /// TEST ONLY: shift the wall clock used for `x-brh-ts`.
    pub fn with_clock_skew(mut self, skew_ms: i64) -> Self {
        self.clock_skew_ms = skew_ms;
        self
    }

    /// The forge address in use now.
    pub fn base(&self) -> &str {
        self.urls.current().1
    }

    /// Every configured forge address (shared with the stream, which follows the same one).
    pub fn urls(&self) -> &ForgeUrls {
        &self.urls
    }

    fn ts_ms(&self) -> u64 {
        (clock::wall_ms() as i64)
            .saturating_add(self.clock_skew_ms)
            .max(0) as u64
    }

    /// `x-brh-key-gen`: absent for generation 0.
    fn key_generation_header(&self) -> Option<String> {
        (self.key_generation > 0).then(|| self.key_generation.to_string())
    }

    /// Signs the next request of this agent's one nonce sequence (HTTP and the stream share
    /// it); returns the headers and the monotonic send time, taken before signing: the lease
    /// deadline counts from here.
    fn sign_next(&mut self, method: &str, path: &str, body: &[u8]) -> (SignedHeaders, u64) {
        self.seq += 1;
        let nonce = Nonce::new(self.boot_id.clone(), self.seq);
        let sent_at = clock::mono_ms();
        let h = sign_request(
            &self.node_key,
            method,
            path,
            &self.node,
            self.ts_ms(),
            nonce,
            body,
        );
        (h, sent_at)
    }

    /// One signed POST. Returns the monotonic send time and the verified view.
    ///
    /// With several forge addresses, a refused connection or a standby's 503 moves on to the
    /// next address at once, within this call, signed anew (a fresh nonce and send time: the
    /// lease counts from the attempt that was answered). A timeout moves on too, but ends the
    /// call: the time is spent, and the role state decides when to try again.
    async fn post_signed<T: serde::Serialize>(
        &mut self,
        path: &str,
        body: &T,
        addressed: bool,
    ) -> Result<(u64, VerifiedView), (u64, ClientError)> {
        let body = serde_json::to_vec(body).expect("wire types serialize");
        let urls = self.urls.clone();
        let mut tries_left = urls.len();
        let (res, h, sent_at) = loop {
            tries_left -= 1;
            let (at, base) = urls.current();
            let (h, sent_at) = self.sign_next("POST", path, &body);
            let mut req = signed_post(&self.http, join(base, path), &h, body.clone());
            if let Some(g) = self.key_generation_header() {
                req = req.header(HEADER_KEY_GEN, g);
            }
            if let Some(t) = self.request_timeout {
                req = req.timeout(t);
            }
            match req.send().await {
                Err(e) => {
                    let next = urls.failed(at);
                    if urls.len() > 1 {
                        tracing::debug!("forge {base} unreachable ({e}); next: {next}");
                    }
                    if e.is_connect() && tries_left > 0 {
                        continue;
                    }
                    return Err((sent_at, ClientError::Unreachable(short(&e))));
                }
                Ok(res) if res.status().as_u16() == 503 && urls.len() > 1 => {
                    let next = urls.failed(at);
                    tracing::debug!("forge {base} is not serving (503); next: {next}");
                    if tries_left > 0 {
                        continue;
                    }
                    break (res, h, sent_at);
                }
                Ok(res) => break (res, h, sent_at),
            }
        };
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let (basis, basis_sig) = (header(HEADER_BASIS), header(HEADER_BASIS_SIG));
        let view: LeaderView = read_json(res).await.map_err(|e| (sent_at, e))?;
        // An answer addressed to us must be bound to this very request (its nonce).
        let v = if addressed {
            let nonce = h.nonce.to_string();
            let (b, bs) = (basis.as_deref(), basis_sig.as_deref());
            VerifiedView::check_answer(&self.keys, &self.env, &self.node, view, b, bs, &nonce)
        } else {
            VerifiedView::check(&self.keys, &self.env, None, view)
        };
        let v = v.map_err(|e| (sent_at, e.into()))?;
        Ok((sent_at, v))
    }

    pub async fn heartbeat(
        &mut self,
        hb: &Heartbeat,
    ) -> Result<(u64, VerifiedView), (u64, ClientError)> {
        self.post_signed(Endpoint::Heartbeat.path(), hb, true).await
    }

    /// `body` for `path` signed for the stream (method line `WS`), from the same nonce
    /// sequence as HTTP: `(frame, nonce, monotonic send time)`. The send time is taken before
    /// signing, as for HTTP: a lease granted by the answer (or by a push bound to this frame)
    /// counts from here.
    pub fn frame<T: serde::Serialize>(&mut self, path: &str, body: &T) -> (String, String, u64) {
        let body = serde_json::to_string(body).expect("wire types serialize");
        let (h, sent_at) = self.sign_next(STREAM_METHOD, path, body.as_bytes());
        let nonce = h.nonce.to_string();
        let frame = StreamRequest {
            path: path.into(),
            node: h.node,
            ts: h.ts_ms,
            nonce: nonce.clone(),
            sig: h.sig,
            body,
            key_gen: self.key_generation_header(),
        };
        let frame = serde_json::to_string(&frame).expect("wire types serialize");
        (frame, nonce, sent_at)
    }

    /// A resign request. `leaving`: this agent is stopping, so the forge must not grant it
    /// again (it would show a dead node as leader for a lease). `successor`: a switchover to
    /// that node (the forge refuses with `not_candidate` unless it is a live candidate).
    pub fn resign_request(
        &self,
        term: u64,
        leaving: bool,
        successor: Option<&str>,
    ) -> ResignRequest {
        ResignRequest {
            env: self.env.clone(),
            term,
            leaving,
            successor: successor.map(Into::into),
        }
    }

    /// Checks a view that came on the stream for this node, bound to our request `nonce`
    /// (see [`VerifiedView::check_bound`]). Anything else grants nothing.
    pub fn check_stream_view(
        &self,
        m: &StreamMessage,
        nonce: &str,
    ) -> Result<VerifiedView, ClientError> {
        Ok(VerifiedView::check_bound(
            &self.keys, &self.env, &self.node, m, nonce,
        )?)
    }

    /// Gives the lease up over HTTP (`req` from [`Self::resign_request`]).
    pub async fn resign(
        &mut self,
        req: &ResignRequest,
    ) -> Result<(u64, VerifiedView), (u64, ClientError)> {
        self.post_signed(Endpoint::Resign.path(), req, true).await
    }

    pub async fn consensus(
        &mut self,
        report: &ConsensusReport,
    ) -> Result<(u64, VerifiedView), (u64, ClientError)> {
        // The consensus answer is informational; it need not be addressed to us.
        self.post_signed(Endpoint::Consensus.path(), report, false)
            .await
    }

    /// `GET /federation/leader`, verified (no `you`), with retries.
    pub async fn leader(&self) -> Result<VerifiedView, ClientError> {
        let path = Endpoint::Leader.path();
        let view: LeaderView = get_json_any(&self.http, &self.urls, path, &self.env).await?;
        Ok(VerifiedView::check(&self.keys, &self.env, None, view)?)
    }

    pub async fn peers(&self) -> Result<Vec<PeerSummary>, ClientError> {
        self.peers_owned().await
    }

    /// The peers read as a future that borrows nothing, so it can run while a signed
    /// request (which needs `&mut self`) is in flight: shutdown reads the peers it will
    /// nudge during its resign instead of after it.
    pub fn peers_owned(
        &self,
    ) -> impl std::future::Future<Output = Result<Vec<PeerSummary>, ClientError>> + Send + 'static
    {
        let (http, urls, env) = (self.http.clone(), self.urls.clone(), self.env.clone());
        async move {
            let path = Endpoint::Peers.path();
            Ok(get_json_any::<PeersBody>(&http, &urls, path, &env)
                .await?
                .peers)
        }
    }

    pub async fn history(&self) -> Result<Vec<HistoryEntry>, ClientError> {
        let path = Endpoint::History.path();
        Ok(
            get_json_any::<HistoryBody>(&self.http, &self.urls, path, &self.env)
                .await?
                .entries,
        )
    }
}

pub(crate) fn short(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Reads a JSON answer; non-2xx answers become [`ClientError::Refused`] with the forge's code.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    res: reqwest::Response,
) -> Result<T, ClientError> {
    let status = res.status();
    let bytes = res
        .bytes()
        .await
        .map_err(|e| ClientError::Unreachable(short(&e)))?;
    if bytes.len() > 4 * MAX_BODY_BYTES {
        return Err(ClientError::BadAnswer("answer too large".into()));
    }
    if !status.is_success() {
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => (Some(b.error.code), b.error.message),
            Err(_) => (
                None,
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            ),
        };
        return Err(ClientError::Refused {
            status: status.as_u16(),
            code,
            message,
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer(e.to_string()))
}

/// `ws://host/federation/stream?env=…` for an `http://` forge base (`wss://` for `https://`).
pub fn stream_url(base: &str, env: &str) -> String {
    let base = base.trim_end_matches('/');
    let ws = match base.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}"),
        Some((_, rest)) => format!("ws://{rest}"),
        None => format!("ws://{base}"),
    };
    with_env(join(&ws, STREAM_PATH), env)
}

/// A forge read (`path?env=`) from the address in use, else from the next ones in turn
/// (each with [`get_json_retry`]'s attempts). A 4xx is the forge's answer and ends it; an
/// unreachable address or a 5xx (a standby) moves the agent on to the next address.
pub async fn get_json_any<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    urls: &ForgeUrls,
    path: &str,
    env: &str,
) -> Result<T, ClientError> {
    let mut last = None;
    for at in urls.from_current() {
        let url = with_env(join(urls.get(at), path), env);
        match get_json_retry(http, &url).await {
            Err(e @ ClientError::Refused { status, .. }) if status < 500 => return Err(e),
            Err(e) => {
                urls.failed(at);
                last = Some(e);
            }
            ok => return ok,
        }
    }
    Err(last.expect("a forge URL list is never empty"))
}

/// GET with three attempts, exponential backoff (100, 200 ms) with jitter. Only for reads:
/// they are idempotent and carry no nonce.
pub async fn get_json_retry<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, ClientError> {
    let mut delay = 100u64;
    let mut last = None;
    for attempt in 0..3 {
        if attempt > 0 {
            let jitter = u64::from_str_radix(&random_hex(2), 16).unwrap_or(0) % (delay / 2 + 1);
            tokio::time::sleep(Duration::from_millis(delay + jitter)).await;
            delay *= 2;
        }
        match http.get(url).send().await {
            Ok(res) => match read_json(res).await {
                // A refusal (4xx) will not change on retry.
                Err(e @ ClientError::Refused { status, .. }) if status < 500 => return Err(e),
                Err(e) => last = Some(e),
                Ok(v) => return Ok(v),
            },
            Err(e) => last = Some(ClientError::Unreachable(short(&e))),
        }
    }
    Err(last.expect("at least one attempt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_built_properly() {
        assert_eq!(
            join("https://forge.example", "/federation/heartbeat"),
            "https://forge.example/federation/heartbeat"
        );
        assert_eq!(
            join("http://127.0.0.1:8787/", "/federation/leader"),
            "http://127.0.0.1:8787/federation/leader"
        );
        assert_eq!(
            with_env(join("http://h", "/federation/peers"), "prod"),
            "http://h/federation/peers?env=prod"
        );
        assert_eq!(with_env("u".into(), "a b&c"), "u?env=a%20b%26c");
    }

    #[test]
    fn random_ids_are_hex_and_differ() {
        let a = random_hex(8);
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_hex(8));
    }
}
