//! Prometheus metrics: the run's counters and what the written records say (connections
//! by state and verdict, denied connections by namespace pair), in the text exposition
//! format. `server` serves them over HTTP; this part does no I/O.
//!
//! The daemon keeps absolute totals (`RunStats`); Prometheus counters only go up by
//! deltas, so each update adds what a total grew beyond the counter's value.

pub mod server;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use std::sync::Arc;

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
    lost: Family<LossLabels, Counter>,
    records: Family<RecordLabels, Counter>,
    denied: Family<NamespacePair, Counter>,
    denied_by: Family<DecidedBy, Counter>,
    connections: Gauge,
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
        let mut registry = Registry::with_prefix("observer");
        let datapath = Family::<CounterLabels, Counter>::default();
        registry.register(
            "datapath_events",
            "Kernel counters summed over CPUs: packets_seen, non_ip, non_first_fragments, \
             flow_map_full, parse_error_* (docs/api.md)",
            datapath.clone(),
        );
        let lost = Family::<LossLabels, Counter>::default();
        registry.register(
            "lost",
            "Events and packets lost for good, by what: ringbuf_new_flow, ringbuf_end, \
             ringbuf_overflow (packets), table_full (packets), api_subscriber (flows), \
             started_not_made and sink_<name>_started (started items; records unaffected)",
            lost.clone(),
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
            registry,
            datapath,
            lost,
            records,
            denied,
            denied_by,
            connections,
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
        let ring_losses = [
            ("ringbuf_new_flow_failed", "ringbuf_new_flow"),
            ("ringbuf_end_failed", "ringbuf_end"),
            ("ringbuf_overflow_failed", "ringbuf_overflow"),
        ];
        let mut losses: Vec<(String, u64)> = vec![
            ("table_full".into(), stats.table_full_packets),
            ("api_subscriber".into(), stats.api.flows_lost_to_subscribers),
            ("events_malformed".into(), stats.events_malformed),
            ("flow_log".into(), stats.flow_log_lost_records),
            ("started_not_made".into(), stats.started_shed),
        ];
        for sink in &stats.sinks {
            losses.push((format!("sink_{}", sink.name), sink.lost));
            if sink.started_lost > 0 {
                losses.push((format!("sink_{}_started", sink.name), sink.started_lost));
            }
        }
        for (name, value) in &stats.datapath.0 {
            match ring_losses.iter().find(|(counter, _)| counter == name) {
                Some((_, what)) => losses.push(((*what).to_owned(), *value)),
                None => {
                    let labels = CounterLabels {
                        counter: name.to_string(),
                    };
                    grow(&self.datapath.get_or_create(&labels), *value);
                }
            }
        }
        for (what, value) in losses {
            let labels = LossLabels { what };
            grow(&self.lost.get_or_create(&labels), value);
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

    /// Counts written records.
    pub fn observe_records(&self, records: &[FlowRecord]) {
        for record in records {
            self.records
                .get_or_create(&RecordLabels {
                    state: record.state.name(),
                    verdict: record.verdict_name(),
                })
                .inc();
            if record.verdict_kind() == Some(crate::policy::VerdictKind::Deny) {
                let namespace =
                    |side: &crate::flow::RecordEndpoint| side.identity.namespace.clone();
                self.denied
                    .get_or_create(&NamespacePair {
                        source_namespace: namespace(&record.src).unwrap_or_default(),
                        destination_namespace: namespace(&record.dst).unwrap_or_default(),
                    })
                    .inc();
                let denying = record.policy.as_ref().and_then(|v| {
                    [&v.egress, &v.ingress]
                        .into_iter()
                        .find(|d| !d.permits())
                        .and_then(|d| d.tiers.last())
                });
                if let Some(step) = denying {
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
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;
    use crate::flow::fixtures::flows;
    use crate::stats::RunStats;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn totals_become_counters_that_only_grow_by_what_grew() {
        let metrics = Metrics::new();
        let mut stats = RunStats::default();
        stats.datapath.0.insert("packets_seen", 100);
        stats.datapath.0.insert("ringbuf_end_failed", 2);
        stats.table_full_packets = 3;
        stats.connections_live = 7;
        metrics.observe_stats(&stats);
        stats.datapath.0.insert("packets_seen", 150);
        metrics.observe_stats(&stats);
        metrics.observe_stats(&stats);
        let text = metrics.render();
        assert_eq!(
            value(
                &text,
                "observer_datapath_events_total{counter=\"packets_seen\"}"
            ),
            Some(150.0),
            "{text}"
        );
        assert_eq!(
            value(&text, "observer_lost_total{what=\"ringbuf_end\"}"),
            Some(2.0)
        );
        assert_eq!(
            value(&text, "observer_lost_total{what=\"table_full\"}"),
            Some(3.0)
        );
        assert_eq!(value(&text, "observer_connections"), Some(7.0));
        assert!(text.contains("# TYPE observer_lost counter"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn records_are_counted_by_state_and_verdict_and_denials_by_namespaces() {
        let metrics = Metrics::new();
        metrics.observe_records(&flows());
        let text = metrics.render();
        for (series, count) in [
            (
                "observer_records_total{state=\"closed\",verdict=\"allow\"}",
                1.0,
            ),
            (
                "observer_records_total{state=\"expired\",verdict=\"deny\"}",
                1.0,
            ),
            (
                "observer_records_total{state=\"active\",verdict=\"none\"}",
                1.0,
            ),
            (
                "observer_records_total{state=\"evicted\",verdict=\"none\"}",
                1.0,
            ),
            (
                "observer_denied_connections_total{source_namespace=\"shop\",destination_namespace=\"db\"}",
                1.0,
            ),
            (
                "observer_denied_connections_by_policy_kind_total{policy_kind=\"NetworkPolicy\",tier=\"networkpolicy\"}",
                1.0,
            ),
        ] {
            assert_eq!(value(&text, series), Some(count), "{series} in {text}");
        }
    }
}
