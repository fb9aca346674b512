//! Role-change hooks: an operator's commands run when this node is promoted and when it is
//! demoted — Patroni's `on_role_change`, keepalived's `notify_master` / `notify_backup`. The
//! typical use is to move what is not a container with the lease: a floating IP, a DNS record.
//!
//! The contract (docs/design.md §6.9):
//! - Each hook is `sh -c COMMAND` in its own process group, with `BRH_ENV`, `BRH_NODE`,
//!   `BRH_TERM`, `BRH_ROLE` (`leader` on promote, `witness` on demote), `BRH_HOOK`
//!   (`promote` / `demote`) and, when the agent holds one for that term, `BRH_LEASE_TOKEN` (the
//!   forge's Ed25519 token: a downstream system can check that this node leads this term).
//! - Bounded: at `BRH_HOOK_TIMEOUT` (default 30 s) the whole process group is killed. Exit
//!   status, duration and the first bytes of its output are logged and recorded as events.
//! - A promote hook starts only while the lease is held (the containers' guard, for that
//!   term) and is killed as soon as it is not: a hook never runs on a node that could not
//!   prove it leads.
//! - Hooks run in their own task, in the order of the role changes, one at a time: a slow or
//!   hung hook never delays a heartbeat, and a demotion's hook never runs before the promote
//!   hook it ends has stopped. On shutdown (SIGTERM) the demote hook still runs: the agent
//!   waits for it, bounded by the timeout.
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

pub use crate::config::HookSettings;
use crate::node::{lock, Shared};
use crate::role::Transition;

/// How often a running promote hook re-checks that the lease is still held.
const GUARD_POLL: Duration = Duration::from_millis(100);
/// Output kept per stream for the log line and the event (the rest is read and dropped).
const OUTPUT_KEPT: usize = 2048;

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookEnd {
    Exited(i32),
    /// Ended by a signal it did not get from us.
    Signalled,
    /// Killed at the bound.
    TimedOut,
    /// A promote hook killed because the lease was no longer held.
    LeaseLost,
    /// Not started: the lease was no longer held (promote), or `sh` could not be spawned.
    NotStarted(String),
}

/// Runs the hook of one role change, if one is configured (followed in order by
/// [`Shared::follow`], in a task of its own).
pub async fn on_role_change(shared: &Shared, settings: &HookSettings, t: Transition) {
    match t {
        Transition::Promote { term, .. } => {
            if let Some(cmd) = &settings.on_promote {
                run(shared, settings, Hook::Promote, cmd, term).await;
            }
        }
        Transition::Demote { term, .. } => {
            if let Some(cmd) = &settings.on_demote {
                run(shared, settings, Hook::Demote, cmd, term).await;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    Promote,
    Demote,
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Hook::Promote => "promote",
            Hook::Demote => "demote",
        }
    }

    fn role(self) -> &'static str {
        match self {
            Hook::Promote => "leader",
            Hook::Demote => "witness",
        }
    }
}

/// Whether this node still leads `term` (the containers' guard).
fn holds(shared: &Shared, term: u64) -> bool {
    shared.guard().is_ok_and(|t| t == term)
}

async fn run(shared: &Shared, settings: &HookSettings, hook: Hook, cmd: &str, term: u64) {
    let started = Instant::now();
    let (end, stdout, stderr) = execute(shared, settings, hook, cmd, term).await;
    let ms = started.elapsed().as_millis();
    let node = &shared.cfg.node_id;
    let env = &shared.cfg.env;
    let name = hook.name();
    let output = summary(&stdout, &stderr);
    let what = match &end {
        HookEnd::Exited(0) => format!("exited 0 after {ms} ms"),
        HookEnd::Exited(c) => format!("exited {c} after {ms} ms"),
        HookEnd::Signalled => format!("ended by a signal after {ms} ms"),
        HookEnd::TimedOut => format!(
            "killed at its bound ({} ms, BRH_HOOK_TIMEOUT)",
            settings.timeout.as_millis()
        ),
        HookEnd::LeaseLost => format!("killed after {ms} ms: the lease of term {term} is gone"),
        HookEnd::NotStarted(why) => format!("not run: {why}"),
    };
    match end {
        HookEnd::Exited(0) => {
            tracing::info!(node = %node, env = %env, term, hook = name, "[HOOK] on-{name} {what}{output}")
        }
        _ => {
            tracing::warn!(node = %node, env = %env, term, hook = name, "[HOOK] on-{name} {what}{output}")
        }
    }
    shared
        .events
        .log(format!("HOOK: on-{name} term {term}: {what}"));
}

