//! The running observer: wires the datapath, the connection table, enrichment and the hub
//! together.
//!
//! One owning task holds the connection table and the attachments; it is fed by bounded
//! channels from the ring-buffer reader and the link watcher, polls the flow map on a timer,
//! and publishes written records to the hub, whose sinks (flow log, metrics) and readers
//! (gRPC streams) run in their own tasks. Shared between tasks: the hub (its ring and sink
//! list behind short locks) and counters (atomics).
//!
//! - `mod.rs`: `run`, the wiring: the datapath, the cluster source, the hub and its sinks,
//!   the API and metrics servers, and the final accounting at stop.
//! - `node.rs`: the table task's state and loop; `links.rs`: interfaces that come and go;
//!   `poller.rs`: the flow map read off the task; `started.rs`: connection-started items;
//!   `suggest.rs`: the suggestion learner and its state file; `config.rs`: the settings.

mod config;
mod links;
mod node;
mod poller;
mod started;
mod suggest;

pub use config::{ClusterConfig, RunConfig};

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::api::server as api_server;
use crate::cluster::kubernetes::KubernetesSource;
use crate::cluster::publish::{SourceStats, watch_kubernetes, watch_manifests};
use crate::datapath::{Datapath, DatapathMaps, EventReaderStats, watch_links};
use crate::enrich::Enricher;
use crate::export::{FlowLog, FlowLogStats};
use crate::flow::{ConnectionTable, InterfaceNames, WallClock};
use crate::hub::{FlowHub, WhenFull};
use crate::metrics::{Metrics, server as metrics_server};
use crate::stats::RunStats;
use node::{Inputs, NodeState};
use poller::MapPoller;

/// Capacity of the channel from the ring-buffer reader to the table task.
const EVENT_CHANNEL: usize = 16_384;
/// How often manifest files are checked for changes.
const MANIFEST_POLL: Duration = Duration::from_secs(1);
/// How long subscribers get, at shutdown, to read what the API still holds for them.
const API_DRAIN: Duration = Duration::from_secs(2);
/// How long the OTLP exporter may take to send what is queued at stop.
const OTLP_DRAIN: Duration = Duration::from_secs(5);
/// How long a program run that began before the final detach may take to finish.
const DETACH_GRACE: Duration = Duration::from_millis(20);
/// Names of vanished interfaces kept for records that still refer to them.
const DEPARTED_NAMES: usize = 4_096;
/// Records queued for the flow log's writer before publishing waits for it.
const FLOW_LOG_QUEUE: usize = 16_384;
/// Records queued for the metrics before they are dropped (and counted).
const METRICS_QUEUE: usize = 16_384;

