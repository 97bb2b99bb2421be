//! The relay's `Observer` service: the same API as a node's, answered from every node's.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::RelayCounters;
use super::peers::PeerSet;
use super::reader::{FirstStart, NodeRequest};
use super::stream::{RelayPlan, relay_flows};
use super::token::ClusterCursor;
use crate::api::filter::Selection;
use crate::api::server::{MAX_REQUEST_BYTES, STREAM_QUEUE, progress_interval, stream_permit};
use crate::api::start::time;
use crate::wire::proto::{
    self, GetFlowsRequest, GetFlowsResponse, GetLearningRequest, GetSuggestionsRequest,
    GetSuggestionsResponse, Learning, ServerStatusRequest, ServerStatusResponse,
    get_flows_request::Start, observer_server::ObserverServer,
};

/// The relay's service.
#[derive(Debug, Clone)]
pub struct RelayService {
    peers: Arc<PeerSet>,
    counters: Arc<RelayCounters>,
    streams: Arc<Semaphore>,
    max_streams: usize,
    window: std::time::Duration,
    started: std::time::Instant,
}

impl RelayService {
    /// Serves `peers`' flows, merged within `window`, to at most `max_streams` streams.
    pub fn new(
        peers: Arc<PeerSet>,
        counters: Arc<RelayCounters>,
        window: std::time::Duration,
        max_streams: usize,
    ) -> Self {
        Self {
            peers,
            counters,
            streams: Arc::new(Semaphore::new(max_streams)),
            max_streams,
            window,
            started: std::time::Instant::now(),
        }
    }

    /// As a tonic service.
    pub fn into_server(self) -> ObserverServer<Self> {
        ObserverServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES)
    }
}

type FlowStream = ReceiverStream<Result<GetFlowsResponse, Status>>;

/// What a relay's stream plan is made of, checked: every value a node would refuse is
/// refused here, before any node is asked.
pub fn plan(request: GetFlowsRequest, window: std::time::Duration) -> Result<RelayPlan, Status> {
    let _since = time(
        "since",
        request.since.as_ref().map(|t| (t.seconds, t.nanos)),
    )?;
    let until = time(
        "until",
        request.until.as_ref().map(|t| (t.seconds, t.nanos)),
    )?;
    Selection::compile(&request.allow, &request.deny)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let progress = progress_interval(request.progress_interval_ms)?;
    let (first, cursor, limit, last) = match &request.start {
        Some(Start::Last(0) | Start::First(0)) => {
            return Err(Status::invalid_argument(
                "last and first count flows: 0 selects none; ask for at least 1",
            ));
        }
        Some(Start::AfterCursor(_)) => {
            return Err(Status::invalid_argument(
                "after_cursor is one node's cursor, and this is a relay: resume with \
                 after_token (each flow through a relay carries its token)",
            ));
        }
        Some(Start::AfterToken(token)) => {
            let cursor = ClusterCursor::decode(token)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            (FirstStart::Token(cursor.clone()), cursor, None, None)
        }
        Some(Start::First(n)) => (
            FirstStart::Asked(request.start.clone()),
            ClusterCursor::default(),
            Some(*n),
            None,
        ),
        Some(Start::Last(n)) => (
            FirstStart::Asked(request.start.clone()),
            ClusterCursor::default(),
            None,
            Some(*n),
        ),
        start => (
            FirstStart::Asked(start.clone()),
            ClusterCursor::default(),
            None,
            None,
        ),
    };
    // As a node does: `first` and `until` end the stream.
    let follow = request.follow && limit.is_none() && until.is_none();
    let base = GetFlowsRequest {
        start: None,
        follow,
        progress_interval_ms: 0,
        ..request
    };
    Ok(RelayPlan {
        request: NodeRequest { base, first },
        cursor,
        window,
        limit,
        last,
        progress: progress.filter(|_| follow),
    })
}

#[tonic::async_trait]
impl proto::observer_server::Observer for RelayService {
    type GetFlowsStream = FlowStream;

    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<FlowStream>, Status> {
        let permit = stream_permit(&self.streams, self.max_streams, "relay")?;
        let plan = plan(request.into_inner(), self.window)?;
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let peers = Arc::clone(&self.peers);
        let counters = Arc::clone(&self.counters);
        counters.subscribers.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            relay_flows(peers, plan, tx, Arc::clone(&counters)).await;
            counters.subscribers.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn server_status(
        &self,
        _: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        let nodes = self.peers.connections();
        Ok(Response::new(ServerStatusResponse {
            flows_published: self.counters.flows_sent.load(Ordering::Relaxed),
            subscribers: self.counters.subscribers.load(Ordering::Relaxed),
            flows_lost_to_subscribers: self.counters.flows_lost.load(Ordering::Relaxed),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds: self.started.elapsed().as_secs(),
            ready: nodes.iter().any(|n| n.connected),
            nodes,
            ..ServerStatusResponse::default()
        }))
    }

    type WatchSuggestionsStream = ReceiverStream<Result<GetSuggestionsResponse, Status>>;

    async fn watch_suggestions(
        &self,
        request: Request<GetSuggestionsRequest>,
    ) -> Result<Response<Self::WatchSuggestionsStream>, Status> {
        // A watch counts as a stream, like a flow stream.
        let permit = stream_permit(&self.streams, self.max_streams, "relay")?;
        Ok(Response::new(super::suggestions::watch(
            Arc::clone(&self.peers),
            request.into_inner(),
            permit,
        )))
    }

    /// Every connected node's learning, merged: each node makes the suggestions from all
    /// of it and proves them against its own flows; the figures are summed.
    async fn get_suggestions(
        &self,
        request: Request<GetSuggestionsRequest>,
    ) -> Result<Response<GetSuggestionsResponse>, Status> {
        super::suggestions::merged(&self.peers, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_learning(
        &self,
        _: Request<GetLearningRequest>,
    ) -> Result<Response<Learning>, Status> {
        Err(Status::unimplemented(
            "a relay learns nothing itself: GetSuggestions through it merges every node's \
             learning",
        ))
    }
}
