//! One node's part of a client's stream through the relay: a `GetFlows` stream to that
//! node's observer with the client's filters, its messages passed to the merge. A followed
//! stream that breaks is opened again right after the last cursor received, with backoff,
//! so a node that restarts or comes back loses nothing it still holds (and its observer
//! says what it no longer holds).

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::mpsc;

use super::merge::Slot;
use super::peers::Peer;
use crate::wire::proto::{
    FlowEvent, GetFlowsRequest, LostFlows, get_flows_request::Start, get_flows_response::Event,
    observer_client::ObserverClient,
};

/// How often a quiet node says how far it is (its `Progress`), in milliseconds: the most a
/// quiet node holds the others' flows back.
pub const PROGRESS_MS: u32 = 20;

/// Node events sent to the merge at once, at most.
const BATCH: usize = 128;

/// Backoff between attempts to open a node's stream.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(10));

/// What a node's reader tells the merge.
#[derive(Debug)]
pub enum NodeEvent {
    /// The node's name (before anything else).
    Named(String),
    /// Its stream is open (`true`) or broke and is being opened again (`false`).
    Live(bool),
    /// A flow, written at the time given (nanoseconds).
    Flow(Box<FlowEvent>, i64),
    /// Flows it no longer held.
    Lost(LostFlows),
    /// Everything up to this cursor was sent, and nothing it sends later was written
    /// before this time.
    Progress(u64, i64),
    /// Its stream ended (not following): nothing more comes.
    Ended,
    /// The node's run has not written the cursor the stream resumed after (its clock went
    /// back): it is read again from its oldest flow, and its position goes back to this.
    Reset(u64),
    /// It could not be read (not following): why.
    Unreachable(String),
}

/// Where a node's stream starts when nothing of it was received yet.
#[derive(Clone, Debug)]
pub enum FirstStart {
    /// As the client asked (unset: with the next flow).
    Asked(Option<Start>),
    /// From a token: after the node's cursor in it, or its oldest flow when it has none.
    Token(super::token::ClusterCursor),
}

/// What every node's stream of one client stream is asked.
#[derive(Clone, Debug)]
pub struct NodeRequest {
    /// The client's request (filters, window, follow); `start` is set per node.
    pub base: GetFlowsRequest,
    /// Where to start.
    pub first: FirstStart,
}

