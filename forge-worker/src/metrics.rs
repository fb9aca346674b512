//! Prometheus metrics of the forge. Counters live in the process (a Worker isolate counts only
//! what it served); gauges are read from the stored state at scrape time.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvLabel {
    pub env: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurabilityLabel {
    pub durability: String,
}

/// A request served, by endpoint and by how it came: `http`, or `stream` (a frame on
/// `/federation/stream`). Only known endpoints are counted, so the labels stay bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabel {
    pub path: String,
    pub transport: String,
}

/// A storage operation, counted where the forge calls its store (`op` like `kv_write`,
/// `kv_read`, `kv_list`, `do_rows_written`, `log_append`, `fsync`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: String,
}

/// Counters a store adapter shares with the forge's registry (cheap to clone).
pub type StoreOps = Family<OpLabel, Counter>;

/// Adds `n` to the counter of `op`.
pub fn count_op(ops: &StoreOps, op: &str, n: u64) {
    ops.get_or_create(&OpLabel { op: op.into() }).inc_by(n);
}

pub struct Metrics {
    registry: Registry,
    pub heartbeats: Family<EnvLabel, Counter>,
    pub requests: Family<RequestLabel, Counter>,
    pub rejections: Family<ReasonLabel, Counter>,
    pub leader_changes: Family<EnvLabel, Counter>,
    pub split_brain_alarms: Family<EnvLabel, Counter>,
    pub peers_alive: Family<EnvLabel, Gauge>,
    pub term: Family<EnvLabel, Gauge>,
    pub leader_present: Family<EnvLabel, Gauge>,
    pub steps: Family<DurabilityLabel, Counter>,
    pub store_failures: Counter,
    pub store_ops: StoreOps,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("brh_forge");
        let m = Metrics {
            heartbeats: Family::default(),
            requests: Family::default(),
            rejections: Family::default(),
            leader_changes: Family::default(),
            split_brain_alarms: Family::default(),
            peers_alive: Family::default(),
            term: Family::default(),
            leader_present: Family::default(),
            steps: Family::default(),
            store_failures: Counter::default(),
            store_ops: Family::default(),
            registry: Registry::default(),
        };
        registry.register("heartbeats", "Heartbeats accepted", m.heartbeats.clone());
        registry.register(
            "requests",
            "Requests to known endpoints, by path and transport (http, stream)",
            m.requests.clone(),
        );
        registry.register(
            "rejections",
            "Requests refused, by error code",
            m.rejections.clone(),
        );
        registry.register(
            "leader_changes",
            "Leases granted to a new term",
            m.leader_changes.clone(),
        );
        registry.register(
            "split_brain_alarms",
            "Consensus reports that contradict the lease",
            m.split_brain_alarms.clone(),
        );
        registry.register(
            "peers_alive",
            "Peers heard from within one lease ttl",
            m.peers_alive.clone(),
        );
        registry.register("term", "Current term (fencing token)", m.term.clone());
        registry.register(
            "leader_present",
            "1 if a valid lease exists",
            m.leader_present.clone(),
        );
        registry.register(
            "steps",
            "Election steps applied, by what they required of the store (volatile: nothing)",
            m.steps.clone(),
        );
        registry.register(
            "store_failures",
            "Requests answered 503 store_unavailable",
            m.store_failures.clone(),
        );
        registry.register(
            "store_operations",
            "Storage operations issued by this process, by kind",
            m.store_ops.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn env(env: &str) -> EnvLabel {
        EnvLabel { env: env.into() }
    }

    pub fn count_outcome(&self, outcome: &brh_shared::Outcome) {
        let d = match outcome.durability {
            brh_shared::Durability::Volatile => "volatile",
            brh_shared::Durability::Write => "write",
            brh_shared::Durability::Sync => "sync",
        };
        self.steps
            .get_or_create(&DurabilityLabel {
                durability: d.into(),
            })
            .inc();
    }

    pub fn reject(&self, reason: &str) {
        self.rejections
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
