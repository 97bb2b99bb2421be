//! One client's stream through the relay: a reader per node observer (`reader.rs`), their
//! flows merged by the time they were written (`merge.rs`), each sent with the token that
//! resumes right after it (`token.rs`).
//!
//! Memory is bounded per client: the readers' shared queue, and the merge's bound per
//! node. A slow client holds its readers back, and so the nodes' streams: a node whose
//! ring overwrites what the client has not read says so, and the client gets that node's
//! `LostFlows`, exact to the cursor.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::Status;

use super::RelayCounters;
use super::merge::{Merge, Slot};
use super::peers::{Peer, PeerSet};
use super::reader::{FirstStart, NodeEvent, NodeRequest, read_node};
use super::token::{ClusterCursor, node_id};
use crate::wire::proto::{
    GetFlowsResponse, LostFlows, Progress, get_flows_response::Event, lost_flows::Reason,
};

/// Batches of node events queued from all readers of one stream (each at most
/// `reader::BATCH` events: about 1,000 flows in all).
const EVENTS: usize = 8;
/// Items the merge holds per node at most.
const MERGE_BOUND: usize = 4096;

/// What one client stream asks of the relay.
#[derive(Debug)]
pub struct RelayPlan {
    /// What each node is asked, and where the client's token starts.
    pub request: NodeRequest,
    /// The token the stream starts from (empty when none).
    pub cursor: ClusterCursor,
    /// The merge window.
    pub window: Duration,
    /// `first`: at most this many flows.
    pub limit: Option<u64>,
    /// `last`: the newest this many of what the nodes hold, then new ones.
    pub last: Option<u64>,
    /// The client's own `Progress` interval.
    pub progress: Option<Duration>,
}

/// One item of a node's, in the merge.
#[derive(Debug)]
enum Item {
    Flow(Box<crate::wire::proto::FlowEvent>),
    Lost(LostFlows),
    Progress(u64),
}

/// A node's place in this stream.
struct Node {
    peer: Arc<Peer>,
    name: Option<String>,
    /// Its id in tokens, once named.
    id: u64,
    reader: JoinHandle<()>,
    /// Last written time seen, for ordering its gaps.
    last_written: i64,
    /// The cursor its reader has passed (flows, gaps, progress), merged or not yet.
    received_through: u64,
    /// Its backlog (`last`) is complete: it said progress, ended, or failed.
    caught_up: bool,
    done: bool,
    /// Its reader was stopped (the peer left): events it had queued are dropped, so that
    /// a stale `Live` cannot revive the slot and a reader that replaces it reads them
    /// again, once.
    superseded: bool,
}

/// The state of one client stream.
struct RelayStream {
    plan: RelayPlan,
    /// Every node this stream read, by slot (a node that left keeps its slot).
    nodes: Vec<Node>,
    /// The slot of each peer's latest reader, by address.
    slots: BTreeMap<String, Slot>,
    merge: Merge<Item>,
    position: ClusterCursor,
    events: mpsc::Sender<(Slot, Vec<NodeEvent>)>,
    tx: mpsc::Sender<Result<GetFlowsResponse, Status>>,
    counters: Arc<RelayCounters>,
    sent: u64,
    /// `last`: while the backlog is gathered, the newest this many flows per node.
    backlog_limit: Option<u64>,
}

/// Sends the client its merged flows until it goes away, or, not following, every node's
/// stream ended.
pub async fn relay_flows(
    peers: Arc<PeerSet>,
    plan: RelayPlan,
    tx: mpsc::Sender<Result<GetFlowsResponse, Status>>,
    counters: Arc<RelayCounters>,
) {
    let (events, mut incoming) = mpsc::channel(EVENTS);
    let window_ns = i64::try_from(plan.window.as_nanos()).unwrap_or(i64::MAX);
    let position = plan.cursor.clone();
    let mut stream = RelayStream {
        plan,
        nodes: Vec::new(),
        slots: BTreeMap::new(),
        merge: Merge::new(window_ns, MERGE_BOUND),
        position,
        events,
        tx,
        counters,
        sent: 0,
        backlog_limit: None,
    };
    let mut list = peers.watch();
    let first: Vec<Arc<Peer>> = list.borrow_and_update().clone();
    for peer in first {
        stream.add(peer, false);
    }
    let follow = stream.plan.request.base.follow;
    let mut backlog = stream.plan.last;
    stream.backlog_limit = backlog;
    // A node that never answers does not hold `last` back for long.
    let backlog_until =
        tokio::time::Instant::now() + stream.plan.window.max(Duration::from_secs(2));
    let mut progress_at = stream
        .plan
        .progress
        .map(|every| tokio::time::Instant::now() + every);
    loop {
        let backlog_complete = stream.nodes.iter().all(|n| n.caught_up)
            || tokio::time::Instant::now() >= backlog_until;
        if backlog_complete && let Some(n) = backlog.take() {
            stream.backlog_limit = None;
            if stream.release_newest(n).await.is_err() {
                return;
            }
        }
        if backlog.is_none() && stream.release(monotonic_ns()).await.is_err() {
            return;
        }
        if stream.plan.limit.is_some_and(|limit| stream.sent >= limit) {
            return;
        }
        if stream.nodes.iter().all(|n| n.done) && stream.merge.is_empty() && !follow {
            return;
        }
        let deadline = stream
            .merge
            .next_deadline()
            .filter(|_| backlog.is_none())
            .map(|d| {
                let wait = u64::try_from(d.saturating_sub(monotonic_ns()).max(0)).unwrap_or(0);
                tokio::time::Instant::now() + Duration::from_nanos(wait)
            });
        tokio::select! {
            event = incoming.recv() => match event {
                Some((slot, events)) => {
                    for event in events {
                        stream.handle(slot, event);
                    }
                }
                None => return,
            },
            changed = list.changed(), if follow => {
                if changed.is_err() {
                    return;
                }
                let now: Vec<Arc<Peer>> = list.borrow_and_update().clone();
                stream.update_peers(now);
            }
            () = sleep_until(deadline) => {}
            () = sleep_until(backlog.map(|_| backlog_until)) => {}
            () = sleep_until(progress_at) => {
                if stream.merge.is_empty() && backlog.is_none() && stream.say_progress().await.is_err() {
                    return;
                }
                progress_at = stream.plan.progress.map(|every| tokio::time::Instant::now() + every);
            }
            () = stream.tx.closed() => return,
        }
    }
}

