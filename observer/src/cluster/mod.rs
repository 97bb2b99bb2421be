//! Cluster state: where namespaces, pods, nodes and policies come from.
//!
//! - `state`: the plain-data cluster state every source publishes, and workload resolution.
//! - `manifests`: the manifest loader, also used by `observer check`.
//! - `files_source`: the static source: manifests reloaded when the files change.
//! - `view`: the immutable per-flow view built from a state (policies, IP holders, Services).
//! - `identity`: the time-aware IP → holder history.

pub mod files_source;
pub mod identity;
pub mod manifests;
pub mod state;
pub mod view;
