//! Flows: the connection table that turns per-hook counters into connections, written as
//! the typed flow record of `observer-api`. Pure logic: no I/O, no async.

mod clock;
mod key;
mod table;

pub use clock::WallClock;
pub use key::{ConnectionKey, Endpoint};
/// The record and its values are the API's (`observer-api`): the table makes them, the
/// later stages fill them in, the edges write them.
pub use observer_api::record::{
    Counts, EndpointIdentity, FlowRecord, FlowState, IcmpInfo, RecordEndpoint, ServiceInfo,
    WorkloadInfo,
};
pub use observer_api::vocab::{IpProtocol, ServiceBackend, TcpFlags, Timestamp};
pub use table::{
    ConnectionTable, DEFAULT_MAX_CONNECTIONS, InterfaceNames, Sweep, TableConfig, TableLosses,
};

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
