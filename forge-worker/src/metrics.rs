//! Prometheus metrics of the forge. Counters live in the process (a Worker isolate counts only
//! what it served); gauges are read from the stored state at scrape time.
//!
//! A small integer-only OpenMetrics text encoder instead of `prometheus-client` (its
//! `HashMap`/`RwLock` families, float encoder and trait objects are ~12 KB of the gzipped
//! Wasm): the text is the one `prometheus-client` writes for the same values (`# HELP` with a
//! `.` appended, `# TYPE`, `_total` on counters, escaped label values, no lines for a family
//! without series, `# EOF`; the unit test
//! below compares the two). The series of a family come sorted by their labels.
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A label set: writes its `key="value"` pairs, comma-separated, without braces.
pub trait LabelSet {
    fn encode(&self, out: &mut String);
}

/// Writes one `key="value"` pair (after a comma unless `first`), the value escaped like
/// `prometheus-client` does (`\\`, `\"`, `\n`).
fn label(out: &mut String, first: bool, key: &str, value: &str) {
    if !first {
        out.push(',');
    }
    out.push_str(key);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

macro_rules! label_set {
    ($(#[$m:meta])* $name:ident { $first:ident $(, $rest:ident)* }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Hash, PartialEq, Eq)]
        pub struct $name {
            pub $first: String,
            $(pub $rest: String,)*
        }
        impl LabelSet for $name {
            fn encode(&self, out: &mut String) {
                label(out, true, stringify!($first), &self.$first);
                $(label(out, false, stringify!($rest), &self.$rest);)*
            }
        }
    };
}

label_set!(EnvLabel { env });
label_set!(ReasonLabel { reason });
label_set!(DurabilityLabel { durability });
label_set!(
    /// A request served, by endpoint and by how it came: `http`, or `stream` (a frame on
    /// `/federation/stream`). Only known endpoints are counted, so the labels stay bounded.
    RequestLabel { path, transport }
);
label_set!(
    /// A storage operation, counted where the forge calls its store (`op` like `kv_write`,
    /// `kv_read`, `kv_list`, `do_rows_written`, `log_append`, `fsync`).
    OpLabel { op }
);

/// A monotonic counter (cheap to clone: clones share the value).
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1);
    }
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge holding an `i64` (cheap to clone: clones share the value).
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v as u64, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed) as i64
    }
}

impl From<Arc<AtomicU64>> for Counter {
    fn from(v: Arc<AtomicU64>) -> Self {
        Counter(v)
    }
}
impl From<Arc<AtomicU64>> for Gauge {
    fn from(v: Arc<AtomicU64>) -> Self {
        Gauge(v)
    }
}

/// The series of one family, sorted by their encoded labels (one type for every family; a
/// sorted `Vec`, not a `BTreeMap`: a few series per family, and no B-tree code in the Wasm).
type Series = Arc<Mutex<Vec<(String, Arc<AtomicU64>)>>>;

/// A metric per label set (cheap to clone: clones share the series).
pub struct Family<L, M> {
    series: Series,
    _kind: PhantomData<fn(&L) -> M>,
}

impl<L, M> Clone for Family<L, M> {
    fn clone(&self) -> Self {
        Family {
            series: self.series.clone(),
            _kind: PhantomData,
        }
    }
}

impl<L, M> Default for Family<L, M> {
    fn default() -> Self {
        Family {
            series: Series::default(),
            _kind: PhantomData,
        }
    }
}

impl<L: LabelSet, M: From<Arc<AtomicU64>>> Family<L, M> {
    /// The metric of `labels`, created at 0 on first use.
    pub fn get_or_create(&self, labels: &L) -> M {
        let mut key = String::new();
        labels.encode(&mut key);
        M::from(series_get(&self.series, key))
    }
}

fn series_get(series: &Series, key: String) -> Arc<AtomicU64> {
    let mut map = series.lock().unwrap_or_else(|e| e.into_inner());
    match map.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
        Ok(i) => map[i].1.clone(),
        Err(i) => {
            let v = Arc::<AtomicU64>::default();
            map.insert(i, (key, v.clone()));
            v
        }
    }
}

/// Counters a store adapter shares with the forge's registry (cheap to clone).
pub type StoreOps = Family<OpLabel, Counter>;

/// Adds `n` to the counter of `op`.
pub fn count_op(ops: &StoreOps, op: &str, n: u64) {
    ops.get_or_create(&OpLabel { op: op.into() }).inc_by(n);
}

#[derive(Default)]
pub struct Metrics {
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

/// Writes the decimal digits of `v` (what `itoa` writes).
fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.extend(buf[i..].iter().map(|&b| b as char));
}

const PREFIX: &str = "brh_forge_";

/// One metric's `# HELP` and `# TYPE` lines (`help` gets a `.`, as `prometheus-client` adds).
fn descriptor(out: &mut String, name: &str, help: &str, kind: &str) {
    for (tag, text, dot) in [("# HELP ", help, "."), ("# TYPE ", kind, "")] {
        out.push_str(tag);
        out.push_str(PREFIX);
        out.push_str(name);
        out.push(' ');
        out.push_str(text);
        out.push_str(dot);
        out.push('\n');
    }
}

