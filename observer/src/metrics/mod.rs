//! Prometheus metrics: the run's counters and what the written records say (connections
//! by state and verdict, traffic of ended connections, denied connections by namespace
//! pair, bounded), the build and the process, in OpenMetrics or the classic text format
//! (`exposition`). `server` serves them over HTTP; `process` reads /proc at each scrape;
//! `relay` is `observer relay`'s own.
//!
//! The daemon keeps absolute totals (`RunStats`); Prometheus counters only go up by
//! deltas, so each update adds what a total grew beyond the counter's value.

mod exposition;
mod process;
pub mod relay;
pub mod server;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use crate::flow::FlowRecord;
use crate::hub::Published;
use crate::stats::RunStats;

/// A datapath or userspace counter, by name (`packets_seen`, `parse_error_*`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CounterLabels {
    counter: String,
}

/// What a loss counter counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LossLabels {
    what: String,
}

/// A suggestion's stability.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StabilityLabels {
    stability: &'static str,
}

/// A final record's verdict.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
}

/// The units losses are counted in, each its own metric: `observer_lost_<unit>_total`.
const LOSS_UNITS: [&str; 4] = ["events", "packets", "records", "started_items"];

/// Distinct namespace pairs `observer_denied_connections_total` labels at most; denied
/// connections between further pairs are counted under `_other`/`_other`, so that the
/// series stay bounded whatever the cluster's size.
pub const MAX_NAMESPACE_PAIRS: usize = 1_000;

/// A written record's state and verdict.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordLabels {
    state: &'static str,
    verdict: &'static str,
}

/// The namespaces of a denied connection (empty: not a pod, or unknown).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespacePair {
    source_namespace: String,
    destination_namespace: String,
}

impl NamespacePair {
    fn other() -> Self {
        Self {
            source_namespace: "_other".into(),
            destination_namespace: "_other".into(),
        }
    }
}

/// What denied a connection: the kind of the deciding policy and its tier.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecidedBy {
    policy_kind: &'static str,
    tier: String,
}

