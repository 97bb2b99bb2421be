//! The gRPC wire schema (`proto/observer.proto`, package `observer.v1`) and the one
//! conversion between it and the flow record. The hub caches each record's wire form
//! (made once, by the first stream that sends it); the API's server and `observer observe`
//! use both directions.

pub mod convert;

/// Code generated from `proto/observer.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("observer.v1");
}