/// Reads `peer` for the merge at `slot` until the stream ends, the client goes away
/// (`events` closed), or, not following, it fails.
pub async fn read_node(
    peer: Arc<Peer>,
    slot: Slot,
    request: NodeRequest,
    events: mpsc::Sender<(Slot, Vec<NodeEvent>)>,
) {
    let follow = request.base.follow;
    let send = |event| {
        let events = events.clone();
        async move { events.send((slot, vec![event])).await.is_ok() }
    };
    // The node's name, from its status check.
    let mut said_down = false;
    let name = loop {
        if let Some(name) = peer.node_name() {
            break name;
        }
        // An observer that does not know its node's name is named by its address.
        if peer.checked() && peer.connected() {
            break peer.address.clone();
        }
        if peer.checked() && !peer.connected() {
            if !follow {
                let _ = send(NodeEvent::Unreachable(peer.last_error())).await;
                return;
            }
            // It holds no one back while it does not answer.
            if !said_down && !send(NodeEvent::Live(false)).await {
                return;
            }
            said_down = true;
        }
        tokio::select! {
            () = peer.changed() => {}
            () = events.closed() => return,
        }
    };
    if !send(NodeEvent::Named(name.clone())).await {
        return;
    }
    let mut after: Option<u64> = match &request.first {
        FirstStart::Token(cursor) => cursor.get(&name),
        FirstStart::Asked(Some(Start::AfterCursor(cursor))) => Some(*cursor),
        FirstStart::Asked(_) => None,
    };
    let mut first_start = match &request.first {
        FirstStart::Asked(start) => start.clone(),
        FirstStart::Token(_) => Some(Start::FromOldest(true)),
    };
    let mut backoff = BACKOFF.0;
    loop {
        let start = match after {
            Some(cursor) => Some(Start::AfterCursor(cursor)),
            None => first_start.clone(),
        };
        let node_request = GetFlowsRequest {
            start,
            progress_interval_ms: if follow { PROGRESS_MS } else { 0 },
            ..request.base.clone()
        };
        let mut client = ObserverClient::new(peer.channel.clone());
        let error = match client.get_flows(node_request).await {
            Ok(stream) => {
                if !send(NodeEvent::Live(true)).await {
                    return;
                }
                backoff = BACKOFF.0;
                let mut stream = stream.into_inner();
                // What is already received goes to the merge in one message: one channel
                // operation for a burst, not one per flow.
                let mut batch: Vec<NodeEvent> = Vec::new();
                loop {
                    let message = if batch.is_empty() {
                        tokio::select! {
                            message = stream.message() => message,
                            () = events.closed() => return,
                        }
                    } else {
                        match stream.message().now_or_never() {
                            Some(message) if batch.len() < BATCH => message,
                            ready => {
                                if events
                                    .send((slot, std::mem::take(&mut batch)))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                                match ready {
                                    Some(message) => message,
                                    None => continue,
                                }
                            }
                        }
                    };
                    let event = match message {
                        Ok(Some(message)) => message.event,
                        // A followed stream ends only when the node's observer stops:
                        // its next run is read from where this one stopped.
                        Ok(None) if follow => {
                            let _ = events.send((slot, std::mem::take(&mut batch))).await;
                            break "its observer ended the stream".to_owned();
                        }
                        Ok(None) => {
                            batch.push(NodeEvent::Ended);
                            let _ = events.send((slot, batch)).await;
                            return;
                        }
                        Err(status) => {
                            let _ = events.send((slot, std::mem::take(&mut batch))).await;
                            break format!("{}: {}", status.code(), status.message());
                        }
                    };
                    let event = match event {
                        Some(Event::Flow(flow)) => {
                            after = Some(flow.cursor);
                            let written = flow.written.map_or(0, nanos);
                            peer.received(written);
                            NodeEvent::Flow(Box::new(flow), written)
                        }
                        Some(Event::Lost(lost)) => {
                            after = Some(after.unwrap_or(0).max(lost.last_cursor));
                            NodeEvent::Lost(lost)
                        }
                        Some(Event::Progress(progress)) => {
                            if progress.through_cursor > 0 {
                                after = Some(after.unwrap_or(0).max(progress.through_cursor));
                            }
                            let through = progress.written_through.map_or(0, nanos);
                            NodeEvent::Progress(progress.through_cursor, through)
                        }
                        None => continue,
                    };
                    batch.push(event);
                }
            }
            Err(status) if status.code() == tonic::Code::OutOfRange && after.is_some() => {
                // A cursor this node's run has not written (its clock went back): read
                // what it holds.
                tracing::warn!(node = %name, "{}; reading from its oldest flow", status.message());
                after = None;
                if !send(NodeEvent::Reset(0)).await {
                    return;
                }
                first_start = Some(Start::FromOldest(true));
                continue;
            }
            Err(status) => format!("{}: {}", status.code(), status.message()),
        };
        if !follow {
            let _ = send(NodeEvent::Unreachable(error)).await;
            return;
        }
        tracing::warn!(node = %name, %error, "a node's stream broke; opening it again");
        if !send(NodeEvent::Live(false)).await {
            return;
        }
        // `first` and `last` were for the first stream; what follows resumes.
        if after.is_none() && matches!(first_start, Some(Start::Last(_) | Start::First(_))) {
            first_start = None;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = events.closed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// A node's timestamp in nanoseconds since the epoch (saturating: it comes from outside).
fn nanos(t: prost_types::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(t.nanos))
}
