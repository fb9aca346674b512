//! Shipping (docs/deploy.md): the static binaries and the FROM-scratch images build with the
//! project's scripts on the private Docker engine, without a registry, and the images run:
//! the forge image refuses to start without a seal, serves `/health`, answers a signed
//! heartbeat with a view signed by the same seal, keeps its state in its volume as the
//! non-root user across a restart; the agent image prints its version and help.
//!
//! It builds two release binaries (minutes on 2 cores), so it is not part of a plain
//! `cargo test` (`test = false` in tests/Cargo.toml): `scripts/test.sh` runs it as its own
//! step, `cargo test -p brh-tests --test shipping`, with `BRH_STATIC_PROFILE=dev` for a
//! faster unoptimized build. Needs the private engine
//! (`scripts/dockerd.sh start`) or `DOCKER_HOST`.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use brh_shared::replay::Nonce;
use brh_shared::sign::{
    sign_request, verify_view, HEADER_NODE, HEADER_NONCE, HEADER_SIG, HEADER_TS,
};
use brh_shared::wire::LeaderView;
use brh_tests::federation::{fresh_seal, http_get, wait_until, wall_ms};
use serde_json::{json, Value};

const PRIVATE_ENGINE: &str = "unix:///var/tmp/brh-docker/docker.sock";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| PRIVATE_ENGINE.into())
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", docker_host())
        .output()
        .expect("docker CLI")
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the container and volume this test made, whatever happens.
struct Cleanup(Vec<(&'static str, String)>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (kind, name) in &self.0 {
            let _ = match *kind {
                "container" => docker(&["rm", "-f", "-v", name]),
                _ => docker(&["volume", "rm", "-f", name]),
            };
        }
    }
}

