//! The one place judged records are published, always on: every record gets the next
//! cursor and enters a ring of recent flows, shared (`Arc`), never copied again. Consumers
//! subscribe in one of two ways:
//!
//! - **Sinks** (the flow log, metrics, and the coming suggestion learner, OTLP exporter,
//!   relay and console) each get a bounded queue ([`FlowHub::subscribe`]). A sink that
//!   must not lose records (the flow log) asks for [`WhenFull::Wait`]: publishing waits for
//!   room, pushing back on the table task. Any other asks for [`WhenFull::Drop`]: what its
//!   full queue cannot take is counted as lost to it and reported (stats, metrics, log).
//! - **Readers** (the gRPC streams) read the ring by cursor at their own pace; a reader
//!   the ring overwrote is told exactly which cursors it lost. Violations (denied flows)
//!   are also kept in a retention of their own (`violations.rs`), which allowed flows
//!   never push out: a violations-only reader reads there ([`Source::Violations`]).
//!
//! A record's wire form is made once, by the first stream that sends it
//! ([`Published::wire`]), not once per stream.

mod ring;
mod sink;
mod violations;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::watch;

pub use ring::{Batch, FlowRing, Gap};
use sink::Sink;
pub use sink::{SinkStatus, WhenFull};
use violations::ViolationRing;

/// Violations kept by default (`--api-buffer-violations`).
pub const DEFAULT_VIOLATIONS: usize = 16_384;

/// What one read of the hub found.
#[derive(Debug)]
pub struct Read {
    /// The flows, and the gaps before them.
    pub batch: Batch<Arc<Published>>,
    /// The cursor the read is complete through.
    pub through: u64,
    /// Violations reads: how many violations the gaps held.
    pub violations_lost: Option<u64>,
}

/// What a reader reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Every flow, from the flow ring.
    All,
    /// Violations only, from their own retention.
    Violations,
}

use crate::flow::FlowRecord;
use crate::wire::proto;

/// A published record: its cursor, the record, and its wire form once a stream needed it.
#[derive(Debug)]
pub struct Published {
    /// Position in the hub's sequence: strictly increasing, never reused in a run.
    pub cursor: u64,
    /// The judged record.
    pub record: FlowRecord,
    /// When it was published, in nanoseconds since the epoch ([`write_clock_ns`]): taken
    /// under the ring's lock, so it grows with the cursor, and a reader that read the ring
    /// at time `t` has every flow written before `t`.
    pub written_ns: i64,
    /// Boxed: an empty `OnceLock` of the message itself would take its whole size (several
    /// hundred bytes) in every buffered entry, read or not.
    wire: OnceLock<Box<proto::Flow>>,
}

impl Published {
    /// A record published under `cursor`, now.
    pub fn new(cursor: u64, record: FlowRecord) -> Self {
        Self {
            cursor,
            record,
            written_ns: write_clock_ns(),
            wire: OnceLock::new(),
        }
    }

    /// Whether it is a connection's started item (not one of its records).
    pub fn is_started(&self) -> bool {
        self.record.state == crate::flow::FlowState::Started
    }

    /// The record as the wire's `Flow`, converted on first use and kept.
    pub fn wire(&self) -> &proto::Flow {
        self.wire
            .get_or_init(|| Box::new(proto::Flow::from(&self.record)))
    }
}

/// The wall clock in nanoseconds since the epoch (0 before it).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The clock flows are stamped with when written, and streams' `Progress` with: the wall
/// clock, but never going back in this process (a step back of the wall clock holds it
/// still), so that a flow written after a reading is never stamped before it.
pub fn write_clock_ns() -> i64 {
    static LATEST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = now_ns();
    LATEST.fetch_max(now, Ordering::Relaxed).max(now)
}

/// The hub of written flows.
#[derive(Debug)]
pub struct FlowHub {
    ring: Mutex<FlowRing<Arc<Published>>>,
    /// Taken only while `ring` is held (publishing), or alone (readers).
    violations: Mutex<ViolationRing<Arc<Published>>>,
    /// Sinks' queues, in the order they subscribed.
    sinks: Mutex<Vec<Arc<Sink>>>,
    /// The next cursor to be written; subscribers wait on changes. Closed (`true`) when
    /// the daemon stops.
    newest: watch::Sender<(u64, bool)>,
    published: AtomicU64,
    lost_to_subscribers: AtomicU64,
    subscribers: AtomicU64,
}

/// Where a subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// With the next flow written.
    Next,
    /// With the oldest flow held.
    Oldest,
    /// Right after this cursor.
    After(u64),
}

/// A subscription's start: the cursor before its first flow, and the next cursor to be
/// written when it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The cursor before the first flow.
    pub after: u64,
    /// The next cursor to be written at the start.
    pub end: u64,
}

