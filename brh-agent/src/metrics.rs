//! Prometheus metrics of the agent (`GET /metrics`).
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// Who is speaking: `/metrics` series carry no env or node of their own (a scrape target is
/// one agent), so rules join on this to group agents by env.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    pub node: String,
    pub env: String,
    pub version: String,
}

pub struct Metrics {
    registry: Registry,
    pub info: Family<InfoLabels, Gauge>,
    pub is_leader: Gauge,
    pub term: Gauge,
    /// Seconds, fractional: Prometheus' base unit, at the agent's millisecond resolution.
    pub lease_remaining_seconds: Gauge<f64, AtomicU64>,
    pub forge_reachable: Gauge,
    pub heartbeats: Family<ResultLabel, Counter>,
    pub transitions: Family<KindLabel, Counter>,
    pub guard_refusals: Counter,
    pub forge_rtt_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("brh_agent");
        let m = Metrics {
            info: Family::default(),
            is_leader: Gauge::default(),
            term: Gauge::default(),
            lease_remaining_seconds: Gauge::default(),
            forge_reachable: Gauge::default(),
            heartbeats: Family::default(),
            transitions: Family::default(),
            guard_refusals: Counter::default(),
            forge_rtt_seconds: Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            registry: Registry::default(),
        };
        registry.register(
            "info",
            "1, labelled with this agent's node, env and version",
            m.info.clone(),
        );
        registry.register(
            "is_leader",
            "1 while this agent holds the lease",
            m.is_leader.clone(),
        );
        registry.register(
            "term",
            "Current term (fencing token) as last seen",
            m.term.clone(),
        );
        registry.register(
            "lease_remaining_seconds",
            "Time left before this leader's own deadline (0 for witnesses)",
            m.lease_remaining_seconds.clone(),
        );
        registry.register(
            "forge_reachable",
            "1 if the last heartbeat got a verified answer",
            m.forge_reachable.clone(),
        );
        registry.register(
            "heartbeats",
            "Heartbeats sent, by result",
            m.heartbeats.clone(),
        );
        registry.register(
            "transitions",
            "Role transitions, by kind",
            m.transitions.clone(),
        );
        registry.register(
            "guard_refusals",
            "Orchestration attempts refused by the leader guard",
            m.guard_refusals.clone(),
        );
        registry.register(
            "forge_rtt_seconds",
            "Round-trip time of answered heartbeats",
            m.forge_rtt_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Sets the one `brh_agent_info` series.
    pub fn identify(&self, node: &str, env: &str, version: &str) {
        self.info.clear();
        self.info
            .get_or_create(&InfoLabels {
                node: node.into(),
                env: env.into(),
                version: version.into(),
            })
            .set(1);
    }

    pub fn heartbeat(&self, result: &str) {
        self.heartbeats
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    pub fn transition(&self, kind: &str) {
        self.transitions
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.is_leader.set(1);
        m.heartbeat("ok");
        m.transition("promote");
        m.identify("n1", "dev", "0.1.0");
        m.lease_remaining_seconds.set(2.5);
        let t = m.render();
        assert!(
            t.contains(r#"brh_agent_info{node="n1",env="dev",version="0.1.0"} 1"#),
            "{t}"
        );
        assert!(t.contains("brh_agent_lease_remaining_seconds 2.5"), "{t}");
        assert!(t.contains("brh_agent_is_leader 1"), "{t}");
        assert!(
            t.contains("brh_agent_heartbeats_total{result=\"ok\"} 1"),
            "{t}"
        );
        assert!(t.ends_with("# EOF\n"));
    }
}
