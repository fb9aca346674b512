//! The HTTP/1.1 server both native surfaces use (the forge and the agent's API), hardened for
//! a hostile network: every phase of a request has a deadline and the number of connections
//! is bounded, so a client that opens connections and never finishes a request cannot starve
//! the others (or the process's file descriptors) and cannot hold up a shutdown.
//!
//! - Headers must arrive within `header_read_timeout`; hyper also applies it to a kept-alive
//!   connection waiting for its next request, so it is the idle timeout too.
//! - Bodies are read by [`read_body`] with a size cap and `body_read_timeout`.
//! - Past `max_connections` a new connection gets an immediate `503 busy` and is closed.
//! - One source address cannot take the whole cap: it may hold at most
//!   `max_unproven_per_source` connections that have not yet completed a request (a slow
//!   client's half-sent requests) and `max_per_source` in all. Past either, its new
//!   connection gets the same `503 busy`; other sources — an agent falling back to HTTP, a
//!   new agent, an operator's `status` — are still served.
//! - An HTTP/1.1 request without `Host` is refused (400, RFC 9112 §3.2).
//! - Shutdown stops accepting, asks every connection to finish its request in flight, and
//!   closes whatever is still open after `shutdown_grace`.
//! - With [`Limits::tls`] every connection is TLS (rustls): the handshake must finish within
//!   `header_read_timeout` (then the headers get the same time again), the connection counts
//!   against `max_connections` from the moment it is accepted, and a shutdown abandons
//!   handshakes in progress. Past the cap a TLS connection is closed at once: a plain-text
//!   `503` would be garbage to a TLS client, and a handshake would let the excess hold
//!   descriptors for as long as a slow client likes.
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use brh_shared::wire::{ErrorBody, ErrorCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::rustls;

/// Deadlines and bounds of one server, and whether it speaks TLS.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    /// Connections one source address may hold before any of them completed a request.
    pub max_unproven_per_source: usize,
    /// Connections one source address may hold in all.
    pub max_per_source: usize,
    pub shutdown_grace: Duration,
    /// Terminate TLS on every connection (`None`: plain HTTP).
    pub tls: Option<Tls>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::with_max_connections(default_max_connections())
    }
}

impl Limits {
    /// The defaults for a cap of `max`: a source may hold an eighth of it unproven (a slow
    /// client), half of it in all (a busy load generator behind one address), never all.
    pub fn with_max_connections(max: usize) -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_connections: max,
            max_unproven_per_source: (max / 8).max(2),
            max_per_source: (max / 2).max(4),
            shutdown_grace: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// Connections held per source address, for the per-source limits.
struct Sources {
    held: Mutex<HashMap<IpAddr, Held>>,
    max_unproven: usize,
    max_all: usize,
}

#[derive(Default)]
struct Held {
    all: usize,
    unproven: usize,
}

/// One admitted connection's place in its source's counts; released when dropped.
struct SourceSlot {
    sources: Arc<Sources>,
    ip: IpAddr,
    proven: AtomicBool,
}

impl Sources {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Arc<SourceSlot>> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let h = held.entry(ip).or_default();
        if h.unproven >= self.max_unproven || h.all >= self.max_all {
            return None;
        }
        h.unproven += 1;
        h.all += 1;
        Some(Arc::new(SourceSlot {
            sources: self.clone(),
            ip,
            proven: AtomicBool::new(false),
        }))
    }
}

