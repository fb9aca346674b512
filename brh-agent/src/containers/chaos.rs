//! A chaos drill's choices, pure: whether an interval strikes, and which running container.
//! The randomness is a seeded xorshift: the orchestrator seeds it from the clock, tests pass
//! fixed seeds, so any sequence of choices can be replayed.

/// xorshift64: drills need variety, not cryptographic randomness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // Zero is xorshift's fixed point: it would yield zeros forever.
        XorShift(seed | 1)
    }

    /// Never zero, since the state never is.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Whether a draw of `roll` strikes at `probability`. `roll / u64::MAX` spreads the draws over
/// [0, 1], and `<=` makes probability 1 strike on every draw; a roll of 0 would strike even
/// at probability 0, hence the explicit check (the generator never yields 0 anyway).
pub fn strikes(roll: u64, probability: f64) -> bool {
    probability > 0.0 && roll as f64 / u64::MAX as f64 <= probability
}

/// Which of `candidates` containers a draw of `roll` picks; none when there are none.
pub fn victim(roll: u64, candidates: usize) -> Option<usize> {
    (candidates > 0).then(|| (roll % candidates as u64) as usize)
}

/// The sequence of one drill's choices.
#[derive(Debug, Clone)]
pub struct Drill {
    rng: XorShift,
    probability: f64,
}

impl Drill {
    pub fn new(seed: u64, probability: f64) -> Self {
        Drill {
            rng: XorShift::new(seed),
            probability,
        }
    }

    /// Whether to strike this interval; asked before anything is listed, so a quiet interval
    /// costs the engine nothing.
    pub fn strikes(&mut self) -> bool {
        strikes(self.rng.next_u64(), self.probability)
    }

    /// Which of `candidates` running containers to kill. With none, nothing is drawn.
    pub fn victim(&mut self, candidates: usize) -> Option<usize> {
        if candidates == 0 {
            return None;
        }
        victim(self.rng.next_u64(), candidates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The generator as `run_chaos` wrote it inline before it moved here.
    fn reference(seed: u64, n: usize) -> Vec<u64> {
        let mut rng = seed | 1;
        (0..n)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            })
            .collect()
    }

    fn choices(seed: u64, probability: f64, candidates: &[usize]) -> Vec<(bool, Option<usize>)> {
        let mut d = Drill::new(seed, probability);
        candidates
            .iter()
            .map(|c| {
                let strike = d.strikes();
                (strike, if strike { d.victim(*c) } else { None })
            })
            .collect()
    }

    proptest! {
        /// Probability 0 (or less) never strikes, probability 1 (or more) always does, and a
        /// draw that strikes at some probability strikes at any higher one.
        #[test]
        fn prop_strike_follows_the_probability(
            roll in prop_oneof![Just(0), Just(1), Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()],
            p in 0.0..1.0f64,
            q in 0.0..1.0f64,
        ) {
            prop_assert!(!strikes(roll, 0.0));
            prop_assert!(!strikes(roll, -p));
            prop_assert!(strikes(roll, 1.0));
            prop_assert!(strikes(roll, 1.0 + p));
            if strikes(roll, p.min(q)) {
                prop_assert!(strikes(roll, p.max(q)));
            }
        }

        /// A victim exists exactly when there are candidates, and is one of them.
        #[test]
        fn prop_victim_is_a_candidate(roll in any::<u64>(), candidates in 0..50usize) {
            match victim(roll, candidates) {
                None => prop_assert_eq!(candidates, 0),
                Some(i) => prop_assert!(i < candidates),
            }
        }

        /// Any seed, zero included: the generator is the one the chaos loop always used and
        /// never yields 0; the same seed replays the same choices; a victim is drawn only on
        /// a strike with candidates; probability 0 never strikes, probability 1 always does.
        #[test]
        fn prop_seeded_and_replayable(
            seed in any::<u64>(),
            p in 0.0..1.0f64,
            candidates in prop::collection::vec(0..5usize, 1..40),
        ) {
            for s in [seed, 0] {
                let mut rng = XorShift::new(s);
                let drawn: Vec<u64> = (0..64).map(|_| rng.next_u64()).collect();
                prop_assert!(!drawn.contains(&0));
                prop_assert_eq!(drawn, reference(s, 64));
            }
            for p in [p, 0.0, 1.0] {
                let once = choices(seed, p, &candidates);
                prop_assert_eq!(&once, &choices(seed, p, &candidates));
                for ((strike, v), c) in once.iter().zip(&candidates) {
                    prop_assert_eq!(v.is_some(), *strike && *c > 0);
                    prop_assert!(v.is_none_or(|i| i < *c));
                    if p == 0.0 {
                        prop_assert!(!strike);
                    }
                    if p == 1.0 {
                        prop_assert!(strike);
                    }
                }
            }
        }

        /// Over many intervals a drill strikes about as often as its probability says
        /// (4 000 draws: the tolerance is over six standard deviations).
        #[test]
        fn prop_strike_rate_matches(seed in any::<u64>(), p in 0.05..0.95f64) {
            let mut d = Drill::new(seed, p);
            let n = 4_000;
            let hits = (0..n).filter(|_| d.strikes()).count();
            let rate = hits as f64 / n as f64;
            prop_assert!((rate - p).abs() < 0.05, "rate {rate} at probability {p}");
        }
    }

    #[test]
    fn no_candidate_draws_nothing() {
        let (mut a, mut b) = (Drill::new(7, 0.5), Drill::new(7, 0.5));
        assert_eq!(a.victim(0), None);
        let (xs, ys): (Vec<bool>, Vec<bool>) = (0..32).map(|_| (a.strikes(), b.strikes())).unzip();
        assert_eq!(xs, ys);
    }
}
