//! The Kubernetes manifests in deploy/: real API shapes (typed with k8s-openapi, and no
//! field the API would drop), arguments the observer accepts, and names that agree
//! across files.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Container, Namespace, PodSpec, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use observer::api::listen::ApiAddress;
use observer::flow::DEFAULT_MAX_CONNECTIONS;
use observer::memory::budget::{BudgetInputs, budget, default_flow_cache_slots, mib};
use observer_common::{DEFAULT_FLOW_MAP_ENTRIES, DEFAULT_RING_BUFFER_BYTES};
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

/// What Kubernetes makes of `$(VAR)` in `arg`, from the container's environment: a
/// `fieldRef` gets a value of the field's kind (a pod IP, a node name). A variable the
/// container does not define would be passed as written (Kubernetes leaves it), which is
/// never meant here: it fails the test.
fn expand(container: &Container, arg: &str) -> String {
    let env = container.env.clone().unwrap_or_default();
    let mut out = String::new();
    let mut rest = arg;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("$(") {
            let end = after
                .find(')')
                .unwrap_or_else(|| panic!("{arg}: unclosed $("));
            let name = &after[..end];
            let var = env
                .iter()
                .find(|v| v.name == name)
                .unwrap_or_else(|| panic!("{arg}: ${name} is not in the container's env"));
            let value = match (
                &var.value,
                var.value_from.as_ref().and_then(|f| f.field_ref.as_ref()),
            ) {
                (Some(value), _) => value.clone(),
                (None, Some(field)) => match field.field_path.as_str() {
                    "status.podIP" => "10.0.0.7".to_string(),
                    "spec.nodeName" => "node-1".to_string(),
                    "metadata.name" => "pod-1".to_string(),
                    "metadata.namespace" => "observer".to_string(),
                    other => panic!("{arg}: no sample value for fieldRef {other}"),
                },
                _ => panic!("{arg}: ${name} has no value nor fieldRef"),
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The container's command line as the observer gets it (`$(VAR)` expanded), checked
/// with the observer's own parser.
fn accepted_command(container: &Container) -> Vec<String> {
    let args = container.args.clone().expect("args");
    let mut command = vec!["observer".to_string()];
    command.extend(args.iter().map(|a| expand(container, a)));
    observer::cli::check_args(&command).unwrap_or_else(|e| panic!("{command:?}: {e}"));
    // Values are separate arguments here, so that the lookups below see every flag.
    for arg in &command {
        assert!(
            !(arg.starts_with("--") && arg.contains('=')),
            "{arg}: write the value as the next argument"
        );
    }
    command
}

/// Every value of `flag` in `args`.
fn values_of<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.iter()
        .enumerate()
        .filter(|(_, a)| *a == flag)
        .map(|(at, _)| args.get(at + 1).map(String::as_str).expect(flag))
        .collect()
}

/// The value of `flag`, given at most once.
fn value_in<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let values = values_of(args, flag);
    assert!(values.len() <= 1, "{flag} given {} times", values.len());
    values.first().copied()
}

/// Whether `selector` (match labels) selects a pod labelled `labels`.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The Secret whose volume holds `path` in `container`, if it is on one.
fn secret_holding(pod: &PodSpec, container: &Container, path: &str) -> Option<String> {
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| path.starts_with(&format!("{}/", m.mount_path.trim_end_matches('/'))))?;
    pod.volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)?
        .secret
        .as_ref()?
        .secret_name
        .clone()
}

/// The Secrets the pod mounts.
fn mounted_secrets(pod: &PodSpec) -> Vec<String> {
    pod.volumes
        .iter()
        .flatten()
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .collect()
}

/// The port of a TCP `--grpc-listen` value.
fn tcp_port(listen: &str) -> i32 {
    match ApiAddress::parse(listen) {
        Ok(ApiAddress::Tcp(address)) => address.port().into(),
        other => panic!("{listen}: not a TCP address: {other:?}"),
    }
}

/// The container port named `name`.
fn container_port(container: &Container, name: &str) -> i32 {
    container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no containerPort named {name}"))
        .container_port
}

