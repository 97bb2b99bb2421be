//! The Kubernetes manifests in deploy/: real API shapes (typed with k8s-openapi, and no
//! field the API would drop), arguments the observer accepts, and names that agree
//! across files.

mod support;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use observer::flow::DEFAULT_MAX_CONNECTIONS;
use observer::memory::budget::{BudgetInputs, budget, mib};
use observer_common::{
    DEFAULT_FLOW_CACHE_SLOTS, DEFAULT_FLOW_MAP_ENTRIES, DEFAULT_RING_BUFFER_BYTES,
};
use serde_json::Value;

fn documents(file: &str) -> Vec<Value> {
    let path = format!("{}/../deploy/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

/// Decodes `value` as `T` and checks that encoding it again gives the same document: a
/// misspelt or misplaced field would be dropped by the typed decoding.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(value: &Value) -> T {
    let object: T = serde_json::from_value(value.clone()).expect("a valid object");
    let again = serde_json::to_value(&object).expect("encodes");
    assert_eq!(&again, value, "fields the API would not keep");
    object
}

#[test]
fn the_daemonset_is_a_valid_object_whose_arguments_the_observer_accepts() {
    let docs = documents("daemonset.yaml");
    assert_eq!(docs.len(), 1);
    let daemonset: DaemonSet = typed(&docs[0]);
    let spec = &daemonset.spec;
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(
        spec.selector.match_labels,
        spec.template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone()),
        "the selector selects the template's pods"
    );
    assert_eq!(
        pod.host_network,
        Some(true),
        "pod interfaces are in the host's netns"
    );
    let container = &pod.containers[0];
    let args = container.args.clone().expect("args");
    let mut command = vec!["observer".to_string()];
    command.extend(args.iter().cloned());
    observer::cli::check_args(&command).unwrap_or_else(|e| panic!("{args:?}: {e}"));

    let value_of = |flag: &str| {
        let at = args.iter().position(|a| a == flag).expect(flag);
        args[at + 1].clone()
    };
    // The memory limit covers the budget of the DaemonSet's settings on 32 CPUs
    // (deploy/README.md, Memory).
    let flag = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .map_or(default, |at| args[at + 1].parse().expect(name))
    };
    let need = budget(&BudgetInputs {
        flow_map_entries: flag("--flow-map-entries", DEFAULT_FLOW_MAP_ENTRIES.into()),
        flow_cache_slots: flag("--flow-cache-slots", DEFAULT_FLOW_CACHE_SLOTS.into()),
        ring_buffer_bytes: flag("--ringbuf-bytes", DEFAULT_RING_BUFFER_BYTES.into()),
        max_connections: flag("--max-connections", DEFAULT_MAX_CONNECTIONS as u64),
        cpus: 32,
    });
    let limit = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
        .expect("a memory limit");
    let limit_mib: u64 = limit
        .0
        .strip_suffix("Mi")
        .and_then(|v| v.parse().ok())
        .expect("a limit in Mi");
    assert!(
        limit_mib << 20 >= need.total(),
        "{limit_mib} MiB < {} MiB",
        mib(need.total())
    );
    // The unauthenticated API is a Unix socket in the pod's own volume, so that other
    // hostNetwork pods cannot reach it.
    let api = value_of("--grpc-listen");
    assert!(
        matches!(
            observer::api::listen::ApiAddress::parse(&api),
            Ok(observer::api::listen::ApiAddress::Unix(_))
        ),
        "{api}"
    );
    // Probes ask the API itself, with a command the observer accepts: readiness its
    // health service (serving once the cluster state is in), liveness that it answers.
    for (probe, ask) in [
        (&container.readiness_probe, &["observe", "--health"][..]),
        (&container.liveness_probe, &["status", "-o", "json"][..]),
    ] {
        let command = probe
            .as_ref()
            .and_then(|p| p.exec.as_ref())
            .and_then(|e| e.command.clone())
            .expect("an exec probe");
        let mut expected = vec!["observer"];
        expected.extend(ask);
        expected.extend(["--server", api.as_str()]);
        assert_eq!(command, expected);
        observer::cli::check_args(&command).unwrap_or_else(|e| panic!("{command:?}: {e}"));
    }
    let metrics_port: i32 = value_of("--metrics-listen")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("metrics port");
    let ports = container.ports.as_ref().expect("ports");
    assert!(
        ports
            .iter()
            .any(|p| p.container_port == metrics_port && p.name.as_deref() == Some("metrics"))
    );
    let annotations = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    assert_eq!(
        annotations.get("prometheus.io/port"),
        Some(&metrics_port.to_string())
    );
    // Not privileged: exactly the capabilities privileged_node.rs runs it with.
    let security = container
        .security_context
        .as_ref()
        .expect("a security context");
    assert_eq!(security.privileged, Some(false));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    let capabilities = security.capabilities.as_ref().expect("capabilities");
    assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_string()][..]));
    let mut added = capabilities.add.clone().unwrap_or_default();
    added.sort();
    assert_eq!(added, ["BPF", "NET_ADMIN", "PERFMON"]);
    assert_eq!(
        security.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    // What the observer writes is on writable volumes.
    let mounts = container.volume_mounts.clone().unwrap_or_default();
    for flag in ["--flow-log", "--stats-file"] {
        let path = value_of(flag);
        assert!(
            mounts
                .iter()
                .any(|m| path.starts_with(&format!("{}/", m.mount_path))),
            "{flag} {path} is not on a mounted volume"
        );
    }
}

