//! One source cannot starve the rest, on the real forge process (docs/design.md §8.9): a slow
//! client on one loopback address holds its share of half-sent requests, and new
//! connections from it are refused (503 `busy`), while probes and signed heartbeats from
//! another loopback address are served — the forge's own `--max-unproven-per-source`.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use brh_shared::keys::node_key;
use brh_shared::replay::Nonce;
use brh_shared::sign::sign_request;
use brh_tests::federation::*;

/// A TCP connection from `source` (its own loopback address) to `to`.
fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    // std cannot bind before connecting; tokio's socket can, and hands the stream back.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(to).await.unwrap()
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn exchange_from(source: &str, to: SocketAddr, raw: &[u8]) -> String {
    let mut s = connect_from(source, to);
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_slow_source_does_not_keep_probes_and_heartbeats_from_another_out() {
    let dir = scratch("per-source");
    let seal = fresh_seal();
    let data = dir.join("forge");
    let mut child = Command::new(bin("forge"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--profile",
            "fast",
            "--data",
        ])
        .arg(&data)
        .args(["--max-unproven-per-source", "8", "--max-per-source", "16"])
        .env("DOMINION_SEAL", &seal)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let mut line = String::new();
    let mut buf = [0u8; 1];
    while !line.contains("listening on http://") || !line.ends_with('\n') {
        assert_eq!(err.read(&mut buf).unwrap(), 1, "forge exited: {line}");
        line.push(buf[0] as char);
    }
    let addr: SocketAddr = line
        .split("listening on http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));

    // 127.0.0.2: eight half-sent requests, its whole share; the ninth is refused.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut s = connect_from("127.0.0.2", addr);
        s.write_all(b"POST /federation/heartbeat HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let probe = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let busy = exchange_from("127.0.0.2", addr, probe);
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    assert!(busy.contains(r#""code":"busy""#), "{busy}");

    // 127.0.0.3: probes and signed heartbeats are served, again and again.
    for i in 0..20u64 {
        let ok = exchange_from("127.0.0.3", addr, probe);
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        let body = br#"{"env":"dev","version":"t"}"#;
        let h = sign_request(
            &node_key(seal.as_bytes(), "dev", "n1"),
            "POST",
            "/federation/heartbeat",
            "n1",
            wall_ms(),
            Nonce::new("ps", i + 1),
            body,
        );
        let head = format!(
            "POST /federation/heartbeat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nx-brh-node: {}\r\n\
             x-brh-ts: {}\r\nx-brh-nonce: {}\r\nx-brh-sig: {}\r\n\r\n",
            body.len(),
            h.node,
            h.ts_ms,
            h.nonce,
            h.sig
        );
        let mut raw = head.into_bytes();
        raw.extend_from_slice(body);
        let answer = exchange_from("127.0.0.3", addr, &raw);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(r#""leader":"n1""#), "{answer}");
    }
    // The slow source still has its stalled connections open, and is still refused.
    let busy = exchange_from("127.0.0.2", addr, probe);
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    drop(stalled);
    std::thread::sleep(Duration::from_millis(200));
    let ok = exchange_from("127.0.0.2", addr, probe);
    assert!(ok.starts_with("HTTP/1.1 200"), "once it lets go: {ok}");
    let _ = child.kill();
    let _ = child.wait();
}
