//! One flow stream: read from the hub (the flow ring, or the violations' retention) after
//! its cursor, filtered, gaps told as `LostFlows`, until the client goes away or its end.

use std::sync::Arc;

use observer_api::vocab::Timestamp;
use tokio::sync::mpsc;
use tonic::Status;

use super::filter::Selection;
use crate::hub::{FlowHub, Gap, Read, Source, Span, SubscriberGuard, write_clock_ns};
use crate::wire::proto::{
    FlowEvent, GetFlowsResponse, LostFlows, Progress, get_flows_response::Event, lost_flows::Reason,
};

/// Flows read from the hub at a time.
const READ_BATCH: usize = 256;

/// What one stream sends: from which source, which flows, from where to where.
pub(super) struct StreamPlan {
    pub(super) source: Source,
    pub(super) selection: Selection,
    pub(super) span: Span,
    pub(super) follow: bool,
    /// At most this many flows (`first`).
    pub(super) limit: Option<u64>,
    /// Say `Progress` when caught up, and every this often while idle.
    pub(super) progress: Option<std::time::Duration>,
}

/// Sends one subscriber its flows after `span.after` until the client goes away, or,
/// without `follow`, up to `span.end`, or the hub closes and what is left is sent.
pub(super) async fn stream_flows(
    hub: Arc<FlowHub>,
    _subscriber: SubscriberGuard,
    plan: StreamPlan,
    tx: mpsc::Sender<Result<GetFlowsResponse, Status>>,
) {
    let StreamPlan {
        source,
        selection,
        span,
        follow,
        limit,
        progress,
    } = plan;
    let mut wake = hub.watch();
    // Whether a flow or gap was sent since the last Progress (the first is due at once).
    let mut progress_due = true;
    let mut after = span.after;
    let mut left = limit.unwrap_or(u64::MAX);
    // Without `follow`, nothing at or past the end is due (not even as a gap).
    let last_due = if follow { u64::MAX } else { span.end - 1 };
    loop {
        if after >= last_due {
            return;
        }
        // Taken before the read: every flow written before it is in this read or an
        // earlier one (a Progress says so).
        let read_at = write_clock_ns();
        let Read {
            batch,
            through,
            violations_lost,
        } = hub.read(source, after, READ_BATCH, last_due);
        for gap in batch.lost {
            let (range, reason) = match gap {
                Gap::Overwritten(range) => (range, Reason::Overwritten),
                Gap::EarlierRun(range) => (range, Reason::EarlierRun),
            };
            let (first, last) = (*range.start(), (*range.end()).min(last_due));
            if first > last {
                return;
            }
            // A violations stream knows how many violations it lost; another stream
            // knows only the cursors.
            let matching = violations_lost.filter(|_| reason == Reason::Overwritten);
            let lost = LostFlows {
                first_cursor: first,
                last_cursor: last,
                reason: reason as i32,
                matching_flows: matching,
                node: String::new(),
            };
            if send(&tx, Event::Lost(lost)).await.is_err() {
                return;
            }
            progress_due = true;
            if reason == Reason::Overwritten {
                hub.count_lost(matching.unwrap_or(last - first + 1));
            }
            after = last;
        }
        let read = batch.items.len();
        for (cursor, published) in batch.items {
            if cursor > last_due {
                return;
            }
            after = cursor;
            if selection.matches(&published.record) {
                let (seconds, nanos) = Timestamp(published.written_ns).to_parts();
                let flow = FlowEvent {
                    cursor,
                    flow: Some(published.wire().clone()),
                    written: Some(prost_types::Timestamp { seconds, nanos }),
                    token: String::new(),
                };
                if send(&tx, Event::Flow(flow)).await.is_err() {
                    return;
                }
                progress_due = true;
                left -= 1;
                if left == 0 {
                    return;
                }
            }
        }
        // Past the flows between violations too: they are not this stream's.
        after = after.max(through.min(last_due));
        if tx.is_closed() {
            return;
        }
        if read == READ_BATCH {
            // More to read: let other tasks run between batches.
            tokio::task::yield_now().await;
            continue;
        }
        // Caught up.
        let (next, closed) = *wake.borrow_and_update();
        if next.saturating_sub(1) > after {
            continue;
        }
        if !follow || closed {
            return;
        }
        let Some(interval) = progress else {
            // A client that went away is noticed here too, not only by a failed send: a
            // filter that rarely matches would otherwise keep its stream alive.
            tokio::select! {
                changed = wake.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
            continue;
        };
        if progress_due {
            let (seconds, nanos) = Timestamp(read_at).to_parts();
            let progress = Progress {
                through_cursor: after,
                written_through: Some(prost_types::Timestamp { seconds, nanos }),
                token: String::new(),
            };
            if send(&tx, Event::Progress(progress)).await.is_err() {
                return;
            }
            progress_due = false;
        }
        tokio::select! {
            changed = wake.changed() => if changed.is_err() { return },
            () = tx.closed() => return,
            () = tokio::time::sleep(interval) => progress_due = true,
        }
    }
}

async fn send(tx: &mpsc::Sender<Result<GetFlowsResponse, Status>>, event: Event) -> Result<(), ()> {
    tx.send(Ok(GetFlowsResponse { event: Some(event) }))
        .await
        .map_err(|_| ())
}
