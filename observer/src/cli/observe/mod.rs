//! `observer observe`: a client of the gRPC API, in the style of `hubble observe`. Without
//! a start flag it prints the last 20 matching flows and ends; `--follow` keeps
//! streaming. A table on a terminal, JSON Lines when piped (`output.rs`); the flags become
//! a request (`request.rs`): filters for either side or per side, `--not`, a time window.
//!
//! Exit status: 0 when the stream ended (a closed pipe too: `observer observe | head`), 1
//! for a runtime failure (the server cannot be reached, the stream breaks), 2 for usage
//! and values the server refuses (INVALID_ARGUMENT, OUT_OF_RANGE).

mod output;
mod request;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::client::{Connection, Failure, run_client};
use crate::flow::FlowRecord;
use crate::wire::proto::{get_flows_response::Event, observer_client::ObserverClient};
pub use output::{ColorChoice, Format};

/// Arguments of `observer observe`.
#[derive(Debug, Args)]
pub struct ObserveArgs {
    #[command(flatten)]
    connection: Connection,
    /// Output: table, compact, json (indented) or jsonl (one object a line). Default: table
    /// on a terminal, jsonl otherwise.
    #[arg(long, short, value_enum)]
    output: Option<Format>,
    /// Colour the verdicts: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    /// Keep printing new flows until interrupted.
    #[arg(long, short)]
    follow: bool,
    /// Start with the oldest flow the server holds.
    #[arg(long, conflicts_with_all = ["after_cursor", "after_token", "last", "first"])]
    from_oldest: bool,
    /// Resume right after this cursor (as printed by an earlier run).
    #[arg(long, conflicts_with_all = ["after_token", "last", "first"])]
    after_cursor: Option<u64>,
    /// Through a relay: resume right after the flow with this token (JSON output prints
    /// each flow's `token`), on any replica of the relay.
    #[arg(long, conflicts_with_all = ["last", "first"])]
    after_token: Option<String>,
    /// The last N matching flows the server holds (default without --follow: 20).
    #[arg(long, conflicts_with = "first")]
    last: Option<u64>,
    /// The first N matching flows the server holds, then end.
    #[arg(long, conflicts_with = "follow")]
    first: Option<u64>,
    /// Flows active since this long ago (`5m`, `1h30m`) or this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Flows active until this long ago or this RFC 3339 time (the stream then ends).
    #[arg(long, conflicts_with = "follow")]
    until: Option<String>,
    /// Violations: flows the declared policies deny (adds `deny` to `--verdict`).
    #[arg(long)]
    violations: bool,
    /// Verdict: allow, deny, undefined, none.
    #[arg(long)]
    verdict: Vec<String>,
    /// Namespace of either side.
    #[arg(long)]
    namespace: Vec<String>,
    /// Source namespace.
    #[arg(long)]
    from_namespace: Vec<String>,
    /// Destination namespace.
    #[arg(long)]
    to_namespace: Vec<String>,
    /// Pod of either side, `namespace/pod` or `namespace/`.
    #[arg(long)]
    pod: Vec<String>,
    /// Source pod, `namespace/pod` or `namespace/`.
    #[arg(long)]
    from_pod: Vec<String>,
    /// Destination pod, `namespace/pod` or `namespace/`.
    #[arg(long)]
    to_pod: Vec<String>,
    /// Address or CIDR of either side.
    #[arg(long)]
    ip: Vec<String>,
    /// Source address or CIDR.
    #[arg(long)]
    from_ip: Vec<String>,
    /// Destination address or CIDR.
    #[arg(long)]
    to_ip: Vec<String>,
    /// Label selector on either side's pod, Kubernetes syntax: `app=web,tier!=db`,
    /// `env in (prod,stage)`, `!canary`.
    #[arg(long)]
    label: Vec<String>,
    /// Label selector on the source pod.
    #[arg(long)]
    from_label: Vec<String>,
    /// Label selector on the destination pod.
    #[arg(long)]
    to_label: Vec<String>,
    /// Port of either side.
    #[arg(long)]
    port: Vec<u32>,
    /// Source port.
    #[arg(long)]
    from_port: Vec<u32>,
    /// Destination port.
    #[arg(long)]
    to_port: Vec<u32>,
    /// Workload of either side, `Kind/name` (the kind in any case).
    #[arg(long)]
    workload: Vec<String>,
    /// Source workload, `Kind/name`.
    #[arg(long)]
    from_workload: Vec<String>,
    /// Destination workload, `Kind/name`.
    #[arg(long)]
    to_workload: Vec<String>,
    /// The node whose observer wrote the record.
    #[arg(long)]
    node: Vec<String>,
    /// The Service the initiator addressed, `namespace/name` or `namespace/`.
    #[arg(long)]
    service: Vec<String>,
    /// Protocol: TCP, UDP, SCTP, ICMP, ICMPv6, or a number.
    #[arg(long)]
    protocol: Vec<String>,
    /// Record state: active, closed, expired, evicted, started (the early item of a
    /// connection, sent when its first packet is seen).
    #[arg(long)]
    state: Vec<String>,
    /// Negates the filter that follows: `--not --namespace kube-system` (repeatable).
    #[arg(long, num_args = 2, allow_hyphen_values = true, value_names = ["--FILTER", "VALUE"])]
    not: Vec<String>,
    /// Print the server's status instead of flows (as `observer status -o json`).
    #[arg(long, hide = true)]
    status: bool,
    /// Ask the server's gRPC health service whether the API serves (it does once the
    /// daemon has its first cluster state): print it, and exit 1 when it does not. For
    /// readiness probes.
    #[arg(long, conflicts_with = "status")]
    health: bool,
}

