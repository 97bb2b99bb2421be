//! The tonic service: thin handlers over the hub, the filters and the conversion.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::filter::Selection;
use super::listen::ApiListener;
use super::start::{last_matching, time};
use super::stream::{StreamPlan, stream_flows};
pub use super::suggestions::SuggestionSource;
use super::suggestions::{get_learning, get_suggestions, watch_suggestions};
use crate::hub::{FlowHub, Source, StartAt};
use crate::wire::proto::{
    self, GetFlowsRequest, GetFlowsResponse, GetLearningRequest, GetSuggestionsRequest,
    GetSuggestionsResponse, Learning, ServerStatusRequest, ServerStatusResponse,
    get_flows_request::Start, observer_server::ObserverServer,
};

/// Messages queued per stream before its task waits for the client to read: a slow
/// client holds its task back, never the daemon, and falls behind in the ring.
pub const STREAM_QUEUE: usize = 64;

/// Default of [`ApiConfig::max_streams`].
pub const DEFAULT_MAX_STREAMS: usize = 64;

/// How the API serves.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// TLS (`None`: plaintext).
    pub tls: Option<ServerTlsConfig>,
    /// Flow streams open at once, over all clients; more are refused with
    /// `RESOURCE_EXHAUSTED`. Each holds at most [`STREAM_QUEUE`] messages, so this bounds the
    /// memory clients can make the daemon hold.
    pub max_streams: usize,
    /// Readiness for the `grpc.health.v1` service: `NOT_SERVING` until it is true (the
    /// daemon's first cluster state); `None`: serving at once.
    pub ready: Option<tokio::sync::watch::Receiver<bool>>,
    /// Where `GetSuggestions` answers from (`None`: it answers UNIMPLEMENTED).
    pub suggestions: Option<SuggestionSource>,
    /// The node the daemon runs on, for `ServerStatus` (empty when not known).
    pub node_name: String,
    /// The node's side for `ServerStatus`, kept current by the daemon (`None`: not said).
    pub node: Option<tokio::sync::watch::Receiver<NodeStatus>>,
}

/// What `ServerStatus` says of the node beside the hub: refreshed by the daemon with its
/// stats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// Interfaces the programs are attached to.
    pub interfaces: Vec<String>,
    /// Connections held in the table.
    pub connections: u64,
    /// Cluster states published so far.
    pub cluster_generation: u64,
    /// Manifest sources served from their last good content.
    pub cluster_stale_sources: u64,
    /// Objects of the latest cluster state left out as invalid.
    pub cluster_invalid_objects: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            tls: None,
            max_streams: DEFAULT_MAX_STREAMS,
            ready: None,
            suggestions: None,
            node_name: String::new(),
            node: None,
        }
    }
}

/// The largest request the server reads, and the largest answer our clients read: a
/// learning state is about 300 bytes per edge, so 64 MiB holds a few nodes' 100,000
/// edges each.
pub const MAX_REQUEST_BYTES: usize = 64 << 20;

/// The `Observer` service.
#[derive(Debug, Clone)]
pub struct ObserverService {
    hub: Arc<FlowHub>,
    streams: Arc<Semaphore>,
    max_streams: usize,
    suggestions: Option<SuggestionSource>,
    /// What `ServerStatus` says beside the hub's figures.
    about: About,
}

/// Who the server is, for `ServerStatus`.
#[derive(Debug, Clone)]
struct About {
    started: std::time::Instant,
    node_name: String,
    ready: Option<tokio::sync::watch::Receiver<bool>>,
    node: Option<tokio::sync::watch::Receiver<NodeStatus>>,
}

impl ObserverService {
    /// Serves `hub`, with at most `max_streams` flow streams open at once.
    pub fn new(hub: Arc<FlowHub>, max_streams: usize) -> Self {
        Self {
            hub,
            streams: Arc::new(Semaphore::new(max_streams)),
            max_streams,
            suggestions: None,
            about: About {
                started: std::time::Instant::now(),
                node_name: String::new(),
                ready: None,
                node: None,
            },
        }
    }

    /// Says in `ServerStatus` which node it runs on and whether it is ready (as the
    /// health service does).
    pub fn with_identity(
        mut self,
        node_name: String,
        ready: Option<tokio::sync::watch::Receiver<bool>>,
        node: Option<tokio::sync::watch::Receiver<NodeStatus>>,
    ) -> Self {
        self.about.node_name = node_name;
        self.about.ready = ready;
        self.about.node = node;
        self
    }

    /// Answers `GetSuggestions` from `source`.
    pub fn with_suggestions(mut self, source: Option<SuggestionSource>) -> Self {
        self.suggestions = source;
        self
    }

    /// As a tonic service, for a router. Requests may be up to [`MAX_REQUEST_BYTES`]
    /// (several observers' learning passed to `GetSuggestions`).
    pub fn into_server(self) -> ObserverServer<Self> {
        ObserverServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES)
    }
}

