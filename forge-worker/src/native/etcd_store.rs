//! The forge's state in etcd, for several forge replicas over one cluster
//! (`forge serve --store etcd`). The same contract as the file store — durable on change,
//! volatile on renewal — with the active replica's memory as the live state:
//!
//! ```text
//! {prefix}forge/active                the active replica's key, under its etcd lease (replica.rs)
//! {prefix}env/{env}/snap              {"upto": seq, "state": EnvState, "history": [...]}
//! {prefix}env/{env}/log/{seq:020}     one durable record or history row (the file store's line)
//! ```
//!
//! - A renewal writes nothing (0 etcd operations): the outcome is volatile.
//! - A durable step is **one transaction**, conditioned on the active key's create revision
//!   (this replica's generation) and putting the step's own lines — a few hundred bytes,
//!   whatever the fleet's size. A deposed replica's transaction fails; the step is not
//!   answered and the env leaves memory, as after any failed write (`Resident`).
//! - Every `COMPACT_LINES` lines (or when a step has more lines than a transaction should
//!   carry) the same transaction writes the snapshot and deletes the log instead.
//! - A replica that becomes active (a new generation) drops everything it held, reads the
//!   whole prefix in one linearizable range, and applies the restart rule to every env.
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use brh_shared::election::{ElectionConfig, Outcome, Record};
use brh_shared::wire::HistoryEntry;
use brh_shared::EnvState;
use serde::{Deserialize, Serialize};

use super::etcd::{prefix_end, Compare, Etcd, EtcdError, Op};
use super::replica::{active_key, Activity, ProofInstant};
use crate::metrics::{count_op, StoreOps};
use crate::store::{
    Answer, EnvSlot, Event, Held, HistoryPage, Resident, StepError, Stepped, Store, StoreError,
};

/// Lines in an env's log before the next durable step writes a snapshot instead.
const COMPACT_LINES: u64 = 512;
/// More lines than this in one step: snapshot instead (etcd caps a transaction at 128 ops).
const MAX_LINES_PER_TXN: usize = 100;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    /// The last log sequence number the snapshot includes.
    upto: u64,
    state: EnvState,
    history: Vec<HistoryEntry>,
}

#[derive(Serialize, Deserialize)]
enum Line {
    #[serde(rename = "r")]
    Record(Record),
    #[serde(rename = "h")]
    History(HistoryEntry),
}

/// One durable step's transaction.
struct Plan {
    ops: Vec<Op>,
    next_seq: u64,
    lines: u64,
    bytes: u64,
}

/// Beside an env's state: where its log stands.
#[derive(Debug, Default)]
struct EnvLog {
    next_seq: u64,
    /// Log lines since the snapshot.
    lines: u64,
}

pub struct EtcdStore {
    etcd: Etcd,
    prefix: String,
    cfg: ElectionConfig,
    activity: Activity,
    envs: Resident<EnvLog>,
    /// The generation whose state `envs` holds.
    loaded: Cell<Option<i64>>,
    /// Envs dropped after a failed write: reloaded from etcd on their next use.
    dropped: RefCell<BTreeSet<String>>,
    ops: StoreOps,
}

fn store_err(e: EtcdError) -> StoreError {
    StoreError(e.to_string())
}

impl EtcdStore {
    pub fn new(
        etcd: Etcd,
        prefix: String,
        cfg: ElectionConfig,
        activity: Activity,
        ops: StoreOps,
    ) -> Self {
        EtcdStore {
            etcd,
            prefix,
            cfg,
            activity,
            envs: Resident::default(),
            loaded: Cell::new(None),
            dropped: RefCell::default(),
            ops,
        }
    }

    fn env_prefix(&self, env: &str) -> String {
        format!("{}env/{env}/", self.prefix)
    }

    fn log_key(&self, env: &str, seq: u64) -> String {
        format!("{}log/{seq:020}", self.env_prefix(env))
    }

    /// Whether this replica serves now (the core skips its sweep otherwise).
    pub fn serving(&self) -> bool {
        self.activity.check(ProofInstant::now()).is_ok()
    }

