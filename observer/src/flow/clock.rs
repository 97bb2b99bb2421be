//! Kernel timestamps (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) to wall-clock time.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Converts CLOCK_MONOTONIC nanoseconds to wall-clock time with an offset taken once, so
/// every record of a run uses the same mapping (a later NTP step does not reorder records).
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// realtime - monotonic, in nanoseconds.
    offset_ns: i128,
}

impl WallClock {
    /// A clock with an explicit offset (realtime minus monotonic), for tests.
    pub const fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Reads both clocks now.
    pub fn now() -> Self {
        let realtime = read_clock(libc::CLOCK_REALTIME) as i128;
        let monotonic = read_clock(libc::CLOCK_MONOTONIC) as i128;
        Self {
            offset_ns: realtime - monotonic,
        }
    }

    /// CLOCK_MONOTONIC now, in nanoseconds (the kernel programs' time base).
    pub fn monotonic_now_ns() -> u64 {
        read_clock(libc::CLOCK_MONOTONIC)
    }

    /// RFC 3339 wall-clock time of a monotonic timestamp, with nanoseconds.
    pub fn rfc3339(&self, monotonic_ns: u64) -> String {
        let wall = monotonic_ns as i128 + self.offset_ns;
        OffsetDateTime::from_unix_timestamp_nanos(wall)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
    }
}

fn read_clock(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and a valid out-pointer; clock_gettime cannot fail for these.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_offset() {
        let clock = WallClock::with_offset(1_700_000_000_000_000_000);
        assert_eq!(clock.rfc3339(5), "2023-11-14T22:13:20.000000005Z");
    }
}
