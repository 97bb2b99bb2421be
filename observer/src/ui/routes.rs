//! The console's routes: the page's files, and the read-only JSON API it draws from
//! (`/api/status`, `/api/map`, `/api/edge`, `/api/policy`, `/api/policy_view`,
//! `/api/suggestions`, `/api/violations`). Bad parameters get 400 with what is wrong, an
//! unknown path 404, another method 405. Folding thousands of records runs off the
//! async workers.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, SemaphorePermit, watch};

use super::params::{Params, edge_query, map_query};
use super::server::Body;
use super::suggestions::{SuggestionProvider, to_json};
use super::{assets, edge, policies, policy_view, service_map, violations};
use crate::cluster::view::ClusterView;
use crate::flow::Timestamp;
use crate::hub::{FlowHub, Published, StartAt};
use crate::policy::CniProfile;
use crate::wire::proto::{GetSuggestionsRequest, SuggestionFormat};

/// Which observer serves the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A node's daemon: that node's flows, its cluster view.
    Node,
    /// A relay: every node's flows, merged; no cluster view of its own.
    Relay,
}

/// What the console is made from.
#[derive(Clone)]
pub struct Console {
    /// The flows held.
    pub hub: Arc<FlowHub>,
    /// Node or relay.
    pub role: Role,
    /// The node's name (empty for a relay).
    pub node: String,
    /// The cluster views (a node with cluster state).
    pub views: Option<watch::Receiver<Option<Arc<ClusterView>>>>,
    /// How the CNI reads what the API leaves open (the policy viewer's probes).
    pub profile: CniProfile,
    /// Suggestions, when learned (`--suggest`) or merged (relay).
    pub suggestions: Option<Arc<dyn SuggestionProvider>>,
}

impl Console {
    fn view(&self) -> Option<Arc<ClusterView>> {
        self.views.as_ref().and_then(|v| v.borrow().clone())
    }
}

/// An answer, and whether it is a live stream (which outlives the connection timeout).
pub struct Answer {
    /// The response.
    pub response: Response<Body>,
    /// A live stream.
    pub streaming: bool,
}

impl From<Response<Body>> for Answer {
    fn from(response: Response<Body>) -> Self {
        Self {
            response,
            streaming: false,
        }
    }
}

/// Answers one request.
pub async fn answer(
    request: &Request<Incoming>,
    console: &Console,
    streams: &Arc<Semaphore>,
) -> Answer {
    let path = request.uri().path();
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET only: the console is read-only",
        )
        .into();
    }
    if let Some(asset) = assets::asset(path) {
        let mut response = Response::new(Full::new(Bytes::from_static(asset.body)).boxed());
        set(&mut response, header::CONTENT_TYPE, asset.content_type);
        set(&mut response, header::CACHE_CONTROL, "no-cache");
        // The page runs only its own files; no other site may frame it.
        set(
            &mut response,
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        );
        set(&mut response, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        return response.into();
    }
    let params = Params::parse(request.uri().query().unwrap_or_default());
    let result = match path {
        "/api/status" => params.finish().map(|()| json_response(&status(console))),
        "/api/map" => map(console, params).await,
        "/api/edge" => edge(console, params).await,
        "/api/policy" => policy(console, params),
        "/api/policy_view" => policy_view(console, params).await,
        "/api/suggestions" => suggestions(console, params).await,
        "/api/violations" => {
            let last_event = request
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return match live(console, params, last_event, streams) {
                Ok(response) => Answer {
                    streaming: response.status() == StatusCode::OK,
                    response,
                },
                Err(message) => text(StatusCode::BAD_REQUEST, &message).into(),
            };
        }
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                "not found: the console is at / and its data under /api/",
            )
            .into();
        }
    };
    match result {
        Ok(response) => response.into(),
        Err(message) => text(StatusCode::BAD_REQUEST, &message).into(),
    }
}

type Routed = Result<Response<Body>, String>;

/// Whether the request's Host is the loopback's (`localhost`, `127.0.0.1`, `[::1]`, any
/// port): what a browser sends to a console on the loopback, and what a page of another
/// site reaching it through DNS rebinding cannot.
pub fn names_loopback(request: &Request<Incoming>) -> bool {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or_default();
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    matches!(name, "localhost" | "127.0.0.1" | "::1")
}

/// The answer to a request whose Host is not the loopback's.
pub fn foreign_host(request: &Request<Incoming>) -> Response<Body> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("(none)");
    text(
        StatusCode::MISDIRECTED_REQUEST,
        &format!(
            "Host {host:?} is not this console's: it serves the loopback, open it as \
             http://localhost:PORT/ (or serve it with --ui-tls-cert)"
        ),
    )
}

