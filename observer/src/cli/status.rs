//! `observer status`: what the server says of itself (`ServerStatus`): version, node,
//! uptime, readiness, its flow buffer and what subscribers lost, as a table or JSON.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::client::{Connection, Failure};
use crate::wire::proto::{ServerStatusRequest, observer_client::ObserverClient};

/// Arguments of `observer status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    connection: Connection,
    /// Output: table or json.
    #[arg(long, short, value_enum, default_value_t = Format::Table)]
    output: Format,
}

/// `--output` of `observer status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One `FIELD  value` line each.
    Table,
    /// One JSON object.
    Json,
}

/// Runs the command.
pub fn run(args: StatusArgs) -> ExitCode {
    super::client::run_client(async {
        let channel = args.connection.connect().await?;
        print(channel, args.output)
            .await
            .map_err(|f| args.connection.explain(f))
    })
}

/// Asks the server and prints the answer.
pub async fn print(channel: tonic::transport::Channel, format: Format) -> Result<(), Failure> {
    let s = ObserverClient::new(channel)
        .server_status(ServerStatusRequest {})
        .await
        .map_err(|e| Failure::from_status("asking for the server status", e))?
        .into_inner();
    let value = json!({
        "version": s.version,
        "node": s.node_name,
        "uptime_seconds": s.uptime_seconds,
        "ready": s.ready,
        "oldest_cursor": s.oldest_cursor,
        "newest_cursor": s.newest_cursor,
        "capacity": s.capacity,
        "flows_published": s.flows_published,
        "subscribers": s.subscribers,
        "flows_lost_to_subscribers": s.flows_lost_to_subscribers,
        "violations_held": s.violations_held,
        "violations_capacity": s.violations_capacity,
        "interfaces": s.interfaces,
        "connections": s.connections,
        "cluster_generation": s.cluster_generation,
        "cluster_stale_sources": s.cluster_stale_sources,
        "cluster_invalid_objects": s.cluster_invalid_objects,
        // A relay's node observers (none from a node).
        "nodes": s.nodes.iter().map(|n| json!({
            "address": n.address,
            "node": n.node_name,
            "connected": n.connected,
            "last_error": n.last_error,
            "flows_received": n.flows_received,
            "lag_ms": n.lag_ms,
            "flows_published": n.flows_published,
            "flows_lost_to_subscribers": n.flows_lost_to_subscribers,
        })).collect::<Vec<_>>(),
    });
    let text = match format {
        Format::Json => format!("{value}\n"),
        Format::Table => {
            let held = if s.newest_cursor >= s.oldest_cursor && s.newest_cursor > 0 {
                s.newest_cursor - s.oldest_cursor + 1
            } else {
                0
            };
            let rows = [
                ("VERSION", s.version.clone()),
                (
                    "NODE",
                    if s.node_name.is_empty() {
                        "-".into()
                    } else {
                        s.node_name.clone()
                    },
                ),
                ("UPTIME", uptime(s.uptime_seconds)),
                (
                    "READY",
                    if s.ready {
                        "yes".into()
                    } else if !s.nodes.is_empty() {
                        "no (no node observer connected)".into()
                    } else {
                        "no (no cluster state yet)".into()
                    },
                ),
                ("FLOWS HELD", format!("{held} of {}", s.capacity)),
                (
                    "CURSORS",
                    format!("{}..={}", s.oldest_cursor, s.newest_cursor),
                ),
                (
                    "VIOLATIONS HELD",
                    format!("{} of {}", s.violations_held, s.violations_capacity),
                ),
                ("FLOWS PUBLISHED", s.flows_published.to_string()),
                ("CONNECTIONS", s.connections.to_string()),
                (
                    "INTERFACES",
                    format!("{} {}", s.interfaces.len(), s.interfaces.join(",")),
                ),
                (
                    "CLUSTER STATE",
                    format!(
                        "generation {}, {} stale sources, {} invalid objects",
                        s.cluster_generation, s.cluster_stale_sources, s.cluster_invalid_objects
                    ),
                ),
                ("SUBSCRIBERS", s.subscribers.to_string()),
                (
                    "LOST TO SUBSCRIBERS",
                    format!("{} flows", s.flows_lost_to_subscribers),
                ),
            ];
            let mut text: String = rows.iter().map(|(k, v)| format!("{k:<20} {v}\n")).collect();
            // A relay: one line per node observer.
            for n in &s.nodes {
                let state = if n.connected {
                    format!("connected, lag {} ms", n.lag_ms)
                } else {
                    format!("UNREACHABLE: {}", n.last_error)
                };
                let name = if n.node_name.is_empty() {
                    "-"
                } else {
                    &n.node_name
                };
                text.push_str(&format!(
                    "{:<20} {name} at {}: {state}, {} flows received\n",
                    "NODE OBSERVER", n.address, n.flows_received
                ));
            }
            text
        }
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| Failure::Runtime(e.into()))
}

/// `3d 4h 5m 6s`, the larger units only when non-zero.
fn uptime(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m {s}s"),
    }
}
