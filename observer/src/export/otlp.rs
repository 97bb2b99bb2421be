//! OTLP export: every record the hub publishes, sent as an OpenTelemetry log record over
//! OTLP/gRPC to a collector (`--otlp-endpoint`), which takes them to whatever storage the
//! user runs. A sink of the hub with a bounded queue that drops when full (counted as
//! `sink_otlp`); batches of up to [`BATCH`] records; a batch the collector refuses for
//! now (UNAVAILABLE, RESOURCE_EXHAUSTED, a broken connection) is retried with backoff,
//! then counted as unsent. Nothing here can hold capture back.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tracing::warn;

use super::otlp_record::{log_record, text};
use crate::hub::{FlowHub, Published, WhenFull};

/// Records queued for the exporter before they are dropped (and counted as lost to it).
const QUEUE: usize = 16_384;
/// Records sent in one request at most.
pub const BATCH: usize = 512;
/// Attempts per batch (the first and its retries).
const ATTEMPTS: u32 = 4;
/// The first retry's wait; each next one doubles.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to export.
#[derive(Clone, Debug)]
pub struct OtlpConfig {
    /// The collector's OTLP/gRPC address: `http://host:4317`, or `https://` with `tls_ca`.
    pub endpoint: String,
    /// The CA (PEM) the collector's certificate chains to.
    pub tls_ca: Option<PathBuf>,
    /// The node, as the resource's `k8s.node.name`.
    pub node_name: Option<String>,
}

/// What the exporter did, for the stats and metrics.
#[derive(Debug, Default)]
pub struct OtlpCounts {
    /// Records the collector accepted.
    pub sent: AtomicU64,
    /// Records given up on: the collector refused them, or stayed unreachable through the
    /// retries, or the daemon stopped before they could be sent.
    pub unsent: AtomicU64,
    /// Set when the daemon stops and the drain took too long: what is left is counted as
    /// unsent, not sent.
    give_up: AtomicBool,
}

/// A running exporter.
pub struct OtlpExporter {
    /// Its figures.
    pub counts: Arc<OtlpCounts>,
    /// The task: it sends what is queued and ends when the hub closes.
    pub task: JoinHandle<()>,
}

impl OtlpExporter {
    /// Once the hub is closed: lets the exporter send what it has queued for up to
    /// `within`, then counts the rest as unsent (a collector that is down cannot hold the
    /// daemon's stop for the length of every batch's retries).
    pub async fn finish(mut self, within: Duration) {
        if tokio::time::timeout(within, &mut self.task).await.is_ok() {
            return;
        }
        warn!(
            "the OTLP collector did not take the last records in {within:?}; counting the rest as unsent"
        );
        self.counts.give_up.store(true, Ordering::Relaxed);
        if let Err(e) = self.task.await {
            warn!(error = %e, "the OTLP exporter panicked");
        }
    }
}

/// Starts exporting what `hub` publishes from now on. The collector need not be up: the
/// connection is made when the first batch is sent, and again after it breaks.
pub fn start(hub: &FlowHub, config: &OtlpConfig) -> Result<OtlpExporter> {
    let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
        .with_context(|| format!("--otlp-endpoint {}", config.endpoint))?
        .connect_timeout(Duration::from_secs(5));
    if let Some(ca) = &config.tls_ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            .context("--otlp-tls-ca")?;
    }
    let client = LogsServiceClient::new(endpoint.connect_lazy());
    let queue = hub.subscribe("otlp", QUEUE, WhenFull::Drop, false);
    let counts = Arc::new(OtlpCounts::default());
    let resource = resource(config.node_name.as_deref());
    let task = tokio::spawn(run(queue, client, resource, Arc::clone(&counts)));
    Ok(OtlpExporter { counts, task })
}

fn resource(node: Option<&str>) -> Resource {
    let mut attributes = vec![text("service.name", "observer")];
    if let Some(node) = node {
        attributes.push(text("k8s.node.name", node));
    }
    Resource {
        attributes,
        ..Resource::default()
    }
}

async fn run(
    mut queue: mpsc::Receiver<Arc<Published>>,
    mut client: LogsServiceClient<Channel>,
    resource: Resource,
    counts: Arc<OtlpCounts>,
) {
    let mut failing = false;
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(entry) => batch.push(entry),
                Err(_) => break,
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "observer".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..InstrumentationScope::default()
                    }),
                    log_records: batch.iter().map(|p| log_record(&p.record, now)).collect(),
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        let n = batch.len() as u64;
        if counts.give_up.load(Ordering::Relaxed) {
            counts.unsent.fetch_add(n, Ordering::Relaxed);
            continue;
        }
        match send(&mut client, request, &counts.give_up).await {
            Ok(()) => {
                counts.sent.fetch_add(n, Ordering::Relaxed);
                if failing {
                    tracing::info!("the OTLP collector takes records again");
                    failing = false;
                }
            }
            Err(status) => {
                counts.unsent.fetch_add(n, Ordering::Relaxed);
                if !failing {
                    warn!(code = ?status.code(), error = %status.message(), records = n,
                        "the OTLP collector did not take a batch; counted as unsent (otlp_unsent)");
                    failing = true;
                }
            }
        }
    }
}

/// One batch, retried with backoff while the collector is unreachable or busy.
async fn send(
    client: &mut LogsServiceClient<Channel>,
    request: ExportLogsServiceRequest,
    give_up: &AtomicBool,
) -> Result<(), tonic::Status> {
    let mut wait = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let call = client.export(request.clone());
        let result = match tokio::time::timeout(ATTEMPT_TIMEOUT, call).await {
            Ok(result) => result.map(drop),
            Err(_) => Err(tonic::Status::deadline_exceeded("no answer in 10 s")),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(status)
                if attempt < ATTEMPTS
                    && !give_up.load(Ordering::Relaxed)
                    && matches!(
                        status.code(),
                        Code::Unavailable
                            | Code::ResourceExhausted
                            | Code::DeadlineExceeded
                            | Code::Unknown
                            | Code::Cancelled
                    ) =>
            {
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            Err(status) => return Err(status),
        }
    }
}
