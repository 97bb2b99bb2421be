//! Where records leave the daemon for storage. Today: the JSON Lines flow log, a sink of the
//! hub.

mod flow_log;

pub use flow_log::{FlowLog, FlowLogStats, FlowLogTarget, Rotation};
