//! The table task's state and loop: events, polls, views and links in; records and
//! started items out to the hub.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use observer_common::{Counter, FlowEvent, event_kind};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tracing::info;

use super::config::{ClusterConfig, RunConfig};
use super::poller::{MapPoller, PollResult};
use super::started;
use crate::api::server::NodeStatus;
use crate::cluster::publish::SourceStats;
use crate::cluster::source::SourceCounters;
use crate::cluster::view::ClusterView;
use crate::datapath::{Attachments, EventReaderStats, InterfacePattern, LinkEvent};
use crate::enrich::{Enricher, NatTable};
use crate::export::FlowLogStats;
use crate::flow::{ConnectionTable, InterfaceNames, Sweep, WallClock};
use crate::hub::FlowHub;
use crate::metrics::Metrics;
use crate::stats::RunStats;

/// Sleeps until `at`, or for ever without it (a `select!` branch that never fires).
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The node's NAT table, for Service backends on other nodes. None when the kernel does
/// not expose it (no conntrack); records then say their backend is unresolved.
fn read_conntrack() -> Option<NatTable> {
    std::fs::read_to_string("/proc/net/nf_conntrack")
        .ok()
        .map(|text| NatTable::parse(&text))
}

/// The state owned by the table task.
pub(super) struct NodeState {
    pub(super) table: ConnectionTable,
    pub(super) attachments: Attachments,
    /// Interface names by index, for attached interfaces and recently departed ones.
    pub(super) names: InterfaceNames,
    pub(super) departed: std::collections::VecDeque<u32>,
    pub(super) poller: MapPoller,
    /// Keys of written connections, deleted from the map at the next poll.
    pub(super) release: Vec<(observer_common::FlowKey, observer_common::FlowStats)>,
    pub(super) stats: RunStats,
    pub(super) pattern: InterfacePattern,
    pub(super) enricher: Enricher,
    pub(super) source_stats: Arc<SourceStats>,
    /// A cluster source is configured but has not delivered its first view: records are
    /// held back (their identities would be empty), while events and polls go on, so
    /// nothing backs up into the ring buffer meanwhile.
    pub(super) waiting_for_view: bool,
    /// Where written records are published (flow log, metrics, gRPC streams).
    pub(super) hub: Arc<FlowHub>,
    /// The flow log writer's counts.
    pub(super) log_stats: Arc<FlowLogStats>,
    /// Prometheus metrics, updated with the stats and the written records.
    pub(super) metrics: Arc<Metrics>,
    /// This node's name, stamped on every record.
    pub(super) node_name: Option<String>,
    /// The Kubernetes source's relists and errors, when it is the source.
    pub(super) kube_counters: Option<Arc<SourceCounters>>,
    /// The suggestion learner's figures, when learning.
    pub(super) suggest_counts: Option<Arc<super::suggest::SuggestCounts>>,
    /// The OTLP exporter's figures, when it runs.
    pub(super) otlp_counts: Option<Arc<crate::export::otlp::OtlpCounts>>,
    /// Interfaces whose attach failed, retried at every poll.
    pub(super) pending_attach: std::collections::HashMap<u32, String>,
    /// What the API's `ServerStatus` says of the node, sent with each stats refresh.
    pub(super) node_status: tokio::sync::watch::Sender<NodeStatus>,
    /// The last stats file write failed: warned once, until one succeeds again.
    pub(super) stats_file_failing: bool,
    /// Started items on their way from the table to the hub.
    pub(super) started: started::StartedItems,
}

/// What the table task waits on, besides its timer and signals.
pub(super) struct Inputs<'a> {
    pub(super) links: mpsc::Receiver<LinkEvent>,
    pub(super) events: &'a mut mpsc::Receiver<FlowEvent>,
    pub(super) views: &'a mut watch::Receiver<Option<Arc<ClusterView>>>,
    /// Why a serving task (gRPC API, metrics) stopped, if one did.
    pub(super) served: &'a mut mpsc::Receiver<String>,
}

