//! The native forge over TLS (`forge serve --tls-cert/--tls-key`) with a self-signed
//! certificate made here (rcgen):
//! - HTTPS is answered, plain HTTP to the TLS port is refused at once with a JSON 400 and
//!   leaves the server serving, a silent client is dropped after the header timeout;
//! - agents reach it through a signed `dominion://` root (and through `--forge-url https://`)
//!   when given the certificate with `--forge-ca`, and do not without it;
//! - in process, with short `Limits`: a client that never sends (or never finishes) its
//!   ClientHello is dropped after the header timeout, headers and bodies inside TLS keep their
//!   deadlines, the connection cap holds, and a shutdown does not wait for handshakes.
//!
//! Build the binaries first: `cargo build --workspace --bins`.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brh_shared::root::{DominionRoot, SCHEME_HTTPS};
use brh_tests::federation::{
    bin, fresh_seal, host_keys, scratch, wait_until, wall_ms, Agent, AgentOpts,
};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

struct Cert {
    cert: PathBuf,
    key: PathBuf,
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

/// A self-signed certificate for `localhost` and `127.0.0.1` (not a CA: the forge's own
/// certificate is the agents' trust root).
fn self_signed(dir: &Path) -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("generate a certificate");
    let cert_pem = ck.cert.pem();
    let key_pem = ck.signing_key.serialize_pem();
    let cert = dir.join("forge-cert.pem");
    let key = dir.join("forge-key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    Cert {
        cert,
        key,
        cert_pem,
        key_pem,
        der: ck.cert.der().clone(),
    }
}

/// `forge serve` with TLS, as a process.
struct TlsForge {
    child: Child,
    addr: SocketAddr,
}

impl TlsForge {
    fn start(dir: &Path, seal: &str, cert: &Cert) -> TlsForge {
        let mut child = Command::new(bin("forge"))
            .args(["serve", "--listen", "127.0.0.1:0", "--profile", "fast"])
            .arg("--data")
            .arg(dir.join("forge"))
            .arg("--tls-cert")
            .arg(&cert.cert)
            .arg("--tls-key")
            .arg(&cert.key)
            .env("DOMINION_SEAL", seal)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn forge");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let (l2, err) = (lines.clone(), child.stderr.take().unwrap());
        let log = dir.join("forge.log");
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(log).ok();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(f) = f.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                l2.lock().unwrap().push(line);
            }
        });
        let marker = "forge listening on https://";
        let addr = wait_until(Duration::from_secs(20), || {
            let l = lines.lock().unwrap();
            let line = l.iter().find(|l| l.starts_with(marker))?;
            line[marker.len()..].trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("forge did not start: {:?}", lines.lock().unwrap()));
        TlsForge { child, addr }
    }
}

impl Drop for TlsForge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client_config(root: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn tls_stream(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    name: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// Sends `raw` over TLS and reads the whole answer (the server closes: `Connection: close`).
fn https_exchange(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    name: &str,
    raw: &[u8],
) -> std::io::Result<String> {
    let mut s = tls_stream(addr, cfg, name);
    s.write_all(raw)?;
    s.flush()?;
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        // A peer that closes without close_notify; what arrived is still the answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn https_get(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>, path: &str) -> (u16, Value) {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let out = https_exchange(addr, cfg, "127.0.0.1", raw.as_bytes()).expect("HTTPS exchange");
    parse_answer(&out)
}

fn parse_answer(out: &str) -> (u16, Value) {
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {out:?}"));
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Plain-text exchange; `None` if the server closed without answering.
fn plain_exchange(addr: SocketAddr, raw: &[u8]) -> (Option<String>, Duration) {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned());
    (text, t0.elapsed())
}

/// How long until the server closes a connection on which the client sent `first` and then
/// nothing (`Err` if it was still open after `max`).
fn closed_after(addr: SocketAddr, first: &[u8], max: Duration) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(max)).unwrap();
    if !first.is_empty() {
        s.write_all(first).unwrap();
    }
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(t0.elapsed()),
            Ok(_) => continue, // an alert; keep reading until the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("still open after {:?}", t0.elapsed()))
            }
            Err(_) => return Ok(t0.elapsed()), // reset
        }
    }
}

