//! Which forge replica serves: one active replica per etcd cluster (per `--etcd-prefix`),
//! elected by creating one key under an etcd lease; every other replica is on standby.
//!
//! The rules (docs/design.md §12 says why they are enough):
//! - **A replica serves only while it can prove its key exists.** Its proof runs until the
//!   *send* time of its last answered keepalive + the lease's ttl − a margin, measured on its
//!   own clock that counts suspended time ([`ProofInstant`]): etcd ends a lease no earlier than ttl after it *received* that
//!   keepalive, so the proof ends before another replica could create the key — the same
//!   rule an agent follows for its own lease. A paused (SIGSTOP) or cut-off replica finds its
//!   proof gone when it looks again, and every answer looks (`Activity::check`).
//! - **Every durable write is fenced** by a transaction conditioned on the key's create
//!   revision (the replica's *generation*): a deposed replica's write fails and is not
//!   answered.
//! - **A new generation starts from the store, never from memory.** Whenever a replica wins
//!   the key it reloads every env from etcd and applies the restart rule (the holder's lease
//!   extended to takeover + ttl, same term). What it held in memory before is dropped, even if
//!   it was the previous active replica: a campaign whose answer was lost, then won again,
//!   is a new generation (the exhaustive model found the overlap that keeping memory allows).
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::etcd::{Compare, Etcd, Op};

/// A point on the clock a replica's proof is measured on: `CLOCK_BOOTTIME` on Linux, which
/// keeps counting while the host is suspended. `Instant` (`CLOCK_MONOTONIC`) stops then: a
/// replica whose host slept through its etcd lease would wake up still "proven" and answer
/// next to the replica that took over. (`SIGSTOP` stops neither clock; a suspend stops one.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProofInstant(Duration);

impl ProofInstant {
    #[cfg(target_os = "linux")]
    pub fn now() -> ProofInstant {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes the timespec we own; CLOCK_BOOTTIME exists on
        // every Linux since 2.6.39.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        if rc != 0 {
            return Self::fallback();
        }
        ProofInstant(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }

    #[cfg(not(target_os = "linux"))]
    pub fn now() -> ProofInstant {
        Self::fallback()
    }

    /// Elsewhere: the monotonic clock (suspended time not counted).
    fn fallback() -> ProofInstant {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        ProofInstant(START.get_or_init(std::time::Instant::now).elapsed())
    }
}

impl std::ops::Add<Duration> for ProofInstant {
    type Output = ProofInstant;
    fn add(self, d: Duration) -> ProofInstant {
        ProofInstant(self.0 + d)
    }
}

/// This replica's standing, shared by the campaign task and the core thread.
#[derive(Debug, Clone)]
enum Standing {
    Standby {
        /// The active replica's URL, as its key says.
        active: Option<String>,
        why: &'static str,
    },
    Active {
        generation: i64,
        lease: i64,
        /// The proof's end.
        until: ProofInstant,
    },
}