impl NodeState {
    pub(super) async fn serve(
        &mut self,
        inputs: Inputs<'_>,
        config: &RunConfig,
        counters: &crate::datapath::CounterReader,
        reader_stats: &EventReaderStats,
    ) -> Result<()> {
        let Inputs {
            mut links,
            events,
            views,
            served,
        } = inputs;
        let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        let mut terminate =
            signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        // SIGHUP reopens the flow log (after logrotate moved it); it no longer kills the
        // daemon with records unwritten.
        let mut hangup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
        let mut poll = tokio::time::interval(config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // The end of the oldest Service item's wait for its backend, if one waits.
            let started_due = self.started.next_deadline().map(|deadline| {
                let wait = deadline.saturating_sub(WallClock::monotonic_now_ns());
                tokio::time::Instant::now() + Duration::from_nanos(wait)
            });
            tokio::select! {
                _ = interrupt.recv() => return Ok(()),
                _ = terminate.recv() => return Ok(()),
                _ = hangup.recv() => {
                    info!("SIGHUP: the flow log is reopened before its next write");
                    self.log_stats.reopen.store(true, Ordering::Relaxed);
                }
                link = links.recv() => match link {
                    Some(link) => self.on_link(link),
                    None => anyhow::bail!("the interface watcher stopped"),
                },
                Some(stopped) = served.recv() => anyhow::bail!(stopped),
                event = events.recv() => match event {
                    Some(event) => {
                        self.on_event(&event);
                        self.publish_started(WallClock::monotonic_now_ns()).await;
                    }
                    None => anyhow::bail!("the ring buffer reader stopped"),
                },
                () = sleep_until_some(started_due) => {
                    self.publish_started(WallClock::monotonic_now_ns()).await;
                }
                changed = views.changed(), if !matches!(config.cluster, ClusterConfig::None) => {
                    if changed.is_ok() {
                        self.on_view(views);
                    }
                }
                _ = poll.tick() => {
                    self.retry_attach();
                    if !self.poller.request(&mut self.release) && !self.poller.in_flight() {
                        anyhow::bail!("the flow map poller stopped");
                    }
                }
                polled = self.poller.result(), if self.poller.in_flight() => {
                    let Some(polled) = polled else {
                        anyhow::bail!("the flow map poller stopped");
                    };
                    self.apply(polled).await;
                    self.refresh_stats(counters, reader_stats, self.attachments.names());
                    self.stats.warn_on_new_losses();
                    if let Some(path) = &config.stats_file {
                        self.write_stats_file(path);
                    }
                }
            }
        }
    }

    pub(super) fn on_event(&mut self, event: &FlowEvent) {
        match event.kind {
            event_kind::NEW_FLOW => {
                self.poller.announce(event.key);
                self.table.record_new_flow(&event.key, &event.stats)
            }
            event_kind::END => self.table.record_end(&event.key, &event.stats),
            event_kind::OVERFLOW => {
                self.stats.overflow_events += 1;
                self.table.record_overflow(&event.key, &event.stats)
            }
            _ => self.stats.unknown_events += 1,
        }
    }

    fn on_view(&mut self, views: &mut watch::Receiver<Option<Arc<ClusterView>>>) {
        let view = views.borrow_and_update().clone();
        if let Some(view) = view {
            self.waiting_for_view = false;
            self.enricher.update(WallClock::monotonic_now_ns(), view);
            self.stats.cluster_views = self.source_stats.published.load(Ordering::Relaxed);
            self.stats.cluster_invalid_objects =
                self.source_stats.invalid_objects.load(Ordering::Relaxed);
            self.stats.cluster_source_stale = self.source_stats.stale_files.load(Ordering::Relaxed);
        }
    }

