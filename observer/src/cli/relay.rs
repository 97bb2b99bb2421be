//! `observer relay`: the cluster's API, merged from every node's observer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use super::parse_duration;
use super::run::{Listen, parse_listen};
use crate::api::listen::ApiAddress;
use crate::api::server::{TlsFiles, check_tls, read_pem, serve_observer};
use crate::cluster::kubernetes::{KubernetesSourceConfig, build_client};
use crate::relay::discovery::{PeerService, discover};
use crate::relay::peers::PeerSet;
use crate::relay::service::RelayService;

/// Arguments of `observer relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// A node observer's API (`http://host:port`, `https://host:port` with --peer-tls-ca,
    /// or `unix:///path`). Repeatable: the static peer list, for labs and clusters
    /// without API access.
    #[arg(
        long,
        required_unless_present = "peer_service",
        conflicts_with = "peer_service"
    )]
    peer: Vec<String>,
    /// Find the node observers through the Kubernetes API: the headless Service
    /// (NAMESPACE/NAME) that selects the DaemonSet's pods; its ready endpoints are dialled,
    /// and followed as they come and go.
    #[arg(long, value_parser = PeerService::parse)]
    peer_service: Option<(String, String)>,
    /// The name of the Service's port that serves the observers' API.
    #[arg(long, default_value = "grpc")]
    peer_port_name: String,
    /// Dial discovered observers without TLS (only on a network you trust; the default
    /// needs --peer-tls-ca).
    #[arg(long, conflicts_with = "peer_tls_ca")]
    peer_plaintext: bool,
    /// Kubeconfig for --peer-service (default: $KUBECONFIG, ~/.kube/config, or the pod's
    /// service account).
    #[arg(long, requires = "peer_service")]
    kubeconfig: Option<PathBuf>,
    /// CA (PEM) the node observers' certificates chain to: dial them with TLS.
    #[arg(long)]
    peer_tls_ca: Option<PathBuf>,
    /// The relay's client certificate (PEM), for observers that require one (mutual TLS).
    #[arg(long, requires = "peer_tls_key", requires = "peer_tls_ca")]
    peer_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --peer-tls-cert.
    #[arg(long, requires = "peer_tls_cert")]
    peer_tls_key: Option<PathBuf>,
    /// The name to expect in every observer's certificate (default: the address's host;
    /// discovered observers are dialled by IP, so give the name their certificate has).
    #[arg(long, requires = "peer_tls_ca")]
    peer_tls_server_name: Option<String>,
    /// How long a node's flows wait for slower nodes' older ones before they are sent
    /// anyway: across nodes, flows are in the order they were written within this window.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    merge_window: Duration,
    /// Address of the relay's gRPC API: host:port or a Unix socket. Without --grpc-tls-*
    /// it is plaintext and unauthenticated.
    #[arg(long, default_value = "127.0.0.1:4245", value_parser = ApiAddress::parse)]
    grpc_listen: ApiAddress,
    /// Serve over TLS with this certificate chain (PEM); needs --grpc-tls-key.
    #[arg(long, requires = "grpc_tls_key")]
    grpc_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --grpc-tls-cert.
    #[arg(long, requires = "grpc_tls_cert")]
    grpc_tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, requires = "grpc_tls_cert")]
    grpc_tls_client_ca: Option<PathBuf>,
    /// Client streams served at once; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = crate::api::server::DEFAULT_MAX_STREAMS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    grpc_max_streams: usize,
    /// Address of the relay's Prometheus metrics (`GET /metrics`: flows sent and lost,
    /// client streams, each node observer's connection and lag, OTLP export), or `off`.
    #[arg(long, default_value = "off", value_parser = parse_listen)]
    metrics_listen: Listen,
    /// Send every node's records as OpenTelemetry log records to this OTLP/gRPC
    /// collector. Every replica sends all of them: export from one replica (or from the
    /// nodes with `observer run --otlp-endpoint`).
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// The CA (PEM) the OTLP collector's certificate chains to.
    #[arg(long, requires = "otlp_endpoint")]
    otlp_tls_ca: Option<PathBuf>,
    /// Address of the web console for the whole cluster (the page at `/`, its read-only
    /// JSON API under `/api/`), or `off`. `:PORT` means the loopback. Plaintext unless
    /// --ui-tls-cert.
    #[arg(long, default_value = "off", value_parser = parse_listen)]
    ui_listen: Listen,
    /// Serve the console over HTTPS with this certificate chain (PEM); needs --ui-tls-key.
    #[arg(long, requires = "ui_tls_key")]
    ui_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --ui-tls-cert.
    #[arg(long, requires = "ui_tls_cert")]
    ui_tls_key: Option<PathBuf>,
    /// Require browser (client) certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, requires = "ui_tls_cert")]
    ui_tls_client_ca: Option<PathBuf>,
    /// Flows the console holds, merged from every node (the oldest are dropped first).
    #[arg(long, default_value_t = DEFAULT_UI_FLOWS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    ui_buffer_flows: usize,
}

