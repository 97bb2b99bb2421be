//! Everything that touches aya and netlink: loading the kernel programs, attaching them to
//! pod interfaces as they come and go, reading the ring buffer, polling the flow map and the
//! counters. Nothing outside this module imports aya.

mod attach;
mod counters;
mod events;
mod flow_cache;
mod flow_map;
mod flow_sum;
mod interfaces;
mod links;
mod tick_clock;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::{Context, Result};
use aya::{Ebpf, EbpfLoader};
use observer_common::{
    COUNTERS_MAP, FLOW_CACHE_MAP, FLOW_CACHE_SLOTS_GLOBAL, FLOW_EVENTS_MAP, FLOWS_MAP,
    LOWER_BOUND_SLOTS_MAP,
};

pub use attach::{Attachments, HookPlan};
pub use counters::{CounterReader, DatapathCounters};
pub use events::{EventReader, EventReaderStats};
use flow_cache::FlowCache;
pub use flow_map::FlowMapReader;
pub use interfaces::{DEFAULT_INTERFACE_PATTERN, InterfacePattern};
pub use links::{LinkEvent, watch_links};

/// The compiled kernel programs, embedded at build time by `build.rs`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/observer"));

/// Sizes chosen at load time, and what goes at the hooks.
#[derive(Clone, Debug)]
pub struct DatapathConfig {
    /// Capacity of the flow map in keys.
    pub flow_map_entries: u32,
    /// Flow cache slots per CPU: a power of two, or 0 for no cache; `None`: the default
    /// for the node's possible CPUs (`memory::budget::default_flow_cache_slots`).
    pub flow_cache_slots: Option<u32>,
    /// Size of the event ring buffer in bytes (power of two, multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// What the attachments put at each hook; when it includes the reference programs,
    /// their per-flow words are sized like the flow cache (else one entry).
    pub hooks: HookPlan,
}

/// The loaded programs and the maps userspace reads.
pub struct Datapath {
    ebpf: Ebpf,
    /// Possible CPUs: the flow cache holds this many CPUs' slots.
    cpus: u32,
    flow_cache_slots: u32,
    hooks: HookPlan,
}

/// The maps, taken out of the loaded object so separate tasks can own them.
pub struct DatapathMaps {
    /// Flow map reader.
    pub flows: FlowMapReader,
    /// Ring buffer reader.
    pub events: EventReader,
    /// Counter reader.
    pub counters: CounterReader,
}

impl Datapath {
    /// Loads the programs into the kernel (verifier included) with the given map sizes.
    pub fn load(config: DatapathConfig) -> Result<Self> {
        if !config.ring_buffer_bytes.is_power_of_two() || config.ring_buffer_bytes < 4096 {
            anyhow::bail!(
                "ring buffer size {} is not a power of two of at least 4096 bytes",
                config.ring_buffer_bytes
            );
        }
        let cpus = aya::util::nr_cpus()
            .map_err(|(path, error)| anyhow::anyhow!("reading {path}: {error}"))?
            as u32;
        let mut slots = config
            .flow_cache_slots
            .unwrap_or_else(|| crate::memory::budget::default_flow_cache_slots(cpus.into()) as u32);
        if slots != 0 && !slots.is_power_of_two() {
            anyhow::bail!("flow cache slots {slots} is neither 0 nor a power of two");
        }
        // A claimed slot is published by store order (key and counters, then state), which
        // only x86 guarantees without barriers the kernel program cannot emit; elsewhere a
        // reader could pair a fresh state with a stale key. Count in the hash map there.
        if slots != 0 && !cfg!(target_arch = "x86_64") {
            tracing::warn!("the flow cache needs x86-64 store ordering; running without it");
            slots = 0;
        }
        let cache_entries = cpus
            .checked_mul(slots)
            .context("flow cache slots times CPUs overflows")?;
        let mut ebpf = EbpfLoader::new()
            .override_global(FLOW_CACHE_SLOTS_GLOBAL, &slots, true)
            // An array cannot be empty: without a cache, one unused slot.
            .map_max_entries(FLOW_CACHE_MAP, cache_entries.max(1))
            .map_max_entries(FLOWS_MAP, config.flow_map_entries)
            .map_max_entries(
                LOWER_BOUND_SLOTS_MAP,
                if config.hooks.loads_references() {
                    cache_entries.max(1)
                } else {
                    1
                },
            )
            .map_max_entries(FLOW_EVENTS_MAP, config.ring_buffer_bytes)
            .load(EBPF_OBJECT)
            .context("loading the eBPF object (are we root, with CAP_BPF and CAP_NET_ADMIN?)")?;
        let clock = tick_clock::calibrate(&mut ebpf).context("calibrating the tick clock")?;
        tracing::debug!(
            tick_ns = clock.tick_ns,
            offset_ns = clock.offset_ns,
            "tick clock"
        );
        Ok(Self {
            ebpf,
            cpus,
            flow_cache_slots: slots,
            hooks: config.hooks,
        })
    }

    /// Possible CPUs: the per-CPU maps hold one value per CPU for each of them.
    pub fn cpus(&self) -> u32 {
        self.cpus
    }

    /// Flow cache slots per CPU in use (0: no cache).
    pub fn flow_cache_slots(&self) -> u32 {
        self.flow_cache_slots
    }

    /// Loads every program and returns the attachment manager plus the maps.
    pub fn start(mut self) -> Result<(Attachments, DatapathMaps)> {
        let take = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing from the eBPF object"))
        };
        let cache_map = take(&mut self.ebpf, FLOW_CACHE_MAP)?;
        let cache_runs = Arc::new(AtomicU64::new(0));
        let cache = match self.flow_cache_slots {
            0 => None,
            slots => Some(FlowCache::new(
                cache_map,
                self.cpus,
                slots,
                cache_runs.clone(),
            )?),
        };
        let flows = FlowMapReader::new(take(&mut self.ebpf, FLOWS_MAP)?, cache)?;
        let events = EventReader::new(take(&mut self.ebpf, FLOW_EVENTS_MAP)?)?;
        let counters = CounterReader::new(take(&mut self.ebpf, COUNTERS_MAP)?, cache_runs)?;
        let attachments = Attachments::new(self.ebpf, self.hooks)?;
        Ok((
            attachments,
            DatapathMaps {
                flows,
                events,
                counters,
            },
        ))
    }
}
