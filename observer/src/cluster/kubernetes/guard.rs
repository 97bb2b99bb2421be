//! Bounds on what the API server can make the client do: a `tower` layer under kube-rs.
//!
//! kube-rs reads a watch line until its newline with no length limit and, without a read
//! timeout, waits for a list for ever; a watch the server closes at once is reopened at
//! once, with no error for any backoff to see. This layer puts a limit on each of those:
//! - every response line (a watch event, or a whole list page) is at most a set size;
//! - a request other than a watch must complete, headers and body, within a deadline
//!   (a watch must send its headers within it; kube's own idle timeout covers its body);
//! - a watch of a collection that ended within [`SHORT_WATCH`] of its start delays the
//!   next watch of that collection, by a backoff that grows until a watch lasts.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

use super::backoff::backoff_delay;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A watch that ends sooner than this after it was opened counts as closed at once.
pub const SHORT_WATCH: Duration = Duration::from_secs(1);

/// The limits the layer enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiLimits {
    /// Longest line of a watch stream (one event: etcd keeps objects under 1.5 MiB).
    pub max_watch_line_bytes: usize,
    /// Longest line of any other response (a list page is one line).
    pub max_response_line_bytes: usize,
    /// Deadline of a request other than a watch, and of a watch's response headers.
    pub request_timeout: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_watch_line_bytes: 8 << 20,
            max_response_line_bytes: 64 << 20,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Why the layer cut a response short.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A line grew past its limit without a newline.
    #[error("{request}: a response line exceeds {limit} bytes; the response is dropped")]
    LineTooLong {
        /// The request, as `GET /api/v1/pods`.
        request: String,
        /// The limit it exceeded.
        limit: usize,
    },
    /// The request did not complete within its deadline.
    #[error("{request}: no complete response within {timeout:?}")]
    Timeout {
        /// The request, as `GET /api/v1/pods`.
        request: String,
        /// The deadline it missed.
        timeout: Duration,
    },
}

/// The layer; clones share the short-watch bookkeeping.
#[derive(Clone, Default)]
pub struct ApiGuardLayer {
    limits: ApiLimits,
    short_watches: Arc<Mutex<HashMap<String, u32>>>,
}

impl ApiGuardLayer {
    /// A layer enforcing `limits`.
    pub fn new(limits: ApiLimits) -> Self {
        Self {
            limits,
            short_watches: Arc::default(),
        }
    }
}

impl<S> Layer<S> for ApiGuardLayer {
    type Service = ApiGuard<S>;

    fn layer(&self, inner: S) -> ApiGuard<S> {
        ApiGuard {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service the layer wraps around kube's stack.
pub struct ApiGuard<S> {
    inner: S,
    layer: ApiGuardLayer,
}

fn is_watch<T>(req: &Request<T>) -> bool {
    req.uri().query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    })
}

impl<S, B, ReqBody> Service<Request<ReqBody>> for ApiGuard<S>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<GuardedBody<B>>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let watch = is_watch(&req);
        let path = req.uri().path().to_owned();
        let request = format!("{} {path}", req.method());
        let delay = if watch {
            self.layer.watch_delay(&path)
        } else {
            None
        };
        let limits = self.layer.limits;
        let short_watches = watch.then(|| (Arc::clone(&self.layer.short_watches), path));
        // kube's stack sends nothing until its future is polled, so the delay holds it.
        let response = self.inner.call(req);
        Box::pin(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let started = tokio::time::Instant::now();
            let deadline = started + limits.request_timeout;
            let timeout = || GuardError::Timeout {
                request: request.clone(),
                timeout: limits.request_timeout,
            };
            let response = tokio::time::timeout_at(deadline, response)
                .await
                .map_err(|_| timeout())?
                .map_err(Into::into)?;
            let body_deadline = (!watch).then(|| Box::pin(tokio::time::sleep_until(deadline)));
            let limit = if watch {
                limits.max_watch_line_bytes
            } else {
                limits.max_response_line_bytes
            };
            Ok(response.map(|inner| GuardedBody {
                inner: Some(inner),
                line: 0,
                limit,
                deadline: body_deadline,
                timeout: limits.request_timeout,
                request,
                _watch_end: short_watches.map(|(watches, path)| WatchEnd {
                    watches,
                    path,
                    started: started.into_std(),
                }),
            }))
        })
    }
}

impl ApiGuardLayer {
    /// How long to hold a new watch of `path` after watches that closed at once.
    fn watch_delay(&self, path: &str) -> Option<Duration> {
        let streak = self
            .short_watches
            .lock()
            .map_or(0, |watches| watches.get(path).copied().unwrap_or(0));
        (streak > 0).then(|| backoff_delay(streak))
    }
}

/// Records, when a watch's body goes, whether it closed at once.
struct WatchEnd {
    watches: Arc<Mutex<HashMap<String, u32>>>,
    path: String,
    started: Instant,
}

impl Drop for WatchEnd {
    fn drop(&mut self) {
        let short = self.started.elapsed() < SHORT_WATCH;
        let Ok(mut watches) = self.watches.lock() else {
            return;
        };
        let streak = watches.entry(self.path.clone()).or_default();
        let before = *streak;
        *streak = if short { before.saturating_add(1) } else { 0 };
        drop(watches);
        // Logged when the state changes, not at every reopening.
        match (short, before) {
            (true, 0) => tracing::warn!(
                collection = %self.path,
                "the API server closed a watch at once; reopening it with a growing backoff"
            ),
            (false, n) if n > 0 => tracing::info!(
                collection = %self.path,
                closed_at_once = n,
                "a watch of the collection lasts again"
            ),
            _ => {}
        }
    }
}

/// A response body with a line-length limit and, for requests other than watches, a
/// deadline.
pub struct GuardedBody<B> {
    /// `None` once the body failed: the connection is let go, and the body ends.
    inner: Option<B>,
    /// Bytes since the last newline.
    line: usize,
    limit: usize,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
    request: String,
    /// Set for a watch: notes, when the body goes, how long the watch lasted.
    _watch_end: Option<WatchEnd>,
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let failure = if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            GuardError::Timeout {
                request: this.request.clone(),
                timeout: this.timeout,
            }
        } else {
            let frame = match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            let Some(data) = frame.data_ref() else {
                return Poll::Ready(Some(Ok(frame)));
            };
            this.line = match last_newline(data) {
                Some(at) => data.len() - at - 1,
                None => this.line.saturating_add(data.len()),
            };
            if this.line <= this.limit {
                return Poll::Ready(Some(Ok(frame)));
            }
            GuardError::LineTooLong {
                request: this.request.clone(),
                limit: this.limit,
            }
        };
        this.inner = None;
        Poll::Ready(Some(Err(Box::new(failure))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// Where the last newline of `data` is.
fn last_newline(data: &[u8]) -> Option<usize> {
    data.iter().rposition(|&b| b == b'\n')
}