/// Nanoseconds since the relay started, on the monotonic clock: arrivals and the merge
/// window are timed with it (a wall clock that steps would hold or release items early).
fn monotonic_ns() -> i64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = ORIGIN.get_or_init(std::time::Instant::now);
    i64::try_from(origin.elapsed().as_nanos()).unwrap_or(i64::MAX)
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl RelayStream {
    /// Starts reading `peer`; `joined`: it joined after the stream started, so it is read
    /// from its oldest flow (all of it is new to this client).
    fn add(&mut self, peer: Arc<Peer>, joined: bool) {
        let slot = self.merge.add_node();
        let mut request = self.plan.request.clone();
        if joined {
            // A node new to this stream is read from its oldest flow; one that left and
            // came back, right after what this stream received from it (delivered, or
            // still in the merge), so nothing comes twice.
            let mut resume = self.position.clone();
            if let Some(previous) = self.slots.get(&peer.address).map(|s| &self.nodes[*s])
                && previous.id != 0
            {
                resume.advance_id(previous.id, previous.received_through);
            }
            request.first = FirstStart::Token(resume);
        }
        let reader = tokio::spawn(read_node(
            Arc::clone(&peer),
            slot,
            request,
            self.events.clone(),
        ));
        self.nodes.push(Node {
            peer: Arc::clone(&peer),
            name: None,
            id: 0,
            reader,
            last_written: 0,
            received_through: 0,
            caught_up: false,
            done: false,
            superseded: false,
        });
        self.slots.insert(peer.address.clone(), slot);
    }

    /// Readers for peers that joined; those that left stop (what they sent still goes).
    fn update_peers(&mut self, peers: Vec<Arc<Peer>>) {
        for (slot, node) in self.nodes.iter_mut().enumerate() {
            if !node.done && !peers.iter().any(|p| p.address == node.peer.address) {
                node.reader.abort();
                node.done = true;
                node.superseded = true;
                node.caught_up = true;
                self.merge.set_live(slot, false);
            }
        }
        for peer in peers {
            let reading = self
                .slots
                .get(&peer.address)
                .is_some_and(|slot| !self.nodes[*slot].done);
            if !reading {
                self.add(peer, true);
            }
        }
    }

    /// Takes one reader's event into the merge.
    fn handle(&mut self, slot: Slot, event: NodeEvent) {
        let now = monotonic_ns();
        let Some(node) = self.nodes.get_mut(slot) else {
            return;
        };
        if node.superseded {
            return;
        }
        match event {
            NodeEvent::Reset(_) => {
                // The node's run has not written the cursor the stream held (its clock
                // went back): its flows are read again from its oldest, and so would a
                // resume.
                self.position.forget_id(node.id);
                node.received_through = 0;
            }
            NodeEvent::Named(name) => {
                node.id = node_id(&name);
                node.name = Some(name);
            }
            NodeEvent::Live(live) => self.merge.set_live(slot, live),
            NodeEvent::Flow(flow, written) => {
                node.last_written = node.last_written.max(written);
                node.received_through = node.received_through.max(flow.cursor);
                let id = node.id;
                self.merge.push(slot, written, now, Item::Flow(flow));
                // `last`: a node's backlog beyond the newest n flows would be passed over
                // anyway; it is passed over now, so the backlog's memory stays bounded.
                if let Some(n) = self.backlog_limit {
                    let keep = usize::try_from(n).unwrap_or(usize::MAX);
                    let passed = self
                        .merge
                        .trim_front(slot, keep, |item| matches!(item, Item::Flow(_)));
                    for item in passed {
                        if let Item::Flow(flow) = item {
                            self.position.advance_id(id, flow.cursor);
                        }
                    }
                }
            }
            NodeEvent::Lost(lost) => {
                node.received_through = node.received_through.max(lost.last_cursor);
                let at = node.last_written;
                self.merge.push(slot, at, now, Item::Lost(lost));
            }
            NodeEvent::Progress(through, written_through) => {
                node.caught_up = true;
                node.received_through = node.received_through.max(through);
                node.last_written = node.last_written.max(written_through);
                self.merge.progress(slot, written_through);
                self.merge
                    .push(slot, written_through, now, Item::Progress(through));
            }
            NodeEvent::Ended => {
                node.done = true;
                node.caught_up = true;
                self.merge.set_live(slot, false);
            }
            NodeEvent::Unreachable(error) => {
                node.done = true;
                node.caught_up = true;
                let name = node
                    .name
                    .clone()
                    .unwrap_or_else(|| node.peer.address.clone());
                tracing::warn!(node = %name, %error, "a node could not be read for a stream");
                self.merge.set_live(slot, false);
                let lost = LostFlows {
                    reason: Reason::NodeUnreachable as i32,
                    node: name,
                    ..LostFlows::default()
                };
                self.merge.push(slot, 0, now, Item::Lost(lost));
            }
        }
    }

    /// Its name, or its address while it has not said its name.
    fn name_of(&self, slot: Slot) -> String {
        self.nodes
            .get(slot)
            .map(|n| n.name.clone().unwrap_or_else(|| n.peer.address.clone()))
            .unwrap_or_default()
    }

    /// Its id in tokens (0: not named yet, so it has sent nothing to advance).
    fn id_of(&self, slot: Slot) -> u64 {
        self.nodes.get(slot).map_or(0, |n| n.id)
    }

    /// Sends what the merge releases at `now`.
    async fn release(&mut self, now: i64) -> Result<(), ()> {
        while let Some((slot, item)) = self.merge.pop(now) {
            self.emit(slot, item).await?;
            if self.plan.limit.is_some_and(|limit| self.sent >= limit) {
                break;
            }
        }
        Ok(())
    }

    /// `last`: of every node's backlog, the newest `n` flows are sent (the older ones are
    /// passed over), gaps always.
    async fn release_newest(&mut self, n: u64) -> Result<(), ()> {
        let mut items = Vec::new();
        while let Some(entry) = self.merge.pop(i64::MAX) {
            items.push(entry);
        }
        let flows = items
            .iter()
            .filter(|(_, item)| matches!(item, Item::Flow(_)))
            .count() as u64;
        let mut skip = flows.saturating_sub(n);
        for (slot, item) in items {
            if skip > 0
                && let Item::Flow(flow) = &item
            {
                skip -= 1;
                self.position.advance_id(self.id_of(slot), flow.cursor);
                continue;
            }
            self.emit(slot, item).await?;
        }
        Ok(())
    }

    /// Sends one item with its token.
    async fn emit(&mut self, slot: Slot, item: Item) -> Result<(), ()> {
        let id = self.id_of(slot);
        let event = match item {
            Item::Flow(mut flow) => {
                self.position.advance_id(id, flow.cursor);
                flow.token = self.position.encode();
                self.sent += 1;
                self.counters.flows_sent.fetch_add(1, Ordering::Relaxed);
                Event::Flow(*flow)
            }
            Item::Lost(mut lost) => {
                if lost.reason != Reason::NodeUnreachable as i32 {
                    self.position.advance_id(id, lost.last_cursor);
                }
                // Counted where the count is known: an earlier run's cursors are not
                // flows (how many it wrote after them is unknown).
                if lost.reason == Reason::Overwritten as i32 {
                    let flows = lost
                        .matching_flows
                        .unwrap_or(lost.last_cursor.saturating_sub(lost.first_cursor) + 1);
                    self.counters.flows_lost.fetch_add(flows, Ordering::Relaxed);
                }
                if lost.node.is_empty() {
                    lost.node = self.name_of(slot);
                }
                Event::Lost(lost)
            }
            // Everything of this node's before it has been sent (its queue is in order).
            Item::Progress(through) => {
                if through > 0 {
                    self.position.advance_id(id, through);
                }
                return Ok(());
            }
        };
        self.tx
            .send(Ok(GetFlowsResponse { event: Some(event) }))
            .await
            .map_err(|_| ())
    }

    /// The client's own `Progress`: the token as of now.
    async fn say_progress(&mut self) -> Result<(), ()> {
        let progress = Progress {
            through_cursor: 0,
            written_through: None,
            token: self.position.encode(),
        };
        self.tx
            .send(Ok(GetFlowsResponse {
                event: Some(Event::Progress(progress)),
            }))
            .await
            .map_err(|_| ())
    }
}

impl Drop for RelayStream {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.reader.abort();
        }
    }
}