impl SourceSlot {
    /// The connection completed a request: it no longer counts as a slow client's.
    fn prove(&self) {
        if !self.proven.swap(true, Ordering::Relaxed) {
            let mut held = self.sources.held.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = held.get_mut(&self.ip) {
                h.unproven = h.unproven.saturating_sub(1);
            }
        }
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut held = self.sources.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = held.get_mut(&self.ip) {
            h.all = h.all.saturating_sub(1);
            if !*self.proven.get_mut() {
                h.unproven = h.unproven.saturating_sub(1);
            }
            if h.all == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// A server's TLS settings: a certificate chain and its private key, served with rustls
/// (the `ring` provider, TLS 1.2 and 1.3, ALPN `http/1.1`). Built once per process and kept
/// for its lifetime, so that [`Limits`] stays `Copy`.
#[derive(Clone, Copy)]
pub struct Tls(&'static tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

impl Tls {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1), as written by certbot, `openssl req -x509` or rcgen.
    pub fn from_pem_files(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
        let cert_pem = std::fs::read(cert)
            .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?;
        let key_pem = std::fs::read(key)
            .with_context(|| format!("cannot read the TLS key {}", key.display()))?;
        Self::from_pem(&cert_pem, &key_pem)
            .with_context(|| format!("TLS certificate {} / key {}", cert.display(), key.display()))
    }

    /// As [`Tls::from_pem_files`], from the PEM text itself.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Tls> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("the certificate is not valid PEM: {e}"))?;
        anyhow::ensure!(
            !chain.is_empty(),
            "no certificate found (expected -----BEGIN CERTIFICATE-----)"
        );
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
            anyhow::anyhow!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}")
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| anyhow::anyhow!("the key does not fit the certificate: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Ok(Tls(Box::leak(Box::new(acceptor))))
    }
}

/// Half the process's open-files limit (after raising the soft limit to the hard one), at
/// most 4096: the other half stays for the store, the Docker socket and outgoing requests.
pub fn default_max_connections() -> usize {
    (raise_nofile_limit() / 2).clamp(64, 4096) as usize
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit in force.
#[cfg(unix)]
fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    }
}

#[cfg(not(unix))]
fn raise_nofile_limit() -> u64 {
    1024
}

/// A JSON error response, the one shape every refusal has.
pub fn error_response(code: ErrorCode, message: impl Into<String>) -> Response {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(ErrorBody::new(code, message.into()))).into_response()
}

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    /// The framing was broken (bad chunked encoding, connection closed mid-body).
    Malformed,
    Timeout,
}

impl BodyError {
    pub fn into_response(self, max: usize) -> Response {
        match self {
            BodyError::TooLarge => error_response(
                ErrorCode::TooLarge,
                format!("body is larger than {max} bytes"),
            ),
            BodyError::Malformed => {
                error_response(ErrorCode::BadRequest, "the request body is malformed")
            }
            BodyError::Timeout => error_response(
                ErrorCode::Timeout,
                "the request body did not arrive in time",
            ),
        }
    }
}

/// Reads a whole body of at most `max` bytes within `timeout`. A declared `content-length`
/// over `max` is refused before a byte is read.
pub async fn read_body(
    headers: &axum::http::HeaderMap,
    body: Body,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let read = async move {
        let mut body = body;
        let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Malformed)?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > max {
                    return Err(BodyError::TooLarge);
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(buf))
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(BodyError::Timeout))
}

/// Most headers a request may carry, and their total size.
pub const MAX_HEADERS: usize = 64;
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

