//! Kernel timestamps (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) to wall-clock time.

use super::Timestamp;

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

    /// The wall-clock time of a monotonic timestamp.
    pub fn wall(&self, monotonic_ns: u64) -> Timestamp {
        let wall = monotonic_ns as i128 + self.offset_ns;
        Timestamp(wall.clamp(0, i64::MAX as i128) as i64)
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
    fn maps_monotonic_to_wall_time_with_the_offset() {
        let clock = WallClock::with_offset(1_700_000_000_000_000_000);
        assert_eq!(clock.wall(5).to_string(), "2023-11-14T22:13:20.000000005Z");
    }
}