/// One sample line: `brh_forge_<name>[_total][{labels}] <value>`.
fn sample(out: &mut String, name: &str, counter: bool, labels: &str, v: u64) {
    out.push_str(PREFIX);
    out.push_str(name);
    if counter {
        out.push_str("_total");
    }
    if !labels.is_empty() {
        out.push('{');
        out.push_str(labels);
        out.push('}');
    }
    out.push(' ');
    if !counter && (v as i64) < 0 {
        out.push('-');
        push_u64(out, (v as i64).unsigned_abs());
    } else {
        push_u64(out, v);
    }
    out.push('\n');
}

/// A family's descriptor and samples; nothing while it has no series (as `prometheus-client`).
fn family(out: &mut String, name: &str, help: &str, counter: bool, series: &Series) {
    let map = series.lock().unwrap_or_else(|e| e.into_inner());
    if map.is_empty() {
        return;
    }
    descriptor(out, name, help, if counter { "counter" } else { "gauge" });
    for (labels, v) in map.iter() {
        sample(out, name, counter, labels, v.load(Ordering::Relaxed));
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

    /// The OpenMetrics text of every metric, in registration order.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let families: [(&str, &str, bool, &Series); 9] = [
            (
                "heartbeats",
                "Heartbeats accepted",
                true,
                &self.heartbeats.series,
            ),
            (
                "requests",
                "Requests to known endpoints, by path and transport (http, stream)",
                true,
                &self.requests.series,
            ),
            (
                "rejections",
                "Requests refused, by error code",
                true,
                &self.rejections.series,
            ),
            (
                "leader_changes",
                "Leases granted to a new term",
                true,
                &self.leader_changes.series,
            ),
            (
                "split_brain_alarms",
                "Consensus reports that contradict the lease",
                true,
                &self.split_brain_alarms.series,
            ),
            (
                "peers_alive",
                "Peers heard from within one lease ttl",
                false,
                &self.peers_alive.series,
            ),
            (
                "term",
                "Current term (fencing token)",
                false,
                &self.term.series,
            ),
            (
                "leader_present",
                "1 if a valid lease exists",
                false,
                &self.leader_present.series,
            ),
            (
                "steps",
                "Election steps applied, by what they required of the store (volatile: nothing)",
                true,
                &self.steps.series,
            ),
        ];
        for (name, help, counter, series) in families {
            family(&mut out, name, help, counter, series);
        }
        descriptor(
            &mut out,
            "store_failures",
            "Requests answered 503 store_unavailable",
            "counter",
        );
        sample(
            &mut out,
            "store_failures",
            true,
            "",
            self.store_failures.get(),
        );
        family(
            &mut out,
            "store_operations",
            "Storage operations issued by this process, by kind",
            true,
            &self.store_ops.series,
        );
        out.push_str("# EOF\n");
        out
    }
}

#[cfg(test)]
mod tests {
    //! The text must be the one `prometheus-client` wrote before (e2e tests and scrapers
    //! parse it): the same values registered there, the two outputs compared.
    use super::*;
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter as PCounter;
    use prometheus_client::metrics::family::Family as PFamily;
    use prometheus_client::metrics::gauge::Gauge as PGauge;
    use prometheus_client::registry::Registry;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct PEnv {
        env: String,
    }
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct PReason {
        reason: String,
    }
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct PDurability {
        durability: String,
    }
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct PRequest {
        path: String,
        transport: String,
    }
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct POp {
        op: String,
    }