type FlowStream = ReceiverStream<Result<GetFlowsResponse, Status>>;

#[tonic::async_trait]
impl proto::observer_server::Observer for ObserverService {
    type GetFlowsStream = FlowStream;

    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<FlowStream>, Status> {
        let permit = stream_permit(&self.streams, self.max_streams, "observer")?;
        let request = request.into_inner();
        let window = (
            time(
                "since",
                request.since.as_ref().map(|t| (t.seconds, t.nanos)),
            )?,
            time(
                "until",
                request.until.as_ref().map(|t| (t.seconds, t.nanos)),
            )?,
        );
        let selection = Selection::compile(&request.allow, &request.deny)
            .map_err(|e| Status::invalid_argument(e.to_string()))?
            .within(window.0, window.1);
        if matches!(request.start, Some(Start::Last(0) | Start::First(0))) {
            return Err(Status::invalid_argument(
                "last and first count flows: 0 selects none; ask for at least 1",
            ));
        }
        let progress = progress_interval(request.progress_interval_ms)?;
        let (start, limit) = match request.start {
            Some(Start::AfterToken(_)) => {
                return Err(Status::invalid_argument(
                    "after_token is a relay's cursor: this is a node's observer; give \
                     after_cursor, or ask the relay that made the token",
                ));
            }
            None | Some(Start::FromOldest(false)) => (StartAt::Next, None),
            Some(Start::FromOldest(true)) => (StartAt::Oldest, None),
            Some(Start::AfterCursor(cursor)) => (StartAt::After(cursor), None),
            // Found below among every held flow: the last `n` that match.
            Some(Start::Last(_)) => (StartAt::Oldest, None),
            Some(Start::First(n)) => (StartAt::Oldest, Some(n)),
        };
        let mut span = self.hub.start(start).map_err(|next| {
            Status::out_of_range(format!(
                "after_cursor is not a cursor this observer has written (its next is {next}): \
                 it comes from another node's observer, or the clock went back"
            ))
        })?;
        // A violations-only stream reads the violations' own retention, which allowed
        // flows never push out.
        let source = if selection.violations_only() {
            Source::Violations
        } else {
            Source::All
        };
        if source == Source::Violations && start == StartAt::Oldest {
            span.after = self.hub.before_oldest_violation().min(span.end - 1);
        }
        if let Some(Start::Last(n)) = request.start {
            span.after = last_matching(&self.hub, source, &selection, span, n);
        }
        // `first` ends after its flows, `until` with the flows held now.
        let follow = request.follow && limit.is_none() && window.1.is_none();
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        // Counted from here, so a status request after the answer already sees it.
        let subscriber = self.hub.subscriber();
        let hub = Arc::clone(&self.hub);
        tokio::spawn(async move {
            let stream = StreamPlan {
                source,
                selection,
                span,
                follow,
                limit,
                progress,
            };
            stream_flows(hub, subscriber, stream, tx).await;
            // The stream's slot is free once its task ends.
            drop(permit);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn server_status(
        &self,
        _: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        let s = self.hub.status();
        let node = self
            .about
            .node
            .as_ref()
            .map(|n| n.borrow().clone())
            .unwrap_or_default();
        Ok(Response::new(ServerStatusResponse {
            interfaces: node.interfaces,
            connections: node.connections,
            cluster_generation: node.cluster_generation,
            cluster_stale_sources: node.cluster_stale_sources,
            cluster_invalid_objects: node.cluster_invalid_objects,
            oldest_cursor: s.oldest_cursor,
            newest_cursor: s.newest_cursor,
            capacity: s.capacity,
            flows_published: s.flows_published,
            subscribers: s.subscribers,
            flows_lost_to_subscribers: s.flows_lost_to_subscribers,
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds: self.about.started.elapsed().as_secs(),
            node_name: self.about.node_name.clone(),
            ready: self.about.ready.as_ref().is_none_or(|r| *r.borrow()),
            violations_held: s.violations_held,
            violations_capacity: s.violations_capacity,
            nodes: Vec::new(),
        }))
    }

    type WatchSuggestionsStream = ReceiverStream<Result<GetSuggestionsResponse, Status>>;

    async fn watch_suggestions(
        &self,
        request: Request<GetSuggestionsRequest>,
    ) -> Result<Response<Self::WatchSuggestionsStream>, Status> {
        let source = self.suggestions.clone().ok_or_else(|| {
            Status::unimplemented(
                "this observer does not learn suggestions (--suggest-max-edges 0)",
            )
        })?;
        // A watch counts as a stream, like a flow stream.
        let permit = stream_permit(&self.streams, self.max_streams, "observer")?;
        Ok(Response::new(watch_suggestions(
            source,
            Arc::clone(&self.hub),
            request.into_inner(),
            permit,
        )))
    }

    async fn get_suggestions(
        &self,
        request: Request<GetSuggestionsRequest>,
    ) -> Result<Response<GetSuggestionsResponse>, Status> {
        let source = self.suggestions.as_ref().ok_or_else(|| {
            Status::unimplemented(
                "this observer does not learn suggestions (--suggest-max-edges 0)",
            )
        })?;
        get_suggestions(source, &self.hub, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_learning(
        &self,
        _request: Request<GetLearningRequest>,
    ) -> Result<Response<Learning>, Status> {
        let source = self.suggestions.as_ref().ok_or_else(|| {
            Status::unimplemented(
                "this observer does not learn suggestions (--suggest-max-edges 0)",
            )
        })?;
        get_learning(source).await.map(Response::new)
    }
}

/// A stream's slot among `max` (`--grpc-max-streams`), or RESOURCE_EXHAUSTED saying so;
/// `who` is "observer" or "relay".
pub fn stream_permit(
    streams: &Arc<Semaphore>,
    max: usize,
    who: &str,
) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
    Arc::clone(streams).try_acquire_owned().map_err(|_| {
        Status::resource_exhausted(format!(
            "{max} streams are open, the most this {who} serves at once \
             (--grpc-max-streams); try again when one ends"
        ))
    })
}

/// `progress_interval_ms`: none when 0; at least 10 ms.
pub fn progress_interval(ms: u32) -> Result<Option<std::time::Duration>, Status> {
    match ms {
        0 => Ok(None),
        1..10 => Err(Status::invalid_argument(format!(
            "progress_interval_ms {ms} is below 10 ms"
        ))),
        ms => Ok(Some(std::time::Duration::from_millis(u64::from(ms)))),
    }
}

/// The server's TLS files (PEM): its certificate chain and key, and optionally the CA
/// that client certificates must chain to (mutual TLS: clients without one are refused).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// CA of the clients' certificates.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Reads the files, naming the one that cannot be read.
    pub fn load(&self) -> anyhow::Result<ServerTlsConfig> {
        let cert = read_pem(&self.cert)?;
        let key = read_pem(&self.key)?;
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read_pem(ca)?));
        }
        Ok(config)
    }
}