/// The observer's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    datapath: Family<CounterLabels, Counter>,
    /// Losses, one family per unit (a family never mixes events, packets and records).
    lost: [Family<LossLabels, Counter>; 4],
    records: Family<RecordLabels, Counter>,
    /// Namespace pairs `denied` has a series for (`_other` aside).
    denied_series: AtomicUsize,
    flows: Family<VerdictLabels, Counter>,
    flow_packets: Family<VerdictLabels, Counter>,
    flow_bytes: Family<VerdictLabels, Counter>,
    process: process::ProcessMetrics,
    denied: Family<NamespacePair, Counter>,
    denied_by: Family<DecidedBy, Counter>,
    connections: Gauge,
    kernel_map_bytes: Gauge,
    evicted: Counter,
    started: Counter,
    suggest_edges: Gauge,
    suggest_dropped: Counter,
    suggest_workloads: Family<StabilityLabels, Gauge>,
    subscribers: Gauge,
    cluster_views: Counter,
    cluster_invalid_objects: Gauge,
    cluster_relists: Counter,
    cluster_watch_errors: Counter,
    cluster_source_stale: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The metrics, registered under the `observer_` prefix.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let process = process::ProcessMetrics::register(&mut root);
        let registry = root.sub_registry_with_prefix("observer");
        let datapath = Family::<CounterLabels, Counter>::default();
        registry.register(
            "datapath_events",
            "Kernel counters summed over CPUs: packets_seen, non_ip, non_first_fragments, \
             flow_map_full, parse_error_* (docs/api.md)",
            datapath.clone(),
        );
        let lost: [Family<LossLabels, Counter>; 4] = Default::default();
        for (unit, family) in LOSS_UNITS.iter().zip(&lost) {
            let help = match *unit {
                "events" => {
                    "Kernel events lost, by what: ringbuf_new_flow, ringbuf_end, events_malformed"
                }
                "packets" => "Packets not counted, by what: ringbuf_overflow, table_full",
                "records" => {
                    "Records lost, by what: api_subscriber (flows subscribers missed, each told), flow_log, otlp_unsent (the OTLP collector refused them or stayed unreachable), sink_<name> (a sink's full queue)"
                }
                _ => {
                    "Started items (violations at the first packet) shed, by what: started_not_made, sink_<name>_started; records unaffected"
                }
            };
            registry.register(format!("lost_{unit}"), help, family.clone());
        }
        let flows = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "flows",
            "Connections ended (their final record written: closed, expired, evicted), by verdict",
            flows.clone(),
        );
        let flow_packets = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "flow_packets",
            "Packets of ended connections, both ways, by verdict (counted at the final record)",
            flow_packets.clone(),
        );
        let flow_bytes = Family::<VerdictLabels, Counter>::default();
        registry.register_with_unit(
            "flow",
            "Bytes of ended connections, both ways, frames as seen at the hook, by verdict \
             (counted at the final record)",
            prometheus_client::registry::Unit::Bytes,
            flow_bytes.clone(),
        );
        let records = Family::<RecordLabels, Counter>::default();
        registry.register(
            "records",
            "Connection records written, by state and verdict (none: no verdict)",
            records.clone(),
        );
        let denied = Family::<NamespacePair, Counter>::default();
        registry.register(
            "denied_connections",
            "Records the declared policies deny, by source and destination namespace",
            denied.clone(),
        );
        let denied_by = Family::<DecidedBy, Counter>::default();
        registry.register(
            "denied_connections_by_policy_kind",
            "Records the declared policies deny, by the kind and tier of the deciding policy \
             (the last step of the denying direction)",
            denied_by.clone(),
        );
        let kernel_map_bytes = Gauge::default();
        registry.register_with_unit(
            "kernel_maps",
            "What the BPF maps take in the kernel (charged to the daemon's memory cgroup), \
             from the settings and the node's possible CPUs",
            prometheus_client::registry::Unit::Bytes,
            kernel_map_bytes.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Connections held in the table now",
            connections.clone(),
        );
        let evicted = Counter::default();
        registry.register(
            "connections_evicted",
            "Connections written early to keep the table at --max-connections",
            evicted.clone(),
        );
        let started = Counter::default();
        registry.register(
            "started_items",
            "Connections judged and published at their first packet (state started)",
            started.clone(),
        );
        let suggest_edges = Gauge::default();
        registry.register(
            "suggest_edges",
            "Edges the policy-suggestion learner holds",
            suggest_edges.clone(),
        );
        let suggest_dropped = Counter::default();
        registry.register(
            "suggest_dropped_edges",
            "Edges not learned because --suggest-max-edges were held (suggestions incomplete)",
            suggest_dropped.clone(),
        );
        let suggest_workloads = Family::<StabilityLabels, Gauge>::default();
        registry.register(
            "suggest_workloads",
            "Workloads with suggestions, by stability (learning: a new edge in the last 10 minutes)",
            suggest_workloads.clone(),
        );
        let subscribers = Gauge::default();
        registry.register(
            "api_subscribers",
            "gRPC streams open now",
            subscribers.clone(),
        );
        let cluster_views = Counter::default();
        registry.register(
            "cluster_views",
            "Cluster states published (manifest loads or Kubernetes states)",
            cluster_views.clone(),
        );
        let cluster_invalid_objects = Gauge::default();
        registry.register(
            "cluster_invalid_objects",
            "Objects of the latest cluster state left out as invalid",
            cluster_invalid_objects.clone(),
        );
        let cluster_relists = Counter::default();
        registry.register(
            "cluster_relists",
            "Full re-lists of a Kubernetes kind after its first list (e.g. after 410 Gone)",
            cluster_relists.clone(),
        );
        let cluster_watch_errors = Counter::default();
        registry.register(
            "cluster_watch_errors",
            "Kubernetes list or watch errors (each retried with backoff)",
            cluster_watch_errors.clone(),
        );
        let cluster_source_stale = Gauge::default();
        registry.register(
            "cluster_source_stale",
            "Manifest files served from their last good content (the latest does not parse)",
            cluster_source_stale.clone(),
        );
        Self {
            registry: root,
            datapath,
            lost,
            records,
            denied_series: AtomicUsize::new(0),
            flows,
            flow_packets,
            flow_bytes,
            process,
            denied,
            denied_by,
            connections,
            kernel_map_bytes,
            evicted,
            started,
            suggest_edges,
            suggest_dropped,
            suggest_workloads,
            subscribers,
            cluster_views,
            cluster_invalid_objects,
            cluster_relists,
            cluster_watch_errors,
            cluster_source_stale,
        }
    }

    /// Brings the counters up to the run's totals.
    pub fn observe_stats(&self, stats: &RunStats) {
        // Only this method moves these counters, so what they hold is the last total.
        let grow = |counter: &Counter, total: u64| {
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        // (what, unit index in LOSS_UNITS, total)
        let ring_losses = [
            ("ringbuf_new_flow_failed", "ringbuf_new_flow", 0),
            ("ringbuf_end_failed", "ringbuf_end", 0),
            ("ringbuf_overflow_failed", "ringbuf_overflow", 1),
        ];
        let mut losses: Vec<(String, usize, u64)> = vec![
            ("events_malformed".into(), 0, stats.events_malformed),
            ("table_full".into(), 1, stats.table_full_packets),
            (
                "api_subscriber".into(),
                2,
                stats.api.flows_lost_to_subscribers,
            ),
            ("flow_log".into(), 2, stats.flow_log_lost_records),
            ("otlp_unsent".into(), 2, stats.otlp_unsent),
            ("started_not_made".into(), 3, stats.started_shed),
        ];
        for sink in &stats.sinks {
            losses.push((format!("sink_{}", sink.name), 2, sink.lost));
            if sink.started_lost > 0 {
                losses.push((format!("sink_{}_started", sink.name), 3, sink.started_lost));
            }
        }
        for (name, value) in &stats.datapath.0 {
            match ring_losses.iter().find(|(counter, _, _)| counter == name) {
                Some((_, what, unit)) => losses.push(((*what).to_owned(), *unit, *value)),
                None => {
                    let labels = CounterLabels {
                        counter: name.to_string(),
                    };
                    grow(&self.datapath.get_or_create(&labels), *value);
                }
            }
        }
        for (what, unit, value) in losses {
            let labels = LossLabels { what };
            grow(&self.lost[unit].get_or_create(&labels), value);
        }
        grow(&self.evicted, stats.connections_evicted);
        grow(&self.started, stats.started_published);
        grow(&self.suggest_dropped, stats.suggest_dropped_edges);
        self.suggest_edges
            .set(i64::try_from(stats.suggest_edges).unwrap_or(i64::MAX));
        for (stability, count) in [
            ("learning", stats.suggest_workloads_learning),
            ("stable", stats.suggest_workloads_stable),
        ] {
            self.suggest_workloads
                .get_or_create(&StabilityLabels { stability })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        grow(&self.cluster_views, stats.cluster_views);
        grow(&self.cluster_relists, stats.cluster_relists);
        grow(&self.cluster_watch_errors, stats.cluster_watch_errors);
        self.connections
            .set(i64::try_from(stats.connections_live).unwrap_or(i64::MAX));
        self.kernel_map_bytes
            .set(i64::try_from(stats.kernel_map_bytes).unwrap_or(i64::MAX));
        self.subscribers
            .set(i64::try_from(stats.api.subscribers).unwrap_or(i64::MAX));
        self.cluster_invalid_objects
            .set(i64::try_from(stats.cluster_invalid_objects).unwrap_or(i64::MAX));
        self.cluster_source_stale
            .set(i64::try_from(stats.cluster_source_stale).unwrap_or(i64::MAX));
    }

    /// Counts the records the hub publishes, as a sink, until the hub closes.
    pub async fn follow(&self, mut published: mpsc::Receiver<Arc<Published>>) {
        while let Some(entry) = published.recv().await {
            self.observe_records(std::slice::from_ref(&entry.record));
        }
    }

    /// The labels of a denied record's namespaces, `_other` for both past
    /// [`MAX_NAMESPACE_PAIRS`] distinct pairs (the family's series, counted).
    fn namespace_pair(&self, record: &FlowRecord) -> NamespacePair {
        let namespace = |side: &crate::flow::RecordEndpoint| {
            side.identity.namespace.clone().unwrap_or_default()
        };
        let pair = NamespacePair {
            source_namespace: namespace(&record.src),
            destination_namespace: namespace(&record.dst),
        };
        if self.denied.get(&pair).is_some() {
            return pair;
        }
        // A new pair: one series more, while there is room.
        if self.denied_series.load(Ordering::Relaxed) >= MAX_NAMESPACE_PAIRS {
            return NamespacePair::other();
        }
        self.denied_series.fetch_add(1, Ordering::Relaxed);
        pair
    }

    /// Counts written records.
    pub fn observe_records(&self, records: &[FlowRecord]) {
        for record in records {
            self.records
                .get_or_create(&RecordLabels {
                    state: record.state.name(),
                    verdict: record.verdict_name(),
                })
                .inc();
            if record.state.is_final() {
                let verdict = VerdictLabels {
                    verdict: record.verdict_name(),
                };
                self.flows.get_or_create(&verdict).inc();
                self.flow_packets
                    .get_or_create(&verdict)
                    .inc_by(record.fwd.packets + record.rev.packets);
                self.flow_bytes
                    .get_or_create(&verdict)
                    .inc_by(record.fwd.bytes + record.rev.bytes);
            }
            if record.verdict_kind() == Some(crate::policy::VerdictKind::Deny) {
                self.denied
                    .get_or_create(&self.namespace_pair(record))
                    .inc();
                // Denied: the deciding step is the denying direction's last.
                if let Some(step) = record.policy.as_ref().and_then(|v| v.deciding_step()) {
                    self.denied_by
                        .get_or_create(&DecidedBy {
                            policy_kind: step.policy.kind.name(),
                            tier: step.tier.clone(),
                        })
                        .inc();
                }
            }
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        self.process.update();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The metrics in the classic Prometheus text format (0.0.4), for scrapers that do not
    /// ask for OpenMetrics.
    pub fn render_classic(&self) -> String {
        exposition::classic(&self.render())
    }
}

#[cfg(test)]
mod tests;
