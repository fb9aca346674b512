//! The recovery loop's delays as plain values: reconnecting to the engine, and restarting a
//! container that died. No clock is read here: the caller passes `now`, so the schedules are
//! property-tested without sleeping.
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A delay that doubles at each use, from `min` up to `max`, until [`Backoff::reset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    current: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    /// Panics if `max < min`: the bounds are constants, so that is a programming error.
    pub fn new(min: Duration, max: Duration) -> Self {
        assert!(min <= max, "backoff bounds inverted: {min:?} > {max:?}");
        Backoff {
            current: min,
            min,
            max,
        }
    }

    /// The delay to wait now; the next one will be twice as long, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = self.current.saturating_mul(2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

/// A container quiet this long starts its count again.
const QUIET: Duration = Duration::from_secs(60);
const BASE: Duration = Duration::from_millis(250);
const MAX_DOUBLINGS: u32 = 7;
const CAP: Duration = Duration::from_secs(30);

/// Per container, how long to wait before restarting it after it died: 500 ms for a first
/// death, doubling with each death that follows the previous one within a minute, up to
/// 30 s. A crash-looping container cannot keep the engine busy; one that dies now and then
/// comes back quickly.
#[derive(Debug, Default)]
pub struct RestartBackoff {
    /// Container id → deaths in a row and the time of the last one.
    deaths: HashMap<String, (u32, Instant)>,
}

impl RestartBackoff {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `id` died at `now` and returns the delay before restarting it.
    pub fn on_death(&mut self, id: &str, now: Instant) -> Duration {
        // Forgetting a container after a quiet minute resets its count just as keeping it
        // would, and stops the map from growing with every container that ever died.
        self.deaths
            .retain(|_, (_, last)| now.saturating_duration_since(*last) <= QUIET);
        let (count, last) = self.deaths.entry(id.to_string()).or_insert((0, now));
        *count = count.saturating_add(1);
        *last = now;
        BASE.saturating_mul(1 << (*count).min(MAX_DOUBLINGS))
            .min(CAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Next,
        Reset,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![3 => Just(Op::Next), 1 => Just(Op::Reset)]
    }

    /// The restart delay as the recovery loop computed it before it was pulled out here: a
    /// count per id that is never forgotten, reset when its last death is over a minute old.
    fn reference(deaths: &mut HashMap<String, (u32, Instant)>, id: &str, now: Instant) -> Duration {
        let entry = deaths.entry(id.to_string()).or_insert((0, now));
        if now.duration_since(entry.1) > Duration::from_secs(60) {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now;
        Duration::from_millis(250u64 << entry.0.min(7)).min(Duration::from_secs(30))
    }

    /// (container, milliseconds since the previous death of any container).
    fn deaths() -> impl Strategy<Value = Vec<(usize, u64)>> {
        prop::collection::vec(
            (
                0..3usize,
                // Either side of the quiet minute, and exactly on it.
                prop_oneof![
                    0..5_000u64,
                    55_000..65_000u64,
                    Just(60_000),
                    Just(60_001),
                    0..200_000u64
                ],
            ),
            1..60,
        )
    }

    #[test]
    fn restart_schedule() {
        let t0 = Instant::now();
        let mut b = RestartBackoff::new();
        let ms: Vec<u128> = (0..9)
            .map(|i| b.on_death("c", t0 + Duration::from_secs(i)).as_millis())
            .collect();
        assert_eq!(
            ms,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        let later = t0 + Duration::from_secs(8 + 60);
        assert_eq!(b.on_death("c", later), Duration::from_secs(30));
        let quiet = later + Duration::from_secs(60) + Duration::from_millis(1);
        assert_eq!(b.on_death("c", quiet), Duration::from_millis(500));
    }

    proptest! {
        /// Whatever the uses and resets: every delay lies in [min, max], each is double the
        /// previous (up to max) until a reset, and the first after a reset is min.
        #[test]
        fn prop_backoff_doubles_within_bounds(
            min_ms in 0..1_000u64,
            extra_ms in 0..10_000u64,
            ops in prop::collection::vec(op(), 1..80),
        ) {
            let (min, max) = (Duration::from_millis(min_ms), Duration::from_millis(min_ms + extra_ms));
            let mut b = Backoff::new(min, max);
            let mut prev: Option<Duration> = None;
            for op in ops {
                match op {
                    Op::Reset => {
                        b.reset();
                        prev = None;
                    }
                    Op::Next => {
                        let d = b.next_delay();
                        prop_assert!(min <= d && d <= max);
                        match prev {
                            None => prop_assert_eq!(d, min),
                            Some(p) => prop_assert_eq!(d, (p * 2).min(max)),
                        }
                        prev = Some(d);
                    }
                }
            }
        }

        /// The restart delay is the one the recovery loop always used, for any interleaving
        /// of deaths (forgetting quiet containers changes no delay), and it stays within
        /// [500 ms, 30 s].
        #[test]
        fn prop_restart_matches_the_reference(deaths in deaths()) {
            let mut now = Instant::now();
            let mut b = RestartBackoff::new();
            let mut r = HashMap::new();
            for (c, gap) in deaths {
                now += Duration::from_millis(gap);
                let id = format!("c{c}");
                let d = b.on_death(&id, now);
                prop_assert_eq!(d, reference(&mut r, &id, now));
                prop_assert!(Duration::from_millis(500) <= d && d <= Duration::from_secs(30));
            }
        }

        /// One container's delays depend on its own deaths only: removing every other
        /// container's deaths from the sequence changes none of its delays. A minute without
        /// dying brings it back to the first delay.
        #[test]
        fn prop_restart_is_per_container(deaths in deaths()) {
            let t0 = Instant::now();
            let mut at = t0;
            let timed: Vec<(usize, Instant)> = deaths.iter().map(|(c, gap)| {
                at += Duration::from_millis(*gap);
                (*c, at)
            }).collect();
            let mut all = RestartBackoff::new();
            let mixed: Vec<(usize, Duration)> = timed.iter()
                .map(|(c, t)| (*c, all.on_death(&format!("c{c}"), *t)))
                .collect();
            for c in 0..3 {
                let mut alone = RestartBackoff::new();
                let mut last: Option<Instant> = None;
                for ((_, t), (_, d)) in timed.iter().zip(&mixed).filter(|((x, _), _)| *x == c) {
                    prop_assert_eq!(alone.on_death("c", *t), *d);
                    if last.is_some_and(|l| *t - l > QUIET) {
                        prop_assert_eq!(*d, Duration::from_millis(500));
                    }
                    last = Some(*t);
                }
            }
        }
    }
}
