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
}

/// One subscribed sink.
#[derive(Debug)]
pub(super) struct Sink {
    name: &'static str,
    when_full: WhenFull,
    /// None once the hub closed: the receiver then ends after what it was given.
    tx: Mutex<Option<mpsc::Sender<Arc<Published>>>>,
    delivered: AtomicU64,
    lost: AtomicU64,
}

impl Sink {
    pub(super) fn new(
        name: &'static str,
        capacity: usize,
        when_full: WhenFull,
    ) -> (Self, mpsc::Receiver<Arc<Published>>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let sink = Self {
            name,
            when_full,
            tx: Mutex::new(Some(tx)),
            delivered: AtomicU64::new(0),
            lost: AtomicU64::new(0),
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
        let Some(tx) = self.sender().clone() else {
            self.lost.fetch_add(batch.len() as u64, Ordering::Relaxed);
            return;
        };
        let mut delivered = 0;
        let mut lost = 0;
        for entry in batch {
            let sent = match self.when_full {
                WhenFull::Wait => tx.send(Arc::clone(entry)).await.is_ok(),
                WhenFull::Drop => tx.try_send(Arc::clone(entry)).is_ok(),
            };
            if sent {
                delivered += 1;
            } else {
                lost += 1;
            }
        }
        self.delivered.fetch_add(delivered, Ordering::Relaxed);
        self.lost.fetch_add(lost, Ordering::Relaxed);
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
        }
    }
}