/// The ring's counters, for `ServerStatus` and the stats file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HubStatus {
    /// Cursor of the oldest flow held (0: none).
    pub oldest_cursor: u64,
    /// Cursor of the newest flow held (0: none).
    pub newest_cursor: u64,
    /// Flows held at most.
    pub capacity: u64,
    /// Flows published since start.
    pub flows_published: u64,
    /// Subscribers connected now.
    pub subscribers: u64,
    /// Flows subscribers missed (told to them as lost), summed over subscribers.
    pub flows_lost_to_subscribers: u64,
    /// Violations held apart, and how many at most.
    pub violations_held: u64,
    /// The violations' retention (`--api-buffer-violations`).
    pub violations_capacity: u64,
}

impl FlowHub {
    /// A hub holding the latest `capacity` flows. Cursors start at the current time in
    /// microseconds since the epoch, so that each run's are above every earlier run's (as
    /// long as fewer than a million flows a second were written) and a client resuming
    /// across a restart learns it missed the rest of the earlier run.
    pub fn new(capacity: usize) -> Arc<Self> {
        Self::with_violations(capacity, DEFAULT_VIOLATIONS)
    }

    /// [`FlowHub::new`], keeping `violations` violations apart.
    pub fn with_violations(capacity: usize, violations: usize) -> Arc<Self> {
        let first_cursor = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Self::with_retention(capacity, violations, first_cursor)
    }

    /// A hub whose first flow gets `first_cursor`.
    pub fn with_first_cursor(capacity: usize, first_cursor: u64) -> Arc<Self> {
        Self::with_retention(capacity, DEFAULT_VIOLATIONS, first_cursor)
    }

    /// A hub holding the latest `capacity` flows and, apart, the latest `violations`
    /// violations; its first flow gets `first_cursor`.
    pub fn with_retention(capacity: usize, violations: usize, first_cursor: u64) -> Arc<Self> {
        let ring = FlowRing::new(capacity, first_cursor);
        let (newest, _) = watch::channel((ring.next_cursor(), false));
        Arc::new(Self {
            violations: Mutex::new(ViolationRing::new(violations, first_cursor)),
            ring: Mutex::new(ring),
            sinks: Mutex::new(Vec::new()),
            newest,
            published: AtomicU64::new(0),
            lost_to_subscribers: AtomicU64::new(0),
            subscribers: AtomicU64::new(0),
        })
    }

    fn ring(&self) -> MutexGuard<'_, FlowRing<Arc<Published>>> {
        // A panic while holding the lock cannot leave the ring half-changed (push is one
        // VecDeque operation), so a poisoned lock is still usable.
        self.ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn violation_ring(&self) -> MutexGuard<'_, ViolationRing<Arc<Published>>> {
        // As for the ring: one push or pop at a time cannot leave it half-changed.
        self.violations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sink_list(&self) -> MutexGuard<'_, Vec<Arc<Sink>>> {
        // Pushing an `Arc` cannot leave the list half-changed: a poisoned lock is usable.
        self.sinks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The sinks now, copied so that no lock is held while publishing waits for one.
    fn sinks(&self) -> Vec<Arc<Sink>> {
        self.sink_list().clone()
    }

    /// A new sink: a queue of `capacity` records that receives every record published from
    /// now on (connections' started items only with `takes_started`), waiting or dropping
    /// (counted) when full as `when_full` says; started items never wait. `name` is what
    /// the stats and metrics call it. Dropping the receiver ends the subscription (records
    /// are then counted as lost to it only while it existed).
    pub fn subscribe(
        &self,
        name: &'static str,
        capacity: usize,
        when_full: WhenFull,
        takes_started: bool,
    ) -> tokio::sync::mpsc::Receiver<Arc<Published>> {
        let (sink, rx) = Sink::new(name, capacity, when_full, takes_started);
        self.sink_list().push(Arc::new(sink));
        rx
    }

    /// Publishes written records, in order: each gets the next cursor, enters the ring
    /// (waking the readers) and every sink's queue. Waits only for sinks that asked to be
    /// waited for.
    pub async fn publish(&self, records: Vec<FlowRecord>) {
        if records.is_empty() {
            return;
        }
        let count = records.len() as u64;
        let (published, next) = {
            let mut ring = self.ring();
            let mut violations = self.violation_ring();
            let published: Vec<Arc<Published>> = records
                .into_iter()
                .map(|record| {
                    let entry = Arc::new(Published::new(ring.next_cursor(), record));
                    ring.push(Arc::clone(&entry));
                    if entry.record.verdict_kind() == Some(crate::policy::VerdictKind::Deny) {
                        violations.push(entry.cursor, Arc::clone(&entry));
                    }
                    entry
                })
                .collect();
            violations.published_through(ring.next_cursor() - 1);
            (published, ring.next_cursor())
        };
        self.published.fetch_add(count, Ordering::Relaxed);
        self.newest
            .send_modify(|(newest, _)| *newest = (*newest).max(next));
        for sink in self.sinks() {
            sink.offer(&published).await;
        }
    }

