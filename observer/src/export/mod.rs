//! Where records leave the daemon for storage, each a sink of the hub: the JSON Lines flow
//! log, and OTLP log records to an OpenTelemetry collector (`otlp`, its records made in
//! `otlp_record`).

mod flow_log;
pub mod otlp;
pub mod otlp_record;

pub use flow_log::{FlowLog, FlowLogStats, FlowLogTarget, Rotation};