    /// Brings the stats, and the metrics made from them, up to date; `interfaces` are
    /// those attached now (at exit: when the run stopped).
    pub(super) fn refresh_stats(
        &mut self,
        counters: &crate::datapath::CounterReader,
        reader_stats: &EventReaderStats,
        interfaces: Vec<String>,
    ) {
        let lost_announcements = self.stats.datapath.get(Counter::RingBufNewFlowFailed);
        self.stats.update(
            counters,
            reader_stats,
            &self.table,
            &self.log_stats,
            &self.hub,
        );
        // A NEW_FLOW event the ring buffer could not take announced a key the map may
        // hold: the next poll walks the whole map to find it.
        if self.stats.datapath.get(Counter::RingBufNewFlowFailed) != lost_announcements {
            self.poller.walk_next();
        }
        self.stats.interfaces = interfaces;
        if let Some(counts) = &self.otlp_counts {
            self.stats.otlp_sent = counts.sent.load(Ordering::Relaxed);
            self.stats.otlp_unsent = counts.unsent.load(Ordering::Relaxed);
        }
        if let Some(counts) = &self.suggest_counts {
            counts.report(&mut self.stats);
        }
        if let Some(counters) = &self.kube_counters {
            let now = counters.snapshot();
            self.stats.cluster_relists = now.relists;
            self.stats.cluster_watch_errors = now.watch_errors;
        }
        self.metrics.observe_stats(&self.stats);
        let s = &self.stats;
        self.node_status.send_replace(NodeStatus {
            interfaces: s.interfaces.clone(),
            connections: s.connections_live as u64,
            cluster_generation: s.cluster_views,
            cluster_stale_sources: s.cluster_source_stale,
            cluster_invalid_objects: s.cluster_invalid_objects,
        });
    }

    /// Waits for the running poll and applies it.
    pub(super) async fn apply_poll(&mut self) {
        if let Some(polled) = self.poller.result().await {
            self.apply(polled).await;
        }
    }

    /// Takes a map read into the table, then writes what is due.
    async fn apply(&mut self, polled: PollResult) {
        self.stats.map_read_errors += polled.errors;
        self.table.read_started(polled.read_started_ns);
        // Late packets of written connections: a later record carries them.
        for (key, tail) in &polled.tails {
            self.stats.late_packets += tail.packets;
            self.table.record_tail(key, tail);
        }
        for (key, stats) in &polled.entries {
            self.table.record_poll(key, *stats);
        }
        if self.waiting_for_view {
            return;
        }
        // Connections the poll found first (their new-flow event was lost) are announced
        // before any record of theirs.
        self.publish_started(WallClock::monotonic_now_ns()).await;
        let sweep = self.table.sweep(WallClock::monotonic_now_ns(), &self.names);
        self.write(sweep).await;
    }

    /// Publishes the started items of connections opened since the last call, and the
    /// Service items whose wait ended by `now` (all of them with `u64::MAX`).
    pub(super) async fn publish_started(&mut self, now: u64) {
        if self.waiting_for_view {
            return;
        }
        let opened = self.table.take_started(&self.names);
        let mut ready = if opened.is_empty() {
            Vec::new()
        } else {
            self.started
                .accept(opened, &self.enricher, now, read_conntrack)
        };
        if self.started.next_deadline().is_some_and(|due| due <= now) {
            ready.extend(self.started.expire(&self.enricher, now, read_conntrack));
        }
        if ready.is_empty() {
            return;
        }
        for item in &mut ready {
            item.node_name.clone_from(&self.node_name);
        }
        self.stats.started_published += ready.len() as u64;
        self.hub.publish(ready).await;
    }

    /// Judges a sweep's records and publishes them (waiting while the flow log catches up).
    pub(super) async fn write(&mut self, mut sweep: Sweep) {
        self.release.extend(sweep.release);
        self.enricher
            .enrich_batch(&mut sweep.records, read_conntrack);
        for record in &mut sweep.records {
            record.node_name.clone_from(&self.node_name);
        }
        self.hub.publish(sweep.records).await;
    }
}