/// The proof the core checks before every answer, and the campaign task updates.
#[derive(Clone)]
pub struct Activity {
    standing: Arc<Mutex<Standing>>,
    serving: watch::Sender<bool>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            standing: Arc::new(Mutex::new(Standing::Standby {
                active: None,
                why: "not elected yet",
            })),
            serving: watch::channel(false).0,
        }
    }
}

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, Standing> {
        self.standing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The generation this replica may answer for at `now`, or why it may not.
    pub fn check(&self, now: ProofInstant) -> Result<i64, String> {
        match &*self.lock() {
            Standing::Active {
                generation, until, ..
            } if now < *until => Ok(*generation),
            Standing::Active { .. } => Err(
                "this forge replica cannot prove it is still the active one (etcd has not \
                     answered its keepalives in time); another replica takes over"
                    .into(),
            ),
            Standing::Standby { active, why } => Err(match active {
                Some(url) => format!("this forge replica is on standby; the active one is {url}"),
                None => format!("this forge replica is on standby ({why})"),
            }),
        }
    }

    /// Whether this replica serves now (streams are closed when this turns false).
    pub fn serving(&self) -> watch::Receiver<bool> {
        self.serving.subscribe()
    }

    fn publish(&self) {
        let now = ProofInstant::now();
        let on = self.check(now).is_ok();
        self.serving
            .send_if_modified(|s| std::mem::replace(s, on) != on);
    }

    fn set(&self, s: Standing) {
        *self.lock() = s;
        self.publish();
    }

    /// A fenced write failed: the key is no longer this generation's.
    pub fn lose(&self, generation: i64) {
        let mut s = self.lock();
        if matches!(&*s, Standing::Active { generation: g, .. } if *g == generation) {
            *s = Standing::Standby {
                active: None,
                why: "a fenced write found the key taken",
            };
        }
        drop(s);
        self.publish();
    }

    fn renew(&self, generation: i64, until: ProofInstant) {
        if let Standing::Active {
            generation: g,
            until: u,
            ..
        } = &mut *self.lock()
        {
            if *g == generation {
                *u = (*u).max(until);
            }
        }
        self.publish();
    }

    fn lease(&self) -> Option<i64> {
        match &*self.lock() {
            Standing::Active { lease, .. } => Some(*lease),
            Standing::Standby { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// Names this replica in logs and in the key's value.
    pub id: String,
    /// The URL agents reach this replica at (a standby names the active one's).
    pub advertise_url: String,
    /// Key prefix of this federation in etcd.
    pub prefix: String,
    /// The etcd lease behind the key: a failover takes about this long.
    pub lease_ttl: Duration,
}

pub fn active_key(prefix: &str) -> String {
    format!("{prefix}forge/active")
}

/// The proof's margin below the lease's ttl: the keepalive's answer delay is already inside
/// (the proof counts from the send), so this covers clock rate and the answer's way out.
fn margin(ttl: Duration) -> Duration {
    (ttl / 5).max(Duration::from_millis(200))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyValue {
    replica: String,
    url: String,
}

/// The campaign: stand by while another replica's key exists; create it when it is gone;
/// keep it alive while active; hand it back (revoke) at shutdown, after no longer answering.
pub async fn run(
    etcd: Etcd,
    opts: ReplicaOptions,
    activity: Activity,
    mut stop: watch::Receiver<bool>,
) {
    let key = active_key(&opts.prefix);
    let poll = (opts.lease_ttl / 6).max(Duration::from_millis(100));
    // A campaign that keeps failing the same way logs it once.
    let mut last_warning: Option<String> = None;
    while !*stop.borrow() {
        match campaign(&etcd, &opts, &key, &activity).await {
            Ok(Some((generation, lease, until))) => {
                tracing::info!(
                    "[REPLICA] {} is the active forge (generation {generation}): reloading \
                     every env from etcd",
                    opts.id
                );
                activity.set(Standing::Active {
                    generation,
                    lease,
                    until,
                });
                keep(&etcd, &opts, &key, &activity, generation, lease, &mut stop).await;
                last_warning = None;
                if *stop.borrow() {
                    break;
                }
                tracing::warn!("[REPLICA] {} is no longer the active forge", opts.id);
            }
            Ok(None) => {}
            Err(e) => {
                let what = format!("cannot campaign: {e}");
                if last_warning.as_deref() != Some(what.as_str()) {
                    tracing::warn!("[REPLICA] {}: {what}", opts.id);
                    last_warning = Some(what);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => {}
        }
    }
    // Stop answering first, then free the key so a standby takes over without waiting for
    // the lease to run out (it extends the holders' leases to its takeover + ttl).
    let lease = activity.lease();
    activity.set(Standing::Standby {
        active: None,
        why: "shutting down",
    });
    if let Some(lease) = lease {
        match etcd.revoke(lease).await {
            Ok(()) => tracing::info!("[REPLICA] {} handed the active key back", opts.id),
            Err(e) => tracing::warn!(
                "[REPLICA] {} could not hand the key back ({e}); a standby takes over when \
                 its lease runs out",
                opts.id
            ),
        }
    }
}

/// One attempt: `Some((generation, lease, proof end))` if this replica created the key.
async fn campaign(
    etcd: &Etcd,
    opts: &ReplicaOptions,
    key: &str,
    activity: &Activity,
) -> Result<Option<(i64, i64, ProofInstant)>, super::etcd::EtcdError> {
    let standby = |kv: &super::etcd::Kv| {
        let active = serde_json::from_slice::<KeyValue>(&kv.value)
            .ok()
            .map(|v| v.url);
        activity.set(Standing::Standby {
            active,
            why: "another replica holds the key",
        });
    };
    if let Some(kv) = etcd.get(key).await? {
        standby(&kv);
        return Ok(None);
    }
    let sent = ProofInstant::now();
    let (lease, ttl) = etcd.grant(opts.lease_ttl.as_secs().max(1)).await?;
    let value = serde_json::to_vec(&KeyValue {
        replica: opts.id.clone(),
        url: opts.advertise_url.clone(),
    })
    .unwrap_or_default();
    let txn = etcd
        .txn(
            &[Compare::CreateRevision {
                key: key.to_string(),
                revision: 0,
            }],
            &[Op::Put {
                key: key.to_string(),
                value,
                lease: Some(lease),
            }],
            &[Op::Range {
                key: key.to_string(),
            }],
        )
        .await;
    match txn {
        Ok(r) if r.succeeded => Ok(Some((
            r.revision,
            lease,
            sent + Duration::from_secs(ttl).saturating_sub(margin(Duration::from_secs(ttl))),
        ))),
        Ok(r) => {
            let _ = etcd.revoke(lease).await;
            if let Some(kv) = r.kvs.first() {
                standby(kv);
            }
            Ok(None)
        }
        Err(e) => {
            // The answer was lost, and the key may be ours: revoking deletes it, and this
            // replica never serves a generation it did not learn of.
            let _ = etcd.revoke(lease).await;
            Err(e)
        }
    }
}

/// Keeps the lease alive and the proof fresh until the key is lost or shutdown.
async fn keep(
    etcd: &Etcd,
    opts: &ReplicaOptions,
    key: &str,
    activity: &Activity,
    generation: i64,
    lease: i64,
    stop: &mut watch::Receiver<bool>,
) {
    let every = (opts.lease_ttl / 3).max(Duration::from_millis(100));
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let sent = ProofInstant::now();
        let alive = async {
            let ttl = etcd.keepalive(lease).await?;
            if ttl == 0 {
                return Ok(None);
            }
            let kv = etcd.get(key).await?;
            Ok::<_, super::etcd::EtcdError>(
                kv.filter(|k| k.create_revision == generation && k.lease == lease)
                    .map(|_| ttl),
            )
        };
        match alive.await {
            Ok(Some(ttl)) => {
                let ttl = Duration::from_secs(ttl);
                activity.renew(generation, sent + ttl.saturating_sub(margin(ttl)));
                if failing {
                    tracing::info!("[REPLICA] {} reaches etcd again", opts.id);
                    failing = false;
                }
            }
            Ok(None) => {
                activity.set(Standing::Standby {
                    active: None,
                    why: "its etcd lease ran out",
                });
                return;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        "[REPLICA] {}: keepalive failed ({e}); answering until the proof ends",
                        opts.id
                    );
                    failing = true;
                }
                // The proof may have run out meanwhile: streams close at once.
                activity.publish();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proof_clock_never_goes_back_and_counts_a_sleep() {
        let a = ProofInstant::now();
        std::thread::sleep(Duration::from_millis(20));
        let b = ProofInstant::now();
        assert!(b >= a + Duration::from_millis(20), "{a:?} -> {b:?}");
    }

    #[test]
    fn a_proof_ends_at_its_deadline_and_a_lost_write_ends_it_at_once() {
        let a = Activity::default();
        let t0 = ProofInstant::now();
        assert!(a.check(t0).is_err(), "no proof before the campaign");
        a.set(Standing::Active {
            generation: 7,
            lease: 1,
            until: t0 + Duration::from_secs(2),
        });
        assert_eq!(a.check(t0), Ok(7));
        assert!(a.check(t0 + Duration::from_secs(2)).is_err());
        a.renew(7, t0 + Duration::from_secs(4));
        assert_eq!(a.check(t0 + Duration::from_secs(3)), Ok(7));
        a.renew(8, t0 + Duration::from_secs(9));
        assert!(
            a.check(t0 + Duration::from_secs(5)).is_err(),
            "another generation's keepalive extends nothing"
        );
        a.lose(6);
        assert_eq!(
            a.check(t0),
            Ok(7),
            "a stale generation's failure changes nothing"
        );
        a.lose(7);
        assert!(a.check(t0).is_err());
    }
}
