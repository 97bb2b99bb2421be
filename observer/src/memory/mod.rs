//! The daemon's memory: what it may need under a flood (its budget, checked against the
//! cgroup's limit at start), and returning freed memory to the OS.

pub mod budget;
mod release;

pub use release::release_unused;

/// The memory limit of this process's cgroup (v2 `memory.max`, or v1
/// `memory.limit_in_bytes`), or `None` when there is none or it cannot be read.
pub fn cgroup_memory_limit() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let file = if controllers.is_empty() {
            format!("/sys/fs/cgroup{path}/memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
        } else {
            continue;
        };
        // "max" (no limit) and v1's huge "unlimited" value both read as no limit.
        return std::fs::read_to_string(file)
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|&limit| limit < 1 << 60);
    }
    None
}

/// Logs what the settings may need under a new-flow flood, and warns when the cgroup's
/// memory limit is lower (the daemon would be killed in a flood). Returns the kernel maps'
/// bytes.
pub fn check_budget(inputs: &budget::BudgetInputs) -> u64 {
    use budget::mib;
    let need = budget::budget(inputs);
    let limit = cgroup_memory_limit();
    tracing::info!(
        kernel_maps_mib = mib(need.kernel_maps),
        flood_peak_mib = mib(need.userspace_peak),
        cpus = inputs.cpus,
        flow_cache_slots = inputs.flow_cache_slots,
        limit_mib = limit.map(mib),
        "memory budget"
    );
    if let Some(limit) = limit
        && limit < need.total()
    {
        tracing::warn!(
            limit_mib = mib(limit),
            need_mib = mib(need.total()),
            "the memory limit is below what a new-flow flood may need with these settings \
             (BPF maps for {} CPUs plus the daemon's peak): raise the limit, or lower \
             --max-connections or --flow-map-entries (deploy/README.md, Memory)",
            inputs.cpus
        );
    }
    need.kernel_maps
}
