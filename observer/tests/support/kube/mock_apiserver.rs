//! An in-process HTTP server speaking enough of the Kubernetes API's list and
//! watch protocol for kube-rs watchers: paginated lists with a collection
//! resourceVersion, and newline-delimited watch streams resumed from a
//! resourceVersion, with bookmarks, 410 Gone and dropped connections.
//! Collections are served cluster-wide and, for namespaced kinds, per
//! namespace; `fieldSelector` and `labelSelector` (equality terms) filter
//! lists and watches.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::mock_state::{
    Chunk, MockState, RequestRecord, Selection, Watcher, collection_for_path, event_line,
    expired_status, parse_label_selector,
};

type Body = BoxBody<Bytes, std::io::Error>;

/// Handle to a running mock API server; dropping it stops accepting.
pub struct MockApiServer {
    addr: SocketAddr,
    state: Arc<Mutex<MockState>>,
    requests_seen: watch::Receiver<usize>,
    accept: JoinHandle<()>,
}

struct Shared {
    state: Arc<Mutex<MockState>>,
    requests_seen: watch::Sender<usize>,
}

impl MockApiServer {
    /// Starts a server on a random loopback port, holding `objects`.
    pub async fn start(objects: Vec<Value>) -> Self {
        let mut state = MockState::default();
        for obj in objects {
            state.apply(obj);
        }
        let state = Arc::new(Mutex::new(state));
        let (seen_tx, requests_seen) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: state.clone(),
            requests_seen: seen_tx,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(&req, &shared)) }
                    });
                    // Errors here are clients going away mid-stream.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            requests_seen,
            accept,
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Locks the state for a compound, atomic operation.
    pub fn state(&self) -> MutexGuard<'_, MockState> {
        self.state.lock().expect("mock state poisoned")
    }

    /// Adds or replaces an object; returns its new resourceVersion.
    pub fn apply(&self, obj: Value) -> u64 {
        self.state().apply(obj)
    }

    /// Deletes an object; returns the deletion's resourceVersion.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> u64 {
        self.state()
            .delete(kind, namespace, name)
            .unwrap_or_else(|| panic!("no {kind} {namespace}/{name}"))
    }

    /// Simulates a network partition: ends all watches, applies `changes`
    /// (which therefore reach no watch), then expires history so that
    /// reconnecting watches get 410 Gone and must relist.
    pub fn while_disconnected(&self, changes: impl FnOnce(&mut MockState)) {
        let mut state = self.state();
        state.drop_watches();
        changes(&mut state);
        state.expire_history();
    }

    /// All requests received so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().requests.clone()
    }

    /// Waits until `n` received requests match `pred`; returns the last.
    pub async fn wait_for_requests(
        &self,
        n: usize,
        pred: impl Fn(&RequestRecord) -> bool,
    ) -> RequestRecord {
        let mut seen = self.requests_seen.clone();
        loop {
            let matching: Vec<_> = self.requests().into_iter().filter(&pred).collect();
            if matching.len() >= n.max(1) {
                return matching[n.max(1) - 1].clone();
            }
            seen.changed().await.expect("server stopped");
        }
    }
}

impl Drop for MockApiServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn handle(req: &Request<Incoming>, shared: &Shared) -> Response<Body> {
    let Some((kind, namespace)) = collection_for_path(req.uri().path()) else {
        return status(StatusCode::NOT_FOUND, "NotFound", "no such collection");
    };
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let param = |name: &str| query.get(name).cloned().filter(|v| !v.is_empty());
    let record = RequestRecord {
        kind: kind.to_owned(),
        watch: param("watch").is_some_and(|w| w == "true" || w == "1"),
        resource_version: param("resourceVersion"),
        continue_token: param("continue"),
        limit: param("limit").and_then(|l| l.parse().ok()),
        field_selector: param("fieldSelector"),
        label_selector: param("labelSelector"),
        namespace,
        at: std::time::Instant::now(),
    };
    let selection = Selection {
        namespace: record.namespace.clone(),
        fields: record.field_selector.clone(),
        labels: record.label_selector.clone(),
    };
    let mut state = shared.state.lock().expect("mock state poisoned");
    state.requests.push(record.clone());
    let count = state.requests.len();
    let bad_labels = record
        .label_selector
        .as_deref()
        .map(parse_label_selector)
        .and_then(Result::err);
    let response = if let Some(problem) = bad_labels {
        status(StatusCode::BAD_REQUEST, "BadRequest", &problem)
    } else if state.not_served.contains(kind) {
        status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
    } else if state.forbidden.contains(kind) {
        status(StatusCode::FORBIDDEN, "Forbidden", "forbidden by the test")
    } else if record.watch && state.short_watches.contains(kind) {
        let (_, rx) = mpsc::unbounded_channel();
        stream_response(rx, None)
    } else if !record.watch && state.hang_lists.contains(kind) {
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(BodyExt::boxed(StreamBody::new(futures::stream::pending())))
            .expect("static response parts")
    } else if record.watch {
        let bookmarks = param("allowWatchBookmarks").is_some_and(|b| b == "true");
        let timeout = param("timeoutSeconds").and_then(|t| t.parse().ok());
        watch_response(&mut state, kind, &record, selection, bookmarks, timeout)
    } else {
        list_response(&state, kind, &record, &selection)
    };
    drop(state);
    shared.requests_seen.send_replace(count);
    response
}

