//! A real etcd cluster for the tests (Debian's `etcd-server`; `scripts/setup-etcd.sh`
//! installs it): one or three members on free loopback ports, each member killable and
//! restartable on its own data (a member that comes back rejoins with what it had), and the
//! forge replicas that run over it (`forge serve --store etcd`).
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::federation::*;

pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub struct EtcdMember {
    pub name: String,
    pub client: SocketAddr,
    peer: SocketAddr,
    child: Option<Child>,
}

impl EtcdMember {
    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }
}

pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    dir: PathBuf,
    initial_cluster: String,
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

impl EtcdCluster {
    /// `n` members (1 or 3), started together; returns once the cluster has a leader.
    pub fn start(dir: &Path, n: usize) -> EtcdCluster {
        let members: Vec<EtcdMember> = (0..n)
            .map(|i| EtcdMember {
                name: format!("e{}", i + 1),
                client: free_addr(),
                peer: free_addr(),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = EtcdCluster {
            members,
            dir: dir.to_path_buf(),
            initial_cluster,
        };
        for i in 0..n {
            c.spawn(i);
        }
        assert!(
            c.wait_healthy(Duration::from_secs(30)),
            "etcd did not become healthy (see {}/etcd-*.log)",
            dir.display()
        );
        c
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("etcd-{}.log", m.name)))
            .unwrap();
        // On a restart the data dir holds the membership; the initial-cluster flags are
        // then ignored, as they are for any etcd member that rejoins.
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(self.dir.join(format!("etcd-{}", m.name)))
            .args(["--name", &m.name])
            .args(["--listen-client-urls", &format!("http://{}", m.client)])
            .args(["--advertise-client-urls", &format!("http://{}", m.client)])
            .args(["--listen-peer-urls", &format!("http://{}", m.peer)])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://{}", m.peer),
            ])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", "brh-test"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian etcd-server; scripts/setup-etcd.sh installs it)");
        self.members[i].child = Some(child);
    }

    /// The client URLs, comma-separated (`--etcd-endpoints`).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `kill -9` of member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data.
    pub fn restart(&mut self, i: usize) {
        if !self.members[i].is_up() {
            self.spawn(i);
        }
    }

    /// Whether some running member reports a healthy cluster (a leader, a quorum).
    pub fn healthy(&self) -> bool {
        self.members
            .iter()
            .filter(|m| m.is_up())
            .any(|m| http_get_text(m.client, "/health").is_some_and(|t| t.contains("\"true\"")))
    }

    pub fn wait_healthy(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.healthy().then_some(())).is_some()
    }

    /// `etcd_mvcc_put_total` of the first running member: every member applies every put,
    /// so one member's count is the cluster's.
    pub fn puts(&self) -> f64 {
        let m = self
            .members
            .iter()
            .find(|m| m.is_up())
            .expect("a member up");
        puts_at(m.client).expect("etcd_mvcc_put_total")
    }
}

/// `etcd_mvcc_put_total` of the etcd member whose client address is `addr`.
pub fn puts_at(addr: SocketAddr) -> Option<f64> {
    http_get_text(addr, "/metrics")?
        .lines()
        .find_map(|l| l.strip_prefix("etcd_mvcc_put_total "))
        .and_then(|v| v.trim().parse().ok())
}

/// One forge replica over etcd at `endpoints`, listening (and advertised) on `listen`, with
/// `--etcd-lease-ttl etcd_ttl_s` and the forge timing `timing` (e.g. `["--profile",
/// "default"]`).
pub fn replica(
    dir: &Path,
    seal: &str,
    endpoints: &str,
    listen: SocketAddr,
    etcd_ttl_s: u64,
    timing: &[&str],
) -> Forge {
    let url = format!("http://{listen}");
    let ttl = etcd_ttl_s.to_string();
    let mut args = vec![
        "--store",
        "etcd",
        "--etcd-endpoints",
        endpoints,
        "--etcd-lease-ttl",
        &ttl,
        "--advertise-url",
        &url,
    ];
    args.extend_from_slice(timing);
    Forge::start_with(dir, seal, Some(listen), 30_000, &args)
}

/// Whether the replica at `addr` serves (an env view) or refuses as a standby; `None` when
/// it does not answer at all.
pub fn serves(addr: SocketAddr) -> Option<bool> {
    let v = http_get(addr, "/federation/leader?env=dev")?;
    if v.get("env").is_some() {
        Some(true)
    } else {
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(v["error"]["code"], "store_unavailable", "{v}");
        assert!(
            msg.contains("standby") || msg.contains("active") || msg.contains("storage"),
            "{msg}"
        );
        Some(false)
    }
}
