//! `observer relay`: one `Observer` API for the whole cluster. It reads every node's
//! observer (found through the Kubernetes API, or listed with `--peer`) and serves the same
//! service as a node, each client's filters pushed down to every node, the nodes' flows
//! merged into one stream with a token that resumes it exactly on any replica.
//!
//! - `peers`: the node observers, a channel and a status check each;
//! - `discovery`: the peer list from the EndpointSlices of the observers' headless Service;
//! - `reader`: one node's stream for one client, reopened where it broke;
//! - `merge`: the nodes' flows in the order they were written (pure);
//! - `token`: the cluster cursor, per node the last cursor delivered (pure);
//! - `stream`: one client's stream: readers, merge, tokens;
//! - `service`: the tonic service; `suggestions`: suggestions merged from every node.

pub mod discovery;
pub mod export;
pub mod merge;
pub mod peers;
pub mod reader;
pub mod service;
pub mod stream;
pub mod suggestions;
pub mod token;

use std::sync::atomic::AtomicU64;

/// What the relay counts, for `ServerStatus`.
#[derive(Debug, Default)]
pub struct RelayCounters {
    /// Flows sent to clients.
    pub flows_sent: AtomicU64,
    /// Flows the nodes reported lost to the relay's streams, passed on to clients.
    pub flows_lost: AtomicU64,
    /// Client streams open now.
    pub subscribers: AtomicU64,
}