/// The contents of a PEM file, naming it when it cannot be read.
pub fn read_pem(path: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Checks TLS material the way serving will use it (certificate chain and key parsed and
/// matched, client CA parsed), so that bad files stop the daemon at start rather than
/// leave an API that accepts no connection.
pub fn check_tls(tls: &ServerTlsConfig) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .tls_config(tls.clone())
        .map(drop)
}

/// Serves the API on `listener` (TCP or a Unix socket) until `shutdown` resolves; then
/// streams end once they have sent what the hub holds (the hub must be closed first).
pub async fn serve(
    listener: impl Into<ApiListener>,
    hub: Arc<FlowHub>,
    config: ApiConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let service = ObserverService::new(hub, config.max_streams)
        .with_suggestions(config.suggestions)
        .with_identity(config.node_name, config.ready.clone(), config.node)
        .into_server();
    serve_observer(listener, config.tls, config.ready, service, shutdown).await
}

/// Serves an `Observer` service (a node's, or a relay's) with the standard services beside
/// it: health (`NOT_SERVING` until `ready`, for probes) and reflection (for grpcurl and
/// other clients without the .proto).
pub async fn serve_observer<S: proto::observer_server::Observer>(
    listener: impl Into<ApiListener>,
    tls: Option<ServerTlsConfig>,
    ready: Option<tokio::sync::watch::Receiver<bool>>,
    service: ObserverServer<S>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_not_serving::<ObserverServer<S>>().await;
    let mut ready = ready;
    tokio::spawn(async move {
        if let Some(ready) = ready.as_mut() {
            // The sender gone without readiness: the daemon is stopping; stay NOT_SERVING.
            if ready.wait_for(|r| *r).await.is_err() {
                return;
            }
        }
        health.set_serving::<ObserverServer<S>>().await;
    });
    // Both reflection versions list every service, both reflection services included.
    let reflection = |builder: tonic_reflection::server::Builder<'static>| {
        builder
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(crate::wire::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure())
        .build_v1()
        .context("the reflection service (v1)")?;
    let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure())
        .build_v1alpha()
        .context("the reflection service (v1alpha)")?;
    let router = server
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service);
    match listener.into() {
        ApiListener::Tcp(listener) => {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            Ok(router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?)
        }
        ApiListener::Unix(listener, _file) => {
            // `_file` lives until serving ends, then removes the socket.
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            Ok(router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?)
        }
    }
}

impl From<tokio::net::TcpListener> for ApiListener {
    fn from(listener: tokio::net::TcpListener) -> Self {
        Self::Tcp(listener)
    }
}

/// Binds a TCP address for the API, naming it in the error (see [`super::listen::bind`]
/// for Unix sockets too).
pub async fn bind(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the gRPC API to {address} (--grpc-listen)"))
}
