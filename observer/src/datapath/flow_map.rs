//! Reading the kernel's flow counters, from the flow cache and the per-CPU flow hash map
//! (summing CPUs), and letting go of keys once their connections are written.

use std::collections::HashMap;

use anyhow::Result;
use aya::maps::{Map, MapData, PerCpuHashMap};
use observer_common::{FlowKey, FlowStats};

use super::flow_cache::FlowCache;

/// Owns the flow hash map and the flow cache.
pub struct FlowMapReader {
    map: PerCpuHashMap<MapData, FlowKey, FlowStats>,
    cache: Option<FlowCache>,
}

impl FlowMapReader {
    pub(super) fn new(map: Map, cache: Option<FlowCache>) -> Result<Self> {
        Ok(Self {
            map: PerCpuHashMap::try_from(map)?,
            cache,
        })
    }

    /// Every key with its counters summed over CPUs and over the cache and the hash map (a
    /// key moves between them when cache slots are released and reclaimed). Keys deleted
    /// while we iterate are skipped; errors reading one key do not stop the walk (they are
    /// counted).
    pub fn read_all(&mut self, out: &mut Vec<(FlowKey, FlowStats)>) -> usize {
        let mut errors = 0;
        let mut totals: HashMap<FlowKey, FlowStats> = HashMap::new();
        for item in self.map.iter() {
            match item {
                Ok((key, values)) => {
                    let total = totals.entry(key).or_default();
                    values.iter().for_each(|v| add(total, v));
                }
                Err(_) => errors += 1,
            }
        }
        if let Some(cache) = &mut self.cache {
            cache.scan(|key, stats| add(totals.entry(key).or_default(), &stats));
        }
        out.extend(totals.into_iter().filter(|(_, stats)| stats.packets > 0));
        errors
    }

    /// Deletes keys whose connections were written. Missing keys are not an error.
    pub fn remove(&mut self, keys: &[FlowKey]) {
        for key in keys {
            let _ = self.map.remove(key);
            if let Some(cache) = &self.cache {
                cache.release(key);
            }
        }
    }
}

/// Adds one CPU's counters of a key (from the hash map or a cache slot) to its total:
/// counts add up, first/last seen are the min/max over values with packets, flags are OR-ed.
///
/// The kernel stamps a key's first packet on a CPU with the precise clock and later ones with
/// the coarse (tick) clock, which lags by up to a tick: last seen is never reported before
/// first seen.
fn add(total: &mut FlowStats, v: &FlowStats) {
    if v.packets == 0 {
        return;
    }
    total.packets += v.packets;
    total.bytes += v.bytes;
    total.first_seen_ns = if total.first_seen_ns == 0 {
        v.first_seen_ns
    } else {
        total.first_seen_ns.min(v.first_seen_ns)
    };
    total.last_seen_ns = total
        .last_seen_ns
        .max(v.last_seen_ns)
        .max(total.first_seen_ns);
    total.tcp_flags |= v.tcp_flags;
    total.flags |= v.flags;
}