#[test]
fn https_is_served_plain_http_is_refused_and_silent_clients_are_dropped() {
    let dir = scratch("tls-forge");
    let cert = self_signed(&dir);
    let forge = TlsForge::start(&dir, &fresh_seal(), &cert);
    let cfg = client_config(&cert.der);

    // (a) HTTPS is answered, by IP and by name.
    let (status, health) = https_get(forge.addr, &cfg, "/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    let raw = format!(
        "GET /federation/leader?env=dev HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
        forge.addr.port()
    );
    let out = https_exchange(forge.addr, &cfg, "localhost", raw.as_bytes()).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // A client that does not trust the certificate fails its handshake.
    let stranger = client_config(
        &rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])
            .unwrap()
            .cert
            .der()
            .clone(),
    );
    let err = https_exchange(
        forge.addr,
        &stranger,
        "127.0.0.1",
        b"GET /health HTTP/1.1\r\n\r\n",
    )
    .expect_err("an untrusted certificate was accepted");
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );

    // (b) Plain HTTP to the TLS port: a JSON 400 at once, naming the fix; then HTTPS still works.
    let (out, took) = plain_exchange(
        forge.addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let out = out.expect("plain HTTP got no answer");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    let (_, body) = parse_answer(&out);
    assert_eq!(body["error"]["code"], "bad_request", "{out}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("HTTPS"),
        "{out}"
    );
    for _ in 0..20 {
        let (out, _) = plain_exchange(forge.addr, b"POST /federation/heartbeat HTTP/1.1\r\n\r\n");
        assert!(out.is_some_and(|o| o.starts_with("HTTP/1.1 400")));
    }
    assert_eq!(https_get(forge.addr, &cfg, "/health").0, 200);

    // (d) with the binary's default limits: a client that never sends a ClientHello is
    // dropped after the 10 s header timeout, not kept.
    let took = closed_after(forge.addr, b"", Duration::from_secs(14)).unwrap();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(13),
        "{took:?}"
    );
    assert_eq!(https_get(forge.addr, &cfg, "/health").0, 200);
}

#[test]
fn agents_reach_a_self_signed_forge_with_forge_ca_and_only_with_it() {
    let dir = scratch("tls-agents");
    let cert = self_signed(&dir);
    let seal = fresh_seal();
    let forge = TlsForge::start(&dir, &seal, &cert);
    let cfg = client_config(&cert.der);
    // A `dominion://` root means HTTPS to the host:port it names.
    let root = DominionRoot::sign(
        &brh_shared::keys::forge_signing_key(seal.as_bytes()),
        SCHEME_HTTPS,
        &forge.addr.to_string(),
        "dev",
        wall_ms() / 1000,
    )
    .unwrap()
    .to_string();
    assert!(root.starts_with("dominion://127.0.0.1:"), "{root}");
    let ca = cert.cert.to_str().unwrap().to_string();
    let opts = |extra: &[&str]| AgentOpts {
        args: ["--forge-root", root.as_str()]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect(),
        ..AgentOpts::default()
    };
    let a = Agent::start(
        &dir,
        "tls-a",
        &seal,
        forge.addr,
        AgentOpts {
            priority: 10,
            ..opts(&["--forge-ca", &ca])
        },
    );
    // The same forge by name, through the URL override (the root is still verified).
    let url = format!("https://localhost:{}", forge.addr.port());
    let b = Agent::start(
        &dir,
        "tls-b",
        &seal,
        forge.addr,
        opts(&["--forge-url", &url, "--forge-ca", &ca]),
    );
    // Without the CA file the forge's certificate is not trusted.
    let c = Agent::start(&dir, "tls-c", &seal, forge.addr, opts(&[]));

    let led = wait_until(Duration::from_secs(15), || {
        let (sa, sb) = (a.status()?, b.status()?);
        let ok = sa["role"] == "leader"
            && sa["forge"]["reachable"] == true
            && sb["role"] == "witness"
            && sb["leader"] == "tls-a"
            && sb["forge"]["reachable"] == true;
        ok.then_some(sa)
    });
    assert!(
        led.is_some(),
        "agents with --forge-ca did not elect over HTTPS: a={:?} b={:?}",
        a.status(),
        b.status()
    );
    let (status, view) = https_get(forge.addr, &cfg, "/federation/leader?env=dev");
    assert_eq!(status, 200);
    assert_eq!(view["leader"], "tls-a", "{view}");
    // Heartbeats go over the stream, through TLS too (wss://, trusting the same CA file).
    for agent in [&a, &b] {
        let on_stream = wait_until(Duration::from_secs(10), || {
            agent.log_has("stream connected (wss://").then_some(())
        });
        assert!(
            on_stream.is_some(),
            "{} did not open its wss:// stream",
            agent.node
        );
    }
    let (_, peers) = https_get(forge.addr, &cfg, "/federation/peers?env=dev");
    let names: Vec<&str> = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["node"].as_str())
        .collect();
    assert!(
        names.contains(&"tls-a") && names.contains(&"tls-b"),
        "{peers}"
    );
    assert!(!names.contains(&"tls-c"), "{peers}");

    let sc = c.status().unwrap();
    assert_eq!(sc["forge"]["reachable"], false, "{sc}");
    assert!(
        sc["forge"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate")),
        "{sc}"
    );
    assert_ne!(sc["role"], "leader", "{sc}");
    assert!(
        c.log_has("invalid peer certificate"),
        "tls-c did not report the certificate"
    );

    // A CA file that is not PEM stops the agent at start-up, naming the setting.
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let mut d = Command::new(bin("brh-agent"))
        .args(["run", "--node-id", "tls-d", "--listen", "127.0.0.1:0"])
        .args(["--forge-root", &root, "--forge-ca"])
        .arg(&junk)
        .envs(host_keys(&seal, "dev", "tls-d"))
        .env_remove("DOMINION_SEAL")
        .env_remove("FORGE_DOMINION_ROOT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until(Duration::from_secs(10), || d.try_wait().ok().flatten());
    let _ = d.kill();
    let status = exited.expect("an agent with a junk --forge-ca kept running");
    assert!(!status.success());
    let mut err = String::new();
    d.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("BRH_FORGE_CA"), "{err}");
}

