//! `GetSuggestions`: the daemon's learned edges turned into suggestions with the current
//! cluster view, proven against the flows the hub holds (`crate::suggest::report`).

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tonic::Status;

use crate::cluster::view::ClusterView;
use crate::flow::{FlowRecord, Timestamp};
use crate::hub::FlowHub;
use crate::suggest::learn::Learner;
use crate::suggest::report::{Known, report};
use crate::wire::proto::{
    GetSuggestionsRequest, GetSuggestionsResponse, SuggestionSummary, WorkloadSuggestion,
};

/// Where suggestions come from: the learner (a sink of the hub) and the cluster views.
#[derive(Clone, Debug)]
pub struct SuggestionSource {
    /// What the daemon learned.
    pub learner: Arc<Mutex<Learner>>,
    /// The current cluster view (`None` until the first).
    pub views: watch::Receiver<Option<Arc<ClusterView>>>,
}

/// Answers one request.
pub(super) async fn get_suggestions(
    source: &SuggestionSource,
    hub: &FlowHub,
    request: GetSuggestionsRequest,
) -> Result<GetSuggestionsResponse, Status> {
    let view = source.views.borrow().clone().ok_or_else(|| {
        Status::failed_precondition(
            "no cluster state yet: suggestions need the workloads' names (--manifests or \
             --kubeconfig)",
        )
    })?;
    let learned = source
        .learner
        .lock()
        .map_err(|_| Status::internal("the suggestion learner failed"))?
        .learned()
        .clone();
    // The proof's flows: every record the hub holds.
    let status = hub.status();
    let held = hub.read_after(
        status.oldest_cursor.saturating_sub(1),
        status.capacity as usize,
    );
    let records: Vec<FlowRecord> = held
        .items
        .iter()
        .map(|(_, entry)| entry.record.clone())
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let made = tokio::task::spawn_blocking(move || {
        report(
            &learned,
            &Known::from_view(&view),
            &view.input,
            &records,
            Timestamp(now),
        )
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
        .map(|s| WorkloadSuggestion {
            namespace: s.subject.namespace.clone(),
            kind: s.subject.kind.clone(),
            name: s.subject.name.clone(),
            stability: s.stability.name().into(),
            yaml: crate::suggest::render::kubernetes(s),
            ingress_rules: s.ingress.len() as u32,
            egress_rules: s.egress.len() as u32,
            selector_note: s.selector_note.clone().unwrap_or_default(),
        })
        .collect();
    let skipped = made.learned.skipped;
    Ok(GetSuggestionsResponse {
        suggestions,
        summary: Some(SuggestionSummary {
            edges: made.learned.edge_count() as u64,
            dropped_edges: skipped.dropped_edges,
            unresolved_services: skipped.unresolved_services,
            without_identity: skipped.without_identity,
            flows_checked: made.proof.checked,
            flows_allowed: made.proof.allowed,
            newly_denied_pairs: made.impact.newly_denied,
        }),
    })
}
