//! How much memory the daemon may need, from its settings: what `deploy/README.md`'s
//! formula computes, and what the daemon compares with its cgroup's limit at start.
//!
//! Two parts count against the pod's memory limit:
//! - **Kernel maps**, charged to the daemon's cgroup (kernels 5.11 and later) and allocated
//!   in full at load. The flow map holds one value per key, shared by the CPUs (atomic
//!   adds); the flow cache holds slots per possible CPU, and its default number of slots
//!   shrinks as CPUs grow ([`default_flow_cache_slots`]), so that the maps stay under
//!   [`KERNEL_MAPS_TARGET`] at 128 CPUs with the default settings.
//! - **The daemon's own peak under a new-flow flood**: mostly the connection table (up to
//!   twice `--max-connections` entries while it evicts) and the records an eviction sweep
//!   writes at once. Measured by `cargo xtask bench datapath --only storm` (50,000 new
//!   flows per second; docs/benchmarks.md): 273, 309 and 398 MiB at 65,536, 131,072 and
//!   262,144 connections over 10 s (about 235 MiB plus 640 bytes per connection), and
//!   355 MiB at 131,072 over 30 s; the fixed part is rounded up to cover the longer flood.

/// The peak that does not depend on `--max-connections` (a flood's batches in flight, the
/// hub's queues, the API buffer at its default), rounded up from the storm measures.
pub const USERSPACE_FIXED: u64 = 300 << 20;
/// The peak's growth per `--max-connections` (the table at twice its size while it evicts,
/// and the sweep's records), rounded up from the storm measures.
pub const USERSPACE_PER_CONNECTION: u64 = 640;

/// Kernel bytes per flow-map key: the hash element's header, the key (48 bytes), its
/// `FlowStats` (40 bytes) and its bucket.
pub const FLOW_MAP_PER_KEY: u64 = 152;
/// Kernel bytes per flow-cache slot (one `CachedFlow`, 96 bytes); there are
/// `slots × CPUs`.
pub const FLOW_CACHE_PER_SLOT: u64 = 96;
/// The small maps (the attached-interface set, 1.25 MiB; counters, clocks), rounded up.
pub const SMALL_MAPS: u64 = 3 << 19;
/// Small-map bytes per possible CPU (the per-CPU counters, the hash map's spare element
/// and locks per CPU).
pub const SMALL_MAPS_PER_CPU: u64 = 4 << 10;
/// What the flow cache may take with the default number of slots, over all CPUs.
pub const FLOW_CACHE_BUDGET: u64 = 32 << 20;
/// The kernel maps' memory the defaults stay under, up to 128 possible CPUs.
pub const KERNEL_MAPS_TARGET: u64 = 64 << 20;

/// The default flow cache slots per CPU on a node with `cpus` possible CPUs: 4,096 up to
/// 85 CPUs, then halved as the CPUs double, so that the cache takes at most
/// [`FLOW_CACHE_BUDGET`] (a power of two, at least 64).
pub fn default_flow_cache_slots(cpus: u64) -> u64 {
    let fit = FLOW_CACHE_BUDGET / (FLOW_CACHE_PER_SLOT * cpus.max(1));
    let floor = if fit == 0 {
        1
    } else {
        1 << (63 - fit.leading_zeros())
    };
    floor.clamp(64, 4096)
}

/// The settings the budget depends on.
#[derive(Clone, Copy, Debug)]
pub struct BudgetInputs {
    /// `--flow-map-entries`.
    pub flow_map_entries: u64,
    /// Flow cache slots per CPU (`--flow-cache-slots`, or [`default_flow_cache_slots`]).
    pub flow_cache_slots: u64,
    /// `--ringbuf-bytes`.
    pub ring_buffer_bytes: u64,
    /// `--max-connections`.
    pub max_connections: u64,
    /// Possible CPUs (per-CPU maps are sized by them, not by the online ones).
    pub cpus: u64,
}

/// The budget, in its two parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The BPF maps, charged to the cgroup at load.
    pub kernel_maps: u64,
    /// The daemon's own peak under a flood.
    pub userspace_peak: u64,
}

impl Budget {
    /// The memory limit the pod needs.
    pub fn total(&self) -> u64 {
        self.kernel_maps + self.userspace_peak
    }
}

/// The budget of these settings.
pub fn budget(inputs: &BudgetInputs) -> Budget {
    Budget {
        kernel_maps: kernel_maps(inputs),
        userspace_peak: USERSPACE_FIXED + USERSPACE_PER_CONNECTION * inputs.max_connections,
    }
}

/// The kernel maps' bytes, as the kernel charges them (`bpftool map show`'s memlock):
/// `F × 152 + S × C × 96 + R + 1.5 MiB + C × 4 KiB`.
pub fn kernel_maps(inputs: &BudgetInputs) -> u64 {
    let flow_map = inputs.flow_map_entries * FLOW_MAP_PER_KEY;
    let cache = inputs.flow_cache_slots * inputs.cpus * FLOW_CACHE_PER_SLOT;
    flow_map + cache + inputs.ring_buffer_bytes + SMALL_MAPS + SMALL_MAPS_PER_CPU * inputs.cpus
}

/// Mebibytes, rounded up, for messages and docs.
pub fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults(cpus: u64) -> BudgetInputs {
        BudgetInputs {
            flow_map_entries: 65_536,
            flow_cache_slots: default_flow_cache_slots(cpus),
            ring_buffer_bytes: 1 << 20,
            max_connections: 131_072,
            cpus,
        }
    }

    #[test]
    fn the_cache_shrinks_on_larger_nodes() {
        assert_eq!(default_flow_cache_slots(2), 4096);
        assert_eq!(default_flow_cache_slots(64), 4096);
        assert_eq!(default_flow_cache_slots(96), 2048);
        assert_eq!(default_flow_cache_slots(128), 2048);
        assert_eq!(default_flow_cache_slots(256), 1024);
        assert_eq!(default_flow_cache_slots(8192), 64);
    }

    #[test]
    fn the_maps_match_what_the_kernel_charged_on_two_cpus() {
        // Measured (bpftool's memlock) on this 2-CPU machine with the defaults: flow map
        // 9,962,656, cache 790,528, ring 1,065,288, the attached set 1,311,760, the rest
        // 1,672: 13,131,904 bytes (observer/tests/privileged_kernel_memory.rs).
        let maps = budget(&defaults(2)).kernel_maps;
        let measured = 13_131_904.0;
        assert!((maps as f64 / measured - 1.0).abs() < 0.05, "{maps}");
    }

    #[test]
    fn the_kernel_maps_stay_under_the_target_up_to_128_cpus() {
        for cpus in [1, 2, 8, 32, 64, 96, 128] {
            let maps = budget(&defaults(cpus)).kernel_maps;
            assert!(maps <= KERNEL_MAPS_TARGET, "{cpus} CPUs: {} MiB", mib(maps));
        }
    }

    #[test]
    fn the_deployed_limit_covers_the_defaults_up_to_128_cpus() {
        // deploy/daemonset.yaml's 512Mi, as its comment and deploy/README.md say.
        assert!(budget(&defaults(128)).total() <= 512 << 20);
    }
}
