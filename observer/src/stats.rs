//! The run's counters: what the kernel counted, what userspace counted, and what was lost.
//! The daemon fills them; the metrics and the stats file read them.

use std::path::Path;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use observer_common::Counter;
use serde::Serialize;
use tracing::warn;

use crate::datapath::{CounterReader, DatapathCounters, EventReaderStats};
use crate::export::FlowLogStats;
use crate::flow::ConnectionTable;
use crate::hub::{FlowHub, HubStatus, SinkStatus};

/// Snapshot of every counter, written as JSON to `--stats-file` and logged at exit.
#[derive(Debug, Default, Serialize)]
pub struct RunStats {
    /// Kernel counters summed over CPUs (see `observer_common::Counter`).
    pub datapath: DatapathCounters,
    /// What the kernel maps take (charged to the daemon's memory cgroup), from the
    /// settings and the node's possible CPUs (`memory::budget::kernel_maps`).
    pub kernel_map_bytes: u64,
    /// Packets the programs could not parse, over every `parse_error_*` reason.
    pub malformed_packets: u64,
    /// Ring-buffer events read.
    pub events_received: u64,
    /// Ring-buffer items of the wrong size.
    pub events_malformed: u64,
    /// Overflow events (packets the full map could not hold, counted in userspace).
    pub overflow_events: u64,
    /// Packets the kernel counted for a connection after the read its record was written
    /// from, found when its keys were released; a later record carries them.
    pub late_packets: u64,
    /// Events of an unknown kind.
    pub unknown_events: u64,
    /// Flow map entries that could not be read during a poll.
    pub map_read_errors: u64,
    /// Interfaces that matched the pattern but could not be attached.
    pub attach_failures: u64,
    /// Attaches tried again after a failure.
    pub attach_retries: u64,
    /// Interfaces where another observer's programs were found attached too.
    pub other_observer_interfaces: u64,
    /// Flow log writes that failed.
    pub log_write_errors: u64,
    /// Connections in the table now.
    pub connections_live: usize,
    /// Connections written early as `evicted` because the table held more than
    /// `--max-connections` (not a loss: later traffic starts a new record).
    pub connections_evicted: u64,
    /// Packets of overflow events for new connections refused while the table was at twice
    /// `--max-connections`: lost.
    pub table_full_packets: u64,
    /// Connection-started items published (a connection judged at its first packet).
    pub started_published: u64,
    /// New connections that got no started item because the daemon had too many waiting
    /// (only their records, which are unaffected).
    pub started_shed: u64,
    /// The policy-suggestion learner: edges held, edges not learned because
    /// `--suggest-max-edges` were held, and workloads learning and stable.
    pub suggest_edges: u64,
    /// See `suggest_edges`.
    pub suggest_dropped_edges: u64,
    /// See `suggest_edges`.
    pub suggest_workloads_learning: u64,
    /// See `suggest_edges`.
    pub suggest_workloads_stable: u64,
    /// Records the OTLP collector accepted, and those given up on (it refused them, or
    /// stayed unreachable through the retries).
    pub otlp_sent: u64,
    /// See `otlp_sent`.
    pub otlp_unsent: u64,
    /// Records written to the flow log (whole lines).
    pub records_written: u64,
    /// Records lost to flow log writes that failed (a full disk), each counted once; the
    /// log keeps whole lines only.
    pub flow_log_lost_records: u64,
    /// Interfaces attached now (at exit: when the run stopped), sorted.
    pub interfaces: Vec<String>,
    /// Cluster views published by the source (manifest loads and reloads).
    pub cluster_views: u64,
    /// Objects of the latest cluster state skipped as invalid.
    pub cluster_invalid_objects: u64,
    /// Manifest files served from their last good content because their latest content
    /// does not parse or cannot be read.
    pub cluster_source_stale: u64,
    /// Full re-lists of a Kubernetes kind after its first list (410 Gone, a watch the
    /// server ended without a bookmark), summed over kinds.
    pub cluster_relists: u64,
    /// Kubernetes list and watch errors (403, 5xx, timeouts, undecodable streams), summed
    /// over kinds; each is retried with backoff.
    pub cluster_watch_errors: u64,
    /// The hub's ring of recent flows and its readers (the gRPC API's streams), with the
    /// flows readers were told they lost (`flows_lost_to_subscribers`).
    pub api: HubStatus,
    /// The hub's sinks (flow log, metrics, ...): records delivered and lost to each.
    pub sinks: Vec<SinkStatus>,
    #[serde(skip)]
    losses_reported: u64,
}

