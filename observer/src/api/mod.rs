//! The gRPC API: flows and violations (flows with a `deny` verdict) streamed to subscribers
//! with filters and resumable cursors; nothing a subscriber misses goes unsaid. Streams read
//! the hub's ring (`crate::hub`); the schema and its conversion are in `crate::wire`.
//!
//! - `filter`: a subscriber's allow/deny filters, checked and matched (pure).
//! - `listen`: where it listens (TCP, or a Unix socket with file permissions) and how a
//!   client connects.
//! - `server`: the tonic service, a task per stream; `start`: where a stream starts (the
//!   last N matching flows) and its time window; `stream`: one stream's task.
//! - `suggestions`: `GetSuggestions` and `GetLearning`, from the daemon's learner and the
//!   cluster view; `suggestion_wire` turns suggestions into the proto's messages.

pub mod filter;
pub mod listen;
pub mod server;
pub(crate) mod start;
mod stream;
mod suggestion_wire;
pub mod suggestions;
