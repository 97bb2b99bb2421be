//! Reading the per-CPU flow map (summing CPUs) and deleting released keys.

use anyhow::Result;
use aya::maps::{Map, MapData, PerCpuHashMap};
use observer_common::{FlowKey, FlowStats};

/// Owns the flow map.
pub struct FlowMapReader {
    map: PerCpuHashMap<MapData, FlowKey, FlowStats>,
}

impl FlowMapReader {
    pub(super) fn new(map: Map) -> Result<Self> {
        Ok(Self {
            map: PerCpuHashMap::try_from(map)?,
        })
    }

    /// Every key with its counters summed over CPUs. Keys deleted while we iterate are
    /// skipped; errors reading one key do not stop the walk (they are counted).
    pub fn read_all(&self, out: &mut Vec<(FlowKey, FlowStats)>) -> usize {
        let mut errors = 0;
        for item in self.map.iter() {
            match item {
                Ok((key, values)) => out.push((key, sum(values.iter()))),
                Err(_) => errors += 1,
            }
        }
        errors
    }

    /// Deletes keys whose connections were written. Missing keys are not an error.
    pub fn remove(&mut self, keys: &[FlowKey]) {
        for key in keys {
            let _ = self.map.remove(key);
        }
    }
}

/// Sums one key's per-CPU values: counts add up, first/last seen are the min/max over the
/// CPUs that saw packets, flags are OR-ed.
pub(crate) fn sum<'a>(values: impl Iterator<Item = &'a FlowStats>) -> FlowStats {
    let mut total = FlowStats::default();
    for v in values.filter(|v| v.packets > 0) {
        total.packets += v.packets;
        total.bytes += v.bytes;
        total.first_seen_ns = if total.first_seen_ns == 0 {
            v.first_seen_ns
        } else {
            total.first_seen_ns.min(v.first_seen_ns)
        };
        total.last_seen_ns = total.last_seen_ns.max(v.last_seen_ns);
        total.tcp_flags |= v.tcp_flags;
        total.flags |= v.flags;
    }
    total
}
