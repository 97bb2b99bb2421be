//! Where records leave the daemon. Today: the JSON Lines flow log.

mod flow_log;

pub use flow_log::{FlowLog, FlowLogTarget};
