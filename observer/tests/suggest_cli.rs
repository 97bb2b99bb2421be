//! `observer suggest` from flow-log files and manifests: the least-privilege set for each
//! workload, compared structurally (read back through the manifest loader); DNS to the
//! pods that really back the DNS Service; the proof; byte-identical output whatever the
//! record order; bad input named.

use std::io::Write;
use std::process::{Command, Output};

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use observer::cluster::manifests;
use serde_json::{Value, json};

const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-system}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  {name: web-5d8f, namespace: shop, uid: rs-web,
   ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: d-web, controller: true}]}
spec: {selector: {matchLabels: {app: web}}}
---
apiVersion: v1
kind: PodList
items:
- metadata:
    {name: web-5d8f-a, namespace: shop, labels: {app: web, pod-template-hash: 5d8f},
     ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-5d8f, uid: rs-web, controller: true}]}
  status: {podIP: 10.0.0.1}
- metadata:
    {name: web-5d8f-b, namespace: shop, labels: {app: web, pod-template-hash: 5d8f},
     ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-5d8f, uid: rs-web, controller: true}]}
  status: {podIP: 10.0.0.2}
- metadata: {name: api-0, namespace: shop, labels: {app: api}}
  spec: {containers: [{name: api, image: api, ports: [{name: http, containerPort: 8080}]}]}
  status: {podIP: 10.0.0.3}
- metadata:
    {name: db-0, namespace: shop,
     labels: {app: db, controller-revision-hash: db-7c, statefulset.kubernetes.io/pod-name: db-0},
     ownerReferences: [{apiVersion: apps/v1, kind: StatefulSet, name: db, uid: ss-db, controller: true}]}
  status: {podIP: 10.0.0.4}
- metadata: {name: coredns-1, namespace: kube-system, labels: {k8s-app: kube-dns}}
  status: {podIP: 10.0.9.9}
"#;

fn end(ip: &str, port: u16, namespace: &str, pod: &str, labels: Value, workload: Value) -> Value {
    let mut end = json!({"ip": ip, "port": port, "namespace": namespace, "pod": pod,
        "labels": labels, "node": "node-a"});
    if !workload.is_null() {
        end["workload"] = workload;
    }
    end
}

fn record(src: Value, dst: Value, protocol: &str, second: u32) -> Value {
    json!({"src": src, "dst": dst, "protocol": protocol,
        "fwd": {"packets": 3, "bytes": 300}, "rev": {"packets": 2, "bytes": 200},
        "tcp_flags": [], "first_seen": format!("2026-11-22T10:00:{second:02}Z"),
        "last_seen": format!("2026-11-22T10:00:{second:02}.5Z"), "state": "closed",
        "node_name": "node-a", "interfaces": []})
}

fn records() -> Vec<Value> {
    let web = |pod: &str, ip: &str, port| {
        end(
            ip,
            port,
            "shop",
            pod,
            json!({"app": "web", "pod-template-hash": "5d8f"}),
            json!({"kind": "Deployment", "name": "web"}),
        )
    };
    let api = |port| {
        end(
            "10.0.0.3",
            port,
            "shop",
            "api-0",
            json!({"app": "api"}),
            Value::Null,
        )
    };
    let db = end(
        "10.0.0.4",
        5432,
        "shop",
        "db-0",
        json!({"app": "db", "controller-revision-hash": "db-7c",
               "statefulset.kubernetes.io/pod-name": "db-0"}),
        json!({"kind": "StatefulSet", "name": "db"}),
    );
    let dns = end(
        "10.0.9.9",
        53,
        "kube-system",
        "coredns-1",
        json!({"k8s-app": "kube-dns"}),
        Value::Null,
    );
    let mut through_service = record(web("web-5d8f-b", "10.0.0.2", 41000), api(8080), "TCP", 2);
    through_service["service"] = json!({"namespace": "shop", "name": "api", "port": 80,
        "cluster_ip": "10.96.0.3", "backend": "observed"});
    let mut unresolved = record(
        web("web-5d8f-a", "10.0.0.1", 41001),
        json!({"ip": "10.96.0.7", "port": 80}),
        "TCP",
        3,
    );
    unresolved["service"] = json!({"namespace": "shop", "name": "gone", "port": 80,
        "cluster_ip": "10.96.0.7", "backend": "unresolved"});
    let mut started = record(web("web-5d8f-a", "10.0.0.1", 41002), api(9999), "TCP", 4);
    started["state"] = json!("started");
    vec![
        record(web("web-5d8f-a", "10.0.0.1", 40000), api(8080), "TCP", 1),
        through_service,
        unresolved,
        started,
        record(api(40100), db.clone(), "TCP", 5),
        record(web("web-5d8f-a", "10.0.0.1", 40200), dns, "UDP", 6),
        record(
            api(40300),
            json!({"ip": "93.184.216.34", "port": 443, "external": true}),
            "TCP",
            7,
        ),
        record(
            web("web-5d8f-a", "10.0.0.1", 7),
            {
                let mut db = db;
                db["port"] = json!(7);
                db
            },
            "ICMP",
            8,
        ),
    ]
}

