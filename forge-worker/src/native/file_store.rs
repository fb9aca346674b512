//! The native forge's on-disk store: per env, a snapshot plus an append-only log of durable
//! records, with the whole state in memory.
//!
//! ```text
//! DIR/envs/{env}.snap        {"gen": g, "state": EnvState, "history": [...]}  (replaced by rename)
//! DIR/envs/{env}.{g}.log     one JSON line per durable record or history row since snapshot g
//! ```
//!
//! Why a log and not one file per env or an embedded database: a renewal writes nothing (the
//! outcome is volatile), and a change appends a few hundred bytes — its own records — so the
//! cost of a step is the size of the change, never the size of the fleet. Terms change rarely,
//! and that is the only time the log is fsynced (`Durability::Sync`). The log is compacted
//! into a new snapshot once it holds more lines than `max(4096, 2 × peers)`, so the amortized
//! cost per record stays O(1) and a restart replays a bounded log. No dependency, and the
//! files stay greppable JSON. A row-per-peer database would buy nothing here: the writes we
//! keep are already per record.
//!
//! Crash safety: a snapshot is written to a temporary file, fsynced, renamed, and the
//! directory fsynced before the next log generation starts; loading reads the snapshot and
//! replays only its own generation's log, so rows are never applied twice. A torn last line
//! (the process died mid-append) is ignored. If an append fails, the env is dropped from
//! memory and reloaded from disk on next use (then the restart rule applies), so an answer
//! never reflects a change that was not written: the rule of every resident store
//! ([`Resident`]).
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use brh_shared::election::{Durability, ElectionConfig, Outcome, Record};
use brh_shared::wire::HistoryEntry;
use brh_shared::EnvState;
use serde::{Deserialize, Serialize};

use crate::metrics::{count_op, StoreOps};
use crate::store::{
    Answer, EnvSlot, Event, Held, HistoryPage, Resident, StepError, Stepped, Store, StoreError,
};

#[derive(Serialize, Deserialize)]
struct Snapshot {
    #[serde(default)]
    gen: u64,
    state: EnvState,
    history: Vec<HistoryEntry>,
}

/// One log line.
#[derive(Serialize, Deserialize)]
enum Line {
    #[serde(rename = "r")]
    Record(Record),
    #[serde(rename = "h")]
    History(HistoryEntry),
}

/// What the store keeps beside an env's state: its log generation and open log.
#[derive(Debug, Default)]
struct LogFile {
    gen: u64,
    /// Opened at the env's first durable step (a refused first request leaves no file).
    log: Option<File>,
    lines: usize,
}

pub struct FileStore {
    dir: PathBuf,
    cfg: ElectionConfig,
    envs: Resident<LogFile>,
    ops: StoreOps,
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("{what} {}: {e}", path.display()))
}

const MIN_COMPACT_LINES: usize = 4096;

