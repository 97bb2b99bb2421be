//! Cluster state: where namespaces, pods, nodes and policies come from.
//!
//! - `state`: the plain-data cluster state every source publishes, and workload resolution.
//! - `manifests`: the manifest loader, also used by `observer check`.
//! - `publish`: turns a source's states into views: manifests reloaded when the files
//!   change, or the Kubernetes source.
//! - `source`, `kubernetes`: the Kubernetes source (kube-rs watchers and reflectors per
//!   kind, list+watch with resume, relist on 410 Gone, backoff), publishing states;
//!   `lenient` decodes their objects one by one, so one bad object fails nothing else.
//! - `view`: the immutable per-flow view built from a state (policies, IP holders, Services);
//!   `tiered_view` its part for Calico, AdminNetworkPolicy and ClusterNetworkPolicy.
//! - `identity`: the time-aware IP → holder history.

pub mod identity;
pub mod kinds;
pub mod kubernetes;
mod lenient;
pub mod manifests;
pub mod publish;
pub mod source;
pub mod state;
pub mod tiered_view;
pub mod view;
