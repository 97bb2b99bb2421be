//! How much memory the daemon may need, from its settings: what `deploy/README.md`'s
//! formula computes, and what the daemon compares with its cgroup's limit at start.
//!
//! Two parts count against the pod's memory limit:
//! - **Kernel maps**, charged to the daemon's cgroup (kernels 5.11 and later) and allocated
//!   in full at load: the per-CPU flow map holds one value per key *per possible CPU*, so it
//!   grows with the node's CPU count.
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

/// Kernel bytes per flow-map key besides its per-CPU values (hash element, key, bucket).
pub const FLOW_MAP_PER_KEY: u64 = 120;
/// Kernel bytes per flow-map key per possible CPU (one `FlowStats`).
pub const FLOW_MAP_PER_KEY_PER_CPU: u64 = 40;
/// Kernel bytes per flow-cache slot (one `CachedFlow`); there are `slots × CPUs`.
pub const FLOW_CACHE_PER_SLOT: u64 = 128;
/// The small maps (counters, clocks, the attached-interface set), rounded up.
pub const SMALL_MAPS: u64 = 1 << 20;

/// The settings the budget depends on.
#[derive(Clone, Copy, Debug)]
pub struct BudgetInputs {
    /// `--flow-map-entries`.
    pub flow_map_entries: u64,
    /// `--flow-cache-slots` (per CPU).
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
    let flow_map =
        inputs.flow_map_entries * (FLOW_MAP_PER_KEY + FLOW_MAP_PER_KEY_PER_CPU * inputs.cpus);
    let cache = inputs.flow_cache_slots * inputs.cpus * FLOW_CACHE_PER_SLOT;
    Budget {
        kernel_maps: flow_map + cache + inputs.ring_buffer_bytes + SMALL_MAPS,
        userspace_peak: USERSPACE_FIXED + USERSPACE_PER_CONNECTION * inputs.max_connections,
    }
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
            flow_cache_slots: 4096,
            ring_buffer_bytes: 1 << 20,
            max_connections: 131_072,
            cpus,
        }
    }

    #[test]
    fn the_maps_match_what_the_kernel_charged_on_two_cpus() {
        // Measured (fdinfo memlock) on this 2-CPU machine: flow map 12.50 MiB, cache
        // 1.02 MiB, ring 1.25 MiB, small maps 0.75 MiB: 15.5 MiB in all.
        let maps = budget(&defaults(2)).kernel_maps;
        assert!((15 << 20..17 << 20).contains(&maps), "{}", mib(maps));
    }

    #[test]
    fn the_deployed_limit_covers_the_defaults_up_to_32_cpus() {
        // deploy/daemonset.yaml's 512Mi, as its comment and deploy/README.md say.
        assert!(budget(&defaults(32)).total() <= 512 << 20);
        assert!(budget(&defaults(64)).total() > 512 << 20);
    }
}
