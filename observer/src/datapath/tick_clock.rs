//! Calibrates the [`TickClock`] the kernel programs stamp `last_seen` with.
//!
//! The programs read `jiffies` (one load) instead of calling a clock helper on every packet,
//! and turn it into CLOCK_MONOTONIC as `jiffies * tick_ns + offset_ns`. The tick length is
//! the resolution of CLOCK_MONOTONIC_COARSE (1e9 / CONFIG_HZ); the offset comes from a few
//! runs of `clock_probe`, which reads the coarse clock and `jiffies` together. Both clocks
//! advance on the same tick and jiffies follow CLOCK_MONOTONIC (the tick code advances them
//! by whole `tick_ns` of it), so the relation holds for the life of the boot.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use aya::Ebpf;
use aya::maps::{Array, MapData};
use aya::programs::{TestRun, TestRunOptions};
use observer_common::{
    CLOCK_PROBE_PROGRAM, CLOCK_SAMPLE_MAP, ClockSample, TICK_CLOCK_MAP, TickClock,
};

use super::attach::program;

/// Probe runs: a run that lands between the tick's `jiffies` update and its timekeeping
/// update reads an offset one tick short, and the largest of a few spaced runs skips it.
const PROBE_RUNS: usize = 5;
const PROBE_SPACING: Duration = Duration::from_millis(1);

/// Measures the tick clock and hands it to the kernel programs.
pub(super) fn calibrate(ebpf: &mut Ebpf) -> Result<TickClock> {
    let tick_ns = coarse_resolution_ns()?;
    program(ebpf, CLOCK_PROBE_PROGRAM)?
        .load()
        .with_context(|| format!("loading {CLOCK_PROBE_PROGRAM}"))?;
    // A classifier's test run needs at least an Ethernet header of input.
    let frame = [0u8; 64];
    let mut samples = Vec::with_capacity(PROBE_RUNS);
    for _ in 0..PROBE_RUNS {
        program(ebpf, CLOCK_PROBE_PROGRAM)?
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                repeat: 1,
                ..Default::default()
            })
            .with_context(|| format!("running {CLOCK_PROBE_PROGRAM}"))?;
        // The maps stay in `ebpf`: the flow programs, loaded later, refer to them by fd.
        let sample_map: Array<&MapData, ClockSample> = Array::try_from(
            ebpf.map(CLOCK_SAMPLE_MAP)
                .with_context(|| map_missing(CLOCK_SAMPLE_MAP))?,
        )?;
        samples.push(sample_map.get(&0, 0)?);
        std::thread::sleep(PROBE_SPACING);
    }
    let clock = from_samples(tick_ns, &samples)?;
    let mut clock_map: Array<&mut MapData, TickClock> = Array::try_from(
        ebpf.map_mut(TICK_CLOCK_MAP)
            .with_context(|| map_missing(TICK_CLOCK_MAP))?,
    )?;
    clock_map.set(0, clock, 0)?;
    Ok(clock)
}

fn map_missing(name: &str) -> String {
    format!("map {name} missing from the eBPF object")
}

/// The resolution of CLOCK_MONOTONIC_COARSE, which is the kernel's tick.
fn coarse_resolution_ns() -> Result<u64> {
    let mut resolution = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec the call fills in.
    if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut resolution) } != 0 {
        return Err(std::io::Error::last_os_error())
            .context("reading the resolution of CLOCK_MONOTONIC_COARSE");
    }
    Ok(resolution.tv_sec as u64 * 1_000_000_000 + resolution.tv_nsec as u64)
}

/// The tick clock that maps every sample's jiffies onto its coarse time; a sample taken
/// while the tick was half applied (new jiffies, old coarse time) is one tick short, so the
/// largest offset wins.
fn from_samples(tick_ns: u64, samples: &[ClockSample]) -> Result<TickClock> {
    // CONFIG_HZ is 100 to 1200 on every architecture Linux supports.
    if !(500_000..=20_000_000).contains(&tick_ns) {
        bail!("kernel tick of {tick_ns} ns is outside 0.5-20 ms: cannot use jiffies as a clock");
    }
    let offset_ns = samples
        .iter()
        .map(|s| s.coarse_ns.wrapping_sub(s.jiffies.wrapping_mul(tick_ns)))
        // Offsets are compared as signed distances from the first: they wrap around 2^64.
        .max_by_key(|offset| {
            offset.wrapping_sub(
                samples[0]
                    .coarse_ns
                    .wrapping_sub(samples[0].jiffies.wrapping_mul(tick_ns)),
            ) as i64
        })
        .context("no clock samples")?;
    Ok(TickClock { tick_ns, offset_ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: u64 = 4_000_000;

    fn sample(jiffies: u64, coarse_ns: u64) -> ClockSample {
        ClockSample { coarse_ns, jiffies }
    }

    #[test]
    fn offset_maps_jiffies_onto_the_coarse_clock() {
        // jiffies start near 2^32 - 300 * HZ, so offsets wrap below zero.
        let (j0, t0) = (4_294_892_296u64, 12_345_678_901u64);
        let samples = [sample(j0, t0), sample(j0 + 1, t0 + TICK)];
        let clock = from_samples(TICK, &samples).expect("clock");
        for s in samples {
            assert_eq!(
                s.jiffies
                    .wrapping_mul(clock.tick_ns)
                    .wrapping_add(clock.offset_ns),
                s.coarse_ns
            );
        }
    }

    #[test]
    fn a_sample_between_the_jiffies_and_the_timekeeping_update_is_ignored() {
        let (j0, t0) = (4_294_892_296u64, 12_345_678_901u64);
        // The second run saw jiffies j0 + 2 with the coarse time of j0 + 1.
        let samples = [
            sample(j0, t0),
            sample(j0 + 2, t0 + TICK),
            sample(j0 + 3, t0 + 3 * TICK),
        ];
        let clock = from_samples(TICK, &samples).expect("clock");
        assert_eq!(
            (j0 + 3).wrapping_mul(TICK).wrapping_add(clock.offset_ns),
            t0 + 3 * TICK
        );
        // Whichever sample comes first.
        let reversed: Vec<ClockSample> = samples.iter().rev().copied().collect();
        assert_eq!(from_samples(TICK, &reversed).expect("clock"), clock);
    }

    #[test]
    fn implausible_tick_is_an_error() {
        let error = from_samples(1, &[sample(1, 1)]).expect_err("1 ns tick");
        assert!(error.to_string().contains("outside 0.5-20 ms"), "{error}");
        assert!(from_samples(TICK, &[]).is_err());
    }
}