fn suggest(tag: &str, lines: &[Value]) -> Output {
    suggest_with(tag, lines, &[])
}

fn suggest_with(tag: &str, lines: &[Value], args: &[&str]) -> Output {
    suggest_in(tag, CLUSTER, lines, args)
}

fn suggest_in(tag: &str, cluster: &str, lines: &[Value], args: &[&str]) -> Output {
    let dir = std::env::temp_dir().join(format!("suggest-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    std::fs::write(dir.join("cluster.yaml"), cluster).expect("manifests");
    let mut flows = std::fs::File::create(dir.join("flows.jsonl")).expect("flows");
    for line in lines {
        writeln!(flows, "{line}").expect("write a flow");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_observer"))
        .arg("suggest")
        .arg("--flows")
        .arg(dir.join("flows.jsonl"))
        .arg("--manifests")
        .arg(dir.join("cluster.yaml"))
        .args(args)
        .output()
        .expect("run suggest");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn policies(out: &Output) -> Vec<NetworkPolicy> {
    let text = String::from_utf8_lossy(&out.stdout);
    let loaded = manifests::parse("suggested.yaml", &text);
    assert!(loaded.errors.is_empty(), "{:?}\n{text}", loaded.errors);
    loaded
        .into_objects()
        .policies
        .iter()
        .map(|p| (**p).clone())
        .collect()
}

fn named<'a>(policies: &'a [NetworkPolicy], name: &str) -> &'a NetworkPolicy {
    policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no policy {name}"))
}

/// A rule's peers and ports, as the API object has them.
type RawRule = (
    Option<Vec<NetworkPolicyPeer>>,
    Option<Vec<NetworkPolicyPort>>,
);

/// Each rule as (peer as JSON, ports as "PROTO/PORT" strings).
fn rules(peers: Vec<RawRule>) -> Vec<(Value, Vec<String>)> {
    peers
        .into_iter()
        .map(|(peers, ports)| {
            let ports = ports
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let port = serde_json::to_value(&p.port).unwrap_or_default();
                    format!("{}/{}", p.protocol.as_deref().unwrap_or("TCP"), port)
                })
                .collect();
            (
                serde_json::to_value(peers.unwrap_or_default()).unwrap_or_default(),
                ports,
            )
        })
        .collect()
}

fn ingress(p: &NetworkPolicy) -> Vec<(Value, Vec<String>)> {
    let spec = p.spec.clone().unwrap_or_default();
    rules(
        spec.ingress
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.from, r.ports))
            .collect(),
    )
}

fn egress(p: &NetworkPolicy) -> Vec<(Value, Vec<String>)> {
    let spec = p.spec.clone().unwrap_or_default();
    rules(
        spec.egress
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.to, r.ports))
            .collect(),
    )
}

fn selector(p: &NetworkPolicy) -> Value {
    let selector = p.spec.as_ref().and_then(|s| s.pod_selector.clone());
    serde_json::to_value(selector.and_then(|s| s.match_labels)).unwrap_or_default()
}

