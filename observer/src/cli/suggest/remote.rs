//! `observer suggest --server ADDR...`: what running observers learned. With one server,
//! its suggestions. With several (a Deployment's replicas run on many nodes), every
//! server's learning (`GetLearning`) is passed to every server (`GetSuggestions` with
//! `learned`): each makes the same suggestions from the merged learning and proves them
//! against the flows it holds, so the proof covers every node's flows.

use std::collections::BTreeMap;
use std::process::ExitCode;

use tonic::transport::Channel;

use crate::api::server::MAX_REQUEST_BYTES;
use crate::cli::client::{ClientTls, Failure};
use crate::wire::proto::observer_client::ObserverClient;
use crate::wire::proto::{
    GetLearningRequest, GetSuggestionsRequest, GetSuggestionsResponse, SuggestionSummary,
};

/// Prints (or writes) the suggestions and the summary; 0 when every server's proof holds.
pub(super) fn run(
    servers: &[String],
    tls: &ClientTls,
    request: GetSuggestionsRequest,
    out: Option<&std::path::Path>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return Failure::Runtime(e.into()).report(),
    };
    let answers = match runtime.block_on(ask(servers, tls, request)) {
        Ok(answers) => answers,
        Err(failure) => return failure.report(),
    };
    let Some(first) = answers.first() else {
        return ExitCode::from(2);
    };
    let yaml_of = |answer: &GetSuggestionsResponse| {
        let mut yaml = BTreeMap::<String, String>::new();
        for s in &answer.suggestions {
            yaml.entry(s.namespace.clone())
                .or_default()
                .push_str(&s.yaml);
        }
        yaml
    };
    let yaml = yaml_of(first);
    for (server, answer) in servers.iter().zip(&answers).skip(1) {
        if answer.suggestions.len() != first.suggestions.len()
            || answer
                .suggestions
                .iter()
                .zip(&first.suggestions)
                .any(|(a, b)| a.rules != b.rules || a.portless != b.portless)
        {
            eprintln!(
                "warning: {server} made other policies from the same learning (its cluster \
                 state differs from {}'s); the policies written are {}'s",
                servers[0], servers[0]
            );
        }
    }
    match out {
        Some(dir) => {
            if let Err(e) = super::write_out(dir, &yaml) {
                eprintln!("error: {}: {e}", dir.display());
                return ExitCode::from(1);
            }
        }
        None => yaml.values().for_each(|text| print!("{text}")),
    }
    for s in &first.suggestions {
        eprintln!(
            "{}/{}/{}  {}  ingress {}  egress {}{}",
            s.namespace,
            s.kind,
            s.name,
            s.stability,
            s.ingress_rules,
            s.egress_rules,
            if s.selector_note.is_empty() {
                ""
            } else {
                "  selector not unique"
            }
        );
    }
    let summary = first.summary.unwrap_or_default();
    let (checked, allowed, denied_today) = answers
        .iter()
        .map(|a| a.summary.unwrap_or_default())
        .fold((0, 0, 0), |(c, a, d), s: SuggestionSummary| {
            (
                c + s.flows_checked,
                a + s.flows_allowed,
                d + s.flows_denied_by_declared,
            )
        });
    eprintln!(
        "{} edges learned by {} observer(s) ({} dropped{}); proof: {checked} flows held by \
         the servers judged, {allowed} allowed, {denied_today} denied by a declared Deny rule \
         with or without the suggestions; {} pairs of known workloads allowed today would be \
         denied",
        summary.edges,
        servers.len(),
        summary.dropped_edges,
        if summary.dropped_edges > 0 {
            ": INCOMPLETE"
        } else {
            ""
        },
        summary.newly_denied_pairs
    );
    if checked == allowed + denied_today {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Every server's answer, in the order of `servers`.
async fn ask(
    servers: &[String],
    tls: &ClientTls,
    mut request: GetSuggestionsRequest,
) -> Result<Vec<GetSuggestionsResponse>, Failure> {
    let mut clients = Vec::with_capacity(servers.len());
    for server in servers {
        let channel: Channel = tls.connect(server).await?;
        clients.push(ObserverClient::new(channel).max_decoding_message_size(MAX_REQUEST_BYTES));
    }
    if servers.len() > 1 {
        for (server, client) in servers.iter().zip(&mut clients) {
            let learning = client
                .get_learning(GetLearningRequest {})
                .await
                .map_err(|e| tls.explain(Failure::from_status(&format!("--server {server}"), e)))?
                .into_inner();
            request.learned.push(learning.state);
        }
        let size: usize = request.learned.iter().map(Vec::len).sum();
        if size > MAX_REQUEST_BYTES {
            return Err(Failure::Usage(format!(
                "the {} servers' learning takes {size} bytes, more than a request may carry \
                 ({MAX_REQUEST_BYTES}); ask fewer servers at once",
                servers.len()
            )));
        }
    }
    let mut answers = Vec::with_capacity(servers.len());
    for (server, client) in servers.iter().zip(&mut clients) {
        let answer = client
            .get_suggestions(request.clone())
            .await
            .map_err(|e| tls.explain(Failure::from_status(&format!("--server {server}"), e)))?
            .into_inner();
        answers.push(answer);
    }
    Ok(answers)
}