/// Runs until SIGINT or SIGTERM, then writes every connection it has and detaches.
pub async fn run(config: RunConfig) -> Result<()> {
    // Before anything is loaded: bad TLS files must stop the daemon, not leave an API that
    // says it listens and accepts nothing.
    let tls = match &config.api_tls {
        Some(files) => {
            let tls = files.load()?;
            api_server::check_tls(&tls).map_err(|e| {
                anyhow::anyhow!(
                    "--grpc-tls-cert {} / --grpc-tls-key {}{}: {e}",
                    files.cert.display(),
                    files.key.display(),
                    files.client_ca.as_ref().map_or(String::new(), |ca| format!(
                        " / --grpc-tls-client-ca {}",
                        ca.display()
                    ))
                )
            })?;
            Some(tls)
        }
        None => None,
    };
    let datapath = Datapath::load(config.datapath.clone())?;
    let kernel_map_bytes =
        check_memory_budget(&config, datapath.cpus(), datapath.flow_cache_slots());
    let (attachments, maps) = datapath.start()?;
    let DatapathMaps {
        flows,
        events,
        counters,
    } = maps;

    let (link_tx, link_rx) = mpsc::channel(1024);
    let link_task = tokio::spawn(watch_links(link_tx));
    let (event_tx, mut event_rx) = mpsc::channel(EVENT_CHANNEL);
    let reader_stats = Arc::new(EventReaderStats::default());
    let (stop_events, events_stop) = oneshot::channel();
    let event_task = tokio::spawn(events.run(event_tx, Arc::clone(&reader_stats), events_stop));
    let (view_tx, mut view_rx) = watch::channel(None);
    let mut kube_counters = None;
    let source_stats = Arc::new(SourceStats::default());
    let source_task = match &config.cluster {
        ClusterConfig::None => None,
        ClusterConfig::Manifests { paths, strict } => Some(tokio::spawn(watch_manifests(
            paths.clone(),
            *strict,
            MANIFEST_POLL,
            view_tx,
            Arc::clone(&source_stats),
        ))),
        ClusterConfig::Kubernetes(kube) => {
            let source = KubernetesSource::connect(kube.clone())
                .await
                .context("connecting to the Kubernetes API")?;
            kube_counters = Some(source.shared_counters());
            info!("waiting for the first full cluster state from the Kubernetes API");
            Some(tokio::spawn(watch_kubernetes(
                source,
                view_tx,
                Arc::clone(&source_stats),
            )))
        }
    };

    // Every written record is published here; the flow log and the metrics are sinks.
    let hub = FlowHub::with_violations(config.api_buffer_flows, config.api_buffer_violations);
    let log = FlowLog::open(&config.flow_log, config.flow_log_rotation)?;
    let log_stats = Arc::new(FlowLogStats::default());
    let log_task = {
        let queue = hub.subscribe(
            "flow_log",
            FLOW_LOG_QUEUE,
            WhenFull::Wait,
            config.flow_log_started,
        );
        let stats = Arc::clone(&log_stats);
        tokio::task::spawn_blocking(move || log.follow(queue, &stats))
    };
    let metrics = Arc::new(Metrics::new());
    let metrics_sink = {
        let queue = hub.subscribe("metrics", METRICS_QUEUE, WhenFull::Drop, false);
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move { metrics.follow(queue).await })
    };

    let otlp = match &config.otlp {
        Some(otlp) => {
            let otlp = crate::export::otlp::OtlpConfig {
                node_name: config.node_name.clone(),
                ..otlp.clone()
            };
            let exporter = crate::export::otlp::start(&hub, &otlp)?;
            info!(endpoint = %otlp.endpoint, "exporting records to the OTLP collector");
            Some(exporter)
        }
        None => None,
    };
    let suggestions = suggest::start(
        &hub,
        config.suggest_max_edges,
        config.suggest_state.clone(),
        view_rx.clone(),
        config.node_name.clone().unwrap_or_default(),
    );

    // What ServerStatus says of the node: the table task sends it with each stats refresh.
    let (node_status_tx, node_status_rx) = watch::channel(api_server::NodeStatus::default());
    // A serving task that ends before the daemon stops is an error that stops it.
    let (served_tx, mut served_rx) = mpsc::channel::<String>(2 + config.grpc_listen.len());
    let api = if config.grpc_listen.is_empty() {
        None
    } else {
        // Every address is bound before any is served: one that cannot be bound stops the
        // daemon (naming --grpc-listen) with nothing left half-served.
        let mut listeners = Vec::with_capacity(config.grpc_listen.len());
        for address in &config.grpc_listen {
            let listener = crate::api::listen::bind(address).await?;
            let bound = listener.address().unwrap_or_else(|| address.clone());
            listeners.push((listener, bound));
        }
        // Health: serving once the first cluster state is in (at once without one).
        let ready = source_task.as_ref().map(|_| {
            let (ready_tx, ready_rx) = watch::channel(false);
            let mut views = view_rx.clone();
            tokio::spawn(async move {
                if views.wait_for(Option::is_some).await.is_ok() {
                    let _ = ready_tx.send(true);
                }
            });
            ready_rx
        });
        // One service behind every listener: --grpc-max-streams bounds the streams of all
        // of them together.
        let service = api_server::ObserverService::new(Arc::clone(&hub), config.api_max_streams)
            .with_suggestions(suggestions.as_ref().map(|l| l.source.clone()))
            .with_identity(
                config.node_name.clone().unwrap_or_default(),
                ready.clone(),
                Some(node_status_rx.clone()),
            )
            .into_server();
        // Told once, heard by every server (a dropped sender stops them too).
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::with_capacity(listeners.len());
        for (listener, bound) in listeners {
            // TLS is for TCP; a Unix socket is local, guarded by its mode (0600).
            let tls = match bound {
                crate::api::listen::ApiAddress::Tcp(_) => tls.clone(),
                crate::api::listen::ApiAddress::Unix(_) => None,
            };
            info!(address = %bound, tls = tls.is_some(), "gRPC API listening");
            let mut stopped = stopped.clone();
            let serve = api_server::serve_observer(
                listener,
                tls,
                ready.clone(),
                service.clone(),
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            );
            let failed = served_tx.clone();
            tasks.push(tokio::spawn(async move {
                let result = serve.await;
                if let Err(e) = &result {
                    let _ = failed.try_send(format!(
                        "the gRPC API on {bound} (--grpc-listen) stopped serving: {e}"
                    ));
                }
                result
            }));
        }
        Some((tasks, stop))
    };

    let metrics_task = match config.metrics_listen {
        Some(address) => {
            let listener = metrics_server::bind(address).await?;
            let bound = listener.local_addr().unwrap_or(address);
            info!(address = %bound, "metrics at /metrics");
            let serve = metrics_server::serve(listener, Arc::clone(&metrics));
            let failed = served_tx.clone();
            Some(tokio::spawn(async move {
                serve.await;
                let _ = failed.try_send("the metrics endpoint stopped serving".to_string());
            }))
        }
        None => None,
    };
    let ui_task = match config.ui_listen {
        Some(address) => {
            let tls = match &config.ui_tls {
                Some(files) => Some(
                    crate::ui::server::tls_acceptor(files)
                        .map_err(|e| anyhow::anyhow!("{e:#} (--ui-tls-cert, --ui-tls-key)"))?,
                ),
                None => None,
            };
            let listener = crate::ui::server::bind(address).await?;
            let bound = listener.local_addr().unwrap_or(address);
            let scheme = if tls.is_some() { "https" } else { "http" };
            info!(url = %format!("{scheme}://{bound}/"), "web console");
            let console = crate::ui::routes::Console {
                hub: Arc::clone(&hub),
                role: crate::ui::routes::Role::Node,
                node: config.node_name.clone().unwrap_or_default(),
                views: source_task.as_ref().map(|_| view_rx.clone()),
                profile: config.cni_profile,
                suggestions: suggestions.as_ref().map(|l| {
                    Arc::new(crate::ui::suggestions::NodeSuggestions {
                        source: l.source.clone(),
                        hub: Arc::clone(&hub),
                    }) as Arc<dyn crate::ui::suggestions::SuggestionProvider>
                }),
            };
            Some(tokio::spawn(crate::ui::server::serve(
                listener, tls, console,
            )))
        }
        None => None,
    };

    let mut node = NodeState {
        metrics: Arc::clone(&metrics),
        hub: Arc::clone(&hub),
        log_stats: Arc::clone(&log_stats),
        table: ConnectionTable::new(config.table, WallClock::now()),
        attachments,
        names: InterfaceNames::new(),
        departed: std::collections::VecDeque::new(),
        poller: MapPoller::spawn(flows)?,
        release: Vec::new(),
        stats: RunStats::default().with_kernel_map_bytes(kernel_map_bytes),
        pattern: config.interfaces.clone(),
        enricher: Enricher::new(config.identity_retention.as_nanos() as u64)
            .with_cni_profile(config.cni_profile),
        source_stats: Arc::clone(&source_stats),
        waiting_for_view: source_task.is_some(),
        node_name: config.node_name.clone(),
        kube_counters,
        suggest_counts: suggestions.as_ref().map(|l| Arc::clone(&l.counts)),
        otlp_counts: otlp.as_ref().map(|o| Arc::clone(&o.counts)),
        pending_attach: std::collections::HashMap::new(),
        stats_file_failing: false,
        node_status: node_status_tx,
        started: started::StartedItems::new(config.started_service_wait.as_nanos() as u64),
    };
    let result = node
        .serve(
            Inputs {
                links: link_rx,
                events: &mut event_rx,
                views: &mut view_rx,
                served: &mut served_rx,
            },
            &config,
            &counters,
            &reader_stats,
        )
        .await;
    if let Some(task) = source_task {
        task.abort();
    }

    // Final accounting, even when serving failed: what we have is written, not dropped.
    // Detach first, so nothing more is counted, then take every event the programs wrote
    // and read the maps: the record, the events and the counters then agree exactly.
    link_task.abort();
    let stopped_on = node.attachments.detach_all();
    // A program run that began before the detach may still be finishing on another CPU.
    tokio::time::sleep(DETACH_GRACE).await;
    node.table.remove_limit();
    let _ = stop_events.send(());
    while let Some(event) = event_rx.recv().await {
        node.on_event(&event);
    }
    node.publish_started(u64::MAX).await;
    match event_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = format!("{e:#}"), "the ring buffer reader failed"),
        Err(e) => warn!(error = %e, "the ring buffer reader panicked"),
    }
    if node.poller.in_flight() {
        node.apply_poll().await;
    }
    if node.poller.request(&mut node.release) {
        node.apply_poll().await;
    }
    // The last polls may have opened connections whose started items wait for their
    // Service: publish them before the records that end those connections.
    node.publish_started(u64::MAX).await;
    let sweep = node.table.drain(&node.names);
    node.write(sweep).await;
    // Sinks get what is left and end; the flow log is written to the last line.
    hub.close();
    match log_task.await {
        Ok(()) => {}
        Err(e) => warn!(error = %e, "the flow log writer panicked"),
    }
    if let Err(e) = metrics_sink.await {
        warn!(error = %e, "the metrics sink panicked");
    }
    // The exporter sends what it has queued (within its retries).
    if let Some(exporter) = otlp {
        exporter.finish(OTLP_DRAIN).await;
    }
    // The learner writes its state a last time once it has every record.
    if let Some(learning) = suggestions
        && let Err(e) = learning.task.await
    {
        warn!(error = %e, "the suggestion learner panicked");
    }
    // Subscribers get what is left, then their streams end.
    if let Some((mut tasks, stop)) = api {
        let _ = stop.send(true);
        // One drain for all listeners, not one each.
        let deadline = tokio::time::Instant::now() + API_DRAIN;
        let mut late = false;
        for task in &mut tasks {
            if tokio::time::timeout_at(deadline, &mut *task).await.is_err() {
                late = true;
                task.abort();
            }
        }
        if late {
            warn!("gRPC subscribers still reading after {API_DRAIN:?}; closing their streams");
        }
    }
    node.refresh_stats(&counters, &reader_stats, stopped_on);
    for task in [metrics_task, ui_task].into_iter().flatten() {
        task.abort();
    }
    if let Some(path) = &config.stats_file {
        node.stats.write(path)?;
    }
    info!(stats = %serde_json::to_string(&node.stats).unwrap_or_default(), "observer stopped");
    // Dropping the attachments detaches every program.
    drop(node);
    result
}

/// Logs the memory this configuration may need under a flood (`memory::budget`); returns
/// what the kernel maps take.
fn check_memory_budget(config: &RunConfig, cpus: u32, flow_cache_slots: u32) -> u64 {
    crate::memory::check_budget(&crate::memory::budget::BudgetInputs {
        flow_map_entries: config.datapath.flow_map_entries.into(),
        flow_cache_slots: flow_cache_slots.into(),
        ring_buffer_bytes: config.datapath.ring_buffer_bytes.into(),
        max_connections: config.table.max_connections as u64,
        cpus: cpus.into(),
    })
}