    /// `prometheus-client`'s text for the values, registered as the forge did.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        envs: &[(&str, u64, u64, u64, i64, i64, i64)],
        requests: &[(&str, &str, u64)],
        reasons: &[(&str, u64)],
        steps: &[(&str, u64)],
        failures: u64,
        ops: &[(&str, u64)],
    ) -> String {
        let mut r = Registry::with_prefix("brh_forge");
        let hb = PFamily::<PEnv, PCounter>::default();
        let req = PFamily::<PRequest, PCounter>::default();
        let rej = PFamily::<PReason, PCounter>::default();
        let lc = PFamily::<PEnv, PCounter>::default();
        let sb = PFamily::<PEnv, PCounter>::default();
        let pa = PFamily::<PEnv, PGauge>::default();
        let term = PFamily::<PEnv, PGauge>::default();
        let lp = PFamily::<PEnv, PGauge>::default();
        let st = PFamily::<PDurability, PCounter>::default();
        let sf: PCounter = PCounter::default();
        let so = PFamily::<POp, PCounter>::default();
        r.register("heartbeats", "Heartbeats accepted", hb.clone());
        r.register(
            "requests",
            "Requests to known endpoints, by path and transport (http, stream)",
            req.clone(),
        );
        r.register("rejections", "Requests refused, by error code", rej.clone());
        r.register("leader_changes", "Leases granted to a new term", lc.clone());
        r.register(
            "split_brain_alarms",
            "Consensus reports that contradict the lease",
            sb.clone(),
        );
        r.register(
            "peers_alive",
            "Peers heard from within one lease ttl",
            pa.clone(),
        );
        r.register("term", "Current term (fencing token)", term.clone());
        r.register("leader_present", "1 if a valid lease exists", lp.clone());
        r.register(
            "steps",
            "Election steps applied, by what they required of the store (volatile: nothing)",
            st.clone(),
        );
        r.register(
            "store_failures",
            "Requests answered 503 store_unavailable",
            sf.clone(),
        );
        r.register(
            "store_operations",
            "Storage operations issued by this process, by kind",
            so.clone(),
        );
        for &(e, h, l, s, a, t, p) in envs {
            let k = PEnv { env: e.into() };
            hb.get_or_create(&k).inc_by(h);
            lc.get_or_create(&k).inc_by(l);
            sb.get_or_create(&k).inc_by(s);
            pa.get_or_create(&k).set(a);
            term.get_or_create(&k).set(t);
            lp.get_or_create(&k).set(p);
        }
        for &(path, transport, n) in requests {
            req.get_or_create(&PRequest {
                path: path.into(),
                transport: transport.into(),
            })
            .inc_by(n);
        }
        for &(reason, n) in reasons {
            rej.get_or_create(&PReason {
                reason: reason.into(),
            })
            .inc_by(n);
        }
        for &(d, n) in steps {
            st.get_or_create(&PDurability {
                durability: d.into(),
            })
            .inc_by(n);
        }
        sf.inc_by(failures);
        for &(op, n) in ops {
            so.get_or_create(&POp { op: op.into() }).inc_by(n);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn ours(
        envs: &[(&str, u64, u64, u64, i64, i64, i64)],
        requests: &[(&str, &str, u64)],
        reasons: &[(&str, u64)],
        steps: &[(&str, u64)],
        failures: u64,
        ops: &[(&str, u64)],
    ) -> String {
        let m = Metrics::default();
        for &(e, h, l, s, a, t, p) in envs {
            let k = Metrics::env(e);
            m.heartbeats.get_or_create(&k).inc_by(h);
            m.leader_changes.get_or_create(&k).inc_by(l);
            m.split_brain_alarms.get_or_create(&k).inc_by(s);
            m.peers_alive.get_or_create(&k).set(a);
            m.term.get_or_create(&k).set(t);
            m.leader_present.get_or_create(&k).set(p);
        }
        for &(path, transport, n) in requests {
            m.requests
                .get_or_create(&RequestLabel {
                    path: path.into(),
                    transport: transport.into(),
                })
                .inc_by(n);
        }
        for &(reason, n) in reasons {
            m.rejections
                .get_or_create(&ReasonLabel {
                    reason: reason.into(),
                })
                .inc_by(n);
        }
        for &(d, n) in steps {
            m.steps
                .get_or_create(&DurabilityLabel {
                    durability: d.into(),
                })
                .inc_by(n);
        }
        m.store_failures.inc_by(failures);
        let ops_handle = m.store_ops.clone();
        for &(op, n) in ops {
            count_op(&ops_handle, op, n);
        }
        m.encode()
    }

    #[test]
    fn empty_registry_matches_prometheus_client() {
        assert_eq!(
            ours(&[], &[], &[], &[], 0, &[]),
            reference(&[], &[], &[], &[], 0, &[])
        );
    }

    #[test]
    fn one_series_per_family_matches_prometheus_client() {
        let envs = [("prod", 7, 2, 1, 3, 18_446_744_073, 1)];
        let requests = [("/federation/heartbeat", "stream", 41)];
        let reasons = [("replay", 5)];
        let steps = [("volatile", 9)];
        let ops = [("kv_write", u64::MAX)];
        assert_eq!(
            ours(&envs, &requests, &reasons, &steps, 3, &ops),
            reference(&envs, &requests, &reasons, &steps, 3, &ops)
        );
    }

    #[test]
    fn many_series_and_odd_labels_match_prometheus_client() {
        // The order of a family's series is a HashMap's in prometheus-client (sorted here):
        // compare the lines as multisets, and the order of the descriptors exactly.
        let envs = [
            ("dev", 1, 0, 0, 0, 0, 0),
            ("a\"b\\c\nd", 0, 1, 0, -4, i64::MIN, i64::MAX),
            ("zz", 10, 0, 3, 2, 1, 1),
        ];
        let requests = [
            ("/federation/heartbeat", "http", 1),
            ("/federation/heartbeat", "stream", 2),
            ("/metrics", "http", 0),
        ];
        let reasons = [("replay", 5), ("not_found", 1)];
        let steps = [("volatile", 9), ("write", 2), ("sync", 1)];
        let ops = [("kv_write", 3), ("do_rows_read", 0), ("fsync", 12)];
        let a = ours(&envs, &requests, &reasons, &steps, 0, &ops);
        let b = reference(&envs, &requests, &reasons, &steps, 0, &ops);
        let sorted = |s: &str| {
            let mut v: Vec<String> = s.lines().map(String::from).collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&a), sorted(&b));
        let descriptors = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| l.starts_with('#'))
                .map(String::from)
                .collect()
        };
        assert_eq!(descriptors(&a), descriptors(&b));
        assert!(a.ends_with("# EOF\n"));
    }
}
