//! Reads the flow map on a thread of its own: a full map is tens of thousands of syscalls,
//! and the table task must keep draining the ring buffer meanwhile. A poll reads the keys
//! the NEW_FLOW events announced; the first poll, every [`WALK_EVERY`]th, and the one after
//! an announcement was lost walk the whole map.

use observer_common::{FlowKey, FlowStats};
use tokio::sync::mpsc;

use crate::datapath::FlowMapReader;
use crate::flow::WallClock;

/// Polls between two walks of the whole map, whatever happens (the safety net behind the
/// announced keys: a minute at the daemon's default poll interval).
pub const WALK_EVERY: u32 = 60;

/// What one poll is asked to do.
struct PollRequest {
    /// Keys to delete first, with the counts their records reported.
    release: Vec<(FlowKey, FlowStats)>,
    /// Keys announced since the last request.
    announced: Vec<FlowKey>,
    /// Walk the whole map rather than read the known keys.
    walk: bool,
}

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
    requests: std::sync::mpsc::Sender<PollRequest>,
    results: mpsc::Receiver<PollResult>,
    in_flight: bool,
    /// Keys the NEW_FLOW events announced, for the next request.
    announced: Vec<FlowKey>,
    /// Requests since the last walk; a walk is due when it reaches [`WALK_EVERY`].
    since_walk: u32,
}

impl MapPoller {
    /// Starts the thread; it owns the map from now on.
    pub fn spawn(mut reader: FlowMapReader) -> std::io::Result<Self> {
        let (requests, inbox) = std::sync::mpsc::channel::<PollRequest>();
        let (outbox, results) = mpsc::channel(1);
        std::thread::Builder::new()
            .name("flow-map-poller".into())
            .spawn(move || {
                while let Ok(request) = inbox.recv() {
                    // Delete first, then read: a released connection never comes back
                    // from a read that started before its keys were gone.
                    let tails = reader.remove(&request.release);
                    reader.announce(request.announced);
                    let read_started_ns = WallClock::monotonic_now_ns();
                    let mut entries = Vec::new();
                    let errors = reader.read_all(&mut entries, request.walk) as u64;
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
            announced: Vec::new(),
            // The first poll walks: nothing is known yet.
            since_walk: WALK_EVERY,
        })
    }

    /// A key a NEW_FLOW event announced: the next poll reads it.
    pub fn announce(&mut self, key: FlowKey) {
        self.announced.push(key);
    }

    /// An announcement was lost (the ring buffer was full): the next poll walks the map.
    pub fn walk_next(&mut self) {
        self.since_walk = WALK_EVERY;
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
        let walk = self.since_walk >= WALK_EVERY;
        self.since_walk = if walk { 0 } else { self.since_walk + 1 };
        let request = PollRequest {
            release: std::mem::take(release),
            announced: std::mem::take(&mut self.announced),
            walk,
        };
        self.in_flight = self.requests.send(request).is_ok();
        self.in_flight
    }

    /// The running poll's result (`None` when the thread is gone).
    pub async fn result(&mut self) -> Option<PollResult> {
        let result = self.results.recv().await;
        self.in_flight = false;
        result
    }
}