fn status(console: &Console) -> Value {
    let hub = console.hub.status();
    json!({
        "role": console.role,
        "node": console.node,
        "flows_held": hub.newest_cursor.saturating_sub(hub.oldest_cursor) + u64::from(hub.newest_cursor > 0),
        "violations_held": hub.violations_held,
        "cluster_state": console.view().is_some(),
        "suggestions": console.suggestions.is_some(),
    })
}

async fn map(console: &Console, mut params: Params) -> Routed {
    let query = map_query(&mut params, now())?;
    params.finish()?;
    let (permit, held) = held(&console.hub).await;
    blocking(permit, move || {
        let map = service_map::build(held.iter().map(|p| &p.record), &query);
        json_response(&map)
    })
    .await
}

async fn edge(console: &Console, mut params: Params) -> Routed {
    let query = edge_query(&mut params, now())?;
    params.finish()?;
    let (permit, held) = held(&console.hub).await;
    blocking(permit, move || {
        json_response(&edge::flows(held.iter().map(|p| &p.record), &query))
    })
    .await
}

fn policy(console: &Console, mut params: Params) -> Routed {
    let kind = params.required("kind")?;
    let kind = policies::kind_named(&kind).ok_or_else(|| {
        format!(
            "kind {kind:?}: NetworkPolicy, projectcalico.org/NetworkPolicy, GlobalNetworkPolicy, \
             AdminNetworkPolicy, BaselineAdminNetworkPolicy or ClusterNetworkPolicy"
        )
    })?;
    let namespace = params.one("namespace")?.filter(|n| !n.is_empty());
    let namespaced = matches!(
        kind,
        crate::policy::PolicyKind::NetworkPolicy | crate::policy::PolicyKind::CalicoNetworkPolicy
    );
    let namespace = match (namespaced, namespace) {
        (true, None) => return Err(format!("namespace: required for a {}", kind.name())),
        (false, Some(_)) => {
            return Err(format!("namespace: a {} is cluster-scoped", kind.name()));
        }
        (_, namespace) => namespace,
    };
    let name = params.required("name")?;
    params.finish()?;
    let Some(view) = console.view() else {
        return Ok(text(StatusCode::NOT_FOUND, no_state(console.role)));
    };
    match policies::find(&view.objects, kind, namespace.as_deref(), &name) {
        Some(found) => Ok(json_response(&json!({
            "kind": kind.name(),
            "namespace": found.namespace,
            "name": found.name,
            "yaml": found.yaml(),
        }))),
        None => Ok(text(
            StatusCode::NOT_FOUND,
            &format!(
                "no {} {}{name} in the cluster state",
                kind.name(),
                namespace.map(|n| format!("{n}/")).unwrap_or_default()
            ),
        )),
    }
}

async fn policy_view(console: &Console, mut params: Params) -> Routed {
    let workload = params.required("workload")?;
    params.finish()?;
    let Some(view) = console.view() else {
        return Ok(json_response(&json!({
            "workload": {"id": workload},
            "policies": [],
            "allowed": [],
            "observed": [],
            "note": no_state(console.role),
        })));
    };
    let (permit, held) = held(&console.hub).await;
    let profile = console.profile;
    blocking(permit, move || {
        match policy_view::view(&view, profile, held.iter().map(|p| &p.record), &workload) {
            Ok(viewed) => json_response(&viewed),
            Err(message) if message.contains("no pod") => text(StatusCode::NOT_FOUND, &message),
            Err(message) => text(StatusCode::BAD_REQUEST, &message),
        }
    })
    .await
}