#[test]
fn each_workload_gets_exactly_what_it_was_seen_doing_and_the_proof_holds() {
    let out = suggest("exact", &records());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let policies = policies(&out);
    assert_eq!(policies.len(), 4, "web, api, db, coredns: {stderr}");

    let web = named(&policies, "web-observed");
    assert_eq!(selector(web), json!({"app": "web"}), "no pod-template-hash");
    assert_eq!(ingress(web), vec![]);
    assert_eq!(
        egress(web),
        vec![
            (
                json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]),
                vec!["TCP/53".into(), "UDP/53".into()]
            ),
            (
                json!([{"podSelector": {"matchLabels": {"app": "api"}}}]),
                vec!["TCP/8080".into()]
            ),
        ],
        "the DNS pods' real labels, on 53 over UDP and TCP"
    );
    let api = named(&policies, "api-0-observed");
    assert_eq!(
        ingress(api),
        vec![(
            json!([{"podSelector": {"matchLabels": {"app": "web"}}}]),
            vec!["TCP/8080".into()]
        )],
        "the Service connection is an edge to the backend's port"
    );
    assert_eq!(
        egress(api),
        vec![
            (
                json!([{"podSelector": {"matchLabels": {"app": "db"}}}]),
                vec!["TCP/5432".into()]
            ),
            (
                json!([{"ipBlock": {"cidr": "93.184.216.34/32"}}]),
                vec!["TCP/443".into()]
            ),
        ]
    );
    let db = named(&policies, "db-observed");
    assert_eq!(
        selector(db),
        json!({"app": "db"}),
        "no per-pod StatefulSet labels"
    );
    assert_eq!(egress(db), vec![]);
    // Every policy is default-deny both ways except what was observed.
    for p in &policies {
        let types = p.spec.as_ref().and_then(|s| s.policy_types.clone());
        assert_eq!(
            types,
            Some(vec!["Ingress".to_string(), "Egress".to_string()])
        );
    }

    assert!(stderr.contains("proof: 5 records judged"), "{stderr}");
    assert!(stderr.contains("5 allowed, 0 denied"), "{stderr}");
    assert!(stderr.contains("1 unresolved Service records"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Not expressible in NetworkPolicy"),
        "ICMP is listed, never a port rule"
    );
    // Pairs never seen are what the suggestion denies: db to web, for one.
    assert!(
        stderr.contains("shop/StatefulSet/db -> shop/Deployment/web"),
        "{stderr}"
    );
}

