//! The observer: eBPF flow capture for Kubernetes pods, turned into connection records.
//!
//! One module per stage of a packet's facts (see `docs/architecture.md`):
//! - [`datapath`]: everything that touches aya and netlink (load, attach, ring buffer, map
//!   polling, counters). Nothing else imports aya.
//! - [`flow`]: the connection table and the typed flow record (pure logic, no I/O).
//! - [`policy`]: NetworkPolicy compilation and evaluation, verdicts, what-if checks (pure).
//! - [`cluster`]: sources of cluster state, the per-flow view, the IP history.
//! - [`enrich`]: names both ends of a record, its Service and its verdict (pure).
//! - [`hub`]: where judged records are published, with cursors, to sinks and readers.
//! - [`export`]: sinks that store records (the JSON Lines flow log).
//! - [`metrics`]: Prometheus metrics (a sink, and the run's counters) and their endpoint.
//! - [`api`]: the gRPC service, its filters and streams (readers of the hub).
//! - [`wire`]: the gRPC schema's generated code and its conversion to and from records
//!   (the `observer-api` crate, with the record and the verdict's shape).
//! - [`stats`]: the run's counters, filled by the daemon, read by metrics and the stats file.
//! - [`daemon`]: the running observer, wiring the stages with bounded channels.
//! - [`memory`]: returning freed memory to the OS after large rebuilds.
//! - [`cli`]: one file per subcommand, argument parsing and wiring only.

pub mod accept;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod daemon;
pub mod datapath;
pub mod enrich;
pub mod export;
pub mod flow;
pub mod hub;
pub mod memory;
pub mod metrics;
pub mod policy;
pub mod relay;
pub mod stats;
pub mod suggest;
pub mod ui;
/// The gRPC schema's generated code and the one conversion between it and the record (from
/// `observer-api`, which clients use without the rest of the daemon).
pub mod wire {
    pub use observer_api::{convert, proto};
}