/// One signed `POST /federation/heartbeat` as node `node`; returns the status and the body.
fn signed_heartbeat(
    addr: SocketAddr,
    seal: &str,
    node: &str,
    seq: u64,
    tamper: bool,
) -> (u16, Value) {
    let path = "/federation/heartbeat";
    let body = serde_json::to_vec(&json!({
        "env": "dev", "priority": 0, "draining": false, "uptime_s": 1, "version": "0.1.0"
    }))
    .unwrap();
    let key = brh_shared::keys::node_key(seal.as_bytes(), "dev", node);
    let h = sign_request(
        &key,
        "POST",
        path,
        node,
        wall_ms(),
        Nonce::new("5b1fb00700000001", seq),
        &body,
    );
    let sig = if tamper {
        h.sig.chars().rev().collect()
    } else {
        h.sig.clone()
    };
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{HEADER_NODE}: {}\r\n{HEADER_TS}: {}\r\n{HEADER_NONCE}: {}\r\n\
         {HEADER_SIG}: {sig}\r\nConnection: close\r\n\r\n",
        body.len(),
        h.node,
        h.ts_ms,
        h.nonce,
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

fn published(container: &str) -> SocketAddr {
    let port = docker_ok(&["port", container, "8787/tcp"]);
    port.lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no published port: {port:?}"))
}

#[test]
fn static_binaries_and_scratch_images_build_and_run() {
    // The scripts, as an operator runs them (build-images.sh runs build-static.sh).
    let out = Command::new(repo().join("scripts/build-images.sh"))
        .current_dir(repo())
        .env("DOCKER_HOST", docker_host())
        .env_remove("BRH_IMAGE_VERSION")
        .output()
        .expect("run scripts/build-images.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "build-images.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Unoptimized builds are tagged VERSION-dev and dev, never latest.
    let dev = std::env::var("BRH_STATIC_PROFILE").is_ok_and(|p| p == "dev");
    let pkg = env!("CARGO_PKG_VERSION");
    let (version, moving) = if dev {
        (format!("{pkg}-dev"), "dev")
    } else {
        (pkg.to_string(), "latest")
    };
    assert_eq!(stdout.lines().last().unwrap().trim(), version, "{stdout}");
    assert_eq!(stdout.matches("ldd: ").count(), 2, "{stdout}");
    assert!(!stdout.contains("dynamically linked"), "{stdout}");

    // The images: scratch (one layer per COPY, nothing else), non-root, the forge's volume
    // and ports.
    for (image, entry, port) in [
        ("brh-forge", "/forge", "8787/tcp"),
        ("brh-agent", "/brh-agent", "7878/tcp"),
    ] {
        for tag in [version.as_str(), moving] {
            let conf: Value = serde_json::from_str(&docker_ok(&[
                "image",
                "inspect",
                "--format",
                "{{json .Config}}",
                &format!("{image}:{tag}"),
            ]))
            .unwrap();
            assert_eq!(conf["User"], "65532:65532", "{image}: {conf}");
            assert_eq!(conf["Entrypoint"], json!([entry]), "{image}: {conf}");
            assert!(conf["ExposedPorts"].get(port).is_some(), "{image}: {conf}");
            assert_eq!(
                conf["Labels"]["org.opencontainers.image.version"], version,
                "{image}: {conf}"
            );
        }
    }
    let forge_image = format!("brh-forge:{version}");
    let agent_image = format!("brh-agent:{version}");
    let forge_conf: Value = serde_json::from_str(&docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        &forge_image,
    ]))
    .unwrap();
    assert!(forge_conf["Volumes"].get("/data").is_some(), "{forge_conf}");

    // The agent image runs its static binary.
    let v = docker_ok(&["run", "--rm", &agent_image, "--version"]);
    assert_eq!(v, format!("brh-agent {pkg}"));
    let help = docker_ok(&["run", "--rm", &agent_image, "--help"]);
    assert!(help.contains("run") && help.contains("root"), "{help}");

    // No default secret: without DOMINION_SEAL the forge image stops at once.
    let out = docker(&["run", "--rm", &forge_image]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DOMINION_SEAL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The forge image serves, as user 65532 writing to its volume.
    let name = format!("brh-ship-{}-{}", std::process::id(), wall_ms() % 100_000);
    let _cleanup = Cleanup(vec![("container", name.clone()), ("volume", name.clone())]);
    let seal = fresh_seal();
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        "127.0.0.1::8787",
        "-v",
        &format!("{name}:/data"),
        "-e",
        &format!("DOMINION_SEAL={seal}"),
        "-e",
        "BRH_TIMING_PROFILE=fast",
        &forge_image,
    ]);
    let addr = published(&name);
    let health = wait_until(Duration::from_secs(20), || http_get(addr, "/health"));
    let health = health.unwrap_or_else(|| {
        panic!(
            "the forge image did not serve /health: {}",
            String::from_utf8_lossy(&docker(&["logs", &name]).stderr)
        )
    });
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["version"], pkg, "{health}");

    // A signed heartbeat is answered with a view signed by the same seal; a forged one is not.
    let (status, err) = signed_heartbeat(addr, &seal, "ship-node", 1, true);
    assert_eq!(status, 401, "{err}");
    assert_eq!(err["error"]["code"], "bad_signature", "{err}");
    let (status, view) = signed_heartbeat(addr, &seal, "ship-node", 2, false);
    assert_eq!(status, 200, "{view}");
    let view: LeaderView = serde_json::from_value(view).unwrap();
    let key = brh_shared::keys::node_key(seal.as_bytes(), "dev", "ship-node");
    assert!(verify_view(&key, &view), "{view:?}");
    assert_eq!(view.leader.as_deref(), Some("ship-node"));
    assert_eq!(view.you.as_ref().map(|y| y.role.as_str()), Some("leader"));
    let term = view.term;
    assert!(term >= 1);

    // The grant was written to the volume (the term change is fsynced before the answer):
    // after a restart of the container the forge still knows the node and the term.
    docker_ok(&["restart", "--time", "10", &name]);
    let addr = published(&name);
    let leader = wait_until(Duration::from_secs(20), || {
        http_get(addr, "/federation/leader?env=dev")
    })
    .expect("the forge image did not come back after a restart");
    assert_eq!(leader["term"], term, "{leader}");
}
