//! `observer relay --otlp-endpoint` and `--ui-listen`: the relay reads every node's flows
//! itself (one stream, as a client would) and publishes them to a hub of its own, which
//! the OTLP exporter subscribes to as it does in a node's daemon, and the console reads.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::RelayCounters;
use super::peers::PeerSet;
use super::service::plan;
use super::stream::relay_flows;
use crate::flow::FlowRecord;
use crate::hub::FlowHub;
use crate::wire::proto::get_flows_request::Start;
use crate::wire::proto::{GetFlowsRequest, get_flows_response::Event};

/// Starts [`feed`] into `hub` with counters of its own: its task, and what it counts.
pub fn start(
    peers: &Arc<PeerSet>,
    window: std::time::Duration,
    hub: &Arc<FlowHub>,
    from_oldest: bool,
) -> (tokio::task::JoinHandle<()>, Arc<RelayCounters>) {
    let counters = Arc::new(RelayCounters::default());
    let task = tokio::spawn(feed(
        Arc::clone(peers),
        window,
        Arc::clone(hub),
        Arc::clone(&counters),
        from_oldest,
    ));
    (task, counters)
}

/// Publishes every node's flows, merged, to `hub` until the peers are gone, from the
/// oldest each node holds or from the next; what the stream loses (a node no longer held
/// the flows) is counted in `counters`.
async fn feed(
    peers: Arc<PeerSet>,
    window: std::time::Duration,
    hub: Arc<FlowHub>,
    counters: Arc<RelayCounters>,
    from_oldest: bool,
) {
    let request = GetFlowsRequest {
        follow: true,
        start: from_oldest.then_some(Start::FromOldest(true)),
        ..GetFlowsRequest::default()
    };
    let Ok(plan) = plan(request, window) else {
        return;
    };
    let (tx, mut rx) = mpsc::channel(crate::api::server::STREAM_QUEUE);
    tokio::spawn(relay_flows(peers, plan, tx, Arc::clone(&counters)));
    let mut unreadable = 0u64;
    while let Some(message) = rx.recv().await {
        match message.ok().and_then(|m| m.event) {
            Some(Event::Flow(event)) => {
                let Some(flow) = event.flow else { continue };
                match FlowRecord::try_from(&flow) {
                    Ok(record) => hub.publish(vec![record]).await,
                    Err(e) => {
                        // Lost here: counted with the stream's losses, logged at the 1st,
                        // 2nd, 4th, 8th... so that a node of another version cannot flood.
                        unreadable += 1;
                        counters
                            .flows_lost
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if unreadable.is_power_of_two() {
                            tracing::warn!(
                                node = %flow.node_name,
                                cursor = event.cursor,
                                error = %e,
                                unreadable,
                                "a node sent a flow this relay cannot read; left out and counted lost"
                            );
                        }
                    }
                }
            }
            Some(Event::Lost(lost)) => tracing::warn!(
                node = %lost.node,
                first = lost.first_cursor,
                last = lost.last_cursor,
                "flows lost before the relay read them: the node no longer held them"
            ),
            _ => {}
        }
    }
}
