//! The agent's end of the forge's stream (`GET /federation/stream`, docs/stream.md): one
//! WebSocket, kept open by a background task that reconnects with backoff. The keeper sends
//! heartbeats on it while it is up (HTTP otherwise — the same nonces, the same lease rules),
//! and receives the forge's pushes from it.
//!
//! The link decides nothing: answers go back to whoever asked, pushes to the keeper, which
//! verifies them and hands them to `RoleState`.
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use brh_shared::wire::StreamMessage;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::forge_urls::ForgeUrls;

/// Pushes not yet read by the keeper; beyond this, older ones are dropped (the next one, or
/// the next heartbeat's answer, says the same and newer).
const PUSH_BACKLOG: usize = 16;

/// The longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

struct Outgoing {
    frame: String,
    nonce: String,
    reply: oneshot::Sender<StreamMessage>,
}

/// Why a request did not go on the stream (the caller uses HTTP instead, or counts a
/// failed beat).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the stream is not connected")]
    Down,
    #[error("the stream closed before the answer")]
    Lost,
    #[error("no answer on the stream within {0:?}")]
    Timeout(Duration),
}

/// The keeper's handle on the link.
pub struct StreamLink {
    requests: mpsc::Sender<Outgoing>,
    up: Arc<AtomicBool>,
    /// A request that got no answer in time: the socket may be half-open (a NAT or a proxy
    /// that dropped the flow silently), so the task drops it and reconnects, and beats go
    /// over HTTP meanwhile instead of timing out one after another.
    reset: Arc<tokio::sync::Notify>,
    /// The forge addresses, and the index of the one the socket is connected to
    /// (`usize::MAX`: none). A forge that stops answering on the stream (frozen, or cut off
    /// behind a proxy that keeps the connection) is passed over at once, so the HTTP beat
    /// that follows, and the reconnection, go to the next address instead of timing out on
    /// it again.
    urls: ForgeUrls,
    connected: Arc<AtomicUsize>,
}

impl StreamLink {
    /// Starts the link's task for `env`'s stream at the forge address in use
    /// (`ws://…/federation/stream?env=…`); it ends with `cancel`. Returns the handle and the
    /// pushes.
    pub fn start(
        urls: ForgeUrls,
        env: String,
        node: String,
        cancel: CancellationToken,
    ) -> (StreamLink, mpsc::Receiver<StreamMessage>) {
        let (req_tx, req_rx) = mpsc::channel(8);
        let (push_tx, push_rx) = mpsc::channel(PUSH_BACKLOG);
        let up = Arc::new(AtomicBool::new(false));
        let reset = Arc::new(tokio::sync::Notify::new());
        let connected = Arc::new(AtomicUsize::new(usize::MAX));
        let task = Task {
            connected: connected.clone(),
            urls: urls.clone(),
            env,
            node,
            pushes: push_tx,
            up: up.clone(),
            reset: reset.clone(),
        };
        tokio::spawn(task.run(req_rx, cancel));
        (
            StreamLink {
                requests: req_tx,
                up,
                reset,
                urls,
                connected,
            },
            push_rx,
        )
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Sends one signed frame and waits for its answer (matched by nonce).
    pub async fn request(
        &self,
        frame: String,
        nonce: String,
        timeout: Duration,
    ) -> Result<StreamMessage, LinkError> {
        if !self.is_up() {
            return Err(LinkError::Down);
        }
        let (reply, answer) = oneshot::channel();
        let out = Outgoing {
            frame,
            nonce,
            reply,
        };
        self.requests.send(out).await.map_err(|_| LinkError::Down)?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(_)) => Err(LinkError::Lost),
            Err(_) => {
                self.up.store(false, Ordering::Release);
                let at = self.connected.swap(usize::MAX, Ordering::AcqRel);
                if at != usize::MAX {
                    self.urls.failed(at);
                }
                self.reset.notify_waiters();
                Err(LinkError::Timeout(timeout))
            }
        }
    }
}

/// The link's task: owns the socket, reconnects with backoff.
struct Task {
    connected: Arc<AtomicUsize>,
    urls: ForgeUrls,
    env: String,
    node: String,
    pushes: mpsc::Sender<StreamMessage>,
    up: Arc<AtomicBool>,
    reset: Arc<tokio::sync::Notify>,
}

