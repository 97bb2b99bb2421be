//! `observer observe`: a client of the gRPC API. Prints flows as JSON Lines, each with its
//! cursor, and every gap the server reports.

use std::io::Write;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::api::server::read_pem;
use crate::flow::FlowRecord;
use crate::wire::proto::{
    FlowFilter, GetFlowsRequest, ServerStatusRequest, get_flows_request::Start,
    get_flows_response::Event, lost_flows::Reason, observer_client::ObserverClient,
};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// Arguments of `observer observe`.
#[derive(Debug, Args)]
pub struct ObserveArgs {
    /// The observer's API (`observer run --grpc-listen`): `http://host:port`,
    /// `https://host:port` (with --tls-ca), or `unix:///path/to/socket`.
    #[arg(long, default_value = "http://127.0.0.1:4245")]
    server: String,
    /// Keep printing new flows until interrupted.
    #[arg(long, short)]
    follow: bool,
    /// Start with the oldest flow the server holds (default: with the next one).
    #[arg(long, conflicts_with_all = ["after_cursor", "last"])]
    from_oldest: bool,
    /// Resume right after this cursor (as printed by an earlier run).
    #[arg(long, conflicts_with = "last")]
    after_cursor: Option<u64>,
    /// Start with the newest N flows the server holds.
    #[arg(long)]
    last: Option<u64>,
    /// Violations: flows the declared policies deny (adds `deny` to `--verdict`).
    #[arg(long)]
    violations: bool,
    /// Verdict: allow, deny, undefined, none.
    #[arg(long)]
    verdict: Vec<String>,
    /// Namespace of either side.
    #[arg(long)]
    namespace: Vec<String>,
    /// Source pod, `namespace/pod` or `namespace/`.
    #[arg(long)]
    from_pod: Vec<String>,
    /// Destination pod, `namespace/pod` or `namespace/`.
    #[arg(long)]
    to_pod: Vec<String>,
    /// Source address or CIDR.
    #[arg(long)]
    from_ip: Vec<String>,
    /// Destination address or CIDR.
    #[arg(long)]
    to_ip: Vec<String>,
    /// Source pod labels, `key=value,key`.
    #[arg(long)]
    from_label: Vec<String>,
    /// Destination pod labels, `key=value,key`.
    #[arg(long)]
    to_label: Vec<String>,
    /// Protocol: TCP, UDP, SCTP, ICMP, ICMPv6.
    #[arg(long)]
    protocol: Vec<String>,
    /// Destination port.
    #[arg(long)]
    port: Vec<u32>,
    /// Record state: active, closed, expired, evicted, started (the early item of a
    /// connection, sent when its first packet is seen).
    #[arg(long)]
    state: Vec<String>,
    /// Workload of either side, `Kind/name`.
    #[arg(long)]
    workload: Vec<String>,
    /// Print the server's buffer and loss counters instead of flows.
    #[arg(long)]
    status: bool,
    /// Ask the server's gRPC health service whether the API serves (it does once the
    /// daemon has its first cluster state): print it, and exit 1 when it does not. For
    /// readiness probes.
    #[arg(long, conflicts_with = "status")]
    health: bool,
    /// CA (PEM) that the server's certificate chains to: connect with TLS (an https://
    /// server address).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for servers that require one; needs --tls-key.
    #[arg(long, requires = "tls_key", requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The name to expect in the server's certificate (default: the address's host).
    #[arg(long, requires = "tls_ca")]
    tls_server_name: Option<String>,
}

/// Streams and prints until the server ends the stream (or, with `--follow`, until
/// interrupted).
pub fn run(args: ObserveArgs) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(observe(args))
}

async fn observe(args: ObserveArgs) -> Result<()> {
    let tls = match &args.tls_ca {
        Some(ca) => {
            let mut tls =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem(ca)?));
            if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
                tls = tls.identity(Identity::from_pem(read_pem(cert)?, read_pem(key)?));
            }
            if let Some(name) = &args.tls_server_name {
                tls = tls.domain_name(name.clone());
            }
            Some(tls)
        }
        None => None,
    };
    let channel = crate::api::listen::connect(&args.server, tls).await?;
    let stdout = std::io::stdout();
    if args.health {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "observer.v1.Observer".into(),
            })
            .await
            .context("asking the health service")?
            .into_inner()
            .status;
        let serving =
            status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
        writeln!(stdout.lock(), "{}", json!({ "serving": serving }))?;
        anyhow::ensure!(serving, "the API is not serving yet (no cluster state)");
        return Ok(());
    }
    let mut client = ObserverClient::new(channel);
    if args.status {
        let status = client
            .server_status(ServerStatusRequest {})
            .await
            .context("asking for the server status")?
            .into_inner();
        let line = json!({
            "oldest_cursor": status.oldest_cursor,
            "newest_cursor": status.newest_cursor,
            "capacity": status.capacity,
            "flows_published": status.flows_published,
            "subscribers": status.subscribers,
            "flows_lost_to_subscribers": status.flows_lost_to_subscribers,
        });
        writeln!(stdout.lock(), "{line}")?;
        return Ok(());
    }
    let request = request(&args);
    let mut stream = client
        .get_flows(request)
        .await
        .context("subscribing to flows")?
        .into_inner();
    while let Some(message) = stream.message().await.context("reading the flow stream")? {
        let line = match message.event {
            Some(Event::Flow(event)) => {
                let Some(flow) = event.flow else { continue };
                match FlowRecord::try_from(&flow) {
                    Ok(record) => json!({ "cursor": event.cursor, "flow": record }),
                    Err(e) => {
                        // A newer server may send what this client does not know: say so,
                        // and go on with the rest.
                        eprintln!(
                            "observer: skipping the flow at cursor {}: {e}",
                            event.cursor
                        );
                        continue;
                    }
                }
            }
            Some(Event::Lost(lost)) => {
                let reason = match Reason::try_from(lost.reason) {
                    Ok(Reason::Overwritten) => "overwritten",
                    Ok(Reason::EarlierRun) => "earlier-run",
                    _ => "unspecified",
                };
                eprintln!(
                    "observer: lost flows {}..={} ({reason})",
                    lost.first_cursor, lost.last_cursor
                );
                json!({ "lost": {
                    "first_cursor": lost.first_cursor,
                    "last_cursor": lost.last_cursor,
                    "reason": reason,
                }})
            }
            None => continue,
        };
        let mut out = stdout.lock();
        writeln!(out, "{line}")?;
        if args.follow {
            out.flush()?;
        }
    }
    Ok(())
}

fn request(args: &ObserveArgs) -> GetFlowsRequest {
    let start = if args.from_oldest {
        Some(Start::FromOldest(true))
    } else if let Some(cursor) = args.after_cursor {
        Some(Start::AfterCursor(cursor))
    } else {
        args.last.map(Start::Last)
    };
    let mut verdict = args.verdict.clone();
    if args.violations {
        verdict.push("deny".into());
    }
    let filter = FlowFilter {
        source_ip: args.from_ip.clone(),
        destination_ip: args.to_ip.clone(),
        source_pod: args.from_pod.clone(),
        destination_pod: args.to_pod.clone(),
        namespace: args.namespace.clone(),
        source_label: args.from_label.clone(),
        destination_label: args.to_label.clone(),
        protocol: args.protocol.clone(),
        destination_port: args.port.clone(),
        verdict,
        state: args.state.clone(),
        workload: args.workload.clone(),
    };
    GetFlowsRequest {
        start,
        follow: args.follow,
        allow: if filter == FlowFilter::default() {
            Vec::new()
        } else {
            vec![filter]
        },
        deny: Vec::new(),
    }
}
