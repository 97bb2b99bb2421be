//! The connection table: merges the kernel's per-hook, per-direction counters into
//! connections and decides when a connection's record is written.
//!
//! Inputs are absolute counters read from the flow map (summed over CPUs), and the ring
//! buffer's events. A connection is written when it closes (TCP FIN both ways or RST, then
//! quiet for `close_grace`), when it has been idle for `idle_timeout`, periodically while
//! active (`report_interval`), and when the daemon stops. Pure logic: the caller passes the
//! time and applies the returned list of kernel keys to release.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use observer_common::{FlowKey, FlowStats, ip_proto, tcp_flags};

use super::{ConnectionKey, FlowRecord, FlowState, WallClock};

/// Default of [`TableConfig::max_connections`]: twice the default flow map, whose keys are
/// one hook and one direction each (two to four per connection on a node). Chosen for the
/// memory budget: the table holds up to twice this while it evicts, and a new-flow flood
/// at 262,144 peaked at 398 MiB against 309 MiB at 131,072 (`memory::budget`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 131_072;

/// Timing and size policy of the table (times in nanoseconds of CLOCK_MONOTONIC).
#[derive(Clone, Copy, Debug)]
pub struct TableConfig {
    /// A connection with no packet for this long is written as `expired` and forgotten.
    pub idle_timeout_ns: u64,
    /// A closed TCP connection is written once it has been quiet this long, so the last
    /// ACK after the FINs still belongs to it.
    pub close_grace_ns: u64,
    /// An active connection with new traffic is reported this often (0: never).
    pub report_interval_ns: u64,
    /// Connections held before the sweep evicts the least recently active (written as
    /// `evicted`). Between sweeps, connections opened by events may take the table to
    /// twice this; beyond that, events cannot open new ones until the next sweep makes
    /// room (see [`TableLosses`]); map values and tails always can.
    pub max_connections: usize,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            idle_timeout_ns: 30_000_000_000,
            close_grace_ns: 2_000_000_000,
            report_interval_ns: 10_000_000_000,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// What a sweep produced: records to write and kernel map keys to delete.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Records to write, in no particular order.
    pub records: Vec<FlowRecord>,
    /// Keys of connections that were written and forgotten, each with the counts its
    /// record reported: delete them from the map, and hand back what came beyond those.
    pub release: Vec<(FlowKey, FlowStats)>,
}

/// Interface names by index, for the records' `interfaces` field.
pub type InterfaceNames = HashMap<u32, String>;

/// Counters of one kernel flow key (one hook, one direction).
#[derive(Debug)]
struct Observation {
    key: FlowKey,
    /// Latest absolute value read from the flow map (or the first packet's, until then).
    kernel: FlowStats,
    /// Packets that reached us as overflow events because the map was full.
    overflow: FlowStats,
}

impl Observation {
    fn total(&self) -> FlowStats {
        merge(&self.kernel, &self.overflow)
    }
}

#[derive(Debug, Default)]
struct Connection {
    observations: Vec<Observation>,
    /// Flags of FIN/RST events, which may arrive before the next map poll.
    end_flags: u16,
    /// `last_seen` when the connection was last reported (0: never).
    reported_last_seen: u64,
    /// When it was last reported (0: never).
    reported_at: u64,
}

/// What the table's size limit cost so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableLosses {
    /// Connections written early (`evicted`) to keep the table at its limit. Nothing is
    /// lost: their later traffic is counted in a new record.
    pub evicted: u64,
    /// Packets of overflow events for new connections while the table was at twice its
    /// limit: they had nowhere else to be counted, so they are lost. (New-flow events are
    /// only dropped: the next read delivers their keys. Map values and tails are always
    /// taken.)
    pub refused_packets: u64,
}

/// All live connections, keyed by their direction-free identity.
#[derive(Debug)]
pub struct ConnectionTable {
    config: TableConfig,
    clock: WallClock,
    connections: HashMap<ConnectionKey, Connection>,
    losses: TableLosses,
    /// When the latest applied map read started (CLOCK_MONOTONIC).
    read_started_ns: u64,
    /// Keys released by the latest sweep, not yet deleted: their events are ignored, since
    /// a packet of theirs is in the written record or comes back as the key's tail.
    releasing: HashSet<FlowKey>,
    /// Connections opened since the last [`ConnectionTable::take_started`], oldest first.
    started: Vec<ConnectionKey>,
    /// Connections whose started item was not made because `started` was full.
    started_shed: u64,
}

