//! `GET /api/violations`: the violations as Server-Sent Events, read from the hub's own
//! retention of violations (allowed flows never push them out), each under its cursor as
//! the event id, so a browser that reconnects (or a page that paused) resumes exactly
//! where it was. Violations no longer held are told as one `lost` event and counted as a
//! subscriber's loss, like a gRPC stream's. A client that goes away ends the task as soon
//! as the server sees its connection close (or at the next write or keep-alive); one that
//! stops reading, after [`WRITE_TIMEOUT`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::explain::explain;
use super::server::Body;
use super::service_map::verdict_of;
use crate::hub::{FlowHub, Gap, Read, Source};

/// Violations read from the hub at once.
const READ_BATCH: usize = 256;
/// Events queued for a client; beyond, the stream waits (the hub keeps what it waits for).
const QUEUE: usize = 64;
/// A comment this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A client that takes no event for this long (it stopped reading) loses its stream, and
/// its slot goes to another.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The stream of violations after cursor `after`. `permit` is held while it lasts.
pub fn stream(hub: Arc<FlowHub>, after: u64, permit: OwnedSemaphorePermit) -> Body {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        let _permit = permit;
        let _subscriber = hub.subscriber();
        follow(&hub, after, &tx).await;
    });
    StreamBody::new(ReceiverStream::new(rx)).boxed()
}

type Events = mpsc::Sender<Result<Frame<Bytes>, Infallible>>;

async fn send(tx: &Events, text: String) -> Result<(), ()> {
    match tokio::time::timeout(WRITE_TIMEOUT, tx.send(Ok(Frame::data(Bytes::from(text))))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

async fn follow(hub: &FlowHub, mut after: u64, tx: &Events) {
    let mut wake = hub.watch();
    // The browser's reconnection delay, should the connection drop.
    if send(tx, "retry: 2000\n\n".to_owned()).await.is_err() {
        return;
    }
    loop {
        let Read {
            batch,
            through,
            violations_lost,
        } = hub.read(Source::Violations, after, READ_BATCH, u64::MAX);
        for gap in batch.lost {
            let (range, overwritten) = match gap {
                Gap::Overwritten(range) => (range, true),
                Gap::EarlierRun(range) => (range, false),
            };
            let lost = if overwritten { violations_lost } else { None };
            let data = serde_json::json!({
                "violations": lost,
                "after": range.start().saturating_sub(1),
                "through": range.end(),
                "reason": if overwritten { "overwritten" } else { "earlier_run" },
            });
            if send(
                tx,
                format!("event: lost\nid: {}\ndata: {data}\n\n", range.end()),
            )
            .await
            .is_err()
            {
                return;
            }
            if overwritten {
                hub.count_lost(lost.unwrap_or(range.end() - range.start() + 1));
            }
            after = *range.end();
        }
        let read = batch.items.len();
        for (cursor, published) in batch.items {
            let record = &published.record;
            let data = serde_json::json!({
                "cursor": cursor,
                "record": record,
                "verdict": verdict_of(record),
                "explanation": explain(record.policy.as_ref()),
            });
            if send(
                tx,
                format!("event: violation\nid: {cursor}\ndata: {data}\n\n"),
            )
            .await
            .is_err()
            {
                return;
            }
            after = cursor;
        }
        after = after.max(through);
        if read == READ_BATCH {
            tokio::task::yield_now().await;
            continue;
        }
        let (next, closed) = *wake.borrow_and_update();
        if next.saturating_sub(1) > after {
            continue;
        }
        if closed {
            return;
        }
        tokio::select! {
            changed = wake.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(KEEP_ALIVE) => {
                if send(tx, ": keep-alive\n\n".to_owned()).await.is_err() {
                    return;
                }
            }
            () = tx.closed() => return,
        }
    }
}
