//! Reading flow events from the ring buffer as they arrive (epoll via tokio).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use aya::maps::{Map, MapData, RingBuf};
use observer_common::FlowEvent;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

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

    /// Forwards every event to `out` until the receiver goes away. When `out` is full the
    /// reader waits, the ring buffer fills, and the kernel counts what it cannot reserve:
    /// a slow consumer shows up in the counters, never as a silent gap.
    pub async fn run(
        self,
        out: mpsc::Sender<FlowEvent>,
        stats: Arc<EventReaderStats>,
    ) -> Result<()> {
        // SAFETY: the ring buffer owns its file descriptor and keeps it open, unchanged,
        // for as long as the AsyncFd owns the ring buffer.
        let mut fd = unsafe { AsyncFd::register_with_interest(self.ring, Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("registering the ring buffer with tokio: {e}"))?;
        let mut batch = Vec::with_capacity(1024);
        loop {
            let mut guard = fd.readable_mut().await?;
            let ring = guard.get_inner_mut();
            while let Some(item) = ring.next() {
                if item.len() == size_of::<FlowEvent>() {
                    // SAFETY: the length matches and FlowEvent is plain old data.
                    batch.push(unsafe {
                        std::ptr::read_unaligned(item.as_ptr().cast::<FlowEvent>())
                    });
                } else {
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                }
                if batch.len() == batch.capacity() {
                    break;
                }
            }
            if batch.len() < batch.capacity() {
                guard.clear_ready();
            }
            drop(guard);
            stats
                .received
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for event in batch.drain(..) {
                if out.send(event).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}