/// Started items held between two [`ConnectionTable::take_started`] calls; past it a new
/// connection gets no started item (counted), only its records.
const MAX_STARTED: usize = 16_384;

impl ConnectionTable {
    /// An empty table.
    pub fn new(config: TableConfig, clock: WallClock) -> Self {
        Self {
            config,
            clock,
            connections: HashMap::new(),
            losses: TableLosses::default(),
            read_started_ns: 0,
            releasing: HashSet::new(),
            started: Vec::new(),
            started_shed: 0,
        }
    }

    /// A map read that started at `read_started_ns` is being applied. Events about packets
    /// from before it carry nothing new: the read holds those packets, or, for keys released
    /// just before it, the record or the tail does.
    ///
    /// The poll being applied deleted the keys the previous sweep released (the daemon
    /// sends them with each poll request), so their events count again from here.
    pub fn read_started(&mut self, read_started_ns: u64) {
        self.read_started_ns = self.read_started_ns.max(read_started_ns);
        self.releasing.clear();
    }

    /// True when an event's packet was counted before the latest read started. A new-flow
    /// event carries the precise time of its packet; an end event on a known key carries
    /// the start of the packet's tick, which is earlier still, so this errs towards
    /// dropping a hint the next read delivers anyway.
    fn predates_read(&self, packet: &FlowStats) -> bool {
        let at = if packet.first_seen_ns != 0 {
            packet.first_seen_ns
        } else {
            packet.last_seen_ns
        };
        at < self.read_started_ns
    }

    /// Lifts the size limit: the daemon is stopping and writes everything next, so the
    /// final read must not refuse anything.
    pub fn remove_limit(&mut self) {
        self.config.max_connections = usize::MAX / 2;
    }

    /// What the size limit cost so far.
    pub fn losses(&self) -> TableLosses {
        self.losses
    }

    /// Number of live connections.
    pub fn len(&self) -> usize {
        self.connections.len()
    }

    /// True when no connection is live.
    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    /// A value read from the flow map (summed over CPUs): replaces the key's map counters.
    pub fn record_poll(&mut self, key: &FlowKey, stats: FlowStats) {
        // Never refused: map keys are bounded by the map, and a refused key would never be
        // written, released, or make room in the map.
        if let Some(observation) = self.observation(key, Admit::Always, Opened::Announce) {
            observation.kernel = stats;
        }
    }

    /// A new-flow event: the first packet of a key on a CPU. Without it a flow would wait
    /// for the next read; once a read holds the packet, the event is ignored (counting it
    /// again after its connection was written would report it twice).
    pub fn record_new_flow(&mut self, key: &FlowKey, packet: &FlowStats) {
        if self.predates_read(packet) || self.releasing.contains(key) {
            return;
        }
        // At the limit, a hint is dropped: the next read delivers the key anyway.
        if let Some(observation) = self.observation(key, Admit::BelowHardLimit, Opened::Announce)
            && observation.kernel.packets == 0
        {
            observation.kernel = *packet;
        }
    }

    /// A TCP FIN or RST event.
    pub fn record_end(&mut self, key: &FlowKey, packet: &FlowStats) {
        if self.predates_read(packet) || self.releasing.contains(key) {
            return;
        }
        self.record_new_flow(key, packet);
        let (connection_key, _) = ConnectionKey::of(key);
        if let Some(connection) = self.connections.get_mut(&connection_key) {
            connection.end_flags |= packet.tcp_flags;
        }
    }

    /// A packet the kernel could not store in the full map: counted here instead.
    pub fn record_overflow(&mut self, key: &FlowKey, packet: &FlowStats) {
        match self.observation(key, Admit::BelowHardLimit, Opened::Announce) {
            Some(observation) => observation.overflow = merge(&observation.overflow, packet),
            None => self.losses.refused_packets += packet.packets,
        }
    }

