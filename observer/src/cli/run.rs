//! `observer run`: capture on this node.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use observer_common::{DEFAULT_FLOW_MAP_ENTRIES, DEFAULT_RING_BUFFER_BYTES};

use super::parse_duration;
use crate::api::listen::ApiAddress;
use crate::api::server::TlsFiles;
use crate::cluster::kubernetes::{ApiLimits, KubernetesSourceConfig};
use crate::daemon::{self, ClusterConfig, RunConfig};
use crate::datapath::{DEFAULT_INTERFACE_PATTERN, DatapathConfig, HookPlan, InterfacePattern};
use crate::export::{FlowLogTarget, Rotation};
use crate::flow::{DEFAULT_MAX_CONNECTIONS, TableConfig};

/// Arguments of `observer run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Host-side pod interfaces to attach to: comma-separated globs.
    #[arg(long, default_value = DEFAULT_INTERFACE_PATTERN)]
    interfaces: String,
    /// Where to write connection records (JSON Lines); `-` is stdout.
    #[arg(long, default_value = "-")]
    flow_log: String,
    /// Rotate a file flow log when it reaches this many bytes (0: never; then rotate it
    /// outside, e.g. logrotate with a SIGHUP, which reopens it).
    #[arg(long, default_value_t = 0)]
    flow_log_max_bytes: u64,
    /// Rotated flow log files kept (`PATH.1` is the newest).
    #[arg(long, default_value_t = 3)]
    flow_log_keep: usize,
    /// Also write each connection's started item (judged at its first packet, state
    /// `started`) to the flow log; the API's streams always get them.
    #[arg(long)]
    flow_log_started: bool,
    /// How long a started item addressed to a Service ClusterIP waits for its backend
    /// (seen at the backend's interface, or in conntrack) before it is published with
    /// `backend: unresolved` (0: no wait).
    #[arg(long, default_value = "5ms", value_parser = parse_duration)]
    started_service_wait: Duration,
    /// Write counters (kernel, userspace, losses) as JSON here on every poll and at exit.
    #[arg(long)]
    stats_file: Option<PathBuf>,
    /// Capacity of the kernel flow map, in keys.
    #[arg(long, default_value_t = DEFAULT_FLOW_MAP_ENTRIES)]
    flow_map_entries: u32,
    /// Slots per CPU of the kernel flow cache, the fast path in front of the flow map (a
    /// power of two; 0: no cache). Each slot takes 96 bytes per possible CPU. Default:
    /// 4,096 per CPU while that fits in 32 MiB (up to 85 CPUs), fewer on larger nodes.
    #[arg(long)]
    flow_cache_slots: Option<u32>,
    /// Size of the kernel event ring buffer in bytes (power of two, at least 4096).
    #[arg(long, default_value_t = DEFAULT_RING_BUFFER_BYTES)]
    ringbuf_bytes: u32,
    /// How often the flow map is read.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    poll_interval: Duration,
    /// A connection without packets for this long is written as expired.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// A closed TCP connection is written once quiet for this long.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    close_grace: Duration,
    /// Long-lived connections with new traffic are reported this often (0s: never).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    report_interval: Duration,
    /// Connections held in memory. Beyond it, each poll writes the least recently active
    /// as `evicted` (their later traffic starts a new record); `connections_evicted` in the
    /// stats counts them.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections: usize,
    /// Cluster state from manifest files or directories (Namespaces, Pods, Nodes, Services,
    /// ReplicaSets, Jobs, NetworkPolicies), reloaded when they change: records then name
    /// pods and carry policy verdicts.
    #[arg(long, num_args = 1..)]
    manifests: Vec<PathBuf>,
    /// Refuse manifest objects with unknown fields (otherwise ignored with a warning, as
    /// kubectl apply does).
    #[arg(long, requires = "manifests")]
    strict: bool,
    /// Cluster state from the Kubernetes API with this kubeconfig. Without --manifests and
    /// --kubeconfig, the in-cluster service account is used when running in a pod
    /// (KUBERNETES_SERVICE_HOST is set); otherwise records carry addresses only.
    #[arg(long, conflicts_with = "manifests")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: its current context).
    #[arg(long, requires = "kubeconfig")]
    kube_context: Option<String>,
    /// Deadline of a Kubernetes API list (headers and body) and of a watch's headers; a
    /// request past it fails, is logged and retried with a growing backoff.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    kube_request_timeout: Duration,
    /// How long the owner of an IP is remembered after it lets go of it, to attribute
    /// records written late.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    identity_retention: Duration,
    /// Edges the policy-suggestion learner holds at most (`GetSuggestions`, `observer
    /// suggest --server`); past it new edges are counted as dropped and the suggestions
    /// say they are incomplete. About 160 bytes each. 0: no learning.
    #[arg(long, default_value_t = 100_000)]
    suggest_max_edges: usize,
    /// Send every record as an OpenTelemetry log record to this OTLP/gRPC collector
    /// (`http://collector:4317`, or `https://` with --otlp-tls-ca); off by default.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// The CA (PEM) the OTLP collector's certificate chains to.
    #[arg(long, requires = "otlp_endpoint")]
    otlp_tls_ca: Option<PathBuf>,
    /// Keep what the suggestion learner learned across restarts in this file (written
    /// atomically every minute and at exit, read at start; a file that is not a learning
    /// state is set aside as PATH.unreadable).
    #[arg(long)]
    suggest_state: Option<PathBuf>,
    /// How the cluster's CNI treats what NetworkPolicy leaves open: ICMP and other
    /// protocols to an isolated pod (judged by calico and cilium, no verdict by generic)
    /// and host-networked pods (their node's address for calico, `undefined` otherwise).
    #[arg(long, default_value_t = crate::policy::CniProfile::default())]
    cni_profile: crate::policy::CniProfile,
    /// Address of the gRPC API (flows and violations for subscribers; `observer observe`
    /// is a client): host:port, a Unix socket (`unix:///run/observer/api.sock`, mode 0600:
    /// only the daemon's user may connect), or `off` (no API; then the only value).
    /// Repeatable: the API is served on every address given (e.g. a Unix socket for
    /// `kubectl exec` and the probes, and the pod's IP for the relay). --grpc-tls-* apply to
    /// the TCP addresses; a Unix socket is always served plaintext, its file mode being
    /// its protection. Without --grpc-tls-* a TCP address is plaintext and unauthenticated:
    /// expose it beyond the node only with mutual TLS.
    #[arg(long, default_value = DEFAULT_GRPC_LISTEN, value_parser = parse_api_listen)]
    grpc_listen: Vec<ApiListen>,
    /// Written flows the API keeps for subscribers to read and resume from; a subscriber
    /// that falls further behind is told which flows it lost. About 1 KiB each with
    /// labels and verdicts (docs/benchmarks.md).
    #[arg(long, default_value_t = 8_192,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    api_buffer_flows: usize,
    /// Violations (denied flows) the API keeps apart from the flows, so that allowed flows
    /// never push them out: a violations stream resumes exactly for as long as these last.
    /// They share the flows' memory while both hold them (about 1 KiB each otherwise).
    #[arg(long, default_value_t = crate::hub::DEFAULT_VIOLATIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    api_buffer_violations: usize,
    /// Flow streams the gRPC API serves at once, over all clients; more are refused with
    /// RESOURCE_EXHAUSTED. Each buffers at most 64 flows.
    #[arg(long, default_value_t = crate::api::server::DEFAULT_MAX_STREAMS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    grpc_max_streams: usize,
    /// Serve the gRPC API over TLS with this certificate chain (PEM); needs
    /// --grpc-tls-key.
    #[arg(long, requires = "grpc_tls_key")]
    grpc_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --grpc-tls-cert.
    #[arg(long, requires = "grpc_tls_cert")]
    grpc_tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, requires = "grpc_tls_cert")]
    grpc_tls_client_ca: Option<PathBuf>,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`), or `off`.
    #[arg(long, default_value = DEFAULT_METRICS_LISTEN, value_parser = parse_listen)]
    metrics_listen: Listen,
    /// Address of the web console (the page at `/`, its read-only JSON API under `/api/`),
    /// or `off`. `:PORT` means the loopback. Plaintext unless --ui-tls-cert.
    #[arg(long, default_value = "off", value_parser = parse_listen)]
    ui_listen: Listen,
    /// Serve the console over HTTPS with this certificate chain (PEM); needs --ui-tls-key.
    #[arg(long, requires_all = ["ui_tls_key", "ui_listen"])]
    ui_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --ui-tls-cert.
    #[arg(long, requires = "ui_tls_cert")]
    ui_tls_key: Option<PathBuf>,
    /// Require browser (client) certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, requires = "ui_tls_cert")]
    ui_tls_client_ca: Option<PathBuf>,
    /// This node's name, written into every record (`node_name`) so that records merged
    /// from many nodes say which observer saw them. Default: $NODE_NAME (the DaemonSet sets
    /// it from `spec.nodeName`), else the host name.
    #[arg(long)]
    node_name: Option<String>,
    /// Benchmarking aid: also attach the two reference classifiers, an empty one (the
    /// hook's floor) and a parse-only one (the floor of any flow observer).
    #[arg(long, hide = true)]
    attach_empty_program: bool,
    /// Benchmarking aid: attach the reference classifiers before the flow programs.
    #[arg(long, hide = true, requires = "attach_empty_program")]
    attach_references_first: bool,
    /// Benchmarking aid: attach only these reference classifiers at each hook, in this
    /// order, instead of the flow programs: what the hook and programs of that cost take
    /// from throughput, or a rung of the cost ladder measured first at the hook.
    #[arg(
        long,
        hide = true,
        value_enum,
        value_delimiter = ',',
        conflicts_with = "attach_empty_program"
    )]
    attach_only: Vec<ReferenceProgram>,
}

/// The reference classifiers `--attach-only` can attach.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ReferenceProgram {
    /// The empty classifier.
    Empty,
    /// The parse-only classifier.
    ParseOnly,
    /// Parse, and one per-CPU counter.
    CountOne,
    /// Parse, and one add to the flow's own word.
    CountSlot,
}

/// What the hidden benchmarking flags put at the hooks.
fn hook_plan(args: &RunArgs) -> HookPlan {
    if args.attach_empty_program {
        return HookPlan::WithReferences {
            references_first: args.attach_references_first,
        };
    }
    if args.attach_only.is_empty() {
        return HookPlan::FlowPrograms;
    }
    HookPlan::ReferencesOnly(
        args.attach_only
            .iter()
            .map(|program| match program {
                ReferenceProgram::Empty => observer_common::EMPTY_PROGRAM,
                ReferenceProgram::ParseOnly => observer_common::PARSE_ONLY_PROGRAM,
                ReferenceProgram::CountOne => observer_common::COUNT_ONE_PROGRAM,
                ReferenceProgram::CountSlot => observer_common::COUNT_SLOT_PROGRAM,
            })
            .collect(),
    )
}

/// Default of `--grpc-listen`: the node only, since plaintext is unauthenticated (with
/// `--grpc-tls-*` it may listen wider).
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:4245";

/// Default of `--metrics-listen`: the node only. The metrics name namespace pairs of denied
/// connections; exposing them (for Prometheus) is an explicit choice (deploy/README.md).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// `--metrics-listen` (of `run` and `relay`): an address, or none (`off`).
#[derive(Clone, Debug)]
pub(super) struct Listen(pub(super) Option<std::net::SocketAddr>);

/// Parses a [`Listen`].
pub(super) fn parse_listen(value: &str) -> Result<Listen, String> {
    if value == "off" {
        return Ok(Listen(None));
    }
    crate::api::listen::listen_address(value)
        .map(|address| Listen(Some(address)))
        .map_err(|e| format!("{e}, nor off"))
}

/// One `--grpc-listen`: an address, a Unix socket (`unix:///path`), or none (`off`).
#[derive(Clone, Debug)]
struct ApiListen(Option<ApiAddress>);