impl Task {
    async fn run(self, mut requests: mpsc::Receiver<Outgoing>, cancel: CancellationToken) {
        let Task {
            connected,
            urls,
            env,
            node,
            pushes,
            up,
            reset,
        } = self;
        let mut backoff = Duration::from_millis(500);
        let mut failures = 0u32;
        let tls = tls_config();
        loop {
            let (at, base) = urls.current();
            let url = crate::client::stream_url(base, &env);
            let connect = tokio::time::timeout(
                Duration::from_secs(5),
                tokio_tungstenite::connect_async_tls_with_config(
                    url.as_str(),
                    None,
                    true,
                    Some(tokio_tungstenite::Connector::Rustls(tls.clone())),
                ),
            );
            let ws = tokio::select! {
                _ = cancel.cancelled() => return,
                r = connect => r,
            };
            let failure = match ws {
                Ok(Ok((ws, _))) => Ok(ws),
                Ok(Err(e)) => Err((not_serving(&e), e.to_string())),
                Err(_) => Err((true, "connect timed out".to_string())),
            };
            let ws = match failure {
                Ok(ws) => ws,
                Err((elsewhere, e)) => {
                    failures += 1;
                    note_failure(&node, &url, failures, &e);
                    // Unreachable or a standby: the next address in the list, at once while
                    // this pass through the list is not over; after a whole pass, back off.
                    let rotate = elsewhere && urls.len() > 1;
                    if rotate {
                        urls.failed(at);
                    }
                    let pause = if rotate && !(failures as usize).is_multiple_of(urls.len()) {
                        Duration::from_millis(200)
                    } else {
                        let pause = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        pause
                    };
                    if !sleep_or_cancel(&cancel, pause).await {
                        return;
                    }
                    continue;
                }
            };
            tracing::info!("[HB] {node} stream connected ({url}): heartbeats go over it");
            failures = 0;
            backoff = Duration::from_millis(500);
            connected.store(at, Ordering::Release);
            up.store(true, Ordering::Release);
            let (mut write, mut read) = ws.split();
            let mut pending: HashMap<String, oneshot::Sender<StreamMessage>> = HashMap::new();
            let why = loop {
                tokio::select! {
                    _ = cancel.cancelled() => {
                        up.store(false, Ordering::Release);
                        let _ = write.send(Message::Close(None)).await;
                        return;
                    }
                    _ = reset.notified() => break "a request got no answer in time",
                    Some(out) = requests.recv() => {
                        pending.retain(|_, r| !r.is_closed());
                        pending.insert(out.nonce, out.reply);
                        let sent = tokio::time::timeout(
                            Duration::from_secs(5),
                            write.send(Message::text(out.frame)),
                        );
                        if !matches!(sent.await, Ok(Ok(()))) {
                            break "send failed";
                        }
                    }
                    frame = read.next() => match frame {
                        Some(Ok(Message::Text(t))) => {
                            let Ok(m) = serde_json::from_str::<StreamMessage>(t.as_str()) else {
                                tracing::debug!("[HB] {node} unreadable stream frame ignored");
                                continue;
                            };
                            match m.reply_to.clone() {
                                Some(n) => {
                                    if let Some(reply) = pending.remove(&n) {
                                        let _ = reply.send(m);
                                    }
                                }
                                // A full backlog drops the push: newer ones follow.
                                None => { let _ = pushes.try_send(m); }
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => break "closed by the forge",
                        Some(Ok(_)) => {}
                        Some(Err(_)) => break "connection error",
                    },
                }
            };
            up.store(false, Ordering::Release);
            connected.store(usize::MAX, Ordering::Release);
            tracing::warn!(
                "[HB] {node} stream lost ({why}): heartbeats over HTTP until it is back"
            );
        }
    }
}

/// TLS for `wss://`: the web PKI roots plus the certificates of `BRH_FORGE_CA` (the same
/// trust as the HTTPS client), on the ring provider the agent's rustls already uses.
fn tls_config() -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for pem in crate::forge_ca::forge_ca_pems() {
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem).flatten() {
            // Already checked by `trust_forge_ca`; one that rustls refuses is left out.
            let _ = roots.add(cert);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Whether a failed connection says "this address does not serve the forge now" (nothing
/// listens, or a standby replica's 503), as opposed to a forge that answers without a stream
/// (an older forge, a kv-mode Worker without it: HTTP serves, the address is right).
fn not_serving(e: &tokio_tungstenite::tungstenite::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Http(r) => r.status().as_u16() == 503,
        Error::Io(_) | Error::Tls(_) | Error::ConnectionClosed | Error::AlreadyClosed => true,
        _ => false,
    }
}

fn note_failure(node: &str, url: &str, failures: u32, e: &str) {
    // Once loudly (a forge without the stream — kv mode, an older forge — is normal: HTTP
    // works), then quietly.
    if failures == 1 {
        tracing::info!("[HB] {node} no stream at {url} ({e}): heartbeats over HTTP");
    } else {
        tracing::debug!("[HB] {node} stream still unavailable ({e})");
    }
}

async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// The send times of our latest stream heartbeats, by nonce: a push names one as its basis
/// and the lease it grants counts from that send time. Older beats are forgotten (a push
/// naming one grants nothing; the next answer does).
#[derive(Debug, Default)]
pub struct SentBeats(VecDeque<(String, u64)>);

impl SentBeats {
    const KEPT: usize = 32;

    pub fn record(&mut self, nonce: String, sent_ms: u64) {
        if self.0.len() == Self::KEPT {
            self.0.pop_front();
        }
        self.0.push_back((nonce, sent_ms));
    }

    pub fn sent_at(&self, nonce: &str) -> Option<u64> {
        self.0.iter().find(|(n, _)| n == nonce).map(|(_, t)| *t)
    }

    /// The nonce of the latest beat recorded.
    pub fn newest(&self) -> Option<&str> {
        self.0.back().map(|(n, _)| n.as_str())
    }
}

/// The link and what the keeper remembers about the beats it sent on it.
pub struct Stream {
    pub link: StreamLink,
    pub beats: SentBeats,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_beats_keep_the_latest_and_forget_the_oldest() {
        let mut b = SentBeats::default();
        for i in 0..40u64 {
            b.record(format!("n{i}"), 1000 + i);
        }
        assert_eq!(b.sent_at("n39"), Some(1039));
        assert_eq!(b.newest(), Some("n39"));
        assert_eq!(b.sent_at("n8"), Some(1008));
        assert_eq!(b.sent_at("n7"), None, "beyond the 32 kept");
        assert_eq!(b.sent_at("other"), None);
    }
}
