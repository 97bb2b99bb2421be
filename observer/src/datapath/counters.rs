//! The datapath's per-CPU counters, summed.

use anyhow::Result;
use aya::maps::{Map, MapData, PerCpuArray};
use observer_common::Counter;
use serde::Serialize;

/// Reads the counter array.
pub struct CounterReader {
    array: PerCpuArray<MapData, u64>,
}

/// Counter values by name (see `observer_common::Counter::name`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct DatapathCounters(pub std::collections::BTreeMap<&'static str, u64>);

impl DatapathCounters {
    /// Value of one counter.
    pub fn get(&self, counter: Counter) -> u64 {
        self.0.get(counter.name()).copied().unwrap_or(0)
    }
}

impl CounterReader {
    pub(super) fn new(map: Map) -> Result<Self> {
        Ok(Self {
            array: PerCpuArray::try_from(map)?,
        })
    }

    /// Sums every counter over all CPUs.
    pub fn read(&self) -> Result<DatapathCounters> {
        let mut out = DatapathCounters::default();
        for counter in Counter::ALL {
            let values = self.array.get(&(counter as u32), 0)?;
            out.0.insert(counter.name(), values.iter().sum());
        }
        Ok(out)
    }
}
