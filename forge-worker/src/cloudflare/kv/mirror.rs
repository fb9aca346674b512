//! The register's write-behind copy of its durable changes into KV, so `/federation/envs`, the
//! cron and a `kv`-mode reader see the fleet. Written only when the leader, the term or the
//! membership changes, *after* the register's critical section, by one drain per object that
//! writes the changes in order. A KV failure never delays, fails or reorders a grant: the
//! change stays queued and is retried on the next change or alarm
//! (`brh_forge_store_operations_total{op="kv_mirror_failures"}` counts the failures).
use crate::vecmap::VecMap;
use std::cell::{Cell, RefCell};

use brh_shared::election::{Outcome, Record};
use brh_shared::wire::HistoryEntry;
use worker::console_error;

use super::layout::Op;
use super::Kv;
use crate::metrics::count_op;

/// What the mirror still has to write for one env.
#[derive(Debug, Default)]
pub struct Pending {
    /// The env is new to KV: write its index key.
    pub new_env: bool,
    pub lease: bool,
    /// The nodes whose peer rows changed (a set: the values are `()`).
    pub peers: VecMap<()>,
    pub history: Vec<HistoryEntry>,
}

impl Pending {
    /// Puts `older` (a failed attempt) back in front of what was queued meanwhile.
    fn merge_older(&mut self, older: Pending) {
        self.new_env |= older.new_env;
        self.lease |= older.lease;
        for (node, ()) in older.peers.iter() {
            self.peers.insert(node.clone(), ());
        }
        let mut history = older.history;
        history.append(&mut self.history);
        self.history = history;
    }
}

pub struct KvMirror {
    pub kv: Kv,
    pending: RefCell<VecMap<Pending>>,
    draining: Cell<bool>,
}

impl KvMirror {
    pub fn new(kv: Kv) -> Self {
        KvMirror {
            kv,
            pending: RefCell::default(),
            draining: Cell::new(false),
        }
    }

    /// Remembers what must be written for a durable outcome that was persisted.
    pub fn queue(&self, env: &str, outcome: &Outcome, new_env: bool) {
        if outcome.is_volatile() {
            return;
        }
        let mut pending = self.pending.borrow_mut();
        let p = pending.get_or_insert_with(env, Pending::default);
        p.new_env |= new_env;
        for r in &outcome.records {
            match r {
                Record::Lease(_) => p.lease = true,
                Record::Peer { node, .. } | Record::Forget { node } => {
                    p.peers.insert(node.clone(), ());
                }
            }
        }
        p.history.extend_from_slice(&outcome.history);
    }

    pub fn is_idle(&self) -> bool {
        self.pending.borrow().is_empty()
    }

    /// Writes the queued changes, env by env, in order; one drain at a time. `plan` turns an
    /// env's pending changes into KV writes from the register's *current* state, so the
    /// mirror converges to the register (`None`: the env is no longer held; skip it).
    pub async fn drain(&self, plan: &dyn Fn(&str, &Pending) -> Option<Vec<Op>>) {
        if self.draining.replace(true) {
            return;
        }
        loop {
            let Some((env, p)) = self.pending.borrow_mut().pop_first() else {
                break;
            };
            let Some(ops) = plan(&env, &p) else {
                continue;
            };
            if let Err(e) = self.kv.apply_all(ops).await {
                console_error!(
                    "mirroring env {env} to KV failed (retried on the next change): {e}"
                );
                count_op(&self.kv.ops, "kv_mirror_failures", 1);
                self.pending
                    .borrow_mut()
                    .get_or_insert_with(&env, Pending::default)
                    .merge_older(p);
                break;
            }
        }
        self.draining.set(false);
    }
}
