//! The gRPC API: flows and violations (flows with a `deny` verdict) streamed to subscribers
//! with filters and resumable cursors; nothing a subscriber misses goes unsaid. Streams read
//! the hub's ring (`crate::hub`); the schema and its conversion are in `crate::wire`.
//!
//! - `filter`: a subscriber's allow/deny filters, checked and matched (pure).
//! - `server`: the tonic service, a task per stream.

pub mod filter;
pub mod server;
