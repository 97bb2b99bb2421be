//! `observer suggest --server`: what a running observer learned.

use std::process::ExitCode;

use crate::wire::proto::GetSuggestionsRequest;
use crate::wire::proto::observer_client::ObserverClient;

/// Prints (or writes) the server's suggestions and its summary.
pub(super) fn run(server: &str, out: Option<&std::path::Path>) -> ExitCode {
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|runtime| {
            runtime.block_on(async {
                let channel = crate::api::listen::connect(server, None)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                ObserverClient::new(channel)
                    .get_suggestions(GetSuggestionsRequest::default())
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|e| format!("--server {server}: {}", e.message()))
            })
        });
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let mut yaml = std::collections::BTreeMap::<String, String>::new();
    for s in &answer.suggestions {
        yaml.entry(s.namespace.clone())
            .or_default()
            .push_str(&s.yaml);
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
    for s in &answer.suggestions {
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
    let summary = answer.summary.unwrap_or_default();
    eprintln!(
        "{} edges learned ({} dropped{}); proof: {} flows held by the server judged, {} \
         allowed; {} pairs of known workloads allowed today would be denied",
        summary.edges,
        summary.dropped_edges,
        if summary.dropped_edges > 0 {
            ": INCOMPLETE"
        } else {
            ""
        },
        summary.flows_checked,
        summary.flows_allowed,
        summary.newly_denied_pairs
    );
    if summary.flows_checked == summary.flows_allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