async fn header_limits(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req.version() == axum::http::Version::HTTP_11
        && !req.headers().contains_key(axum::http::header::HOST)
    {
        return error_response(
            ErrorCode::BadRequest,
            "an HTTP/1.1 request must carry a Host header (RFC 9112 section 3.2)",
        );
    }
    let h = req.headers();
    let bytes: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if h.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        let mut res = error_response(
            ErrorCode::BadRequest,
            format!(
                "too many or too large headers (at most {MAX_HEADERS} headers, {MAX_HEADER_BYTES} bytes)"
            ),
        );
        *res.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        return res;
    }
    next.run(req).await
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains as described above.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let sources = Arc::new(Sources {
        held: Mutex::new(HashMap::new()),
        max_unproven: limits.max_unproven_per_source,
        max_all: limits.max_per_source,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's own limits are set above the application's (`header_limits`), so a request
    // with too many or too large headers gets the JSON refusal; only a request beyond even
    // these gets hyper's bare 431.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(1024);
    let app = app.layer(axum::middleware::from_fn(header_limits));
    let http = Arc::new(http);
    let mut conns = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut accept_errors = 0u32;
    let mut next_report = 100u32;
    loop {
        let stream = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => { accept_errors = 0; next_report = 100; (stream, peer) }
                Err(e) => {
                    // Out of descriptors or a transient network error: back off briefly
                    // instead of spinning; connections in flight keep being served.
                    accept_errors += 1;
                    if accept_errors == 1 || accept_errors == next_report {
                        next_report = accept_errors + 100;
                        tracing::warn!("accept failed ({accept_errors} in a row): {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let (stream, peer) = stream;
        // The source's share first: a source at its limit must not take a global slot.
        let Some(slot) = sources.admit(peer.ip()) else {
            if limits.tls.is_none() {
                conns.spawn(refuse_busy(stream));
            }
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if limits.tls.is_none() {
                conns.spawn(refuse_busy(stream));
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let http = http.clone();
        let app = app.clone();
        let mut stop = stop_rx.clone();
        let grace = limits.shutdown_grace;
        let handshake_timeout = limits.header_read_timeout;
        match limits.tls {
            None => conns.spawn(async move {
                let _permit = permit;
                serve_connection(&http, TokioIo::new(stream), app, slot, stop, grace).await;
            }),
            Some(Tls(acceptor)) => conns.spawn(async move {
                let _permit = permit;
                // A client that never finishes its handshake is dropped like one that never
                // finishes its headers; a shutdown does not wait for handshakes.
                let handshake =
                    tokio::time::timeout(handshake_timeout, handshake(acceptor, stream));
                let done = tokio::select! {
                    r = handshake => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                let stream = match done {
                    Ok(Ok(Handshake::Tls(s))) => s,
                    Ok(Ok(Handshake::PlainHttp(stream))) => {
                        refuse_plain_http(stream).await;
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!("TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                };
                serve_connection(&http, TokioIo::new(stream), app, slot, stop, grace).await;
            }),
        };
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every task is bounded by the grace period; this bound only guards against a bug.
    let all = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_grace + Duration::from_secs(1), all)
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period: closing them");
        conns.abort_all();
    }
}

/// Serves one connection (plain or TLS) until it ends, or until `stop`: then the request in
/// flight may finish within `grace`.
async fn serve_connection<I>(
    http: &hyper::server::conn::http1::Builder,
    io: I,
    app: Router,
    slot: Arc<SourceSlot>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // The first answer proves the connection is no slow client's (its source's
    // unproven count drops); the slot itself is held until the connection ends.
    let service = TowerToHyperService::new(Proving {
        app,
        slot: slot.clone(),
    });
    // Upgrades: `GET /federation/stream` turns the connection into a WebSocket, which then
    // lives in its own task (counted by the stream cap, closed on shutdown).
    let conn = http.serve_connection(io, service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(grace, conn).await;
}

/// The router, marking the connection's slot proven once a request got its answer.
#[derive(Clone)]
struct Proving {
    app: Router,
    slot: Arc<SourceSlot>,
}

impl tower_service::Service<axum::http::Request<hyper::body::Incoming>> for Proving {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Response, std::convert::Infallible>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower_service::Service::<axum::http::Request<Body>>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, req: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        let fut = self.app.call(req.map(Body::new));
        let slot = self.slot.clone();
        Box::pin(async move {
            let res = fut.await;
            slot.prove();
            res
        })
    }
}

enum Handshake {
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// The client spoke first and not TLS: most likely plain HTTP to the TLS port.
    PlainHttp(TcpStream),
}

/// The TLS handshake, after a look at the first byte: a TLS client starts with a handshake
/// record (0x16); anything else gets a plain-text refusal instead of a TLS alert that an
/// HTTP client would misread.
async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: TcpStream,
) -> std::io::Result<Handshake> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    if n == 1 && first[0] != 0x16 {
        return Ok(Handshake::PlainHttp(stream));
    }
    Ok(Handshake::Tls(Box::new(acceptor.accept(stream).await?)))
}

/// Plain HTTP on the TLS port: a JSON `400` naming the fix, then close.
async fn refuse_plain_http(stream: TcpStream) {
    refuse(
        stream,
        "400 Bad Request",
        ErrorCode::BadRequest,
        "this port serves HTTPS: use https:// (a dominion:// root), not http:// or dominion+http://",
        "",
    )
    .await;
}

/// Over the connection limit: answer `503 busy` at once and close, without reading the
/// request, so the excess costs a few microseconds rather than a queued descriptor.
async fn refuse_busy(stream: TcpStream) {
    refuse(
        stream,
        "503 Service Unavailable",
        ErrorCode::Busy,
        "the server is at its connection limit; retry shortly",
        "retry-after: 1\r\n",
    )
    .await;
}

/// Writes one plain-text JSON error answer (at most 1 s) and closes.
async fn refuse(
    mut stream: TcpStream,
    status: &str,
    code: ErrorCode,
    message: &str,
    extra_headers: &str,
) {
    let body =
        serde_json::to_string(&ErrorBody::new(code, message.to_string())).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n{extra_headers}connection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::AsyncReadExt;

    async fn start(
        limits: Limits,
    ) -> (
        std::net::SocketAddr,
        watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ) {
        let app = Router::new()
            .route("/health", get(|| async { "ok" }))
            .route(
                "/echo",
                post(|req: axum::extract::Request| async move {
                    let (parts, body) = req.into_parts();
                    match read_body(&parts.headers, body, 16, Duration::from_millis(300)).await {
                        Ok(b) => b.into_response(),
                        Err(e) => e.into_response(16),
                    }
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, app, limits, async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        (addr, tx, task)
    }

    async fn exchange(addr: std::net::SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_millis(300),
            body_read_timeout: Duration::from_millis(300),
            shutdown_grace: Duration::from_millis(300),
            max_unproven_per_source: 4,
            ..Limits::with_max_connections(4)
        }
    }

    /// A connection from `source` (a loopback address of its own).
    async fn connect_from(source: &str, addr: std::net::SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(addr).await.unwrap()
    }

    async fn exchange_from(source: &str, addr: std::net::SocketAddr, raw: &[u8]) -> String {
        let mut s = connect_from(source, addr).await;
        s.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn one_slow_source_cannot_starve_the_others() {
        let (addr, _stop, _task) = start(Limits {
            header_read_timeout: Duration::from_secs(5),
            max_unproven_per_source: 3,
            max_per_source: 6,
            ..Limits::with_max_connections(8)
        })
        .await;
        // 127.0.0.2 holds three half-sent requests: its share of unproven connections.
        let mut stalled = Vec::new();
        for _ in 0..3 {
            let mut s = connect_from("127.0.0.2", addr).await;
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            stalled.push(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let req = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let busy = exchange_from("127.0.0.2", addr, req).await;
        assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
        assert!(busy.contains(r#""code":"busy""#), "{busy}");
        // Another source is served, again and again, while the slow one waits.
        for _ in 0..10 {
            let ok = exchange_from("127.0.0.3", addr, req).await;
            assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        }
        // Connections that completed a request no longer count as unproven: the same source
        // may keep several open (up to its total share) next to its stalled ones.
        let mut kept = Vec::new();
        for _ in 0..3 {
            let mut s = connect_from("127.0.0.3", addr).await;
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 12];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"HTTP/1.1 200");
            kept.push(s);
        }
        let ok = exchange_from("127.0.0.3", addr, req).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        // When the slow source lets go, it is served too.
        drop(stalled);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ok = exchange_from("127.0.0.2", addr, req).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    }

    #[tokio::test]
    async fn a_request_without_host_is_refused() {
        let (addr, _stop, _task) = start(limits()).await;
        let out = exchange(addr, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(out.contains(r#""code":"bad_request""#), "{out}");
        assert!(out.contains("Host"), "{out}");
        // HTTP/1.0 has no Host requirement.
        let out = exchange(addr, b"GET /health HTTP/1.0\r\n\r\n").await;
        assert!(
            out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn stalled_clients_are_bounded_dropped_and_do_not_hold_shutdown() {
        let (addr, stop, task) = start(limits()).await;
        let mut stalled = Vec::new();
        for _ in 0..4 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            stalled.push(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Over the cap: refused at once with a JSON 503, not queued.
        let busy = exchange(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
        assert!(busy.contains(r#""code":"busy""#), "{busy}");
        // After the header timeout the stalled connections are closed by the server ...
        for s in &mut stalled {
            let mut buf = Vec::new();
            let r = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
            assert!(
                r.is_ok(),
                "a stalled connection was kept past the header timeout"
            );
        }
        drop(stalled);
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ... and others are served again.
        let ok = exchange(
            addr,
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        // A client stalled mid-body does not hold the shutdown beyond the grace period.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = stop.send(true);
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("shutdown waited on a stalled client")
            .unwrap();
    }

    #[tokio::test]
    async fn bodies_too_large_malformed_or_slow_get_json_errors() {
        let (addr, _stop, _task) = start(limits()).await;
        let cases: [(&[u8], &str, &str); 4] = [
            (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\nConnection: close\r\n\r\n01234567890123456", "413", "too_large"),
            (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n11\r\n01234567890123456\r\n0\r\n\r\n", "413", "too_large"),
            (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", "400", "bad_request"),
            (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\nab", "408", "timeout"),
        ];
        for (raw, status, code) in cases {
            let out = exchange(addr, raw).await;
            assert!(out.starts_with(&format!("HTTP/1.1 {status}")), "{out}");
            assert!(out.contains(&format!(r#""code":"{code}""#)), "{out}");
        }
        let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
        let big = format!("x-big: {}\r\n", "a".repeat(100 * 1024));
        for extra in [many, big] {
            let raw =
                format!("GET /health HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
            let out = exchange(addr, raw.as_bytes()).await;
            assert!(
                out.starts_with("HTTP/1.1 431"),
                "{}",
                &out[..out.len().min(200)]
            );
            assert!(out.contains(r#""code":"bad_request""#), "{out}");
        }
        let ok = exchange(addr, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").await;
        assert!(
            ok.starts_with("HTTP/1.1 200") && ok.ends_with("hello"),
            "{ok}"
        );
    }
}
