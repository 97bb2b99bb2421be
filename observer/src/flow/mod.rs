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
