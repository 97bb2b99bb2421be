//! Reading flow events from the ring buffer as they arrive (epoll via tokio).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use aya::maps::{Map, MapData, RingBuf};
use observer_common::FlowEvent;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

/// How long the final drain may take.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Owns the ring buffer.
pub struct EventReader {
    ring: RingBuf<MapData>,
}

/// What the reader saw, for the stats report.
#[derive(Debug, Default)]
pub struct EventReaderStats {
    /// Events read.
    pub received: AtomicU64,
    /// Items of the wrong size (never expected; counted rather than trusted).
    pub malformed: AtomicU64,
}

impl EventReader {
    pub(super) fn new(map: Map) -> Result<Self> {
        Ok(Self {
            ring: RingBuf::try_from(map)?,
        })
    }

    /// Forwards every event to `out` until the receiver goes away, or until `stop` fires:
    /// then it forwards what is left in the ring buffer and returns, so the caller, which
    /// detached the programs first, gets every event the kernel wrote. When `out` is full
    /// the reader waits, the ring buffer fills, and the kernel counts what it cannot
    /// reserve: a slow consumer shows up in the counters, never as a silent gap.
    pub async fn run(
        self,
        out: mpsc::Sender<FlowEvent>,
        stats: Arc<EventReaderStats>,
        mut stop: oneshot::Receiver<()>,
    ) -> Result<()> {
        // SAFETY: the ring buffer owns its file descriptor and keeps it open, unchanged,
        // for as long as the AsyncFd owns the ring buffer.
        let mut fd = unsafe { AsyncFd::register_with_interest(self.ring, Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("registering the ring buffer with tokio: {e}"))?;
        let mut batch = Vec::with_capacity(1024);
        // Set when told to stop: the drain ends at the latest then, even if a program left
        // attached (a failed detach) keeps the ring from ever being empty.
        let mut stop_by: Option<std::time::Instant> = None;
        loop {
            // Stopping, and the ring is empty (or the drain's time is up).
            let mut done = false;
            if let Some(deadline) = stop_by {
                done = read_batch(fd.get_mut(), &mut batch, &stats);
                if !done && std::time::Instant::now() > deadline {
                    tracing::warn!(
                        "the ring buffer was still filling after the programs were detached"
                    );
                    done = true;
                }
            } else {
                tokio::select! {
                    ready = fd.readable_mut() => {
                        let mut guard = ready?;
                        if read_batch(guard.get_inner_mut(), &mut batch, &stats) {
                            guard.clear_ready();
                        }
                    }
                    // A dropped sender means stop too.
                    _ = &mut stop => stop_by = Some(std::time::Instant::now() + DRAIN_LIMIT),
                }
            }
            stats
                .received
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for event in batch.drain(..) {
                if out.send(event).await.is_err() {
                    return Ok(());
                }
            }
            if done {
                return Ok(());
            }
        }
    }
}

/// Reads events into `batch` until it is full or the ring buffer is empty; true when the
/// ring buffer was emptied.
fn read_batch(
    ring: &mut RingBuf<MapData>,
    batch: &mut Vec<FlowEvent>,
    stats: &EventReaderStats,
) -> bool {
    while batch.len() < batch.capacity() {
        let Some(item) = ring.next() else {
            return true;
        };
        if item.len() == size_of::<FlowEvent>() {
            // SAFETY: the length matches and FlowEvent is plain old data.
            batch.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<FlowEvent>()) });
        } else {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
        }
    }
    false
}
