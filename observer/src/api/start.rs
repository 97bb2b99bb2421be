//! Where a flow stream starts and what time window it covers: the last N flows that
//! match a subscriber's filters (not merely the last N held), and the request's time
//! bounds checked.

use tonic::Status;

use super::filter::Selection;
use crate::flow::Timestamp;
use crate::hub::{FlowHub, Source, Span};

/// Flows read at a time while looking back.
const BATCH: usize = 1024;

/// The cursor before the earliest of the newest `n` held flows `selection` passes (of
/// those after `span.after` and before `span.end`; all of them when fewer match), read
/// back from the newest in batches so that the hub's lock is held only to copy pointers.
pub(super) fn last_matching(
    hub: &FlowHub,
    source: Source,
    selection: &Selection,
    span: Span,
    n: u64,
) -> u64 {
    if source == Source::Violations {
        // At most the retention's size: read at once.
        let batch = hub.read(source, span.after, usize::MAX, span.end).batch;
        let mut matching = batch
            .items
            .iter()
            .rev()
            .filter(|(cursor, p)| *cursor < span.end && selection.matches(&p.record));
        return match matching.nth(usize::try_from(n.max(1) - 1).unwrap_or(usize::MAX)) {
            Some((cursor, _)) => cursor - 1,
            None => span.after,
        };
    }
    let oldest = span.after + 1;
    let (mut before, mut found) = (span.end, 0);
    while before > oldest {
        let from = before.saturating_sub(BATCH as u64).max(oldest);
        let batch = hub.read_after(from - 1, (before - from) as usize);
        for (cursor, published) in batch.items.iter().rev() {
            if *cursor < before && selection.matches(&published.record) {
                found += 1;
                if found == n {
                    return cursor - 1;
                }
            }
        }
        before = from;
    }
    span.after
}

/// A request's time bound (seconds, nanoseconds), refused when it is not a valid time.
pub(crate) fn time(field: &str, t: Option<(i64, i32)>) -> Result<Option<Timestamp>, Status> {
    t.map(|(seconds, nanos)| {
        Timestamp::from_parts(seconds, nanos).ok_or_else(|| {
            Status::invalid_argument(format!("{field}: {seconds}s {nanos}ns is not a time"))
        })
    })
    .transpose()
}