    /// What the kernel counted for a released key beyond what its record reported: added
    /// here like overflow, and the key's map counters start over from zero, since the key
    /// was deleted from the map (events of it were ignored meanwhile: see `releasing`).
    pub fn record_tail(&mut self, key: &FlowKey, tail: &FlowStats) {
        // Never refused: tails are bounded by the keys released, and refusing one would
        // lose what an eviction promised to keep.
        // A tail belongs to a connection already written: not a new one.
        if let Some(observation) = self.observation(key, Admit::Always, Opened::Quietly) {
            observation.kernel = FlowStats::default();
            observation.overflow = merge(&observation.overflow, tail);
        }
    }

    /// The key's observation, created with its connection if need be; None when `admit`
    /// forbids a new connection past twice the limit.
    fn observation(
        &mut self,
        key: &FlowKey,
        admit: Admit,
        opened: Opened,
    ) -> Option<&mut Observation> {
        let (connection_key, _) = ConnectionKey::of(key);
        let room = self.connections.len() < self.config.max_connections.saturating_mul(2);
        let connection = match self.connections.entry(connection_key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) if room || admit == Admit::Always => {
                if opened == Opened::Announce {
                    if self.started.len() < MAX_STARTED {
                        self.started.push(connection_key);
                    } else {
                        self.started_shed += 1;
                    }
                }
                entry.insert(Connection::default())
            }
            Entry::Vacant(_) => return None,
        };
        let index = match connection.observations.iter().position(|o| o.key == *key) {
            Some(index) => index,
            None => {
                connection.observations.push(Observation {
                    key: *key,
                    kernel: FlowStats::default(),
                    overflow: FlowStats::default(),
                });
                connection.observations.len() - 1
            }
        };
        Some(&mut connection.observations[index])
    }

    /// The started items of the connections opened since the last call (state `started`,
    /// the counts seen so far), oldest first.
    pub fn take_started(&mut self, names: &InterfaceNames) -> Vec<FlowRecord> {
        let started = std::mem::take(&mut self.started);
        started
            .iter()
            .filter_map(|key| {
                let connection = self.connections.get(key)?;
                let summary = summarize(key, connection, names);
                Some(summary.record(key, FlowState::Started, &self.clock))
            })
            .collect()
    }

    /// Connections that got no started item because too many were waiting.
    pub fn started_shed(&self) -> u64 {
        self.started_shed
    }

    /// Writes the connections that closed, expired or are due for a periodic report.
    /// Runs over every connection, so the common case (nothing due) allocates nothing.
    pub fn sweep(&mut self, now_ns: u64, names: &InterfaceNames) -> Sweep {
        let mut sweep = Sweep::default();
        let config = self.config;
        let clock = self.clock;
        self.connections.retain(|key, connection| {
            let activity = connection.activity(key);
            let quiet = now_ns.saturating_sub(activity.last_seen);
            let state = if activity.closed && quiet >= config.close_grace_ns {
                Some(FlowState::Closed)
            } else if quiet >= config.idle_timeout_ns {
                Some(FlowState::Expired)
            } else {
                None
            };
            if let Some(state) = state {
                let summary = summarize(key, connection, names);
                sweep.records.push(summary.record(key, state, &clock));
                sweep.release.extend(connection.released());
                return false;
            }
            let due = config.report_interval_ns > 0
                && activity.last_seen > connection.reported_last_seen
                && now_ns.saturating_sub(connection.reported_at.max(activity.first_seen))
                    >= config.report_interval_ns;
            if due {
                let summary = summarize(key, connection, names);
                sweep
                    .records
                    .push(summary.record(key, FlowState::Active, &clock));
                connection.reported_last_seen = activity.last_seen;
                connection.reported_at = now_ns;
            }
            true
        });
        self.evict_beyond_limit(names, &mut sweep);
        self.releasing
            .extend(sweep.release.iter().map(|(key, _)| *key));
        sweep
    }

    /// Above the limit, writes the least recently active connections as `evicted` until the
    /// table is a sixteenth below it (exactly at it for limits under 16), so a table under
    /// pressure does not evict every sweep.
    fn evict_beyond_limit(&mut self, names: &InterfaceNames, sweep: &mut Sweep) {
        let limit = self.config.max_connections;
        if self.connections.len() <= limit {
            return;
        }
        let excess = self.connections.len() - (limit - limit / 16);
        let mut by_age: Vec<(u64, ConnectionKey)> = self
            .connections
            .iter()
            .map(|(key, connection)| (connection.activity(key).last_seen, *key))
            .collect();
        by_age.select_nth_unstable_by_key(excess - 1, |(last_seen, _)| *last_seen);
        for (_, key) in &by_age[..excess] {
            if let Some(connection) = self.connections.remove(key) {
                let summary = summarize(key, &connection, names);
                // A closed connection still in its grace period is what it is.
                let state = if summary.closed {
                    FlowState::Closed
                } else {
                    FlowState::Evicted
                };
                sweep.records.push(summary.record(key, state, &self.clock));
                sweep.release.extend(connection.released());
                self.losses.evicted += 1;
            }
        }
    }

    /// Writes every connection (the daemon is stopping): closed ones as `closed`, the rest
    /// as `active`.
    pub fn drain(&mut self, names: &InterfaceNames) -> Sweep {
        let mut sweep = Sweep::default();
        for (key, connection) in self.connections.drain() {
            let summary = summarize(&key, &connection, names);
            let state = if summary.closed {
                FlowState::Closed
            } else {
                FlowState::Active
            };
            sweep.records.push(summary.record(&key, state, &self.clock));
            sweep.release.extend(connection.released());
        }
        sweep
    }
}

