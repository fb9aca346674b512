//! The two clocks the agent reads, in one place.
//!
//! - [`mono_ms`]: role keeping. On Linux this is `CLOCK_BOOTTIME`, which, unlike
//!   `CLOCK_MONOTONIC` (what `std::time::Instant` uses), keeps counting while the machine is
//!   suspended: a leader whose laptop slept through its deadline must see that it passed.
//! - [`wall_ms`]: only for `x-brh-ts`, event timestamps and display. Never for the lease.

/// Milliseconds on a clock that never goes back and counts suspended time.
#[cfg(target_os = "linux")]
pub fn mono_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own; CLOCK_BOOTTIME exists on every
    // Linux since 2.6.39.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return fallback_mono_ms();
    }
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

#[cfg(not(target_os = "linux"))]
pub fn mono_ms() -> u64 {
    fallback_mono_ms()
}

fn fallback_mono_ms() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    // Offset by one day so that "0" never means "now" by accident.
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 86_400_000
}

/// Unix milliseconds from the system clock.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The wall-clock time at which monotonic instant `at_mono` happened (or will happen).
pub fn wall_at(at_mono: u64) -> u64 {
    let (mono, wall) = (mono_ms(), wall_ms());
    if at_mono <= mono {
        wall.saturating_sub(mono - at_mono)
    } else {
        wall.saturating_add(at_mono - mono)
    }
}

/// Tokio instant corresponding to monotonic `at_mono` (for sleeping until it).
pub fn instant_at(at_mono: u64) -> tokio::time::Instant {
    let now = mono_ms();
    tokio::time::Instant::now() + std::time::Duration::from_millis(at_mono.saturating_sub(now))
}

/// `2025-11-23T10:00:00.123+00:00`, like the original's `datetime.isoformat()`.
pub fn iso8601(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, sod) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000+00:00");
        assert_eq!(iso8601(1_763_900_000_123), "2025-11-23T12:13:20.123+00:00");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000+00:00");
    }

    #[test]
    fn mono_moves_forward() {
        let a = mono_ms();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(mono_ms() >= a + 4);
        assert!(wall_at(mono_ms()).abs_diff(wall_ms()) < 50);
    }
}
