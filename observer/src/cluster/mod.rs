//! Cluster state: where namespaces, pods, nodes and policies come from.
//!
//! Today: static manifests (`manifests`), used by `observer check`. The Kubernetes
//! watchers, the snapshot the daemon swaps atomically, and the time-aware IP → pod history
//! come with the enrichment issue and live beside it.

pub mod manifests;
pub mod state;
