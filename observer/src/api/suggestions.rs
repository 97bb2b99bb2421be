//! `GetSuggestions`: the daemon's learned edges (or the merged learning of several
//! observers a client passes) turned into suggestions with the current cluster view, in the
//! format asked for, proven against the flows the hub holds (`crate::suggest::report`);
//! `GetLearning`: the learned edges as bytes, for merging.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::suggestion_wire::workload_suggestion;
use crate::cluster::view::ClusterView;
use crate::flow::{FlowRecord, Timestamp};
use crate::hub::FlowHub;
use crate::suggest::calico::CalicoPlacement;
use crate::suggest::generate::{GenerateConfig, Granularity};
use crate::suggest::learn::{LearnConfig, Learned, Learner, State};
use crate::suggest::report::{Known, as_calico, prove_with_every_kind, report};
use crate::wire::proto::{
    GetSuggestionsRequest, GetSuggestionsResponse, Learning, SuggestionFormat,
    SuggestionGranularity, SuggestionSummary, WorkloadSuggestion,
};

/// Where suggestions come from: the learner (a sink of the hub) and the cluster views.
#[derive(Clone, Debug)]
pub struct SuggestionSource {
    /// What the daemon learned.
    pub learner: Arc<Mutex<Learner>>,
    /// The current cluster view (`None` until the first).
    pub views: watch::Receiver<Option<Arc<ClusterView>>>,
    /// The node the daemon runs on (empty when not known), named in `GetLearning`.
    pub node: String,
}

/// The learned edges, as the state file's bytes.
pub(super) async fn get_learning(source: &SuggestionSource) -> Result<Learning, Status> {
    let learner = Arc::clone(&source.learner);
    let (state, edges) = tokio::task::spawn_blocking(move || {
        // The state is resolved under the lock; its JSON is made after, without it.
        let (state, edges) = learner
            .lock()
            .map(|l| (l.state(), l.learned().edge_count() as u64))
            .map_err(|_| Status::internal("the suggestion learner failed"))?;
        Ok::<_, Status>((state.encode(), edges))
    })
    .await
    .map_err(|e| Status::internal(format!("encoding the learning: {e}")))??;
    Ok(Learning {
        node: source.node.clone(),
        state,
        edges,
    })
}

/// Answers one request.
pub(crate) async fn get_suggestions(
    source: &SuggestionSource,
    hub: &FlowHub,
    request: GetSuggestionsRequest,
) -> Result<GetSuggestionsResponse, Status> {
    let (suggestions, summary) = make(source, hub, &request).await?;
    Ok(GetSuggestionsResponse {
        suggestions: suggestions.into_iter().map(|(s, _)| s).collect(),
        summary: Some(summary),
    })
}

/// Keeps a client up to date: every suggestion first, then those that changed, checked
/// every `check_interval_ms`, until the client goes away or the request fails.
pub(super) fn watch_suggestions(
    source: SuggestionSource,
    hub: Arc<FlowHub>,
    request: GetSuggestionsRequest,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> ReceiverStream<Result<GetSuggestionsResponse, Status>> {
    let every = check_interval(request.check_interval_ms);
    watch_changes(every, permit, move || {
        let (source, hub, request) = (source.clone(), Arc::clone(&hub), request.clone());
        async move { make(&source, &hub, &request).await }
    })
}

/// `check_interval_ms`: 10 s when 0, at least 500 ms.
pub fn check_interval(ms: u32) -> Duration {
    match ms {
        0 => Duration::from_secs(10),
        ms => Duration::from_millis(u64::from(ms).max(500)),
    }
}

/// A watch's loop, for a node's suggestions and a relay's: every `every`, `make` the
/// suggestions (each with a fingerprint of what it allows and its stability) and send
/// those whose fingerprint changed, everything the first time, with the summary; until
/// the client goes away. The stream holds `permit` while it lives.
pub fn watch_changes<F, Fut>(
    every: Duration,
    permit: tokio::sync::OwnedSemaphorePermit,
    mut make: F,
) -> ReceiverStream<Result<GetSuggestionsResponse, Status>>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<
            Output = Result<(Vec<(WorkloadSuggestion, u64)>, SuggestionSummary), Status>,
        > + Send,
{
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let _permit = permit;
        let mut sent: HashMap<(String, String, String), u64> = HashMap::new();
        let mut first = true;
        loop {
            let message = match make().await {
                Ok((suggestions, summary)) => {
                    let changed: Vec<WorkloadSuggestion> = suggestions
                        .into_iter()
                        .filter(|(s, fingerprint)| {
                            let key = (s.namespace.clone(), s.kind.clone(), s.name.clone());
                            sent.insert(key, *fingerprint) != Some(*fingerprint)
                        })
                        .map(|(s, _)| s)
                        .collect();
                    (first || !changed.is_empty()).then_some(Ok(GetSuggestionsResponse {
                        suggestions: changed,
                        summary: Some(summary),
                    }))
                }
                Err(status) => Some(Err(status)),
            };
            first = false;
            if let Some(message) = message
                && tx.send(message).await.is_err()
            {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = tx.closed() => return,
            }
        }
    });
    ReceiverStream::new(rx)
}

