//! The gRPC API: flows and violations (flows with a `deny` verdict) streamed to subscribers
//! with filters and resumable cursors; nothing a subscriber misses goes unsaid.
//!
//! - `hub`: where the daemon publishes written records (the ring behind a short lock).
//! - `ring`: the ring of recent flows and their cursors (pure).
//! - `filter`: a subscriber's allow/deny filters, checked and matched (pure).
//! - `convert`: flow record ⇄ `proto::Flow`, the one conversion.
//! - `server`: the tonic service, a task per stream.

pub mod convert;
pub mod filter;
pub mod hub;
pub mod ring;
pub mod server;

/// Code generated from `proto/observer.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("observer.v1");
}

#[cfg(test)]
pub(crate) mod fixtures {
    use crate::flow::FlowRecord;

    /// Four flow-log records covering every field (`tests/data/api/flows.jsonl`).
    pub(crate) fn flows() -> Vec<FlowRecord> {
        include_str!("../../tests/data/api/flows.jsonl")
            .lines()
            .map(|line| serde_json::from_str(line).expect("fixture flow"))
            .collect()
    }
}