#[test]
fn the_names_agree_across_the_namespace_rbac_and_daemonset() {
    let namespace: Namespace = typed(&documents("namespace.yaml")[0]);
    let namespace = namespace.metadata.name.expect("namespace name");
    let rbac = documents("rbac.yaml");
    let account: ServiceAccount = typed(
        rbac.iter()
            .find(|d| d["kind"] == "ServiceAccount")
            .expect("a ServiceAccount"),
    );
    let daemonset: DaemonSet = typed(&documents("daemonset.yaml")[0]);
    assert_eq!(
        daemonset.metadata.namespace.as_deref(),
        Some(namespace.as_str())
    );
    assert_eq!(
        account.metadata.namespace.as_deref(),
        Some(namespace.as_str())
    );
    let pod = daemonset.spec.template.spec.expect("pod spec");
    assert_eq!(pod.service_account_name, account.metadata.name);
    let binding = rbac
        .iter()
        .find(|d| d["kind"] == "ClusterRoleBinding")
        .expect("a ClusterRoleBinding");
    assert_eq!(
        binding["subjects"][0]["name"],
        Value::from(pod.service_account_name.clone())
    );
    assert_eq!(binding["subjects"][0]["namespace"], Value::from(namespace));
}

/// Every metric a query of the Grafana dashboard names is one the observer exports (its
/// classic exposition: counters with their `_total`), and the template's too.
#[test]
fn the_grafana_dashboard_queries_only_metrics_the_observer_exports() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana-dashboard.json"),
    )
    .expect("deploy/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    // A family shows once it has a series: the metrics after a run's stats and records.
    let metrics = observer::metrics::Metrics::new();
    let mut stats = observer::stats::RunStats::default();
    stats.datapath.0.insert("packets_seen", 1);
    metrics.observe_stats(&stats);
    metrics.observe_records(&support::api_flows());
    let exported: std::collections::BTreeSet<String> = metrics
        .render_classic()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(String::from))
        .collect();
    queries.extend(
        dashboard["templating"]["list"]
            .as_array()
            .expect("templating")
            .iter()
            .filter_map(|v| v["query"].as_str().map(String::from)),
    );
    assert!(queries.len() >= 10, "{queries:?}");
    let mut named = 0;
    for query in &queries {
        let words = query.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
        for word in words.filter(|w| w.starts_with("observer_") || w.starts_with("process_")) {
            assert!(
                exported.contains(word),
                "the dashboard queries {word}, which the observer does not export: {query}"
            );
            named += 1;
        }
    }
    assert!(
        named >= queries.len(),
        "every query names a metric: {queries:?}"
    );
}
