//! The examples' timer: the median over 15 runs of `iters` calls, in ns per call.
use std::time::Instant;

pub fn median_ns(mut f: impl FnMut(), iters: u32) -> f64 {
    let mut samples = Vec::with_capacity(15);
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        samples.push(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}
