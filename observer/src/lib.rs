//! The observer: eBPF flow capture for Kubernetes pods, turned into connection records.
//!
//! One module per stage of a packet's facts (see `docs/architecture.md`):
//! - [`datapath`]: everything that touches aya and netlink (load, attach, ring buffer, map
//!   polling, counters). Nothing else imports aya.
//! - [`flow`]: the connection table and the flow record (pure logic, no I/O).
//! - [`policy`]: NetworkPolicy compilation and evaluation, verdicts, what-if checks (pure).
//! - [`cluster`]: sources of cluster state, the per-flow view, the IP history.
//! - [`enrich`]: names both ends of a record, its Service and its verdict (pure).
//! - [`daemon`]: the running observer, wiring the stages with bounded channels.
//! - [`export`]: where records go (the JSON Lines flow log).
//! - [`cli`]: one file per subcommand, argument parsing and wiring only.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod daemon;
pub mod datapath;
pub mod enrich;
pub mod export;
pub mod flow;
pub mod memory;
pub mod metrics;
pub mod policy;
