//! Serves the metrics at `GET /metrics` (HTTP/1.1), a task per connection, bounded: at most
//! [`MAX_CONNECTIONS`] at once, each given [`HEADER_TIMEOUT`] to send its request headers and
//! [`CONNECTION_TIMEOUT`] in all, so idle or half-sent connections cannot pile up; accept
//! errors (out of file descriptors) back off instead of spinning.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::Metrics;

/// Connections served at once; more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 16;
/// Time a connection has to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may stay open in all (a scrape takes milliseconds).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// OpenMetrics, for scrapers that ask for it (`Accept: application/openmetrics-text`).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic text format, for every other scraper.
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds the metrics address, naming it in the error.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the metrics endpoint to {address} (--metrics-listen)"))
}

/// What a metrics endpoint serves: the daemon's metrics, or a relay's.
pub trait Exposition: Send + Sync + 'static {
    /// The metrics in OpenMetrics text.
    fn render(&self) -> String;

    /// The metrics in the classic Prometheus text format (0.0.4), for scrapers that do not
    /// ask for OpenMetrics.
    fn render_classic(&self) -> String {
        super::exposition::classic(&self.render())
    }
}

impl Exposition for Metrics {
    fn render(&self) -> String {
        Metrics::render(self)
    }
}

/// Answers scrapes until the task is aborted.
pub async fn serve<M: Exposition>(listener: TcpListener, metrics: Arc<M>) {
    serve_requests(listener, "metrics", move |request| {
        respond(request, metrics.as_ref())
    })
    .await;
}

/// A bounded HTTP/1.1 server for small read-only answers (the metrics): `answer` makes
/// each response; connections as [`MAX_CONNECTIONS`],
/// [`HEADER_TIMEOUT`] and [`CONNECTION_TIMEOUT`] say. `what` names it in the log.
pub async fn serve_requests<F>(listener: TcpListener, what: &'static str, answer: F)
where
    F: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let answer = Arc::new(answer);
    let mut acceptor = crate::accept::BoundedAcceptor::new(listener, MAX_CONNECTIONS, what);
    while let Some((stream, slot)) = acceptor.next().await {
        let answer = Arc::clone(&answer);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let answer = Arc::clone(&answer);
                async move { Ok::<_, Infallible>(answer(&request)) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(what, error = %e, "HTTP connection"),
                Err(_) => tracing::debug!(what, "HTTP connection open too long: closed"),
            }
            drop(slot);
        });
    }
}

/// Whether the scraper's `Accept` header names OpenMetrics (Prometheus sends it first, with
/// the classic format as a fallback).
fn wants_openmetrics(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

fn respond<M: Exposition>(request: &Request<Incoming>, metrics: &M) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method().as_str(), request.uri().path()) {
        ("GET", "/metrics") if wants_openmetrics(request) => {
            (StatusCode::OK, OPENMETRICS, metrics.render())
        }
        ("GET", "/metrics") => (StatusCode::OK, CLASSIC, metrics.render_classic()),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "metrics are at /metrics\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