fn list_response(
    state: &MockState,
    kind: &str,
    req: &RequestRecord,
    selection: &Selection,
) -> Response<Body> {
    let items = state.select(kind, selection);
    // Continue token: "<listRV>:<offset>", so later pages report the
    // resourceVersion of the first one, as the apiserver does.
    let (list_rv, offset) = match req.continue_token.as_deref().map(|t| t.split_once(':')) {
        None => (state.rv, 0),
        Some(Some((rv, off))) => match (rv.parse(), off.parse()) {
            (Ok(rv), Ok(off)) => (rv, off),
            _ => return status(StatusCode::BAD_REQUEST, "BadRequest", "bad continue token"),
        },
        Some(None) => return status(StatusCode::BAD_REQUEST, "BadRequest", "bad continue token"),
    };
    let end = req
        .limit
        .map_or(items.len(), |l| (offset + l).min(items.len()));
    let page: Vec<Value> = items
        .get(offset..end)
        .unwrap_or_default()
        .iter()
        .map(|item| {
            // The apiserver omits kind/apiVersion on list items.
            let mut item = item.clone();
            if let Some(map) = item.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            item
        })
        .collect();
    let mut metadata = json!({ "resourceVersion": list_rv.to_string() });
    if end < items.len() {
        metadata["continue"] = json!(format!("{list_rv}:{end}"));
    }
    let body = json!({
        "kind": format!("{kind}List"),
        "apiVersion": "v1",
        "metadata": metadata,
        "items": page,
    });
    json_response(StatusCode::OK, &body)
}

fn watch_response(
    state: &mut MockState,
    kind: &'static str,
    req: &RequestRecord,
    selection: Selection,
    bookmarks: bool,
    timeout_secs: Option<u64>,
) -> Response<Body> {
    let (tx, rx) = mpsc::unbounded_channel();
    let from = req.resource_version.as_deref().map(str::parse::<u64>);
    match from {
        // Unset or "0": synthetic ADDED events for the current state first.
        None | Some(Ok(0)) => {
            for obj in state.select(kind, &selection) {
                let _ = tx.send(Chunk::Line(event_line("ADDED", &obj)));
            }
        }
        Some(Ok(from)) => match state.history_since(kind, from, &selection) {
            Some(lines) => lines.into_iter().for_each(|l| {
                let _ = tx.send(Chunk::Line(l));
            }),
            None => {
                // Like the apiserver: 200 OK, one ERROR event, end of stream.
                let status = expired_status(from, state.compacted);
                let _ = tx.send(Chunk::Line(event_line("ERROR", &status)));
                drop(tx);
                return stream_response(rx, None);
            }
        },
        Some(Err(_)) => {
            return status(StatusCode::BAD_REQUEST, "BadRequest", "bad resourceVersion");
        }
    }
    state.watchers.push(Watcher {
        kind,
        bookmarks,
        selection,
        tx,
    });
    stream_response(rx, timeout_secs.map(Duration::from_secs))
}

/// Streams queued lines until the sender is dropped or the timeout passes.
fn stream_response(
    rx: mpsc::UnboundedReceiver<Chunk>,
    timeout: Option<Duration>,
) -> Response<Body> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let frames = futures::stream::unfold(rx, move |mut rx| async move {
        let chunk = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, rx.recv()).await.ok()??,
            None => rx.recv().await?,
        };
        let frame = match chunk {
            Chunk::Line(line) => Ok(Frame::data(Bytes::from(line))),
            // A body error makes hyper cut the connection without the final chunk.
            Chunk::Abort => Err(std::io::Error::other("aborted by the test")),
        };
        Some((frame, rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .expect("static response parts")
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    json_response(code, &body)
}

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("static response parts")
}