/// ` — stdout: …; stderr: …` with what the hook printed, trimmed; empty if nothing.
fn summary(stdout: &[u8], stderr: &[u8]) -> String {
    let part = |label: &str, b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let s = s.trim();
        (!s.is_empty()).then(|| format!("{label}: {}", s.replace('\n', " | ")))
    };
    let parts: Vec<String> = [part("stdout", stdout), part("stderr", stderr)]
        .into_iter()
        .flatten()
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" — {}", parts.join("; "))
    }
}

async fn execute(
    shared: &Shared,
    settings: &HookSettings,
    hook: Hook,
    cmd: &str,
    term: u64,
) -> (HookEnd, Vec<u8>, Vec<u8>) {
    if hook == Hook::Promote && !holds(shared, term) {
        let why = format!("the lease of term {term} was no longer held");
        return (HookEnd::NotStarted(why), Vec::new(), Vec::new());
    }
    let token = lock(&shared.lease_token)
        .as_ref()
        .filter(|(t, _)| *t == term)
        .map(|(_, tok)| tok.clone());
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(cmd)
        .env("BRH_HOOK", hook.name())
        .env("BRH_ROLE", hook.role())
        .env("BRH_ENV", &shared.cfg.env)
        .env("BRH_NODE", &shared.cfg.node_id)
        .env("BRH_TERM", term.to_string())
        .env_remove("BRH_LEASE_TOKEN")
        // The agent's own secrets are not the hook's business. (Hygiene, not a boundary: a
        // hook runs as the agent's user, with the operator's code.)
        .env_remove("DOMINION_SEAL")
        .env_remove("DOMINION_SEAL_PREVIOUS")
        .env_remove("BRH_NODE_KEY")
        .env_remove("BRH_OPERATOR_KEY")
        .env_remove("BRH_OPERATOR_CREDENTIAL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(t) = token {
        command.env("BRH_LEASE_TOKEN", t);
    }
    #[cfg(unix)]
    command.process_group(0);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let why = format!("cannot start /bin/sh: {e}");
            return (HookEnd::NotStarted(why), Vec::new(), Vec::new());
        }
    };
    let out = child.stdout.take().map(|s| tokio::spawn(keep_head(s)));
    let err = child.stderr.take().map(|s| tokio::spawn(keep_head(s)));
    let deadline = tokio::time::Instant::now() + settings.timeout;
    let end = loop {
        tokio::select! {
            status = child.wait() => break match status {
                Ok(s) => s.code().map_or(HookEnd::Signalled, HookEnd::Exited),
                Err(e) => HookEnd::NotStarted(format!("cannot wait for the hook: {e}")),
            },
            _ = tokio::time::sleep_until(deadline) => {
                kill_group(&mut child).await;
                break HookEnd::TimedOut;
            }
            _ = tokio::time::sleep(GUARD_POLL), if hook == Hook::Promote => {
                if !holds(shared, term) {
                    kill_group(&mut child).await;
                    break HookEnd::LeaseLost;
                }
            }
        }
    };
    // The group is gone (or exited), so the pipes close; bounded anyway in case a daemonised
    // grandchild left its own session holding them.
    let collect = |h: Option<JoinHandle<Vec<u8>>>| async move {
        match h {
            Some(h) => tokio::time::timeout(Duration::from_secs(1), h)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => Vec::new(),
        }
    };
    let stdout = collect(out).await;
    let stderr = collect(err).await;
    (end, stdout, stderr)
}

/// Reads a pipe to its end, keeping the first [`OUTPUT_KEPT`] bytes.
async fn keep_head(mut r: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = OUTPUT_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// Kills the hook's whole process group (the shell and whatever it started), then reaps it.
async fn kill_group(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a negative pid signals the process group we created for the
        // hook (`process_group(0)`: its id is the shell's pid); no memory is involved.
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
        }
    }
    let _ = child.kill().await;
}