    /// Each sink's name, queue and losses.
    pub fn sink_status(&self) -> Vec<SinkStatus> {
        self.sinks().iter().map(|sink| sink.status()).collect()
    }

    /// Every flow held now, oldest first, read under one lock (shared, not copied): what
    /// the suggestions' proof and the console fold.
    pub fn held(&self) -> Vec<Arc<Published>> {
        let batch = self.read_after(0, usize::MAX);
        batch.items.into_iter().map(|(_, p)| p).collect()
    }

    /// Up to `max` flows after cursor `after`, and what the reader lost before them.
    pub fn read_after(&self, after: u64, max: usize) -> Batch<Arc<Published>> {
        self.ring().read_after(after, max)
    }

    /// Up to `max` flows of `source` after cursor `after`, what the reader lost before them,
    /// and the cursor the read is complete through (for violations, past the flows between
    /// them, which are not violations). For violations, also how many were dropped under
    /// the cursors of the gap up to `until`, read under the same lock as the gap.
    pub fn read(&self, source: Source, after: u64, max: usize, until: u64) -> Read {
        match source {
            Source::All => {
                let batch = self.read_after(after, max);
                let through = batch.items.last().map_or(after, |(cursor, _)| *cursor);
                Read {
                    batch,
                    through,
                    violations_lost: None,
                }
            }
            Source::Violations => {
                let ring = self.violation_ring();
                let (batch, through) = ring.read_after(after, max);
                let violations_lost = Some(ring.dropped_between(after, until));
                Read {
                    batch,
                    through,
                    violations_lost,
                }
            }
        }
    }

    /// Where a violations-only subscription from the oldest starts: before the oldest
    /// violation held.
    pub fn before_oldest_violation(&self) -> u64 {
        self.violation_ring().before_oldest()
    }

    /// Where a new subscription starts, read under one lock with the next cursor to be
    /// written (a stream that does not follow ends there): the cursor before its first
    /// flow. `Err` carries the next cursor when `start` is a cursor this run has not
    /// written yet (from another node's observer, or a clock that went back).
    pub fn start(&self, start: StartAt) -> Result<Span, u64> {
        let ring = self.ring();
        let next = ring.next_cursor();
        let oldest = ring.bounds().map_or(next, |b| *b.start());
        let after = match start {
            StartAt::Next => next - 1,
            StartAt::Oldest => oldest - 1,
            StartAt::After(cursor) if cursor >= next => return Err(next),
            StartAt::After(cursor) => cursor,
        };
        Ok(Span { after, end: next })
    }

    /// Wake-ups: the next cursor to be written, and whether the hub is closed.
    pub fn watch(&self) -> watch::Receiver<(u64, bool)> {
        self.newest.subscribe()
    }

    /// The daemon is stopping: readers send what is left and end, and sinks' queues close
    /// once they have what was published.
    pub fn close(&self) {
        self.newest.send_modify(|(_, closed)| *closed = true);
        for sink in self.sinks() {
            sink.close();
        }
    }

    /// Counts flows a reader was told it lost.
    pub fn count_lost(&self, flows: u64) {
        self.lost_to_subscribers.fetch_add(flows, Ordering::Relaxed);
    }

    /// Registers a reader until the returned guard is dropped.
    pub fn subscriber(self: &Arc<Self>) -> SubscriberGuard {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        SubscriberGuard(Arc::clone(self))
    }

    /// The counters now.
    pub fn status(&self) -> HubStatus {
        let (bounds, capacity) = {
            let ring = self.ring();
            (ring.bounds(), ring.capacity())
        };
        let (violations_held, violations_capacity) = {
            let violations = self.violation_ring();
            (violations.held() as u64, violations.capacity() as u64)
        };
        HubStatus {
            oldest_cursor: bounds.as_ref().map_or(0, |b| *b.start()),
            newest_cursor: bounds.as_ref().map_or(0, |b| *b.end()),
            capacity: capacity as u64,
            flows_published: self.published.load(Ordering::Relaxed),
            subscribers: self.subscribers.load(Ordering::Relaxed),
            flows_lost_to_subscribers: self.lost_to_subscribers.load(Ordering::Relaxed),
            violations_held,
            violations_capacity,
        }
    }
}

/// Counts one connected reader while it lives.
#[derive(Debug)]
pub struct SubscriberGuard(Arc<FlowHub>);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
