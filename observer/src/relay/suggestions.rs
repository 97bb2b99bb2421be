//! Suggestions through the relay: every connected node's learning merged, each node making
//! the suggestions from all of it and proving them against the flows it holds (the
//! figures summed); watched by asking again every interval and sending what changed.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::transport::Channel;

use super::peers::PeerSet;
use crate::api::server::MAX_REQUEST_BYTES;
use crate::api::suggestions::{check_interval, watch_changes};
use crate::wire::proto::{
    GetLearningRequest, GetSuggestionsRequest, GetSuggestionsResponse, WorkloadSuggestion,
    observer_client::ObserverClient,
};

/// The connected nodes, by name (their address until they said it), as clients.
fn connected(peers: &PeerSet) -> Vec<(String, ObserverClient<Channel>)> {
    peers
        .watch()
        .borrow()
        .iter()
        .filter(|p| p.connected())
        .map(|p| {
            let name = p.node_name().unwrap_or_else(|| p.address.clone());
            let client =
                ObserverClient::new(p.channel.clone()).max_decoding_message_size(MAX_REQUEST_BYTES);
            (name, client)
        })
        .collect()
}

fn from_node(name: &str) -> impl Fn(Status) -> Status + '_ {
    move |s| Status::new(s.code(), format!("node {name}: {}", s.message()))
}

/// The suggestions from every connected node's learning (or the request's own `learned`),
/// the first node's policies with every node's proof summed.
pub async fn merged(
    peers: &PeerSet,
    mut request: GetSuggestionsRequest,
) -> Result<GetSuggestionsResponse, Status> {
    let mut nodes = connected(peers);
    if nodes.is_empty() {
        return Err(Status::unavailable("no node observer is connected"));
    }
    if request.learned.is_empty() {
        for (name, client) in &mut nodes {
            let learning = client
                .get_learning(GetLearningRequest {})
                .await
                .map_err(from_node(name))?
                .into_inner();
            request.learned.push(learning.state);
        }
    }
    let size: usize = request.learned.iter().map(Vec::len).sum();
    if size > MAX_REQUEST_BYTES {
        return Err(Status::resource_exhausted(format!(
            "the {} nodes' learning takes {size} bytes, more than a request may carry \
             ({MAX_REQUEST_BYTES}): ask the nodes with observer suggest --server",
            nodes.len()
        )));
    }
    let mut merged: Option<GetSuggestionsResponse> = None;
    for (name, client) in &mut nodes {
        let answer = client
            .get_suggestions(request.clone())
            .await
            .map_err(from_node(name))?
            .into_inner();
        match merged.as_mut() {
            None => merged = Some(answer),
            Some(first) => {
                let (sum, more) = (
                    first.summary.get_or_insert_default(),
                    answer.summary.unwrap_or_default(),
                );
                sum.flows_checked += more.flows_checked;
                sum.flows_allowed += more.flows_allowed;
                sum.flows_denied_by_declared += more.flows_denied_by_declared;
                sum.newly_denied_pairs = sum.newly_denied_pairs.max(more.newly_denied_pairs);
            }
        }
    }
    merged.ok_or_else(|| Status::unavailable("no node observer is connected"))
}

/// What a suggestion allows and its stability, not its evidence (which grows with every
/// flow): a watch sends a suggestion again when this changes.
fn fingerprint(suggestion: &WorkloadSuggestion) -> u64 {
    let mut bare = suggestion.clone();
    bare.yaml.clear();
    for rule in &mut bare.rules {
        rule.evidence = None;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bare.encode_to_vec().hash(&mut hasher);
    hasher.finish()
}

/// `WatchSuggestions` through the relay: everything first, then each interval the
/// suggestions whose policy or stability changed, with the summary.
pub fn watch(
    peers: Arc<PeerSet>,
    request: GetSuggestionsRequest,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> ReceiverStream<Result<GetSuggestionsResponse, Status>> {
    let every = check_interval(request.check_interval_ms);
    watch_changes(every, permit, move || {
        let (peers, request) = (Arc::clone(&peers), request.clone());
        async move {
            let answer = merged(&peers, request).await?;
            let suggestions = answer
                .suggestions
                .into_iter()
                .map(|s| {
                    let print = fingerprint(&s);
                    (s, print)
                })
                .collect();
            Ok((suggestions, answer.summary.unwrap_or_default()))
        }
    })
}
