//! The datapath's per-CPU counters, summed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use aya::maps::{Map, MapData, PerCpuArray};
use observer_common::Counter;
use serde::Serialize;

/// Reads the counter array.
pub struct CounterReader {
    array: PerCpuArray<MapData, u64>,
    /// Packets counted in flow cache slots rather than in `PacketsSeen` (the flow cache
    /// scan keeps it up to date).
    cache_runs: Arc<AtomicU64>,
}

/// Counter values by name (see `observer_common::Counter::name`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct DatapathCounters(pub std::collections::BTreeMap<&'static str, u64>);

impl DatapathCounters {
    /// Value of one counter.
    pub fn get(&self, counter: Counter) -> u64 {
        self.0.get(counter.name()).copied().unwrap_or(0)
    }

    /// Packets that could not be parsed, over every reason (each reason is a counter of
    /// its own): counted, never turned into a flow.
    pub fn malformed_packets(&self) -> u64 {
        Counter::ALL
            .into_iter()
            .filter(|c| c.is_parse_error())
            .map(|c| self.get(c))
            .sum()
    }
}

impl CounterReader {
    pub(super) fn new(map: Map, cache_runs: Arc<AtomicU64>) -> Result<Self> {
        Ok(Self {
            array: PerCpuArray::try_from(map)?,
            cache_runs,
        })
    }

    /// Sums every counter over all CPUs; `packets_seen` includes the packets counted in
    /// flow cache slots up to the latest poll.
    pub fn read(&self) -> Result<DatapathCounters> {
        let mut out = DatapathCounters::default();
        for counter in Counter::ALL {
            let values = self.array.get(&(counter as u32), 0)?;
            let mut sum: u64 = values.iter().sum();
            if counter == Counter::PacketsSeen {
                sum += self.cache_runs.load(Ordering::Relaxed);
            }
            out.0.insert(counter.name(), sum);
        }
        Ok(out)
    }
}
