//! Where the daemon hands written records to the API: the ring of recent flows behind a
//! short lock, a wake-up for subscribers waiting on new flows, and the counters.
//!
//! Publishing never waits for a subscriber: a slow one falls behind in the ring and, once
//! overwritten, is told exactly which cursors it lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::ring::{Batch, FlowRing};
use crate::flow::FlowRecord;

/// The shared buffer of written flows.
#[derive(Debug)]
pub struct FlowHub {
    ring: Mutex<FlowRing<Arc<FlowRecord>>>,
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
    /// With the newest N flows held.
    Last(u64),
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

/// The hub's counters, for `ServerStatus` and the stats file.
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
}

impl FlowHub {
    /// A hub holding the latest `capacity` flows. Cursors start at the current time in
    /// microseconds since the epoch, so that each run's are above every earlier run's (as
    /// long as fewer than a million flows a second were written) and a client resuming
    /// across a restart learns it missed the rest of the earlier run.
    pub fn new(capacity: usize) -> Arc<Self> {
        let first_cursor = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Self::with_first_cursor(capacity, first_cursor)
    }

    /// A hub whose first flow gets `first_cursor`.
    pub fn with_first_cursor(capacity: usize, first_cursor: u64) -> Arc<Self> {
        let ring = FlowRing::new(capacity, first_cursor);
        let (newest, _) = watch::channel((ring.next_cursor(), false));
        Arc::new(Self {
            ring: Mutex::new(ring),
            newest,
            published: AtomicU64::new(0),
            lost_to_subscribers: AtomicU64::new(0),
            subscribers: AtomicU64::new(0),
        })
    }

    fn ring(&self) -> MutexGuard<'_, FlowRing<Arc<FlowRecord>>> {
        // A panic while holding the lock cannot leave the ring half-changed (push is one
        // VecDeque operation), so a poisoned lock is still usable.
        self.ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds written records, in order, and wakes the subscribers.
    pub fn publish(&self, records: &[FlowRecord]) {
        if records.is_empty() {
            return;
        }
        // Copied before taking the lock, which readers share.
        let shared: Vec<Arc<FlowRecord>> = records.iter().cloned().map(Arc::new).collect();
        let next = {
            let mut ring = self.ring();
            for record in shared {
                ring.push(record);
            }
            ring.next_cursor()
        };
        self.published
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        self.newest
            .send_modify(|(newest, _)| *newest = (*newest).max(next));
    }

    /// Up to `max` flows after cursor `after`, and what the reader lost before them.
    pub fn read_after(&self, after: u64, max: usize) -> Batch<Arc<FlowRecord>> {
        self.ring().read_after(after, max)
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
            StartAt::Last(n) => next.saturating_sub(n).max(oldest) - 1,
            StartAt::After(cursor) if cursor >= next => return Err(next),
            StartAt::After(cursor) => cursor,
        };
        Ok(Span { after, end: next })
    }

    /// Wake-ups: the next cursor to be written, and whether the hub is closed.
    pub fn watch(&self) -> watch::Receiver<(u64, bool)> {
        self.newest.subscribe()
    }

    /// The daemon is stopping: subscribers send what is left and end.
    pub fn close(&self) {
        self.newest.send_modify(|(_, closed)| *closed = true);
    }

    /// Counts flows a subscriber was told it lost.
    pub fn count_lost(&self, flows: u64) {
        self.lost_to_subscribers.fetch_add(flows, Ordering::Relaxed);
    }

    /// Registers a subscriber until the returned guard is dropped.
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
        HubStatus {
            oldest_cursor: bounds.as_ref().map_or(0, |b| *b.start()),
            newest_cursor: bounds.as_ref().map_or(0, |b| *b.end()),
            capacity: capacity as u64,
            flows_published: self.published.load(Ordering::Relaxed),
            subscribers: self.subscribers.load(Ordering::Relaxed),
            flows_lost_to_subscribers: self.lost_to_subscribers.load(Ordering::Relaxed),
        }
    }
}

/// Counts one connected subscriber while it lives.
#[derive(Debug)]
pub struct SubscriberGuard(Arc<FlowHub>);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}