impl FileStore {
    /// The earliest lease expiry of any env (the core sweeps right then, so failover does not
    /// wait for the periodic sweep).
    pub fn lease_expiry(&self) -> Option<u64> {
        self.envs.fold(None, |min: Option<u64>, _, h| {
            match (min, h.slot.state.next_deadline_ms()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        })
    }

    /// Opens (creating if needed) `dir`, loads every env in it and applies the restart rule
    /// at `now_ms`. `ops` counts log appends, fsyncs and snapshots.
    pub fn open(
        dir: &Path,
        cfg: ElectionConfig,
        now_ms: u64,
        ops: StoreOps,
    ) -> Result<Self, StoreError> {
        let envs_dir = dir.join("envs");
        fs::create_dir_all(&envs_dir).map_err(|e| io_err("cannot create", &envs_dir, e))?;
        let store = FileStore {
            dir: envs_dir.clone(),
            cfg,
            envs: Resident::default(),
            ops,
        };
        let entries = fs::read_dir(&envs_dir).map_err(|e| io_err("cannot read", &envs_dir, e))?;
        let mut names = std::collections::BTreeSet::new();
        for entry in entries {
            let path = entry
                .map_err(|e| io_err("cannot read", &envs_dir, e))?
                .path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let env = name
                .strip_suffix(".snap")
                .or_else(|| name.strip_suffix(".json"))
                .or_else(|| {
                    name.strip_suffix(".log")
                        .and_then(|n| n.rsplit_once('.').map(|p| p.0))
                });
            if let Some(env) = env.filter(|e| !e.starts_with('.')) {
                names.insert(env.to_string());
            }
        }
        for env in names {
            let held = store.load_env(&env, now_ms)?;
            store.envs.insert(&env, held);
        }
        Ok(store)
    }

    fn snap_path(&self, env: &str) -> PathBuf {
        self.dir.join(format!("{env}.snap"))
    }

    fn log_path(&self, env: &str, gen: u64) -> PathBuf {
        self.dir.join(format!("{env}.{gen}.log"))
    }

    /// Snapshot + its log generation, then the restart rule.
    fn load_env(&self, env: &str, now_ms: u64) -> Result<Held<LogFile>, StoreError> {
        let snap_path = self.snap_path(env);
        let legacy = self.dir.join(format!("{env}.json"));
        let snap = match fs::read(&snap_path) {
            Ok(bytes) => Some((bytes, snap_path.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match fs::read(&legacy) {
                Ok(bytes) => Some((bytes, legacy.clone())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(io_err("cannot read", &legacy, e)),
            },
            Err(e) => return Err(io_err("cannot read", &snap_path, e)),
        };
        let mut slot = EnvSlot::default();
        let mut gen = 0;
        if let Some((bytes, path)) = snap {
            let s: Snapshot =
                serde_json::from_slice(&bytes).map_err(|e| io_err("corrupt state in", &path, e))?;
            gen = s.gen;
            slot.state = s.state;
            slot.push_history(&s.history);
        }
        let log_path = self.log_path(env, gen);
        let mut log_lines = 0;
        match fs::read(&log_path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let complete = text.ends_with('\n');
                let lines: Vec<&str> = text.lines().collect();
                for (i, line) in lines.iter().enumerate() {
                    if line.is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<Line>(line) {
                        Ok(Line::Record(r)) => slot.state.apply_record(r),
                        Ok(Line::History(h)) => slot.push_history(std::slice::from_ref(&h)),
                        // The process died mid-append: that record was never acknowledged.
                        Err(_) if i + 1 == lines.len() && !complete => {
                            tracing::warn!("{}: ignoring a torn last line", log_path.display());
                        }
                        Err(e) => {
                            return Err(io_err(&format!("corrupt line {} in", i + 1), &log_path, e))
                        }
                    }
                    log_lines += 1;
                }
                if !complete && !bytes.is_empty() {
                    // Cut the torn tail so the next append starts on a fresh line.
                    let keep = text.rfind('\n').map_or(0, |i| i + 1);
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&log_path)
                        .map_err(|e| io_err("cannot open", &log_path, e))?;
                    f.set_len(keep as u64)
                        .map_err(|e| io_err("cannot truncate", &log_path, e))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("cannot read", &log_path, e)),
        }
        slot.state.recover(&self.cfg, now_ms);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io_err("cannot open", &log_path, e))?;
        Ok(Held {
            slot,
            extra: LogFile {
                gen,
                log: Some(log),
                lines: log_lines,
            },
        })
    }

    /// Appends the outcome's records and history rows; fsyncs on a term change.
    fn append(
        &self,
        env: &str,
        held: &mut Held<LogFile>,
        outcome: &Outcome,
    ) -> Result<(), StoreError> {
        let Held { slot, extra: files } = held;
        let mut buf = Vec::with_capacity(256);
        let lines = outcome
            .records
            .iter()
            .cloned()
            .map(Line::Record)
            .chain(outcome.history.iter().cloned().map(Line::History));
        let mut n = 0;
        for line in lines {
            serde_json::to_writer(&mut buf, &line)
                .map_err(|e| StoreError(format!("cannot encode a log line: {e}")))?;
            buf.push(b'\n');
            n += 1;
        }
        let path = self.log_path(env, files.gen);
        let log = match &mut files.log {
            Some(log) => log,
            None => {
                // A new env: its log starts at generation 0, and the directory entry is made
                // durable with it.
                let log = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| io_err("cannot open", &path, e))?;
                if let Ok(d) = File::open(&self.dir) {
                    let _ = d.sync_all();
                }
                files.log.insert(log)
            }
        };
        log.write_all(&buf)
            .map_err(|e| io_err("cannot append to", &path, e))?;
        count_op(&self.ops, "log_append", 1);
        count_op(&self.ops, "log_bytes", buf.len() as u64);
        if outcome.durability == Durability::Sync {
            log.sync_data()
                .map_err(|e| io_err("cannot sync", &path, e))?;
            count_op(&self.ops, "fsync", 1);
        }
        files.lines += n;
        if files.lines > MIN_COMPACT_LINES.max(2 * slot.state.peers.len()) {
            self.compact(env, slot, files)?;
        }
        Ok(())
    }

    /// Writes the whole env as snapshot `gen + 1` and starts an empty log for it.
    fn compact(&self, env: &str, slot: &EnvSlot, files: &mut LogFile) -> Result<(), StoreError> {
        let gen = files.gen + 1;
        let snap_path = self.snap_path(env);
        let tmp = self.dir.join(format!(".{env}.snap.tmp"));
        let bytes = serde_json::to_vec(&Snapshot {
            gen,
            state: slot.state.clone(),
            history: slot.history.iter().cloned().collect(),
        })
        .map_err(|e| io_err("cannot encode", &snap_path, e))?;
        let mut f = File::create(&tmp).map_err(|e| io_err("cannot write", &tmp, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_err("cannot write", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, &snap_path).map_err(|e| io_err("cannot replace", &snap_path, e))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        let new_log = self.log_path(env, gen);
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&new_log)
            .map_err(|e| io_err("cannot open", &new_log, e))?;
        let old = self.log_path(env, files.gen);
        let _ = fs::remove_file(&old);
        let _ = fs::remove_file(self.dir.join(format!("{env}.json")));
        files.gen = gen;
        files.log = Some(log);
        files.lines = 0;
        count_op(&self.ops, "snapshot", 1);
        count_op(&self.ops, "snapshot_bytes", bytes.len() as u64);
        Ok(())
    }

    /// The env in memory, loading it from disk if it was dropped after a write failure.
    fn ensure_loaded(&self, env: &str, now_ms: u64) -> Result<(), StoreError> {
        if self.envs.contains(env) {
            return Ok(());
        }
        let exists = self.snap_path(env).exists()
            || self.dir.join(format!("{env}.json")).exists()
            || self.log_path(env, 0).exists();
        if exists {
            let held = self.load_env(env, now_ms)?;
            self.envs.insert(env, held);
        }
        Ok(())
    }
}

impl Store for FileStore {
    async fn step<T>(
        &self,
        env: &str,
        now_ms: u64,
        event: Event<'_>,
        answer: Answer<'_, T>,
    ) -> Result<Stepped<T>, StepError> {
        self.ensure_loaded(env, now_ms)?;
        self.envs
            .step(
                env,
                now_ms,
                event,
                answer,
                LogFile::default,
                async |outcome, _| {
                    self.envs
                        .with_mut(env, |held| self.append(env, held, outcome))
                        .unwrap_or_else(|| Err(StoreError(format!("env {env} vanished"))))
                },
            )
            .await
    }

    async fn read<T>(
        &self,
        env: &str,
        now_ms: u64,
        f: Answer<'_, T>,
    ) -> Result<Option<T>, StoreError> {
        self.ensure_loaded(env, now_ms)?;
        Ok(self.envs.with(env, |h| f(&h.slot.state)))
    }

    async fn history(
        &self,
        env: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        Ok(self
            .envs
            .with(env, |h| h.slot.page(cursor, limit))
            .unwrap_or_default())
    }

    async fn envs(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.envs.names())
    }
}

#[cfg(test)]
mod tests;
