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

pub struct Metrics {
    registry: Registry,
    pub heartbeats: Family<EnvLabel, Counter>,
    pub rejections: Family<ReasonLabel, Counter>,
    pub leader_changes: Family<EnvLabel, Counter>,
    pub split_brain_alarms: Family<EnvLabel, Counter>,
    pub peers_alive: Family<EnvLabel, Gauge>,
    pub term: Family<EnvLabel, Gauge>,
    pub leader_present: Family<EnvLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("brh_forge");
        let m = Metrics {
            heartbeats: Family::default(),
            rejections: Family::default(),
            leader_changes: Family::default(),
            split_brain_alarms: Family::default(),
            peers_alive: Family::default(),
            term: Family::default(),
            leader_present: Family::default(),
            registry: Registry::default(),
        };
        registry.register("heartbeats", "Heartbeats accepted", m.heartbeats.clone());
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
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn env(env: &str) -> EnvLabel {
        EnvLabel { env: env.into() }
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