    /// The earliest lease expiry of any env held (see `FileStore::lease_expiry`).
    pub fn lease_expiry(&self) -> Option<u64> {
        self.envs.fold(None, |min: Option<u64>, _, h| {
            match (min, h.slot.state.next_deadline_ms()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        })
    }

    /// The generation to answer for: takes over (reload + restart rule) when it is new.
    async fn current(&self, now_ms: u64) -> Result<i64, StoreError> {
        let generation = self
            .activity
            .check(ProofInstant::now())
            .map_err(StoreError)?;
        if self.loaded.get() == Some(generation) {
            return Ok(generation);
        }
        self.envs.clear();
        self.dropped.borrow_mut().clear();
        self.loaded.set(None);
        let started = Instant::now();
        let (kvs, revision) = self
            .etcd
            .range_prefix(&format!("{}env/", self.prefix))
            .await
            .map_err(store_err)?;
        count_op(&self.ops, "etcd_range", 1);
        let mut by_env: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
        let base = format!("{}env/", self.prefix);
        for kv in kvs {
            let Some(rest) = kv.key.strip_prefix(&base) else {
                continue;
            };
            let Some((env, tail)) = rest.split_once('/') else {
                continue;
            };
            by_env
                .entry(env.to_string())
                .or_default()
                .push((tail.to_string(), kv.value));
        }
        let n = by_env.len();
        for (env, keys) in by_env {
            let held = self.build(&env, keys, now_ms)?;
            self.envs.insert(&env, held);
        }
        // The load took time: the proof must still hold for this generation.
        let still = self
            .activity
            .check(ProofInstant::now())
            .map_err(StoreError)?;
        if still != generation {
            self.envs.clear();
            return Err(StoreError(
                "the active generation changed during takeover".into(),
            ));
        }
        self.loaded.set(Some(generation));
        tracing::info!(
            "[REPLICA] took over generation {generation} at etcd revision {revision}: {n} env(s) \
             loaded in {} ms, holders' leases extended to now + ttl (restart rule)",
            started.elapsed().as_millis()
        );
        Ok(generation)
    }

    /// An env from its keys (`snap`, `log/{seq}` in key order), then the restart rule.
    fn build(
        &self,
        env: &str,
        keys: Vec<(String, Vec<u8>)>,
        now_ms: u64,
    ) -> Result<Held<EnvLog>, StoreError> {
        let mut slot = EnvSlot::default();
        let mut upto = 0;
        let mut lines: Vec<(u64, Vec<u8>)> = Vec::new();
        for (tail, value) in keys {
            if tail == "snap" {
                let s: Snapshot = serde_json::from_slice(&value).map_err(|e| {
                    StoreError(format!("corrupt snapshot of env {env} in etcd: {e}"))
                })?;
                upto = s.upto;
                slot.state = s.state;
                slot.push_history(&s.history);
            } else if let Some(seq) = tail.strip_prefix("log/").and_then(|s| s.parse().ok()) {
                lines.push((seq, value));
            }
        }
        lines.sort_by_key(|l| l.0);
        let mut next_seq = upto + 1;
        let mut count = 0;
        for (seq, value) in lines {
            // Lines a snapshot already holds (a compaction deletes them in the same
            // transaction, so this is only a guard).
            if seq <= upto {
                continue;
            }
            match serde_json::from_slice::<Line>(&value) {
                Ok(Line::Record(r)) => slot.state.apply_record(r),
                Ok(Line::History(h)) => slot.push_history(std::slice::from_ref(&h)),
                Err(e) => {
                    return Err(StoreError(format!(
                        "corrupt log line {seq} of env {env} in etcd: {e}"
                    )))
                }
            }
            next_seq = seq + 1;
            count += 1;
        }
        slot.state.recover(&self.cfg, now_ms);
        Ok(Held {
            slot,
            extra: EnvLog {
                next_seq,
                lines: count,
            },
        })
    }

    /// An env dropped after a failed write, read back from etcd.
    async fn reload_dropped(&self, env: &str, now_ms: u64) -> Result<(), StoreError> {
        if !self.dropped.borrow().contains(env) {
            return Ok(());
        }
        let (kvs, _) = self
            .etcd
            .range_prefix(&self.env_prefix(env))
            .await
            .map_err(store_err)?;
        count_op(&self.ops, "etcd_range", 1);
        let base = self.env_prefix(env);
        let keys: Vec<(String, Vec<u8>)> = kvs
            .into_iter()
            .filter_map(|kv| {
                kv.key
                    .strip_prefix(&base)
                    .map(|t| (t.to_string(), kv.value))
            })
            .collect();
        if !keys.is_empty() {
            let held = self.build(env, keys, now_ms)?;
            self.envs.insert(env, held);
        }
        self.dropped.borrow_mut().remove(env);
        Ok(())
    }

    /// The step's transaction: its lines, or a snapshot in their place.
    fn plan(&self, env: &str, held: &Held<EnvLog>, outcome: &Outcome) -> Result<Plan, StoreError> {
        let lines: Vec<Line> = outcome
            .records
            .iter()
            .cloned()
            .map(Line::Record)
            .chain(outcome.history.iter().cloned().map(Line::History))
            .collect();
        let log = &held.extra;
        let compact =
            log.lines + lines.len() as u64 > COMPACT_LINES || lines.len() > MAX_LINES_PER_TXN;
        let mut ops = Vec::new();
        let mut bytes = 0u64;
        let next_seq = log.next_seq + lines.len() as u64;
        if compact {
            let snap = serde_json::to_vec(&Snapshot {
                upto: next_seq - 1,
                state: held.slot.state.clone(),
                history: held.slot.history.iter().cloned().collect(),
            })
            .map_err(|e| StoreError(format!("cannot encode a snapshot: {e}")))?;
            bytes += snap.len() as u64;
            ops.push(Op::Put {
                key: format!("{}snap", self.env_prefix(env)),
                value: snap,
                lease: None,
            });
            let log_prefix = format!("{}log/", self.env_prefix(env));
            ops.push(Op::DeleteRange {
                to: prefix_end(&log_prefix),
                from: log_prefix,
            });
        } else {
            for (i, line) in lines.iter().enumerate() {
                let value = serde_json::to_vec(line)
                    .map_err(|e| StoreError(format!("cannot encode a log line: {e}")))?;
                bytes += value.len() as u64;
                ops.push(Op::Put {
                    key: self.log_key(env, log.next_seq + i as u64),
                    value,
                    lease: None,
                });
            }
        }
        Ok(Plan {
            ops,
            next_seq,
            lines: if compact {
                0
            } else {
                log.lines + lines.len() as u64
            },
            bytes,
        })
    }
}

impl Store for EtcdStore {
    async fn step<T>(
        &self,
        env: &str,
        now_ms: u64,
        event: Event<'_>,
        answer: Answer<'_, T>,
    ) -> Result<Stepped<T>, StepError> {
        let generation = self.current(now_ms).await?;
        self.reload_dropped(env, now_ms).await?;
        let stepped = self
            .envs
            .step(
                env,
                now_ms,
                event,
                answer,
                EnvLog::default,
                async |outcome, _| {
                    let planned = self
                        .envs
                        .with(env, |held| self.plan(env, held, outcome))
                        .unwrap_or_else(|| Err(StoreError(format!("env {env} vanished"))));
                    let Plan {
                        ops,
                        next_seq,
                        lines,
                        bytes,
                    } = match planned {
                        Ok(p) => p,
                        Err(e) => {
                            self.dropped.borrow_mut().insert(env.to_string());
                            return Err(e);
                        }
                    };
                    let puts = ops.iter().filter(|o| matches!(o, Op::Put { .. })).count();
                    let txn = self
                        .etcd
                        .txn(
                            &[Compare::CreateRevision {
                                key: active_key(&self.prefix),
                                revision: generation,
                            }],
                            &ops,
                            &[],
                        )
                        .await;
                    count_op(&self.ops, "etcd_txn", 1);
                    match txn {
                        Ok(r) if r.succeeded => {
                            count_op(&self.ops, "etcd_put", puts as u64);
                            count_op(&self.ops, "etcd_bytes", bytes);
                            self.envs.with_mut(env, |held| {
                                held.extra.next_seq = next_seq;
                                held.extra.lines = lines;
                            });
                            Ok(())
                        }
                        Ok(_) => {
                            self.activity.lose(generation);
                            self.dropped.borrow_mut().insert(env.to_string());
                            Err(StoreError(
                                "this forge replica was deposed (its fenced write failed); \
                                 another replica is active"
                                    .into(),
                            ))
                        }
                        Err(e) => {
                            self.dropped.borrow_mut().insert(env.to_string());
                            Err(store_err(e))
                        }
                    }
                },
            )
            .await?;
        // The answer leaves only while the proof still holds (a pause mid-step ends it).
        if self.activity.check(ProofInstant::now()) != Ok(generation) {
            self.envs.evict(env);
            self.dropped.borrow_mut().insert(env.to_string());
            return Err(StepError::Store(StoreError(
                "this forge replica lost its proof of being active during the request".into(),
            )));
        }
        Ok(stepped)
    }

    async fn read<T>(
        &self,
        env: &str,
        now_ms: u64,
        f: Answer<'_, T>,
    ) -> Result<Option<T>, StoreError> {
        let generation = self.current(now_ms).await?;
        self.reload_dropped(env, now_ms).await?;
        let out = self.envs.with(env, |h| f(&h.slot.state));
        if self.activity.check(ProofInstant::now()) != Ok(generation) {
            return Err(StoreError(
                "this forge replica lost its proof of being active during the request".into(),
            ));
        }
        Ok(out)
    }

    async fn history(
        &self,
        env: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        self.current(super::now_ms()).await?;
        Ok(self
            .envs
            .with(env, |h| h.slot.page(cursor, limit))
            .unwrap_or_default())
    }

    async fn envs(&self) -> Result<Vec<String>, StoreError> {
        self.current(super::now_ms()).await?;
        let mut names = self.envs.names();
        for d in self.dropped.borrow().iter() {
            if !names.contains(d) {
                names.push(d.clone());
            }
        }
        Ok(names)
    }
}
