//! `cargo xtask bench memory`: the kernel memory of the BPF maps at the default settings,
//! from the formula the daemon reports (`memory::budget::kernel_maps`) at 2, 64 and 128
//! possible CPUs, and measured here: the programs loaded with the defaults for this
//! machine's possible CPUs, the memlock the kernel charges for each map this process holds
//! (`/proc/self/fdinfo`). Needs root. Prints its numbers (docs/benchmarks.md).

use observer::datapath::{Datapath, DatapathConfig, HookPlan};
use observer::memory::budget::{
    BudgetInputs, KERNEL_MAPS_TARGET, default_flow_cache_slots, kernel_maps,
};
use observer_common::{DEFAULT_FLOW_MAP_ENTRIES, DEFAULT_RING_BUFFER_BYTES};

fn defaults(cpus: u64) -> BudgetInputs {
    BudgetInputs {
        flow_map_entries: DEFAULT_FLOW_MAP_ENTRIES.into(),
        flow_cache_slots: default_flow_cache_slots(cpus),
        ring_buffer_bytes: DEFAULT_RING_BUFFER_BYTES.into(),
        max_connections: 0,
        cpus,
    }
}

/// The memlock of every BPF map this process holds, from its file descriptors' fdinfo.
fn memlock_of_own_maps() -> u64 {
    let mut total = 0;
    let Ok(fds) = std::fs::read_dir("/proc/self/fdinfo") else {
        return 0;
    };
    for fd in fds.flatten() {
        let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
        if !info.contains("map_type:") {
            continue;
        }
        total += info
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn main() {
    println!(
        "kernel maps at the defaults (--flow-map-entries {DEFAULT_FLOW_MAP_ENTRIES}, \
         --ringbuf-bytes {DEFAULT_RING_BUFFER_BYTES}, the flow cache's default slots), target \
         ≤ {:.0} MiB at 128 possible CPUs:",
        mib(KERNEL_MAPS_TARGET)
    );
    for cpus in [2, 64, 128] {
        let inputs = defaults(cpus);
        println!(
            "  {cpus:>3} CPUs: {:>6.1} MiB (flow cache {} slots per CPU)",
            mib(kernel_maps(&inputs)),
            inputs.flow_cache_slots
        );
    }
    let datapath = match Datapath::load(DatapathConfig {
        flow_map_entries: DEFAULT_FLOW_MAP_ENTRIES,
        flow_cache_slots: None,
        ring_buffer_bytes: DEFAULT_RING_BUFFER_BYTES,
        hooks: HookPlan::FlowPrograms,
    }) {
        Ok(datapath) => datapath,
        Err(e) => {
            eprintln!("loading the programs (run as root): {e:#}");
            std::process::exit(1);
        }
    };
    let cpus = u64::from(datapath.cpus());
    let formula = kernel_maps(&BudgetInputs {
        flow_cache_slots: datapath.flow_cache_slots().into(),
        ..defaults(cpus)
    });
    let measured = memlock_of_own_maps();
    println!(
        "measured here ({cpus} possible CPUs): {measured} bytes ({:.1} MiB) charged for the \
         maps; the formula says {formula} ({:.1} MiB): ratio {:.3}",
        mib(measured),
        mib(formula),
        formula as f64 / measured as f64
    );
    drop(datapath);
}