/// Runs the command.
pub fn run(args: ObserveArgs) -> ExitCode {
    run_client(observe(args))
}

async fn observe(args: ObserveArgs) -> Result<(), Failure> {
    let connection_hints = |f| args.connection.explain(f);
    read_flows(&args).await.map_err(connection_hints)
}

async fn read_flows(args: &ObserveArgs) -> Result<(), Failure> {
    let request =
        request::request(args, std::time::SystemTime::now()).map_err(|e| Failure::Usage(e.0))?;
    let channel = args.connection.connect().await?;
    if args.health {
        return health(channel).await;
    }
    if args.status {
        return crate::cli::status::print(channel, crate::cli::status::Format::Json).await;
    }
    let stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    let format = args.output.unwrap_or(if terminal {
        Format::Table
    } else {
        Format::Jsonl
    });
    let color = match args.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => terminal && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut printer = output::Printer::new(stdout.lock(), format, color, args.follow);
    let mut client = ObserverClient::new(channel);
    let mut stream = client
        .get_flows(request)
        .await
        .map_err(|s| Failure::from_status("subscribing to flows", s))?
        .into_inner();
    let io = |e: std::io::Error| Failure::Runtime(e.into());
    while let Some(message) = stream
        .message()
        .await
        .map_err(|s| Failure::from_status("reading the flow stream", s))?
    {
        match message.event {
            Some(Event::Flow(event)) => {
                let Some(flow) = event.flow else { continue };
                match FlowRecord::try_from(&flow) {
                    Ok(record) => printer
                        .flow(event.cursor, &event.token, &record)
                        .map_err(io)?,
                    // A newer server may send what this client does not know: say so, and
                    // go on with the rest.
                    Err(e) => eprintln!(
                        "observer: skipping the flow at cursor {}: {e}",
                        event.cursor
                    ),
                }
            }
            Some(Event::Lost(lost)) => {
                eprintln!("observer: {}", output::describe_lost(&lost));
                printer.lost(&lost).map_err(io)?;
            }
            // Not asked for.
            Some(Event::Progress(_)) | None => {}
        }
    }
    printer.finish().map_err(io)?;
    if args.follow {
        eprintln!("observer: the server ended the stream (it is shutting down)");
    }
    Ok(())
}

async fn health(channel: tonic::transport::Channel) -> Result<(), Failure> {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "observer.v1.Observer".into(),
        })
        .await
        .map_err(|s| Failure::from_status("asking the health service", s))?
        .into_inner()
        .status;
    let serving = status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    writeln!(
        std::io::stdout().lock(),
        "{}",
        json!({ "serving": serving })
    )
    .context("writing")
    .map_err(Failure::Runtime)?;
    if serving {
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow::anyhow!(
            "the API is not serving yet (no cluster state)"
        )))
    }
}
