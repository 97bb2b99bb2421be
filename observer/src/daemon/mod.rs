//! The running observer: wires the datapath, the connection table and the flow log together.
//!
//! One owning task holds the connection table, the attachments and the flow log; it is fed
//! by bounded channels from the ring-buffer reader and the link watcher, and polls the flow
//! map on a timer. Nothing is shared, so nothing is locked.

mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use observer_common::{FlowEvent, event_kind};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::datapath::{
    Attachments, Datapath, DatapathConfig, DatapathMaps, EventReaderStats, InterfacePattern,
    LinkEvent, watch_links,
};
use crate::export::{FlowLog, FlowLogTarget};
use crate::flow::{ConnectionTable, InterfaceNames, Sweep, TableConfig, WallClock};
pub use stats::RunStats;

/// Capacity of the channel from the ring-buffer reader to the table task.
const EVENT_CHANNEL: usize = 16_384;
/// Names of vanished interfaces kept for records that still refer to them.
const DEPARTED_NAMES: usize = 4_096;

/// Everything `observer run` needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Which interfaces to attach to.
    pub interfaces: InterfacePattern,
    /// Where records go.
    pub flow_log: FlowLogTarget,
    /// Where the stats JSON is written (each poll and at exit).
    pub stats_file: Option<PathBuf>,
    /// Map sizes.
    pub datapath: DatapathConfig,
    /// Expiry and reporting.
    pub table: TableConfig,
    /// How often the flow map is read.
    pub poll_interval: Duration,
    /// Also attach the empty classifier (the benchmark's cost floor).
    pub attach_empty_program: bool,
}

/// Runs until SIGINT or SIGTERM, then writes every connection it has and detaches.
pub async fn run(config: RunConfig) -> Result<()> {
    let datapath = Datapath::load(config.datapath)?;
    let (attachments, maps) = datapath.start(config.attach_empty_program)?;
    let DatapathMaps {
        flows,
        events,
        counters,
    } = maps;

    let (link_tx, link_rx) = mpsc::channel(1024);
    let link_task = tokio::spawn(watch_links(link_tx));
    let (event_tx, event_rx) = mpsc::channel(EVENT_CHANNEL);
    let reader_stats = Arc::new(EventReaderStats::default());
    let event_task = tokio::spawn(events.run(event_tx, Arc::clone(&reader_stats)));

    let mut node = NodeState {
        table: ConnectionTable::new(config.table, WallClock::now()),
        attachments,
        names: InterfaceNames::new(),
        departed: std::collections::VecDeque::new(),
        log: FlowLog::open(&config.flow_log)?,
        flows,
        stats: RunStats::default(),
        pattern: config.interfaces.clone(),
        scratch: Vec::new(),
    };
    let result = node
        .serve(link_rx, event_rx, &config, &counters, &reader_stats)
        .await;

    event_task.abort();
    link_task.abort();
    // Final accounting, even when serving failed: what we have is written, not dropped.
    node.poll_map();
    let sweep = node.table.drain(&node.names);
    node.write(sweep);
    node.stats.update(
        &counters,
        &reader_stats,
        &node.table,
        &node.attachments,
        &node.log,
    );
    if let Some(path) = &config.stats_file {
        node.stats.write(path)?;
    }
    info!(stats = %serde_json::to_string(&node.stats).unwrap_or_default(), "observer stopped");
    // Dropping the attachments detaches every program.
    drop(node);
    result
}

/// The state owned by the table task.
struct NodeState {
    table: ConnectionTable,
    attachments: Attachments,
    /// Interface names by index, for attached interfaces and recently departed ones.
    names: InterfaceNames,
    departed: std::collections::VecDeque<u32>,
    log: FlowLog,
    flows: crate::datapath::FlowMapReader,
    stats: RunStats,
    pattern: InterfacePattern,
    scratch: Vec<(observer_common::FlowKey, observer_common::FlowStats)>,
}

impl NodeState {
    async fn serve(
        &mut self,
        mut links: mpsc::Receiver<LinkEvent>,
        mut events: mpsc::Receiver<FlowEvent>,
        config: &RunConfig,
        counters: &crate::datapath::CounterReader,
        reader_stats: &EventReaderStats,
    ) -> Result<()> {
        let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        let mut terminate =
            signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        let mut poll = tokio::time::interval(config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interrupt.recv() => return Ok(()),
                _ = terminate.recv() => return Ok(()),
                link = links.recv() => match link {
                    Some(link) => self.on_link(link),
                    None => anyhow::bail!("the interface watcher stopped"),
                },
                event = events.recv() => match event {
                    Some(event) => self.on_event(&event),
                    None => anyhow::bail!("the ring buffer reader stopped"),
                },
                _ = poll.tick() => {
                    self.poll_map();
                    let sweep = self.table.sweep(WallClock::monotonic_now_ns(), &self.names);
                    self.write(sweep);
                    self.stats.update(counters, reader_stats, &self.table, &self.attachments, &self.log);
                    self.stats.warn_on_new_losses();
                    if let Some(path) = &config.stats_file
                        && let Err(e) = self.stats.write(path)
                    {
                        warn!(error = %e, "writing the stats file");
                    }
                }
            }
        }
    }

    fn on_link(&mut self, link: LinkEvent) {
        match link {
            LinkEvent::Present { index, name } => {
                if self.pattern.matches(&name) {
                    match self.attachments.attach(index, &name) {
                        Ok(()) => {
                            if self.names.get(&index) != Some(&name) {
                                info!(interface = %name, index, "attached");
                            }
                            self.names.insert(index, name);
                        }
                        Err(e) => {
                            self.stats.attach_failures += 1;
                            warn!(interface = %name, index, error = format!("{e:#}"), "attach failed");
                        }
                    }
                } else if let Some(old) = self.attachments.detach(index) {
                    info!(interface = %old, renamed = %name, index, "detached: no longer matches");
                }
            }
            LinkEvent::Gone { index } => {
                if let Some(name) = self.attachments.detach(index) {
                    info!(interface = %name, index, "interface gone, detached");
                    self.departed.push_back(index);
                    while self.departed.len() > DEPARTED_NAMES {
                        if let Some(old) = self.departed.pop_front()
                            && !self.attachments.is_attached(old)
                        {
                            self.names.remove(&old);
                        }
                    }
                }
            }
        }
    }

    fn on_event(&mut self, event: &FlowEvent) {
        match event.kind {
            event_kind::NEW_FLOW => self.table.record_new_flow(&event.key, &event.stats),
            event_kind::END => self.table.record_end(&event.key, &event.stats),
            event_kind::OVERFLOW => {
                self.stats.overflow_events += 1;
                self.table.record_overflow(&event.key, &event.stats)
            }
            _ => self.stats.unknown_events += 1,
        }
    }

    fn poll_map(&mut self) {
        let mut entries = std::mem::take(&mut self.scratch);
        entries.clear();
        self.stats.map_read_errors += self.flows.read_all(&mut entries) as u64;
        for (key, stats) in &entries {
            self.table.record_poll(key, *stats);
        }
        self.scratch = entries;
    }

    fn write(&mut self, sweep: Sweep) {
        self.flows.remove(&sweep.release);
        if let Err(e) = self.log.write(&sweep.records) {
            self.stats.log_write_errors += 1;
            warn!(error = format!("{e:#}"), "flow log write failed");
        }
    }
}
