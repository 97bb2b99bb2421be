//! Test support for the Kubernetes source: an in-process API server and
//! fixtures (tests/fixtures/*.json).

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

pub mod fixtures;
pub mod harness;
pub mod mock_apiserver;
pub mod mock_state;