/// The forge's server in this process, with TLS and short limits.
struct InProcess {
    rt: tokio::runtime::Runtime,
    forge: Option<forge_worker::native::RunningForge>,
    addr: SocketAddr,
}

impl InProcess {
    fn start(dir: &Path, cert: &Cert, header: Duration, max_connections: usize) -> InProcess {
        use brh_http_server::{Limits, Tls};
        use forge_worker::native::{start, ServeOptions};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let tls = Tls::from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap();
        let opts = ServeOptions {
            // One source (loopback) may take the whole cap here: these tests are of the cap.
            limits: Limits {
                header_read_timeout: header,
                body_read_timeout: Duration::from_millis(500),
                max_connections,
                max_unproven_per_source: max_connections,
                max_per_source: max_connections,
                shutdown_grace: Duration::from_millis(300),
                tls: Some(tls),
            },
            ..ServeOptions::new(
                "127.0.0.1:0".parse().unwrap(),
                dir.join(format!("forge-{}", header.as_millis())),
                fresh_seal().into_bytes(),
            )
        };
        let forge = rt.block_on(start(opts)).unwrap();
        let addr = forge.addr;
        InProcess {
            rt,
            forge: Some(forge),
            addr,
        }
    }

    /// Shuts down; returns how long that took.
    fn shutdown(&mut self) -> Duration {
        let t0 = Instant::now();
        let forge = self.forge.take().unwrap();
        self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), forge.shutdown())
                .await
                .expect("shutdown hung")
        });
        t0.elapsed()
    }
}

#[test]
fn tls_handshakes_headers_and_bodies_are_bounded_and_the_cap_holds() {
    let dir = scratch("tls-limits");
    let cert = self_signed(&dir);
    let header = Duration::from_millis(500);
    let srv = InProcess::start(&dir, &cert, header, 3);
    let cfg = client_config(&cert.der);
    let addr = srv.addr;
    assert_eq!(https_get(addr, &cfg, "/health").0, 200);

    // (d) No ClientHello at all, or half of one: dropped after the header timeout.
    let half_hello = [0x16, 0x03, 0x01, 0x00, 0xff, 0x01];
    for first in [&[][..], &half_hello[..]] {
        let took = closed_after(addr, first, Duration::from_secs(5)).unwrap();
        assert!(
            took >= header - Duration::from_millis(50) && took < header * 4,
            "{first:?}: closed after {took:?}"
        );
    }

    // Inside TLS, a request whose headers never end is dropped after the header timeout ...
    let mut s = tls_stream(addr, &cfg, "127.0.0.1");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    s.flush().unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let took = t0.elapsed();
    assert!(took < header * 4, "stalled headers held for {took:?}");
    // ... and a body that never completes gets the JSON 408.
    let out = https_exchange(
        addr,
        &cfg,
        "127.0.0.1",
        b"POST /federation/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\nab",
    )
    .unwrap();
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.contains(r#""code":"timeout""#), "{out}");

    // The connection cap counts TLS connections from their accept: with 3 silent clients, a
    // fourth connection is closed at once, and a real client gets no answer until they are
    // dropped.
    let silent: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let took = closed_after(addr, b"", Duration::from_secs(2)).expect("over the cap, kept open");
    assert!(took < Duration::from_millis(300), "over the cap: {took:?}");
    assert!(https_exchange(addr, &cfg, "127.0.0.1", b"GET /health HTTP/1.1\r\n\r\n").is_err());
    std::thread::sleep(header * 2);
    drop(silent);
    assert_eq!(https_get(addr, &cfg, "/health").0, 200);
}

#[test]
fn a_shutdown_does_not_wait_for_tls_handshakes() {
    let dir = scratch("tls-shutdown");
    let cert = self_signed(&dir);
    // A long header timeout: only the shutdown can end these connections early.
    let mut srv = InProcess::start(&dir, &cert, Duration::from_secs(30), 64);
    let cfg = client_config(&cert.der);
    assert_eq!(https_get(srv.addr, &cfg, "/health").0, 200);
    let mut silent = TcpStream::connect(srv.addr).unwrap();
    let mut half = TcpStream::connect(srv.addr).unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x00, 0xff, 0x01])
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // Well within the grace period (300 ms) + the server's last-resort abort (1 s).
    let took = srv.shutdown();
    assert!(took < Duration::from_millis(1000), "shutdown took {took:?}");
    for s in [&mut silent, &mut half] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 64];
        let r = s.read(&mut buf);
        assert!(
            matches!(r, Ok(0))
                || r.as_ref()
                    .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
            "a handshake outlived the shutdown: {r:?}"
        );
    }
}