/// What the sweep needs to decide, computed without allocating.
struct Activity {
    first_seen: u64,
    last_seen: u64,
    closed: bool,
}

/// Whether a connection a key opens gets a started item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opened {
    /// A new connection: announced.
    Announce,
    /// The tail of a connection already written.
    Quietly,
}

/// Whether a key may open a connection past twice the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admit {
    /// Map values and tails: bounded by the map and the keys released.
    Always,
    /// Event-borne packets: bounded by nothing else.
    BelowHardLimit,
}

impl Connection {
    /// The connection's keys with the map counts its record reported for each.
    fn released(&self) -> impl Iterator<Item = (FlowKey, FlowStats)> + '_ {
        self.observations.iter().map(|o| (o.key, o.kernel))
    }

    fn activity(&self, key: &ConnectionKey) -> Activity {
        let (mut first_seen, mut last_seen) = (u64::MAX, 0);
        let (mut low_flags, mut high_flags) = (0u16, 0u16);
        for o in &self.observations {
            let total = o.total();
            if total.packets > 0 {
                first_seen = first_seen.min(total.first_seen_ns);
            }
            last_seen = last_seen.max(total.last_seen_ns);
            if super::key::endpoints(&o.key).0 == key.low {
                low_flags |= total.tcp_flags;
            } else {
                high_flags |= total.tcp_flags;
            }
        }
        Activity {
            first_seen: if first_seen == u64::MAX {
                last_seen
            } else {
                first_seen
            },
            last_seen,
            closed: is_closed(key, low_flags, high_flags, self.end_flags),
        }
    }
}

/// TCP is closed after a RST, or a FIN from each side.
fn is_closed(key: &ConnectionKey, side_a: u16, side_b: u16, events: u16) -> bool {
    key.protocol == ip_proto::TCP
        && ((side_a | side_b | events) & tcp_flags::RST != 0
            || (side_a & tcp_flags::FIN != 0 && side_b & tcp_flags::FIN != 0))
}

/// Sum of two counter sets of one key.
fn merge(a: &FlowStats, b: &FlowStats) -> FlowStats {
    let first = match (a.first_seen_ns, b.first_seen_ns) {
        (0, x) | (x, 0) => x,
        (x, y) => x.min(y),
    };
    FlowStats {
        packets: a.packets + b.packets,
        bytes: a.bytes + b.bytes,
        first_seen_ns: first,
        last_seen_ns: a.last_seen_ns.max(b.last_seen_ns),
        tcp_flags: a.tcp_flags | b.tcp_flags,
        flags: a.flags | b.flags,
        pad: [0; 4],
    }
}

mod summary;

use summary::summarize;

#[cfg(test)]
mod tests;