async fn suggestions(console: &Console, mut params: Params) -> Routed {
    let namespaces = params.all("namespace");
    let workload = params.one("workload")?;
    let format = match params.one("format")?.as_deref() {
        None | Some("kubernetes") => SuggestionFormat::Kubernetes,
        Some("calico") => SuggestionFormat::Calico,
        Some(other) => return Err(format!("format {other:?}: kubernetes or calico")),
    };
    params.finish()?;
    let mut request = GetSuggestionsRequest {
        namespace: namespaces,
        format: format as i32,
        ..GetSuggestionsRequest::default()
    };
    if let Some(id) = &workload {
        let (ns, kind, name) = policy_view::parse_id(id)?;
        request.namespace = vec![ns];
        request.workload = vec![format!("{kind}/{name}")];
    }
    let Some(provider) = &console.suggestions else {
        return Ok(json_response(&json!({
            "available": false,
            "note": "suggestions are off on this observer (--suggest-max-edges 0)",
            "suggestions": [],
        })));
    };
    let response = match provider.suggestions(request).await {
        Ok(response) => response,
        Err(status) => {
            return Ok(json_response(&json!({
                "available": false,
                "note": status.message(),
                "suggestions": [],
            })));
        }
    };
    // The policies that select the workload today, for the page's diff.
    let declared = match (&workload, console.view()) {
        (Some(id), Some(view)) => {
            let (permit, held) = held(&console.hub).await;
            let (id, profile) = (id.clone(), console.profile);
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                policy_view::view(&view, profile, held.iter().map(|p| &p.record), &id)
                    .map(|v| {
                        v.policies
                            .into_iter()
                            .map(|p| json!({"kind": p.kind, "namespace": p.namespace, "name": p.name, "yaml": p.yaml}))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .await
            .unwrap_or_default()
        }
        _ => Vec::new(),
    };
    Ok(json_response(&to_json(&response, &declared)))
}

fn live(
    console: &Console,
    mut params: Params,
    last_event: Option<String>,
    streams: &Arc<Semaphore>,
) -> Routed {
    // The browser's own reconnection repeats the URL and says where it got to in the
    // header: the header is the newer.
    let after_param = params.one("after")?;
    let after = match last_event {
        Some(id) => Some((id, "Last-Event-ID")),
        None => after_param.map(|a| (a, "after")),
    };
    let start = params.one("start")?;
    params.finish()?;
    let hub = &console.hub;
    let after = match (after, start.as_deref()) {
        (Some((cursor, named)), _) => {
            let cursor: u64 = cursor
                .parse()
                .map_err(|_| format!("{named} {cursor:?}: a cursor (a number)"))?;
            hub.start(StartAt::After(cursor)).map_err(|next| {
                format!(
                    "{named} {cursor}: this observer has not written it (its next cursor is {next})"
                )
            })?;
            cursor
        }
        (None, None | Some("oldest")) => hub.before_oldest_violation(),
        (None, Some("now")) => hub.start(StartAt::Next).map_or(0, |span| span.after),
        (None, Some(other)) => return Err(format!("start {other:?}: oldest or now")),
    };
    let Ok(permit) = Arc::clone(streams).try_acquire_owned() else {
        return Ok(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live streams: close another console tab",
        ));
    };
    let mut response = Response::new(violations::stream(Arc::clone(hub), after, permit));
    set(&mut response, header::CONTENT_TYPE, "text/event-stream");
    set(&mut response, header::CACHE_CONTROL, "no-cache");
    Ok(response)
}

fn no_state(role: Role) -> &'static str {
    match role {
        Role::Node => "no cluster state yet (--manifests or --kubeconfig)",
        Role::Relay => {
            "a relay holds no cluster state: the policies are shown on a node's console \
             (observer run --ui-listen)"
        }
    }
}

/// Folds of the held flows running at once, in the whole process: each holds a snapshot
/// of the hub (the records stay alive while it runs), and a fold goes on after its client
/// left, so more requests wait here, holding nothing, instead of piling up work.
const MAX_FOLDS: usize = 2;
static FOLDS: Semaphore = Semaphore::const_new(MAX_FOLDS);

/// A fold's turn, then the flows held now.
async fn held(hub: &FlowHub) -> (Option<SemaphorePermit<'static>>, Vec<Arc<Published>>) {
    // The semaphore is never closed: a permit always comes.
    let permit = FOLDS.acquire().await.ok();
    (permit, hub.held())
}

/// Runs `work` on the blocking pool (folding 100,000 records must not hold an async
/// worker), holding its fold's `permit` until it is done.
async fn blocking(
    permit: Option<SemaphorePermit<'static>>,
    work: impl FnOnce() -> Response<Body> + Send + 'static,
) -> Routed {
    let done = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await;
    Ok(done.unwrap_or_else(|e| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the answer failed: {e}"),
        )
    }))
}

fn now() -> Timestamp {
    Timestamp(crate::hub::now_ns())
}

fn json_response(value: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
            set(&mut response, header::CONTENT_TYPE, "application/json");
            response
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))).boxed());
    *response.status_mut() = status;
    set(
        &mut response,
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8",
    );
    response
}

fn set(response: &mut Response<Body>, name: header::HeaderName, value: &'static str) {
    response
        .headers_mut()
        .insert(name, header::HeaderValue::from_static(value));
}