/// The cert-manager Certificates deploy/README.md shows, by the Secret they fill.
fn readme_certificates() -> BTreeMap<String, Value> {
    let path = format!("{}/../deploy/README.md", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut certificates = BTreeMap::new();
    for block in text.split("```yaml\n").skip(1) {
        let block = block.split("```").next().expect("a closed block");
        for doc in serde_yaml_ng::Deserializer::from_str(block) {
            let doc: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{path}: a yaml block: {e}"));
            if doc["kind"] == "Certificate" {
                let secret = doc["spec"]["secretName"].as_str().expect("secretName");
                certificates.insert(secret.to_string(), doc.clone());
            }
        }
    }
    certificates
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
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
    let command = accepted_command(container);

    let value_of = |flag: &str| {
        let at = args.iter().position(|a| a == flag).expect(flag);
        args[at + 1].clone()
    };
    // The memory limit covers the budget of the DaemonSet's settings on 128 CPUs
    // (deploy/README.md, Memory).
    let flag = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .map_or(default, |at| args[at + 1].parse().expect(name))
    };
    let need = budget(&BudgetInputs {
        flow_map_entries: flag("--flow-map-entries", DEFAULT_FLOW_MAP_ENTRIES.into()),
        flow_cache_slots: flag("--flow-cache-slots", default_flow_cache_slots(128)),
        ring_buffer_bytes: flag("--ringbuf-bytes", DEFAULT_RING_BUFFER_BYTES.into()),
        max_connections: flag("--max-connections", DEFAULT_MAX_CONNECTIONS as u64),
        cpus: 128,
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
    // The API twice: the unauthenticated one is a Unix socket in the pod's own volume, so
    // that other hostNetwork pods cannot reach it; the relay's is on the pod's IP (the
    // node's: hostNetwork), with mutual TLS.
    let listens = values_of(&command, "--grpc-listen");
    assert_eq!(listens.len(), 2, "{listens:?}");
    let unix: Vec<&str> = listens
        .iter()
        .copied()
        .filter(|l| matches!(ApiAddress::parse(l), Ok(ApiAddress::Unix(_))))
        .collect();
    assert_eq!(unix.len(), 1, "one Unix socket: {listens:?}");
    let api = unix[0].to_string();
    assert!(
        values_of(&args, "--grpc-listen").contains(&"$(POD_IP):4245"),
        "{args:?}"
    );
    let pod_ip = container
        .env
        .iter()
        .flatten()
        .find(|v| v.name == "POD_IP")
        .and_then(|v| v.value_from.as_ref()?.field_ref.as_ref())
        .map(|f| f.field_path.as_str());
    assert_eq!(pod_ip, Some("status.podIP"));
    let tcp = listens
        .iter()
        .find(|l| !l.starts_with("unix:"))
        .expect("tcp");
    assert_eq!(tcp_port(tcp), container_port(container, "grpc"));
    // Mutual TLS, from the Secret cert-manager fills (deploy/README.md, "Relay").
    for flag in ["--grpc-tls-cert", "--grpc-tls-key", "--grpc-tls-client-ca"] {
        let path = value_in(&command, flag).unwrap_or_else(|| panic!("{flag}"));
        assert_eq!(
            secret_holding(pod, container, path).as_deref(),
            Some("observer-node-tls"),
            "{flag} {path}"
        );
    }
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

/// deploy/relay.yaml: each object valid; the relay's arguments and probes accepted; the
/// headless Service, the RBAC, the Secrets and the names agreeing with the DaemonSet, the
/// namespace and deploy/README.md.
#[test]
fn the_relay_manifests_are_valid_and_agree_with_the_daemonset() {
    let namespace: Namespace = typed(&documents("namespace.yaml")[0]);
    let namespace = namespace.metadata.name.expect("namespace name");
    let docs = documents("relay.yaml");
    let mut kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "Service",
            "ServiceAccount"
        ]
    );
    for doc in &docs {
        assert_eq!(
            doc["metadata"]["namespace"].as_str(),
            Some(namespace.as_str()),
            "{}",
            doc["metadata"]["name"]
        );
    }
    let one = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("a {kind}"))
    };
    let services: Vec<Service> = docs
        .iter()
        .filter(|d| d["kind"] == "Service")
        .map(typed)
        .collect();
    let account: ServiceAccount = typed(one("ServiceAccount"));
    let role: Role = typed(one("Role"));
    let binding: RoleBinding = typed(one("RoleBinding"));
    let deployment: Deployment = typed(one("Deployment"));
    let daemonset: DaemonSet = typed(&documents("daemonset.yaml")[0]);

    // The relay's Deployment: two replicas of a pod its selector selects.
    let spec = &deployment.spec;
    assert_eq!(spec.replicas, Some(2));
    let relay_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("relay pod labels");
    let relay_selector = spec.selector.match_labels.clone().expect("relay selector");
    assert!(selects(&relay_selector, &relay_labels));
    let pod = spec.template.spec.as_ref().expect("relay pod spec");
    assert_eq!(pod.containers.len(), 1);
    let container = &pod.containers[0];
    let command = accepted_command(container);
    assert_eq!(command[1], "relay");

    // The DaemonSet's pods and the relay's are told apart by their selectors.
    let node_labels = daemonset
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("daemonset pod labels");
    let node_selector = daemonset
        .spec
        .selector
        .match_labels
        .clone()
        .expect("daemonset selector");
    assert!(
        !selects(&node_selector, &relay_labels),
        "the DaemonSet selects the relay"
    );
    assert!(
        !selects(&relay_selector, &node_labels),
        "the relay selects the DaemonSet"
    );
    let node_pod = daemonset.spec.template.spec.as_ref().expect("pod spec");
    let node_container = &node_pod.containers[0];
    let node_command = accepted_command(node_container);

    // --peer-service names the headless Service, which selects the node observers (and
    // not the relay) at the port the relay dials and the DaemonSet serves.
    let peer_service = value_in(&command, "--peer-service").expect("--peer-service");
    let (peer_namespace, peer_name) = peer_service.split_once('/').expect("NAMESPACE/NAME");
    let headless = services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(peer_name))
        .unwrap_or_else(|| panic!("--peer-service {peer_service}: no such Service"));
    assert_eq!(headless.metadata.namespace.as_deref(), Some(peer_namespace));
    let headless_spec = headless.spec.as_ref().expect("Service spec");
    assert_eq!(
        headless_spec.cluster_ip.as_deref(),
        Some("None"),
        "headless"
    );
    assert_eq!(headless_spec.publish_not_ready_addresses, Some(false));
    let headless_selector = headless_spec.selector.clone().expect("a selector");
    assert!(selects(&headless_selector, &node_labels));
    assert!(!selects(&headless_selector, &relay_labels));
    let port_name = value_in(&command, "--peer-port-name").unwrap_or("grpc");
    let port = headless_spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(port_name))
        .unwrap_or_else(|| panic!("no port named {port_name} (--peer-port-name)"));
    let node_grpc = container_port(node_container, port_name);
    match &port.target_port {
        Some(IntOrString::String(name)) => assert_eq!(name, port_name),
        Some(IntOrString::Int(number)) => assert_eq!(*number, node_grpc),
        None => assert_eq!(port.port, node_grpc),
    }
    // The DaemonSet's TCP listener is that port (hostNetwork: the pod's IP is the node's).
    let node_tcp: Vec<i32> = values_of(&node_command, "--grpc-listen")
        .into_iter()
        .filter(|l| !l.starts_with("unix:"))
        .map(tcp_port)
        .collect();
    assert_eq!(node_tcp, [node_grpc]);

    // The relay dials with mutual TLS, expecting the headless Service's name, which the
    // node certificate carries.
    assert!(!command.contains(&"--peer-plaintext".to_string()));
    let peer_name_expected = format!("{peer_name}.{peer_namespace}.svc");
    assert_eq!(
        value_in(&command, "--peer-tls-server-name"),
        Some(peer_name_expected.as_str())
    );

    // RBAC: exactly get/list/watch of EndpointSlices, in the Service's namespace, for the
    // Deployment's ServiceAccount.
    assert_eq!(role.metadata.namespace.as_deref(), Some(peer_namespace));
    let rules = role.rules.clone().expect("rules");
    assert_eq!(rules.len(), 1, "{rules:?}");
    let rule = &rules[0];
    assert_eq!(
        rule.api_groups.as_deref(),
        Some(&["discovery.k8s.io".to_string()][..])
    );
    assert_eq!(
        rule.resources.as_deref(),
        Some(&["endpointslices".to_string()][..])
    );
    let mut verbs = rule.verbs.clone();
    verbs.sort();
    assert_eq!(verbs, ["get", "list", "watch"]);
    assert_eq!(rule.resource_names, None);
    assert_eq!(rule.non_resource_urls, None);
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(
        binding.role_ref.api_group.as_deref(),
        Some("rbac.authorization.k8s.io")
    );
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let subjects = binding.subjects.clone().expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), account.metadata.name.as_ref());
    assert_eq!(subjects[0].namespace, account.metadata.namespace);
    assert_eq!(pod.service_account_name, account.metadata.name);
    assert_ne!(
        pod.service_account_name, node_pod.service_account_name,
        "the relay has its own, narrower, identity"
    );

    // Its own API: TCP with mutual TLS, behind the ClusterIP Service.
    let listen = value_in(&command, "--grpc-listen").expect("--grpc-listen");
    let relay_port = tcp_port(listen);
    assert_eq!(container_port(container, "grpc"), relay_port);
    assert!(
        value_in(&command, "--grpc-tls-client-ca").is_some(),
        "mutual TLS"
    );
    let front = services
        .iter()
        .find(|s| s.metadata.name.as_deref() != Some(peer_name))
        .expect("the relay's Service");
    let front_spec = front.spec.as_ref().expect("Service spec");
    assert_ne!(front_spec.cluster_ip.as_deref(), Some("None"));
    assert!(selects(
        front_spec.selector.as_ref().expect("a selector"),
        &relay_labels
    ));
    let front_port = front_spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("grpc"))
        .expect("a port named grpc");
    assert_eq!(front_port.port, relay_port);
    assert_eq!(
        front_port.target_port,
        Some(IntOrString::String("grpc".into()))
    );
    let front_name = format!(
        "{}.{}.svc",
        front.metadata.name.as_deref().expect("name"),
        front.metadata.namespace.as_deref().expect("namespace")
    );

    // Probes: the observer's own client against the relay's API, over the same TLS.
    for probe in [&container.readiness_probe, &container.liveness_probe] {
        let probe_command = probe
            .as_ref()
            .and_then(|p| p.exec.as_ref())
            .and_then(|e| e.command.clone())
            .expect("an exec probe");
        observer::cli::check_args(&probe_command)
            .unwrap_or_else(|e| panic!("{probe_command:?}: {e}"));
        assert_eq!(probe_command[..2], ["observer", "status"]);
        let server = value_in(&probe_command, "--server").expect("--server");
        assert_eq!(server, format!("https://127.0.0.1:{relay_port}"));
        assert_eq!(
            value_in(&probe_command, "--tls-server-name"),
            Some(front_name.as_str())
        );
        // Trusts the CA the relay's certificate comes with, and presents a certificate
        // that CA signed (the relay's own, issued with client auth too).
        assert_eq!(
            value_in(&probe_command, "--tls-ca"),
            value_in(&command, "--grpc-tls-client-ca")
        );
        assert_eq!(
            value_in(&probe_command, "--tls-cert"),
            value_in(&command, "--grpc-tls-cert")
        );
        assert_eq!(
            value_in(&probe_command, "--tls-key"),
            value_in(&command, "--grpc-tls-key")
        );
    }

    // Not privileged in any way.
    let security = container
        .security_context
        .as_ref()
        .expect("security context");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.privileged, None);
    let capabilities = security.capabilities.as_ref().expect("capabilities");
    assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert_eq!(capabilities.add, None);
    assert_eq!(
        security.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    let pod_security = pod.security_context.as_ref().expect("pod security context");
    assert!(pod_security.run_as_user.is_some_and(|u| u > 0));
    assert_eq!(pod.host_network, None);
    assert!(
        container
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .is_some_and(|l| l.contains_key("memory")),
        "a memory limit"
    );

    // Every TLS file is in the Secret meant for it.
    for (flag, secret) in [
        ("--peer-tls-ca", "observer-relay-peer-tls"),
        ("--peer-tls-cert", "observer-relay-peer-tls"),
        ("--peer-tls-key", "observer-relay-peer-tls"),
        ("--grpc-tls-cert", "observer-relay-tls"),
        ("--grpc-tls-key", "observer-relay-tls"),
        ("--grpc-tls-client-ca", "observer-relay-tls"),
    ] {
        let path = value_in(&command, flag).unwrap_or_else(|| panic!("{flag}"));
        assert_eq!(
            secret_holding(pod, container, path).as_deref(),
            Some(secret),
            "{flag} {path}"
        );
    }

    // Every Secret mounted, by the relay or the nodes, is one deploy/README.md shows how
    // to make, as a Certificate for the names and usages its users check.
    let certificates = readme_certificates();
    let mut mounted = mounted_secrets(pod);
    mounted.extend(mounted_secrets(node_pod));
    mounted.sort();
    assert_eq!(
        mounted,
        [
            "observer-node-tls",
            "observer-relay-peer-tls",
            "observer-relay-tls"
        ]
    );
    for secret in &mounted {
        let certificate = certificates
            .get(secret)
            .unwrap_or_else(|| panic!("deploy/README.md shows no Certificate for {secret}"));
        assert_eq!(
            certificate["metadata"]["namespace"].as_str(),
            Some(namespace.as_str())
        );
        assert!(certificate["spec"]["issuerRef"]["name"].is_string());
    }
    let has = |secret: &str, field: &str, value: &str| {
        strings(&certificates[secret]["spec"][field]).contains(&value)
    };
    // The node serves under the name the relay expects; the relay is the nodes' client;
    // the relay serves under its Service's name, and its probes use the same certificate
    // as a client.
    assert!(has("observer-node-tls", "dnsNames", &peer_name_expected));
    assert!(has("observer-node-tls", "usages", "server auth"));
    assert!(has("observer-relay-peer-tls", "usages", "client auth"));
    assert!(has("observer-relay-tls", "dnsNames", &front_name));
    assert!(has("observer-relay-tls", "usages", "server auth"));
    assert!(has("observer-relay-tls", "usages", "client auth"));
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
