//! What `observer run` is told: the daemon's settings, as the CLI builds them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::api::server as api_server;
use crate::cluster::kubernetes::KubernetesSourceConfig;
use crate::datapath::{DatapathConfig, InterfacePattern};
use crate::export::{FlowLogTarget, Rotation};
use crate::flow::TableConfig;

/// Where `observer run` learns about the cluster.
#[derive(Clone, Debug)]
pub enum ClusterConfig {
    /// No cluster state: records carry addresses only.
    None,
    /// Manifest files or directories, reloaded when they change; `strict` refuses objects
    /// with unknown fields.
    Manifests {
        /// Files or directories.
        paths: Vec<PathBuf>,
        /// Refuse unknown fields.
        strict: bool,
    },
    /// The Kubernetes API (watches).
    Kubernetes(KubernetesSourceConfig),
}

/// Everything `observer run` needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Which interfaces to attach to.
    pub interfaces: InterfacePattern,
    /// Where records go.
    pub flow_log: FlowLogTarget,
    /// Size limit and rotation of a file flow log (`None`: grows until rotated outside).
    pub flow_log_rotation: Option<Rotation>,
    /// Where the stats JSON is written (each poll and at exit).
    pub stats_file: Option<PathBuf>,
    /// Map sizes, and what goes at the hooks.
    pub datapath: DatapathConfig,
    /// Expiry and reporting.
    pub table: TableConfig,
    /// How often the flow map is read.
    pub poll_interval: Duration,
    /// Where the cluster state comes from.
    pub cluster: ClusterConfig,
    /// How long ended IP holdings are kept for late records.
    pub identity_retention: Duration,
    /// Edges the suggestion learner holds at most (0: no learning).
    pub suggest_max_edges: usize,
    /// OTLP export (`None`: off); the node name is filled from `node_name`.
    pub otlp: Option<crate::export::otlp::OtlpConfig>,
    /// Where the learner's state is kept across restarts.
    pub suggest_state: Option<PathBuf>,
    /// Also write connections' started items to the flow log.
    pub flow_log_started: bool,
    /// How long a started item addressed to a Service waits for its backend.
    pub started_service_wait: Duration,
    /// What the cluster's CNI does where NetworkPolicy is silent.
    pub cni_profile: crate::policy::CniProfile,
    /// Where the gRPC API listens: every address (empty: no API). TCP addresses are
    /// served with `api_tls`; Unix sockets always plaintext (their file mode protects them).
    pub grpc_listen: Vec<crate::api::listen::ApiAddress>,
    /// Flows the hub keeps for API subscribers to read and resume from.
    pub api_buffer_flows: usize,
    /// Violations the hub keeps apart (`--api-buffer-violations`).
    pub api_buffer_violations: usize,
    /// TLS for the API's TCP addresses (`None`: plaintext).
    pub api_tls: Option<api_server::TlsFiles>,
    /// Flow streams the API serves at once.
    pub api_max_streams: usize,
    /// Where Prometheus metrics are served (`None`: not served).
    pub metrics_listen: Option<SocketAddr>,
    /// Where the console is served (`None`: not served).
    pub ui_listen: Option<SocketAddr>,
    /// The console's TLS (`None`: plaintext).
    pub ui_tls: Option<api_server::TlsFiles>,
    /// This node's name, stamped on every record.
    pub node_name: Option<String>,
}
