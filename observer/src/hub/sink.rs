//! A sink's bounded queue and its when-full policy, with the counts the stats report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::mpsc;

use super::Published;

/// What publishing does when a sink's queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenFull {
    /// Wait for room: the sink must not lose records (the flow log). Publishing, and so the
    /// table task, slows to the sink's pace.
    Wait,
    /// Drop the record for this sink and count it as lost to it.
    Drop,
}

/// A sink's counts, for the stats file and the metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SinkStatus {
    /// The sink's name.
    pub name: &'static str,
    /// What it does when full.
    pub when_full: WhenFull,
    /// Records handed to its queue.
    pub delivered: u64,
    /// Records its full queue could not take (only with [`WhenFull::Drop`]), or published
    /// after it stopped reading.
    pub lost: u64,
    /// Started items its full queue could not take: they never wait, whatever
    /// `when_full` says, so that a flood of new connections sheds them first.
    pub started_lost: u64,
}

/// One subscribed sink.
#[derive(Debug)]
pub(super) struct Sink {
    name: &'static str,
    when_full: WhenFull,
    /// Takes started items too (else only the connections' records).
    takes_started: bool,
    /// None once the hub closed: the receiver then ends after what it was given.
    tx: Mutex<Option<mpsc::Sender<Arc<Published>>>>,
    delivered: AtomicU64,
    lost: AtomicU64,
    started_lost: AtomicU64,
}

impl Sink {
    pub(super) fn new(
        name: &'static str,
        capacity: usize,
        when_full: WhenFull,
        takes_started: bool,
    ) -> (Self, mpsc::Receiver<Arc<Published>>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let sink = Self {
            name,
            when_full,
            takes_started,
            tx: Mutex::new(Some(tx)),
            delivered: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            started_lost: AtomicU64::new(0),
        };
        (sink, rx)
    }

    fn sender(&self) -> std::sync::MutexGuard<'_, Option<mpsc::Sender<Arc<Published>>>> {
        self.tx
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands the sink a batch, as its policy says.
    pub(super) async fn offer(&self, batch: &[Arc<Published>]) {
        let wanted = |entry: &&Arc<Published>| self.takes_started || !entry.is_started();
        let Some(tx) = self.sender().clone() else {
            for entry in batch.iter().filter(wanted) {
                self.count_lost(entry);
            }
            return;
        };
        let mut delivered = 0;
        for entry in batch.iter().filter(wanted) {
            let sent = match self.when_full {
                WhenFull::Wait if !entry.is_started() => tx.send(Arc::clone(entry)).await.is_ok(),
                _ => tx.try_send(Arc::clone(entry)).is_ok(),
            };
            if sent {
                delivered += 1;
            } else {
                self.count_lost(entry);
            }
        }
        self.delivered.fetch_add(delivered, Ordering::Relaxed);
    }

    /// Counts an entry the sink did not get, in its unit.
    fn count_lost(&self, entry: &Published) {
        let counter = if entry.is_started() {
            &self.started_lost
        } else {
            &self.lost
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// No more records: the receiver ends once it has read what it was given.
    pub(super) fn close(&self) {
        self.sender().take();
    }

    pub(super) fn status(&self) -> SinkStatus {
        SinkStatus {
            name: self.name,
            when_full: self.when_full,
            delivered: self.delivered.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            started_lost: self.started_lost.load(Ordering::Relaxed),
        }
    }
}
