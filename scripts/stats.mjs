// The benches' one percentile, so every table means the same by p50, p99 and median.

/**
 * The `p`-th percentile (0..=100) of ascending `sorted`: the element at index
 * floor(p/100 · n), the last for p = 100. So p50 is the median of an odd count and the upper
 * median of an even one; 0 for no samples.
 */
export function pct(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