#[test]
fn the_output_is_the_same_bytes_whatever_the_record_order() {
    let mut shuffled = records();
    shuffled.reverse();
    shuffled.swap(1, 4);
    let (a, b) = (
        suggest("order-a", &records()),
        suggest("order-b", &shuffled),
    );
    assert!(a.status.success() && b.status.success());
    assert_eq!(
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
}

#[test]
fn a_line_that_is_not_a_record_is_refused_naming_it() {
    let mut lines = records();
    lines.insert(2, json!({"hello": "world"}));
    let out = suggest("bad", &lines);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 3: not a flow-log record"), "{stderr}");
}

#[test]
fn the_calico_format_loads_back_and_is_proven_with_the_tiered_engine() {
    let out = suggest_with(
        "calico",
        &records(),
        &["--format", "calico", "--calico-order", "500"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8_lossy(&out.stdout);
    let loaded = manifests::parse("suggested.yaml", &text);
    assert!(loaded.errors.is_empty(), "{:?}\n{text}", loaded.errors);
    let calico = loaded.into_objects().calico_policies;
    assert_eq!(calico.len(), 4, "{text}");
    assert!(text.contains("selector: \"app == 'web'\""), "{text}");
    assert!(
        text.contains("namespaceSelector: \"projectcalico.org/name == 'kube-system'\""),
        "{text}"
    );
    assert!(text.contains("order: 500"), "{text}");
    // The ping NetworkPolicy cannot express is a rule here, and its record is judged too.
    assert!(text.contains("protocol: ICMP"), "{text}");
    assert!(stderr.contains("6 allowed, 0 denied"), "{stderr}");
}

#[test]
fn one_policy_per_namespace_allows_what_any_of_its_pods_did() {
    let out = suggest_with("namespace", &records(), &["--granularity", "namespace"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let policies = policies(&out);
    let mut names: Vec<_> = policies
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["kube-system-observed", "shop-observed"]);
    let shop = named(&policies, "shop-observed");
    assert_eq!(selector(shop), json!({}), "every pod of the namespace");
    assert_eq!(
        ingress(shop),
        vec![
            (
                json!([{"podSelector": {"matchLabels": {"app": "web"}}}]),
                vec!["TCP/8080".into()]
            ),
            (
                json!([{"podSelector": {"matchLabels": {"app": "api"}}}]),
                vec!["TCP/5432".into()]
            ),
        ],
        "peers in workload order: Deployment/web, then Pod/api-0"
    );
    assert!(stderr.contains("5 allowed, 0 denied"), "{stderr}");
}

#[test]
fn declared_rules_no_flow_used_and_workloads_no_policy_selects_are_listed() {
    let cluster = format!(
        "{CLUSTER}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: api-from-web, namespace: shop}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: api}}}}\n  ingress:\n  \
         - from: [{{podSelector: {{matchLabels: {{app: web}}}}}}]\n    ports: [{{port: 8080}}]\n  \
         - from: [{{podSelector: {{matchLabels: {{app: db}}}}}}]\n    ports: [{{port: 9999}}]\n"
    );
    let mut lines = records();
    // The first record was allowed by rule 0 when it was written.
    lines[0]["verdict"] = json!("allow");
    lines[0]["category"] = json!("decided");
    lines[0]["ingress"] = json!({"decision": "allowed", "policies": ["shop/api-from-web"],
        "tiers": [{"tier": "networkpolicy", "rule_index": 0, "action": "allow",
                   "policy": {"kind": "NetworkPolicy", "namespace": "shop", "name": "api-from-web"}}]});
    lines[0]["egress"] = json!({"decision": "not-isolated", "policies": []});
    let out = suggest_in("existing", &cluster, &lines, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("candidates to remove): 1\n  shop/api-from-web ingress rule 1"),
        "{stderr}"
    );
    let unselected = stderr
        .split("workloads no declared policy selects")
        .nth(1)
        .and_then(|s| s.split("declared rules").next())
        .unwrap_or_default();
    assert!(unselected.contains("shop/StatefulSet/db"), "{stderr}");
    assert!(
        !unselected.contains("shop/Pod/api-0"),
        "api-0 is selected: {stderr}"
    );
}

#[test]
fn diff_prints_only_what_is_not_declared_as_suggested() {
    let first = suggest("diff-source", &records());
    assert!(first.status.success());
    let text = String::from_utf8_lossy(&first.stdout);
    let web = text
        .split("---\n")
        .find(|doc| doc.contains("name: \"web-observed\""))
        .expect("the web policy")
        .to_string();
    // web's policy is already declared as suggested; api's is declared with another spec.
    let api_other = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
        metadata: {name: api-0-observed, namespace: shop}\nspec: {podSelector: {}}\n";
    let cluster = format!("{CLUSTER}---\n{web}---\n{api_other}");
    let out = suggest_in("diff", &cluster, &records(), &["--diff"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--diff: 2 new, 1 changed, 1 already declared as suggested"),
        "{stderr}"
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!printed.contains("name: \"web-observed\""), "{printed}");
    assert!(printed.contains("name: \"api-0-observed\""), "{printed}");
}

#[test]
fn named_ports_are_written_by_the_name_the_destination_gives_them() {
    let out = suggest_with("named", &records(), &["--named-ports"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let policies = policies(&out);
    let api_rule = ingress(named(&policies, "api-0-observed"));
    assert_eq!(
        api_rule,
        vec![(
            json!([{"podSelector": {"matchLabels": {"app": "web"}}}]),
            vec!["TCP/\"http\"".to_string()]
        )],
        "api-0 declares 8080 as http"
    );
    let web_rules = egress(named(&policies, "web-observed"));
    assert!(
        web_rules
            .iter()
            .any(|(_, ports)| ports == &vec!["TCP/\"http\"".to_string()])
    );
    // Named ports resolve on the destination: the proof still holds.
    assert!(stderr.contains("5 allowed, 0 denied"), "{stderr}");
}

/// A Calico policy that denies api → db (a violation today): in either format the proof is
/// made by the tiered engine with it, which counts that record as denied by a declared
/// rule, not as a bug of the suggestion.
#[test]
fn a_declared_calico_deny_is_part_of_the_proof_in_either_format() {
    let cluster = format!(
        "{CLUSTER}---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
         metadata: {{name: no-db}}\nspec:\n  order: 10\n  selector: \"app == 'db'\"\n  \
         types: [Ingress]\n  ingress:\n  - action: Deny\n    source: {{selector: \"app == 'api'\"}}\n"
    );
    for format in ["k8s", "calico"] {
        let out = suggest_in(
            &format!("deny-{format}"),
            &cluster,
            &records(),
            &["--format", format],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{format}: {stderr}");
        assert!(stderr.contains("0 denied;"), "{format}: {stderr}");
        assert!(
            stderr.contains("and 1 denied by a declared Deny rule"),
            "{format}: {stderr}"
        );
    }
}

/// The Calico format writes named ports as Calico does (`ports: ["http"]`) and proves them
/// with the tiered engine; `--diff` compares with the declared Calico policies.
#[test]
fn the_calico_format_has_named_ports_and_a_diff() {
    let out = suggest_with(
        "calico-named",
        &records(),
        &["--format", "calico", "--named-ports"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("ports: [\"http\"]"), "{text}");
    assert!(stderr.contains("6 allowed, 0 denied"), "{stderr}");
    // Declare web's Calico policy as suggested: --diff leaves it out.
    let web = text
        .split("---\n")
        .find(|doc| doc.contains("name: \"web-observed\""))
        .expect("the web policy")
        .to_string();
    let cluster = format!("{CLUSTER}---\n{web}");
    let out = suggest_in(
        "calico-diff",
        &cluster,
        &records(),
        &["--format", "calico", "--named-ports", "--diff"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--diff: 3 new, 0 changed, 1 already declared as suggested"),
        "{stderr}"
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!printed.contains("name: \"web-observed\""), "{printed}");
    assert!(printed.contains("name: \"api-0-observed\""), "{printed}");
}
