//! The kernel's flow cache, read through a shared memory mapping.
//!
//! The cache is a `BPF_F_MMAPABLE` array of [`CachedFlow`] slots, the same number per CPU.
//! Only the kernel program of a slot's CPU writes the slot; userspace reads every slot
//! without system calls and writes one field, `state`, from ACTIVE to RELEASED once the
//! slot's flow has been written, which lets the kernel reuse the slot.
//!
//! Each slot also counts the program runs that ended in it (`runs`); every scan adds their
//! growth to a total the counter reader reports as part of `packets_seen`.

use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use aya::maps::Map;
use observer_common::{CachedFlow, FlowKey, FlowStats, flow_cache_index, slot_state};

/// The mapped cache of every CPU.
pub struct FlowCache {
    /// Keeps the map (and so the mapping's backing memory) alive.
    _map: Map,
    slots: *mut CachedFlow,
    mapped_bytes: usize,
    cpus: u32,
    slots_per_cpu: u32,
    /// Each slot's `runs` at the previous scan.
    runs_seen: Vec<u32>,
    /// Runs counted in slots since the start, shared with the counter reader.
    runs_total: Arc<AtomicU64>,
}

// SAFETY: the mapping is owned by this value and only read/written through `&self` with
// volatile accesses; moving it to another thread (the map poller) is sound.
unsafe impl Send for FlowCache {}

impl FlowCache {
    /// Maps `cpus * slots_per_cpu` slots of the cache map into memory; scans add the runs
    /// counted in slots to `runs_total`.
    pub(super) fn new(
        map: Map,
        cpus: u32,
        slots_per_cpu: u32,
        runs_total: Arc<AtomicU64>,
    ) -> Result<Self> {
        let Map::Array(data) = &map else {
            bail!("the flow cache map is not an array");
        };
        let entries = cpus as usize * slots_per_cpu as usize;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let mapped_bytes = (entries * size_of::<CachedFlow>()).div_ceil(page) * page;
        // SAFETY: mapping a BPF array fd shared, for as many bytes as its values occupy
        // (rounded up to the page, as the kernel sizes mmap-able arrays).
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error())
                .context("mapping the flow cache into memory");
        }
        Ok(Self {
            _map: map,
            slots: address.cast(),
            mapped_bytes,
            cpus,
            slots_per_cpu,
            runs_seen: vec![0; entries],
            runs_total,
        })
    }

    fn slot(&self, index: u32) -> Option<*mut CachedFlow> {
        (index < self.cpus * self.slots_per_cpu)
            // SAFETY: in bounds of the mapping, which holds `cpus * slots_per_cpu` slots.
            .then(|| unsafe { self.slots.add(index as usize) })
    }

    /// Calls `each` with every active slot's key and counters, and adds the runs counted in
    /// every slot since the last scan to the shared total.
    pub fn scan(&mut self, mut each: impl FnMut(FlowKey, FlowStats)) {
        let mut runs = 0u64;
        for index in 0..self.cpus * self.slots_per_cpu {
            let Some(slot) = self.slot(index) else { break };
            // SAFETY: a slot inside the mapping; the kernel writes it concurrently, hence
            // volatile reads. It sets `state` last when it claims a slot and x86 keeps
            // stores in order, so a slot seen ACTIVE has its key in place (the cache is off
            // elsewhere: see `Datapath::load`); counters may be mid-update and are re-read
            // on the next poll.
            unsafe {
                // Runs only grow (wrapping), whoever holds the slot: the difference is exact
                // while fewer than 2^32 runs end in one slot between two scans.
                let now = std::ptr::read_volatile(&raw const (*slot).runs);
                if let Some(seen) = self.runs_seen.get_mut(index as usize) {
                    runs += u64::from(now.wrapping_sub(*seen));
                    *seen = now;
                }
                if std::ptr::read_volatile(&raw const (*slot).state) != slot_state::ACTIVE {
                    continue;
                }
                // Keeps the compiler from reading key and stats before state.
                std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::Acquire);
                let key = std::ptr::read_volatile(&raw const (*slot).key);
                let stats = std::ptr::read_volatile(&raw const (*slot).stats);
                each(key, stats);
            }
        }
        self.runs_total.fetch_add(runs, Ordering::Relaxed);
    }

    /// Lets the kernel reuse the slots that hold `key` (on every CPU), and returns what they
    /// counted, read just before each slot is let go (summed over CPUs). A packet the kernel
    /// adds between that read and the release is still dropped with the slot: a window of a
    /// few instructions.
    pub fn release(&self, key: &FlowKey) -> FlowStats {
        let mut total = FlowStats::default();
        for cpu in 0..self.cpus {
            let Some(slot) = self.slot(flow_cache_index(key, cpu, self.slots_per_cpu)) else {
                continue;
            };
            // SAFETY: a slot inside the mapping. Only userspace leaves ACTIVE, and the
            // kernel only changes the key of a slot that is not ACTIVE, so the key checked
            // here is still the slot's when `state` is written.
            unsafe {
                if std::ptr::read_volatile(&raw const (*slot).state) == slot_state::ACTIVE
                    && std::ptr::read_volatile(&raw const (*slot).key) == *key
                {
                    let stats = std::ptr::read_volatile(&raw const (*slot).stats);
                    std::ptr::write_volatile(&raw mut (*slot).state, slot_state::RELEASED);
                    super::flow_sum::add(&mut total, &stats);
                }
            }
        }
        total
    }
}

impl Drop for FlowCache {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.slots.cast(), self.mapped_bytes) };
    }
}