/// The suggestions a request selects, each with a fingerprint of what it allows and its
/// stability (not its evidence, which grows with every flow), and the summary.
async fn make(
    source: &SuggestionSource,
    hub: &FlowHub,
    request: &GetSuggestionsRequest,
) -> Result<(Vec<(WorkloadSuggestion, u64)>, SuggestionSummary), Status> {
    let view = source.views.borrow().clone().ok_or_else(|| {
        Status::failed_precondition(
            "no cluster state yet: suggestions need the workloads' names (--manifests or \
             --kubeconfig)",
        )
    })?;
    let learned = if request.learned.is_empty() {
        source
            .learner
            .lock()
            .map_err(|_| Status::internal("the suggestion learner failed"))?
            .learned()
            .clone()
    } else {
        merged(&request.learned)?
    };
    let generation = GenerateConfig {
        granularity: match SuggestionGranularity::try_from(request.granularity) {
            Ok(SuggestionGranularity::Namespace) => Granularity::Namespace,
            Ok(SuggestionGranularity::Workload) => Granularity::Workload,
            Err(_) => return Err(Status::invalid_argument("granularity: unknown value")),
        },
        named_ports: request.named_ports,
        ..GenerateConfig::default()
    };
    let calico = match SuggestionFormat::try_from(request.format) {
        Ok(SuggestionFormat::Kubernetes) => None,
        Ok(SuggestionFormat::Calico) => Some(CalicoPlacement {
            order: if request.calico_order == 0.0 {
                1000.0
            } else {
                request.calico_order
            },
            tier: (!request.calico_tier.is_empty()).then(|| request.calico_tier.clone()),
        }),
        Err(_) => return Err(Status::invalid_argument("format: unknown value")),
    };
    // The proof's flows: every record the hub holds.
    let records: Vec<FlowRecord> = hub.held().iter().map(|p| p.record.clone()).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let placement = calico.clone();
    let made = tokio::task::spawn_blocking(move || {
        let mut made = report(
            &learned,
            &Known::from_view(&view),
            &view.input,
            &records,
            Timestamp(now),
            &generation,
        )?;
        match &placement {
            Some(placement) => as_calico(&mut made, &view.objects, &records, placement)?,
            None => prove_with_every_kind(&mut made, &view.objects, &records)?,
        }
        Ok::<_, String>(made)
    })
    .await
    .map_err(|e| Status::internal(format!("making the suggestions: {e}")))?
    .map_err(Status::internal)?;
    let wanted = |namespace: &str, workload: &str| {
        (request.namespace.is_empty() || request.namespace.iter().any(|n| n == namespace))
            && (request.workload.is_empty() || request.workload.iter().any(|w| w == workload))
    };
    let suggestions = made
        .suggestions
        .iter()
        .filter(|s| {
            wanted(
                &s.subject.namespace,
                &format!("{}/{}", s.subject.kind, s.subject.name),
            )
        })
        .map(|s| {
            let mut policy = crate::suggest::render::network_policy(s);
            policy.metadata.annotations = None;
            let fingerprint = fingerprint(&(
                serde_json::to_string(&policy).unwrap_or_default(),
                format!("{:?}", s.not_expressible),
                s.stability.name(),
            ));
            let yaml = match &calico {
                Some(placement) => crate::suggest::calico::network_policy(s, placement),
                None => crate::suggest::render::kubernetes(s),
            };
            (workload_suggestion(s, yaml), fingerprint)
        })
        .collect();
    let skipped = made.learned.skipped;
    let summary = SuggestionSummary {
        edges: made.learned.edge_count() as u64,
        dropped_edges: skipped.dropped_edges,
        unresolved_services: skipped.unresolved_services,
        without_identity: skipped.without_identity,
        flows_checked: made.proof.checked,
        flows_allowed: made.proof.allowed,
        flows_denied_by_declared: made.proof.denied_by_declared,
        newly_denied_pairs: made.impact.newly_denied,
    };
    Ok((suggestions, summary))
}

/// Learning states a client passed (each a `GetLearning` answer's bytes), merged.
fn merged(states: &[Vec<u8>]) -> Result<Learned, Status> {
    let mut learner = Learner::new(LearnConfig {
        max_edges: usize::MAX,
        ..LearnConfig::default()
    });
    for (i, bytes) in states.iter().enumerate() {
        let state = State::decode(bytes)
            .map_err(|e| Status::invalid_argument(format!("learned[{i}]: {e}")))?;
        learner.absorb(&state);
    }
    Ok(learner.learned().clone())
}

fn fingerprint(value: &impl std::hash::Hash) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}
