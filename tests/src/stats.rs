//! The benches' one percentile, so every table means the same by p50, p99 and median (the same
//! definition as scripts/stats.mjs for the Node benches).

/// The `p`-th percentile (0..=100) of ascending `sorted`: the element at index
/// ⌊p/100 · n⌋, the last for p = 100. So p50 is the median of an odd count and the upper median
/// of an even one. `None` for no samples.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let i = ((p / 100.0) * sorted.len() as f64).floor() as usize;
    sorted.get(i.min(sorted.len().checked_sub(1)?)).copied()
}

/// `(median, worst)` of `v` in any order: [`percentile`] 50 and 100.
pub fn median_worst(v: &[u64]) -> Option<(u64, u64)> {
    let mut v = v.to_vec();
    v.sort_unstable();
    Some((percentile(&v, 50.0)?, percentile(&v, 100.0)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_the_floor_index() {
        assert_eq!(percentile::<u32>(&[], 50.0), None);
        assert_eq!(percentile(&[7], 99.0), Some(7));
        let v: Vec<u32> = (1..=10).collect();
        assert_eq!(
            percentile(&v, 50.0),
            Some(6),
            "upper median of an even count"
        );
        assert_eq!(percentile(&v, 99.0), Some(10));
        assert_eq!(percentile(&v, 100.0), Some(10));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(median_worst(&[5, 1, 3]), Some((3, 5)));
        assert_eq!(median_worst(&[4, 1, 3, 2]), Some((3, 4)));
    }
}
