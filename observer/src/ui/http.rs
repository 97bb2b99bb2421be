//! The console's data over HTTP (`observer run --ui-listen`): `GET /api/map` answers the
//! service map of the flows the hub holds, as JSON. Read-only; bounded like the metrics
//! endpoint (the same server). Bad parameters get 400 with what is wrong.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

use super::service_map::{EdgeVerdict, Level, MapQuery, build};
use crate::hub::FlowHub;

/// Edges a map may ask for at most.
pub const MAX_EDGES: usize = 20_000;

/// Serves the console's data from `hub` until the task is aborted.
pub async fn serve(listener: TcpListener, hub: Arc<FlowHub>) {
    crate::metrics::server::serve_requests(listener, "console", move |request| {
        answer(request, &hub)
    })
    .await;
}

fn answer(request: &Request<Incoming>, hub: &FlowHub) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path != "/api/map" {
        return text(StatusCode::NOT_FOUND, "the console's data is at /api/map\n");
    }
    if request.method() != hyper::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    let query = match map_query(request.uri().query().unwrap_or_default()) {
        Ok(query) => query,
        Err(message) => return text(StatusCode::BAD_REQUEST, &format!("{message}\n")),
    };
    let held = held_flows(hub);
    let map = build(held.iter().map(|p| &p.record), &query);
    match serde_json::to_string(&map) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            if let Ok(value) = "application/json".parse() {
                response
                    .headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, value);
            }
            response
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    }
}

/// Every flow the hub holds now, oldest first.
fn held_flows(hub: &FlowHub) -> Vec<Arc<crate::hub::Published>> {
    let mut held = Vec::new();
    let mut after = 0;
    loop {
        let batch = hub.read_after(after, 4096);
        let Some((last, _)) = batch.items.last() else {
            return held;
        };
        after = *last;
        held.extend(batch.items.into_iter().map(|(_, p)| p));
    }
}

/// The query string's parameters: `level` (`workload`, `namespace`), `max_edges`
/// (1..=20,000), `namespace` and `verdict` (repeatable: `denied`, `undefined`, `allowed`,
/// `not_isolated`, `none`).
pub fn map_query(query: &str) -> Result<MapQuery, String> {
    let mut map = MapQuery::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "level" => {
                map.level = match value {
                    "workload" => Level::Workload,
                    "namespace" => Level::Namespace,
                    other => return Err(format!("level {other:?}: workload or namespace")),
                }
            }
            "max_edges" => {
                map.max_edges = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_EDGES).contains(n))
                    .ok_or_else(|| {
                        format!("max_edges {value:?}: a number from 1 to {MAX_EDGES}")
                    })?;
            }
            "namespace" if !value.is_empty() => map.namespaces.push(value.to_owned()),
            "verdict" => map.verdicts.push(match value {
                "denied" => EdgeVerdict::Denied,
                "undefined" => EdgeVerdict::Undefined,
                "allowed" => EdgeVerdict::Allowed,
                "not_isolated" => EdgeVerdict::NotIsolated,
                "none" => EdgeVerdict::None,
                other => {
                    return Err(format!(
                        "verdict {other:?}: denied, undefined, allowed, not_isolated or none"
                    ));
                }
            }),
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    Ok(map)
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    if let Ok(value) = "text/plain; charset=utf-8".parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
