//! Flows: the connection table that turns per-hook counters into connections, and the flow
//! record that leaves the daemon. Pure logic: no I/O, no async.

mod clock;
mod key;
mod record;
mod table;
mod vocab;

pub use clock::WallClock;
pub use key::{ConnectionKey, Endpoint};
pub use record::{
    Counts, EndpointIdentity, FlowRecord, FlowState, IcmpInfo, RecordEndpoint, ServiceInfo,
    WorkloadInfo,
};
pub use table::{
    ConnectionTable, DEFAULT_MAX_CONNECTIONS, InterfaceNames, Sweep, TableConfig, TableLosses,
};
pub use vocab::{IpProtocol, ServiceBackend, TcpFlags, Timestamp};

#[cfg(test)]
pub(crate) mod fixtures {
    use super::FlowRecord;

    /// Four flow-log records covering every field (`tests/data/api/flows.jsonl`).
    pub(crate) fn flows() -> Vec<FlowRecord> {
        include_str!("../../tests/data/api/flows.jsonl")
            .lines()
            .map(|line| serde_json::from_str(line).expect("fixture flow"))
            .collect()
    }
}