/// Flows a relay's console holds by default (a record is about 1 KiB held).
const DEFAULT_UI_FLOWS: usize = 65_536;

/// The TLS the relay dials node observers with.
fn peer_tls(args: &RelayArgs) -> Result<Option<ClientTlsConfig>> {
    let Some(ca) = &args.peer_tls_ca else {
        return Ok(None);
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem(ca)?));
    if let (Some(cert), Some(key)) = (&args.peer_tls_cert, &args.peer_tls_key) {
        tls = tls.identity(Identity::from_pem(read_pem(cert)?, read_pem(key)?));
    }
    if let Some(name) = &args.peer_tls_server_name {
        tls = tls.domain_name(name.clone());
    }
    Ok(Some(tls))
}

/// Runs the relay until SIGINT or SIGTERM.
pub fn run(args: RelayArgs) -> Result<()> {
    let tls = peer_tls(&args)?;
    for peer in &args.peer {
        if !peer.contains("://") {
            bail!(
                "--peer {peer:?} has no scheme: write http://{peer}, https:// (with --peer-tls-ca) or unix:///path"
            );
        }
        if peer.starts_with("https://") != tls.is_some() && !peer.starts_with("unix:") {
            bail!("--peer {peer}: https:// needs --peer-tls-ca, and --peer-tls-ca needs https://");
        }
    }
    if args.peer_service.is_some() && tls.is_none() && !args.peer_plaintext {
        bail!(
            "--peer-service dials the observers with TLS: give --peer-tls-ca (and --peer-tls-cert, --peer-tls-key for mutual TLS), or --peer-plaintext"
        );
    }
    let server_tls = match (&args.grpc_tls_cert, &args.grpc_tls_key) {
        (Some(cert), Some(key)) => {
            let tls = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.grpc_tls_client_ca.clone(),
            }
            .load()?;
            check_tls(&tls).context("--grpc-tls-cert and --grpc-tls-key")?;
            Some(tls)
        }
        _ => None,
    };
    let ui_tls = match (&args.ui_tls_cert, &args.ui_tls_key) {
        (Some(cert), Some(key)) => Some(
            crate::ui::server::tls_acceptor(&TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.ui_tls_client_ca.clone(),
            })
            .context("--ui-tls-cert and --ui-tls-key")?,
        ),
        _ => None,
    };
    if ui_tls.is_some() && args.ui_listen.0.is_none() {
        bail!("--ui-tls-cert needs --ui-listen");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(async move {
            let peers = PeerSet::new(tls.clone());
            let mut tasks = Vec::new();
            if let Some((namespace, name)) = args.peer_service.clone() {
                let client = build_client(&KubernetesSourceConfig {
                    kubeconfig: args.kubeconfig.clone(),
                    ..KubernetesSourceConfig::default()
                })
                .await
                .context("--peer-service needs the Kubernetes API")?;
                let service = PeerService {
                    namespace,
                    name,
                    port_name: args.peer_port_name.clone(),
                    scheme: if tls.is_some() { "https" } else { "http" },
                };
                tasks.push(tokio::spawn(discover(client, service, Arc::clone(&peers))));
            } else {
                peers.set(&args.peer);
            }
            let exporter = match &args.otlp_endpoint {
                Some(endpoint) => {
                    let hub = crate::hub::FlowHub::new(1024);
                    let exporter = crate::export::otlp::start(
                        &hub,
                        &crate::export::otlp::OtlpConfig {
                            endpoint: endpoint.clone(),
                            tls_ca: args.otlp_tls_ca.clone(),
                            node_name: None,
                        },
                    )?;
                    let (task, stream) =
                        crate::relay::export::start(&peers, args.merge_window, &hub, false);
                    tasks.push(task);
                    Some((hub, exporter, stream))
                }
                None => None,
            };
            let counters = Arc::new(crate::relay::RelayCounters::default());
            let mut console_figures = None;
            if let Some(address) = args.ui_listen.0 {
                // The console's own merged stream, from the oldest flow each node holds:
                // the map has the nodes' history at once.
                let hub = crate::hub::FlowHub::with_violations(
                    args.ui_buffer_flows,
                    crate::hub::DEFAULT_VIOLATIONS,
                );
                let (task, stream) =
                    crate::relay::export::start(&peers, args.merge_window, &hub, true);
                tasks.push(task);
                console_figures = Some(crate::metrics::relay::ConsoleFigures {
                    stream,
                    hub: Arc::clone(&hub),
                });
                let listener = crate::ui::server::bind(address).await?;
                let bound = listener.local_addr().unwrap_or(address);
                let scheme = if ui_tls.is_some() { "https" } else { "http" };
                tracing::info!(url = %format!("{scheme}://{bound}/"), "web console");
                let console = crate::ui::routes::Console {
                    hub,
                    role: crate::ui::routes::Role::Relay,
                    node: String::new(),
                    views: None,
                    profile: crate::policy::CniProfile::default(),
                    suggestions: Some(Arc::new(crate::ui::suggestions::RelaySuggestions(
                        Arc::clone(&peers),
                    ))),
                };
                tasks.push(tokio::spawn(crate::ui::server::serve(
                    listener,
                    ui_tls.clone(),
                    console,
                )));
            }
            if let Some(address) = args.metrics_listen.0 {
                let listener = crate::metrics::server::bind(address).await?;
                let metrics = crate::metrics::relay::RelayMetrics::new(
                    Arc::clone(&peers),
                    Arc::clone(&counters),
                    exporter.as_ref().map(|(hub, e, stream)| {
                        crate::metrics::relay::ExportFigures {
                            stream: Arc::clone(stream),
                            hub: Arc::clone(hub),
                            otlp: Arc::clone(&e.counts),
                        }
                    }),
                )
                .with_console(console_figures);
                tracing::info!(%address, "metrics listening");
                tasks.push(tokio::spawn(crate::metrics::server::serve(
                    listener,
                    Arc::new(metrics),
                )));
            }
            let listener = crate::api::listen::bind(&args.grpc_listen).await?;
            tracing::info!(listen = %args.grpc_listen, peers = args.peer.len(), "relay serving");
            let service = RelayService::new(
                Arc::clone(&peers),
                counters,
                args.merge_window,
                args.grpc_max_streams,
            );
            serve_observer(
                listener,
                server_tls,
                None,
                service.into_server(),
                shutdown(),
            )
            .await?;
            tasks.iter().for_each(tokio::task::JoinHandle::abort);
            if let Some((hub, exporter, _)) = exporter {
                hub.close();
                let counts = Arc::clone(&exporter.counts);
                exporter.finish(Duration::from_secs(5)).await;
                tracing::info!(
                    sent = counts.sent.load(std::sync::atomic::Ordering::Relaxed),
                    unsent = counts.unsent.load(std::sync::atomic::Ordering::Relaxed),
                    "OTLP export done"
                );
            }
            Ok(())
        })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
