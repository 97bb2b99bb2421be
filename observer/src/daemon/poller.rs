//! Reads the flow map on a thread of its own: a full map is tens of thousands of syscalls,
//! and the table task must keep draining the ring buffer meanwhile.

use observer_common::{FlowKey, FlowStats};
use tokio::sync::mpsc;

use crate::datapath::FlowMapReader;
use crate::flow::WallClock;

/// One read of the whole map.
pub struct PollResult {
    /// Every key, summed over CPUs.
    pub entries: Vec<(FlowKey, FlowStats)>,
    /// Entries that could not be read.
    pub errors: u64,
    /// For the keys released before the read: what the kernel counted beyond what their
    /// records reported (see `FlowMapReader::remove`).
    pub tails: Vec<(FlowKey, FlowStats)>,
    /// CLOCK_MONOTONIC when the read started (after the release).
    pub read_started_ns: u64,
}

/// Handle to the poller thread. One poll is in flight at a time.
pub struct MapPoller {
    requests: std::sync::mpsc::Sender<Vec<(FlowKey, FlowStats)>>,
    results: mpsc::Receiver<PollResult>,
    in_flight: bool,
}

impl MapPoller {
    /// Starts the thread; it owns the map from now on.
    pub fn spawn(mut reader: FlowMapReader) -> std::io::Result<Self> {
        let (requests, inbox) = std::sync::mpsc::channel::<Vec<(FlowKey, FlowStats)>>();
        let (outbox, results) = mpsc::channel(1);
        std::thread::Builder::new()
            .name("flow-map-poller".into())
            .spawn(move || {
                while let Ok(release) = inbox.recv() {
                    // Delete first, then read: a released connection never comes back
                    // from a read that started before its keys were gone.
                    let tails = reader.remove(&release);
                    let read_started_ns = WallClock::monotonic_now_ns();
                    let mut entries = Vec::new();
                    let errors = reader.read_all(&mut entries) as u64;
                    if outbox
                        .blocking_send(PollResult {
                            entries,
                            errors,
                            tails,
                            read_started_ns,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            })?;
        Ok(Self {
            requests,
            results,
            in_flight: false,
        })
    }

    /// True while a poll runs.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Starts a poll that first deletes `release` (keys with the counts their records
    /// reported); false (and nothing sent) when one is already running or the thread is
    /// gone.
    pub fn request(&mut self, release: &mut Vec<(FlowKey, FlowStats)>) -> bool {
        if self.in_flight {
            return false;
        }
        self.in_flight = self.requests.send(std::mem::take(release)).is_ok();
        self.in_flight
    }

    /// The running poll's result (`None` when the thread is gone).
    pub async fn result(&mut self) -> Option<PollResult> {
        let result = self.results.recv().await;
        self.in_flight = false;
        result
    }
}
