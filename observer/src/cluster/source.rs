//! The interface every provider of cluster state implements.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::state::ClusterObjects;

/// Errors common to all cluster sources.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source stopped (its tasks ended) before it became ready.
    #[error("cluster source stopped before it became ready")]
    Closed,
}

/// A provider of cluster state (the Kubernetes API, static manifests, ...).
///
/// A source publishes successive immutable snapshots. Consumers hold an
/// `Arc<ClusterObjects>` for as long as they need a consistent view and pick
/// up the next one from [`subscribe`](Self::subscribe) when it changes.
pub trait ClusterSource: Send + Sync {
    /// Receiver of the latest snapshot. Before the source is ready it holds an
    /// empty snapshot, so check [`readiness`](Self::readiness) (or call
    /// [`wait_ready`]) before serving from it.
    fn subscribe(&self) -> watch::Receiver<Arc<ClusterObjects>>;

    /// Becomes `true` once every kind has completed its initial list and the
    /// first complete snapshot has been published; never goes back to `false`.
    fn readiness(&self) -> watch::Receiver<bool>;

    /// A point-in-time copy of the source's counters.
    fn counters(&self) -> CounterSnapshot;
}

/// Waits until `source` is ready, then returns its current snapshot.
///
/// # Errors
/// [`SourceError::Closed`] if the source stopped before becoming ready.
pub async fn wait_ready<S: ClusterSource + ?Sized>(
    source: &S,
) -> Result<Arc<ClusterObjects>, SourceError> {
    let mut ready = source.readiness();
    ready
        .wait_for(|r| *r)
        .await
        .map_err(|_| SourceError::Closed)?;
    // Readiness is set after the first publish, so this is a full snapshot.
    Ok(source.subscribe().borrow().clone())
}

/// Counters shared between a source's tasks. Monotonic, lock-free.
#[derive(Debug, Default)]
pub struct SourceCounters {
    relists: AtomicU64,
    watch_errors: AtomicU64,
    invalid_objects: AtomicU64,
    publishes: AtomicU64,
}

impl SourceCounters {
    /// A full re-list of one kind after its initial list (e.g. after 410 Gone).
    pub fn record_relist(&self) {
        self.relists.fetch_add(1, Ordering::Relaxed);
    }

    /// A watch or list error (the source retries with backoff).
    pub fn record_watch_error(&self) {
        self.watch_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// An object received but left out of snapshots because it is invalid.
    pub fn record_invalid_object(&self) {
        self.invalid_objects.fetch_add(1, Ordering::Relaxed);
    }

    /// A new snapshot was published.
    pub fn record_publish(&self) {
        self.publishes.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads all counters. Each value is individually exact; the set is not
    /// taken atomically, which is fine for metrics.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            relists: self.relists.load(Ordering::Relaxed),
            watch_errors: self.watch_errors.load(Ordering::Relaxed),
            invalid_objects: self.invalid_objects.load(Ordering::Relaxed),
            publishes: self.publishes.load(Ordering::Relaxed),
        }
    }
}

/// Values of [`SourceCounters`] at one point in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Full re-lists after the initial list, summed over kinds.
    pub relists: u64,
    /// List/watch errors, summed over kinds.
    pub watch_errors: u64,
    /// Objects received and dropped as invalid (counted per event received).
    pub invalid_objects: u64,
    /// Snapshots published.
    pub publishes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed {
        tx: watch::Sender<Arc<ClusterObjects>>,
        ready: watch::Receiver<bool>,
        counters: SourceCounters,
    }

    impl ClusterSource for Fixed {
        fn subscribe(&self) -> watch::Receiver<Arc<ClusterObjects>> {
            self.tx.subscribe()
        }
        fn readiness(&self) -> watch::Receiver<bool> {
            self.ready.clone()
        }
        fn counters(&self) -> CounterSnapshot {
            self.counters.snapshot()
        }
    }

    fn fixed() -> (Fixed, watch::Sender<bool>) {
        let (ready_tx, ready) = watch::channel(false);
        let src = Fixed {
            tx: watch::channel(Arc::default()).0,
            ready,
            counters: SourceCounters::default(),
        };
        (src, ready_tx)
    }

    #[tokio::test]
    async fn wait_ready_returns_snapshot_published_before_readiness() {
        let (src, ready_tx) = fixed();
        let mut objs = ClusterObjects::default();
        objs.pods.push(Arc::default());
        src.tx.send_replace(Arc::new(objs));
        ready_tx.send_replace(true);
        let got = wait_ready(&src).await.expect("ready");
        assert_eq!(got.pods.len(), 1);
    }

    #[tokio::test]
    async fn wait_ready_fails_when_source_stops() {
        let (src, ready_tx) = fixed();
        drop(ready_tx);
        assert!(matches!(wait_ready(&src).await, Err(SourceError::Closed)));
    }

    #[test]
    fn counters_accumulate() {
        let c = SourceCounters::default();
        c.record_relist();
        c.record_watch_error();
        c.record_watch_error();
        c.record_invalid_object();
        c.record_publish();
        let want = CounterSnapshot {
            relists: 1,
            watch_errors: 2,
            invalid_objects: 1,
            publishes: 1,
        };
        assert_eq!(c.snapshot(), want);
    }
}