impl RunStats {
    /// The stats of a run whose kernel maps take `bytes`.
    pub fn with_kernel_map_bytes(mut self, bytes: u64) -> Self {
        self.kernel_map_bytes = bytes;
        self
    }

    /// Refreshes the snapshot.
    pub fn update(
        &mut self,
        counters: &CounterReader,
        reader: &EventReaderStats,
        table: &ConnectionTable,
        log: &FlowLogStats,
        hub: &FlowHub,
    ) {
        match counters.read() {
            Ok(values) => {
                self.malformed_packets = values.malformed_packets();
                self.datapath = values;
            }
            Err(e) => warn!(error = %e, "reading datapath counters"),
        }
        self.events_received = reader.received.load(Ordering::Relaxed);
        self.events_malformed = reader.malformed.load(Ordering::Relaxed);
        self.connections_live = table.len();
        let table_losses = table.losses();
        self.connections_evicted = table_losses.evicted;
        self.table_full_packets = table_losses.refused_packets;
        self.started_shed = table.started_shed();
        self.records_written = log.written.load(Ordering::Relaxed);
        self.log_write_errors = log.write_errors.load(Ordering::Relaxed);
        self.flow_log_lost_records = log.lost.load(Ordering::Relaxed);
        self.api = hub.status();
        self.sinks = hub.sink_status();
    }

    /// Records lost to the hub's sinks' full queues.
    pub fn lost_to_sinks(&self) -> u64 {
        self.sinks.iter().map(|sink| sink.lost).sum()
    }

    /// Started items shed: not made (too many waiting) or not taken by a sink's full
    /// queue. The connections' records are unaffected.
    pub fn started_items_shed(&self) -> u64 {
        self.started_shed + self.sinks.iter().map(|sink| sink.started_lost).sum::<u64>()
    }

    /// Events or packets lost for good: ring-buffer reservations that failed, packets the
    /// full connection table refused, flows API subscribers fell too far behind for,
    /// records sinks' full queues could not take, and started items shed.
    pub fn losses(&self) -> u64 {
        self.datapath.get(Counter::RingBufNewFlowFailed)
            + self.datapath.get(Counter::RingBufEndFailed)
            + self.datapath.get(Counter::RingBufOverflowFailed)
            + self.events_malformed
            + self.table_full_packets
            + self.api.flows_lost_to_subscribers
            + self.lost_to_sinks()
            + self.flow_log_lost_records
            + self.otlp_unsent
            + self.started_items_shed()
    }

    /// Logs a warning when losses grew since the last call.
    pub fn warn_on_new_losses(&mut self) {
        let losses = self.losses();
        if losses > self.losses_reported {
            warn!(
                ringbuf_new_flow_failed = self.datapath.get(Counter::RingBufNewFlowFailed),
                ringbuf_end_failed = self.datapath.get(Counter::RingBufEndFailed),
                ringbuf_overflow_failed = self.datapath.get(Counter::RingBufOverflowFailed),
                table_full_packets = self.table_full_packets,
                api_flows_lost_to_subscribers = self.api.flows_lost_to_subscribers,
                records_lost_to_sinks = self.lost_to_sinks(),
                flow_log_lost_records = self.flow_log_lost_records,
                otlp_unsent = self.otlp_unsent,
                started_items_shed = self.started_items_shed(),
                "flow events lost: the ring buffer was full (raise --ringbuf-bytes), the \
                 connection table was (raise --max-connections), a gRPC subscriber fell \
                 behind (raise --api-buffer-flows), a sink's queue was full (see sinks in \
                 the stats), or the OTLP collector did not take records"
            );
            self.losses_reported = losses;
        }
    }

    /// Writes the snapshot as JSON, atomically (temporary file, then rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec_pretty(self)?;
        std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
    }
}
