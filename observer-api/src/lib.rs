//! The observer's records and wire schema, for the daemon and for its clients (the CLI,
//! a relay, a console, third-party Rust programs) without the datapath or Kubernetes:
//!
//! - [`record`]: the typed flow record, one connection as the flow log writes it;
//! - [`vocab`]: its typed values (IP protocol, TCP flags, timestamps, Service backend) and
//!   their one JSON spelling;
//! - [`verdict`]: the verdict's shape, one for every policy kind, and [`verdict_json`] its
//!   JSON;
//! - [`proto`]: the gRPC schema's generated code (`proto/observer.proto`, `observer.v1`);
//! - [`convert`]: the one conversion between a record and the wire's `Flow`.

pub mod convert;
pub mod record;
pub mod verdict;
pub mod verdict_json;
pub mod vocab;

/// Code generated from `proto/observer.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("observer.v1");

    /// The schema, encoded (a `FileDescriptorSet`), for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/observer_descriptor.bin"));
}

#[cfg(test)]
pub(crate) mod fixtures {
    use crate::record::FlowRecord;

    /// Four flow-log records covering every field (the daemon's API test data).
    pub(crate) fn flows() -> Vec<FlowRecord> {
        include_str!("../../observer/tests/data/api/flows.jsonl")
            .lines()
            .map(|line| serde_json::from_str(line).expect("fixture flow"))
            .collect()
    }
}
