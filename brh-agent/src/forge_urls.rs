//! The forge addresses an agent may talk to (`BRH_FORGE_URL=URL[,URL…]`), and which one it
//! talks to now.
//!
//! Self-hosted forge replicas over etcd (docs/replicas.md) answer only on the active one; a
//! standby answers 503 `store_unavailable`, a dead one not at all. The agent keeps one
//! *current* address, shared by its HTTP requests, its reads and its stream, and moves to the
//! next one in the list when the current one fails that way. Which replica answers is never a
//! safety question — a replica answers only while it can prove it is the active one, and its
//! grants are fenced in etcd — so rotating is only about finding the one that serves.
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// A non-empty list of forge base URLs and the index of the one in use (shared by clones).
#[derive(Clone, Debug)]
pub struct ForgeUrls {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    urls: Vec<String>,
    current: AtomicUsize,
    /// Per address, when a move away from it was last logged as a warning (ms since
    /// `epoch`): during an outage the agent cycles through the list, once loudly is enough.
    warned_ms: Vec<AtomicU64>,
    epoch: std::time::Instant,
}

/// A move away from an address is a warning at most this often (a debug line otherwise).
const WARN_EVERY_MS: u64 = 30_000;

impl ForgeUrls {
    /// From a checked comma-separated list (`config::check_forge_url`). An empty list is a
    /// programming error: configuration always yields at least the root's address.
    pub fn parse(list: &str) -> ForgeUrls {
        let urls: Vec<String> = list
            .split(',')
            .map(|u| u.trim().trim_end_matches('/'))
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect();
        assert!(!urls.is_empty(), "a forge URL list is never empty");
        ForgeUrls {
            inner: Arc::new(Inner {
                warned_ms: urls.iter().map(|_| AtomicU64::new(u64::MAX)).collect(),
                urls,
                current: AtomicUsize::new(0),
                epoch: std::time::Instant::now(),
            }),
        }
    }

    pub fn len(&self) -> usize {
        self.inner.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn all(&self) -> &[String] {
        &self.inner.urls
    }

    /// The address in use and its index (pass the index back to [`Self::failed`]).
    pub fn current(&self) -> (usize, &str) {
        let i = self.inner.current.load(Ordering::Acquire) % self.len();
        (i, &self.inner.urls[i])
    }

    /// The address at `i`.
    pub fn get(&self, i: usize) -> &str {
        &self.inner.urls[i % self.len()]
    }

    /// The address at `i` did not serve (unreachable, or a standby): move on to the next one,
    /// unless someone else already has (the HTTP client and the stream may both notice one
    /// outage; it must move the agent one step, not two). Returns the address now in use.
    pub fn failed(&self, i: usize) -> &str {
        let n = self.len();
        if n > 1 {
            let (from, to) = (i % n, (i + 1) % n);
            let moved = self
                .inner
                .current
                .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if moved {
                let (a, b) = (&self.inner.urls[from], &self.inner.urls[to]);
                let now = self.inner.epoch.elapsed().as_millis() as u64;
                let last = self.inner.warned_ms[from].load(Ordering::Relaxed);
                if last == u64::MAX || now.saturating_sub(last) >= WARN_EVERY_MS {
                    self.inner.warned_ms[from].store(now, Ordering::Relaxed);
                    tracing::warn!(
                        "[HB] forge {a} does not serve (unreachable, silent or a standby): \
                         trying {b}"
                    );
                } else {
                    tracing::debug!("[HB] forge {a} does not serve: trying {b}");
                }
            }
        }
        self.current().1
    }

    /// Indices in the order to try them: the current one first, then the rest of the list.
    pub fn from_current(&self) -> impl Iterator<Item = usize> {
        let (start, n) = (self.current().0, self.len());
        (0..n).map(move |k| (start + k) % n)
    }
}

impl std::fmt::Display for ForgeUrls {
    /// The list as configured (`a,b`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.inner.urls.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failure_moves_one_step_even_when_noticed_twice() {
        let u = ForgeUrls::parse("http://a, http://b/,http://c");
        assert_eq!(u.all(), ["http://a", "http://b", "http://c"]);
        assert_eq!(u.current(), (0, "http://a"));
        // The client and the stream both saw `a` fail: one step.
        assert_eq!(u.failed(0), "http://b");
        assert_eq!(u.failed(0), "http://b");
        assert_eq!(u.from_current().collect::<Vec<_>>(), [1, 2, 0]);
        assert_eq!(u.failed(1), "http://c");
        assert_eq!(u.failed(2), "http://a");
        // Clones share the current address.
        let v = u.clone();
        v.failed(0);
        assert_eq!(u.current().1, "http://b");
    }

    #[test]
    fn a_single_address_never_moves() {
        let u = ForgeUrls::parse("http://only");
        assert_eq!(u.failed(0), "http://only");
        assert_eq!(u.from_current().collect::<Vec<_>>(), [0]);
        assert_eq!(u.to_string(), "http://only");
    }
}
