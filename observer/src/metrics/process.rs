//! The standard process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`, as the Prometheus
//! client libraries name them) and `observer_build_info`, read from /proc at each scrape.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// The process's figures, set at each scrape.
#[derive(Debug)]
pub(super) struct ProcessMetrics {
    cpu_seconds: Counter<f64, AtomicU64>,
    resident_bytes: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time_seconds: Gauge,
}

impl ProcessMetrics {
    /// Registers them in `root` (no prefix), and the build's info under `observer_`.
    pub(super) fn register(root: &mut Registry) -> Self {
        let metrics = Self {
            cpu_seconds: Counter::default(),
            resident_bytes: Gauge::default(),
            open_fds: Gauge::default(),
            max_fds: Gauge::default(),
            start_time_seconds: Gauge::default(),
        };
        root.register_with_unit(
            "process_cpu",
            "User and system CPU time spent",
            Unit::Seconds,
            metrics.cpu_seconds.clone(),
        );
        root.register_with_unit(
            "process_resident_memory",
            "Resident memory size",
            Unit::Bytes,
            metrics.resident_bytes.clone(),
        );
        root.register(
            "process_open_fds",
            "Open file descriptors",
            metrics.open_fds.clone(),
        );
        root.register(
            "process_max_fds",
            "The limit of open file descriptors",
            metrics.max_fds.clone(),
        );
        root.register_with_unit(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Unit::Seconds,
            metrics.start_time_seconds.clone(),
        );
        // A gauge at 1 with the version as a label (as `prometheus_build_info` is): the
        // OpenMetrics `info` type is one the classic parsers, promtool's among them, refuse.
        let build = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
        build
            .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        root.register(
            "observer_build_info",
            "The observer's build: its version",
            build,
        );
        metrics
    }

    /// Reads /proc/self; a figure that cannot be read keeps its last value.
    pub(super) fn update(&self) {
        let ticks = clock_ticks();
        let page = page_size();
        if let Some(stat) = read("/proc/self/stat") {
            // Fields after the command (which may hold spaces), from field 3 on.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or("", |(_, rest)| rest)
                .split_whitespace()
                .collect();
            let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
            if let (Some(user), Some(system)) = (field(14), field(15)) {
                let seconds = (user + system) as f64 / ticks;
                let before = self.cpu_seconds.get();
                if seconds > before {
                    self.cpu_seconds.inc_by(seconds - before);
                }
            }
            if let (Some(start), Some(boot)) = (field(22), boot_time()) {
                self.start_time_seconds
                    .set((boot + start as f64 / ticks) as i64);
            }
            if let Some(rss_pages) = field(24) {
                self.resident_bytes.set((rss_pages * page) as i64);
            }
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(entries.count() as i64);
        }
        let limit = read("/proc/self/limits").and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<i64>().ok())
        });
        if let Some(limit) = limit {
            self.max_fds.set(limit);
        }
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Seconds since the epoch at boot (`btime` in /proc/stat).
fn boot_time() -> Option<f64> {
    read("/proc/stat")?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}