fn parse_api_listen(value: &str) -> Result<ApiListen, String> {
    if value == "off" {
        return Ok(ApiListen(None));
    }
    ApiAddress::parse(value).map(|address| ApiListen(Some(address)))
}

/// The addresses of every `--grpc-listen` (empty: `off`, which cannot be combined with an
/// address); an address given twice is refused rather than left to fail at bind.
fn api_listeners(values: Vec<ApiListen>) -> Result<Vec<ApiAddress>> {
    let off = values.iter().any(|v| v.0.is_none());
    let addresses: Vec<ApiAddress> = values.into_iter().filter_map(|v| v.0).collect();
    if off && !addresses.is_empty() {
        anyhow::bail!("--grpc-listen off is no API: it cannot be combined with addresses");
    }
    for (i, address) in addresses.iter().enumerate() {
        if addresses[..i].contains(address) {
            anyhow::bail!("--grpc-listen {address} is given twice");
        }
    }
    Ok(addresses)
}

/// $NODE_NAME, else the kernel's host name.
fn default_node_name() -> Option<String> {
    std::env::var("NODE_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

/// Runs the daemon until SIGINT/SIGTERM.
pub fn run(args: RunArgs) -> Result<()> {
    // A path that does not exist would start a daemon that judges against a cluster with
    // those objects missing: refuse it at start, naming it.
    for path in &args.manifests {
        std::fs::metadata(path).with_context(|| format!("--manifests {}", path.display()))?;
    }
    // Written on every poll: a path that cannot be written fails now, naming the flag, not
    // with a warning every second.
    if let Some(path) = &args.stats_file {
        crate::stats::RunStats::default()
            .write(path)
            .with_context(|| format!("--stats-file {}", path.display()))?;
    }
    let hooks = hook_plan(&args);
    let grpc_listen = api_listeners(args.grpc_listen)?;
    if args.grpc_tls_cert.is_some()
        && !grpc_listen.is_empty()
        && !grpc_listen.iter().any(|a| matches!(a, ApiAddress::Tcp(_)))
    {
        tracing::warn!(
            "--grpc-tls-* apply to TCP addresses, and every --grpc-listen is a Unix socket \
             (served plaintext, protected by its file mode): the certificate is not used"
        );
    }
    let config = RunConfig {
        interfaces: InterfacePattern::parse(&args.interfaces).map_err(anyhow::Error::msg)?,
        flow_log: FlowLogTarget::parse(&args.flow_log),
        flow_log_rotation: (args.flow_log_max_bytes > 0).then_some(Rotation {
            max_bytes: args.flow_log_max_bytes,
            keep: args.flow_log_keep,
        }),
        stats_file: args.stats_file,
        datapath: DatapathConfig {
            flow_map_entries: args.flow_map_entries,
            flow_cache_slots: args.flow_cache_slots,
            ring_buffer_bytes: args.ringbuf_bytes,
            hooks,
        },
        table: TableConfig {
            idle_timeout_ns: args.idle_timeout.as_nanos() as u64,
            close_grace_ns: args.close_grace.as_nanos() as u64,
            report_interval_ns: args.report_interval.as_nanos() as u64,
            max_connections: args.max_connections,
        },
        poll_interval: args.poll_interval.max(Duration::from_millis(10)),
        cluster: if !args.manifests.is_empty() {
            ClusterConfig::Manifests {
                paths: args.manifests,
                strict: args.strict,
            }
        } else if args.kubeconfig.is_some() || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        {
            ClusterConfig::Kubernetes(KubernetesSourceConfig {
                kubeconfig: args.kubeconfig,
                context: args.kube_context,
                limits: ApiLimits {
                    request_timeout: args.kube_request_timeout,
                    ..ApiLimits::default()
                },
                ..KubernetesSourceConfig::default()
            })
        } else {
            ClusterConfig::None
        },
        identity_retention: args.identity_retention,
        cni_profile: args.cni_profile,
        flow_log_started: args.flow_log_started,
        suggest_max_edges: args.suggest_max_edges,
        otlp: args
            .otlp_endpoint
            .map(|endpoint| crate::export::otlp::OtlpConfig {
                endpoint,
                tls_ca: args.otlp_tls_ca,
                node_name: None,
            }),
        suggest_state: args.suggest_state,
        started_service_wait: args.started_service_wait,
        grpc_listen,
        api_buffer_flows: args.api_buffer_flows,
        api_buffer_violations: args.api_buffer_violations,
        api_tls: match (args.grpc_tls_cert, args.grpc_tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca: args.grpc_tls_client_ca,
            }),
            _ => None,
        },
        metrics_listen: args.metrics_listen.0,
        ui_listen: args.ui_listen.0,
        ui_tls: match (args.ui_tls_cert, args.ui_tls_key) {
            (Some(cert), Some(key)) => Some(crate::api::server::TlsFiles {
                cert,
                key,
                client_ca: args.ui_tls_client_ca,
            }),
            _ => None,
        },
        api_max_streams: args.grpc_max_streams,
        node_name: args.node_name.or_else(default_node_name),
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(daemon::run(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listeners(values: &[&str]) -> Result<Vec<ApiAddress>> {
        api_listeners(
            values
                .iter()
                .map(|v| parse_api_listen(v).expect("a value"))
                .collect(),
        )
    }

    #[test]
    fn grpc_listen_takes_several_addresses_or_off_alone() {
        assert_eq!(
            listeners(&["unix:///run/observer/api.sock", "10.0.0.7:4245"]).expect("two"),
            [
                ApiAddress::Unix("/run/observer/api.sock".into()),
                ApiAddress::Tcp("10.0.0.7:4245".parse().expect("address")),
            ]
        );
        assert_eq!(listeners(&["off"]).expect("none"), []);
        let mixed = listeners(&["off", "127.0.0.1:4245"]).expect_err("off with an address");
        assert!(mixed.to_string().contains("--grpc-listen off"), "{mixed}");
        let twice = listeners(&["127.0.0.1:4245", "localhost:4245"]).expect_err("twice");
        assert!(
            twice.to_string().contains("--grpc-listen 127.0.0.1:4245"),
            "{twice}"
        );
    }
}
