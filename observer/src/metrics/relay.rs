//! The relay's metrics (`observer relay --metrics-listen`): flows sent and lost, client
//! streams, each node observer's connection, lag and flows received, OTLP export and its
//! losses, and the process. Read from the relay's own counters at each scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::process::ProcessMetrics;
use crate::export::otlp::OtlpCounts;
use crate::relay::RelayCounters;
use crate::relay::peers::PeerSet;

/// A node observer, by its name and the address the relay dials.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
    address: String,
}

/// What was lost (the daemon's `observer_lost_records_total` family).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LossLabels {
    what: &'static str,
}

/// What the relay's OTLP export counts: its own merged stream, the hub it publishes to
/// (the exporter's queue is a sink of it), and the exporter.
#[derive(Debug, Clone)]
pub struct ExportFigures {
    /// The export's stream through the relay (flows the nodes no longer held).
    pub stream: Arc<RelayCounters>,
    /// The hub the exporter reads (its queue's losses).
    pub hub: Arc<crate::hub::FlowHub>,
    /// The exporter's figures.
    pub otlp: Arc<OtlpCounts>,
}

/// What the relay's console counts: its own merged stream and the hub it publishes to
/// (whose live-violation readers may fall behind).
#[derive(Debug, Clone)]
pub struct ConsoleFigures {
    /// The console's stream through the relay (flows the nodes no longer held).
    pub stream: Arc<RelayCounters>,
    /// The hub the console reads.
    pub hub: Arc<crate::hub::FlowHub>,
}

/// The relay's metrics.
#[derive(Debug)]
pub struct RelayMetrics {
    registry: Registry,
    process: ProcessMetrics,
    flows_sent: Counter,
    lost: Family<LossLabels, Counter>,
    subscribers: Gauge,
    otlp_sent: Counter,
    node_connected: Family<NodeLabels, Gauge>,
    node_lag: Family<NodeLabels, Gauge<f64, AtomicU64>>,
    node_received: Family<NodeLabels, Counter>,
    peers: Arc<PeerSet>,
    counters: Arc<RelayCounters>,
    export: Option<ExportFigures>,
    console: Option<ConsoleFigures>,
    /// One scrape at a time: counters are brought up to the totals, then encoded.
    scrape: Mutex<()>,
}

impl RelayMetrics {
    /// The metrics of a relay reading `peers`, counting in `counters` (and exporting, with
    /// `export`'s figures).
    pub fn new(
        peers: Arc<PeerSet>,
        counters: Arc<RelayCounters>,
        export: Option<ExportFigures>,
    ) -> Self {
        let mut root = Registry::default();
        let process = ProcessMetrics::register(&mut root);
        let registry = root.sub_registry_with_prefix("observer");
        let flows_sent = Counter::default();
        registry.register(
            "relay_flows_sent",
            "Flows the relay sent to its clients",
            flows_sent.clone(),
        );
        let lost = Family::<LossLabels, Counter>::default();
        registry.register(
            "lost_records",
            "Records lost, by what: relay_subscriber (flows a node no longer held when a \
             client's stream through the relay read it, each told), relay_export (the same \
             for the OTLP export's stream, and what the exporter's full queue dropped), \
             relay_console (the same for the console's stream, and violations its live \
             readers missed), otlp_unsent (the OTLP collector refused them or stayed \
             unreachable)",
            lost.clone(),
        );
        let subscribers = Gauge::default();
        registry.register(
            "relay_subscribers",
            "Client streams open now",
            subscribers.clone(),
        );
        let otlp_sent = Counter::default();
        registry.register(
            "otlp_sent_records",
            "Records the OTLP collector accepted",
            otlp_sent.clone(),
        );
        let node_connected = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "relay_node_connected",
            "1 when the node observer answered its latest status check",
            node_connected.clone(),
        );
        let node_lag = Family::<NodeLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "relay_node_lag",
            "From the node's writing its latest flow received to the relay's receiving it",
            Unit::Seconds,
            node_lag.clone(),
        );
        let node_received = Family::<NodeLabels, Counter>::default();
        registry.register(
            "relay_node_flows_received",
            "Flows received from the node observer, over every stream",
            node_received.clone(),
        );
        Self {
            registry: root,
            process,
            flows_sent,
            lost,
            subscribers,
            otlp_sent,
            node_connected,
            node_lag,
            node_received,
            peers,
            counters,
            export,
            console: None,
            scrape: Mutex::new(()),
        }
    }

    /// Also reports the console's losses (`observer relay --ui-listen`).
    pub fn with_console(mut self, console: Option<ConsoleFigures>) -> Self {
        self.console = console;
        self
    }

    /// Brings the metrics up to the relay's counters.
    fn update(&self) {
        let up_to = |counter: &Counter, total: u64| {
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        up_to(
            &self.flows_sent,
            self.counters.flows_sent.load(Ordering::Relaxed),
        );
        up_to(
            &self.lost.get_or_create(&LossLabels {
                what: "relay_subscriber",
            }),
            self.counters.flows_lost.load(Ordering::Relaxed),
        );
        self.subscribers.set(
            i64::try_from(self.counters.subscribers.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        );
        if let Some(export) = &self.export {
            up_to(&self.otlp_sent, export.otlp.sent.load(Ordering::Relaxed));
            up_to(
                &self.lost.get_or_create(&LossLabels {
                    what: "otlp_unsent",
                }),
                export.otlp.unsent.load(Ordering::Relaxed),
            );
            up_to(
                &self.lost.get_or_create(&LossLabels {
                    what: "relay_export",
                }),
                export.stream.flows_lost.load(Ordering::Relaxed)
                    + export.hub.sink_status().iter().map(|s| s.lost).sum::<u64>(),
            );
        }
        if let Some(console) = &self.console {
            up_to(
                &self.lost.get_or_create(&LossLabels {
                    what: "relay_console",
                }),
                console.stream.flows_lost.load(Ordering::Relaxed)
                    + console.hub.status().flows_lost_to_subscribers,
            );
        }
        // Nodes that left the peer list leave the families.
        self.node_connected.clear();
        self.node_lag.clear();
        self.node_received.clear();
        for node in self.peers.connections() {
            let labels = NodeLabels {
                node: node.node_name,
                address: node.address,
            };
            self.node_connected
                .get_or_create(&labels)
                .set(i64::from(node.connected));
            self.node_lag
                .get_or_create(&labels)
                .set(node.lag_ms as f64 / 1000.0);
            self.node_received
                .get_or_create(&labels)
                .inc_by(node.flows_received);
        }
    }
}

impl super::server::Exposition for RelayMetrics {
    fn render(&self) -> String {
        let _one = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.update();
        self.process.update();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
