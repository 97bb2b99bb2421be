//! `observer check` with Calico and AdminNetworkPolicy manifests: every kind judged
//! together in tiers, the verdict naming each tier's decision (a Pass included), and ICMP
//! judged too; with NetworkPolicies alone, ICMP judged as the CNIs that enforce them do
//! (`cni-dependent`).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: PodList
items:
- metadata: {name: db-0, namespace: shop, labels: {app: db}}
  spec: {containers: [{name: pg, image: postgres, ports: [{name: pg, containerPort: 5432}]}]}
  status: {podIP: 10.1.0.5}
- metadata: {name: api-0, namespace: shop, labels: {app: api}}
  spec: {containers: [{name: api, image: api}]}
  status: {podIP: 10.1.0.6}
- metadata: {name: web-0, namespace: shop, labels: {app: web}}
  spec: {containers: [{name: web, image: web}]}
  status: {podIP: 10.1.0.7}
---
# The platform team passes the shop namespace's traffic on to its own policies.
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: shop-decides}
spec:
  priority: 10
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: shop}}}
  ingress: [{name: pass, action: Pass, from: [{namespaces: {}}]}]
---
# A global default deny of ingress, outside the system namespaces.
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: default-deny}
spec:
  order: 2000
  namespaceSelector: kubernetes.io/metadata.name not in {"kube-system"}
  types: [Ingress]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db-from-api, namespace: shop}
spec:
  order: 100
  selector: app == 'db'
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: app == 'api'}
    destination: {ports: [pg]}
"#;

fn check(flows: &str) -> (Vec<Value>, String) {
    check_with("tiers", MANIFESTS, flows)
}

/// Runs `observer check` on `manifests` (written to a file named by `tag`) and `flows`.
fn check_with(tag: &str, manifests: &str, flows: &str) -> (Vec<Value>, String) {
    check_with_args(tag, manifests, flows, &[])
}

/// [`check_with`], with more arguments for `observer check`.
fn check_with_args(tag: &str, manifests: &str, flows: &str, args: &[&str]) -> (Vec<Value>, String) {
    let path = std::env::temp_dir().join(format!("check-tiered-{}-{tag}.yaml", std::process::id()));
    std::fs::write(&path, manifests).expect("write manifests");
    let mut child = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["check", "--flows", "-", "--manifests"])
        .arg(&path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn check");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(flows.as_bytes())
        .expect("write flows");
    let out = child.wait_with_output().expect("wait");
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    (lines, stderr)
}

fn steps(line: &Value, direction: &str) -> Vec<String> {
    line[direction]["tiers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{} {} {} {}",
                t["tier"].as_str().unwrap_or_default(),
                t["policy"]["name"].as_str().unwrap_or_default(),
                t["rule_index"],
                t["action"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn calico_and_admin_policies_are_judged_in_tiers() {
    let (lines, stderr) = check(concat!(
        r#"{"src":"shop/api-0","dst":"shop/db-0","dst_port":5432}"#,
        "\n",
        r#"{"src":"shop/web-0","dst":"shop/db-0","dst_port":5432}"#,
        "\n",
        r#"{"src":"shop/api-0","dst":"shop/db-0","protocol":"ICMP","icmp":{"type":8,"code":0}}"#,
        "\n",
    ));
    assert!(stderr.contains("3 flows: 1 allowed, 2 denied"), "{stderr}");
    assert_eq!(lines[0]["verdict"], "allow", "{}", lines[0]);
    assert_eq!(
        steps(&lines[0], "ingress"),
        [
            "adminnetworkpolicy shop-decides 0 pass",
            "default db-from-api 0 allow"
        ]
    );
    assert_eq!(
        lines[0]["ingress"]["tiers"][1]["policy"]["kind"],
        "projectcalico.org/NetworkPolicy"
    );
    // No rule admits web: the default tier ends with its deny, naming the policies in it.
    assert_eq!(lines[1]["verdict"], "deny", "{}", lines[1]);
    assert_eq!(
        steps(&lines[1], "ingress"),
        [
            "adminnetworkpolicy shop-decides 0 pass",
            "default db-from-api null deny",
            "default default-deny null deny"
        ]
    );
    // A ping is not TCP: the Calico rule (protocol TCP) does not admit it.
    assert_eq!(lines[2]["verdict"], "deny", "{}", lines[2]);
}

#[test]
fn a_bad_calico_selector_is_an_error_naming_the_object_and_field() {
    let path = std::env::temp_dir().join(format!("check-tiered-bad-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: broken}\n\
         spec: {selector: \"app in {'a'\"}\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["check", "--flows", "-", "--manifests"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("GlobalNetworkPolicy"), "{stderr}");
    assert!(stderr.contains("spec.selector"), "{stderr}");
    assert!(stderr.contains("at position"), "{stderr}");
}

#[test]
fn with_network_policies_alone_icmp_is_judged_as_the_cnis_do() {
    let manifests = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
        metadata: {name: db-from-api, namespace: shop}\n\
        spec:\n  podSelector: {matchLabels: {app: db}}\n  \
        ingress: [{from: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: 5432}]}]\n---\n\
        apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
        metadata: {name: api-from-web, namespace: shop}\n\
        spec:\n  podSelector: {matchLabels: {app: api}}\n  \
        ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]\n---\n\
        apiVersion: v1\nkind: PodList\nitems:\n\
        - metadata: {name: db-0, namespace: shop, labels: {app: db}}\n  status: {podIP: 10.1.0.5}\n\
        - metadata: {name: api-0, namespace: shop, labels: {app: api}}\n  status: {podIP: 10.1.0.6}\n\
        - metadata: {name: web-0, namespace: shop, labels: {app: web}}\n  status: {podIP: 10.1.0.7}\n";
    let (lines, _) = check_with(
        "icmp",
        manifests,
        concat!(
            // The rule names a port: only TCP 5432 gets through, not a ping.
            r#"{"src":"shop/api-0","dst":"shop/db-0","protocol":"ICMP","icmp":{"type":8,"code":0}}"#,
            "\n",
            // A rule without ports admits every protocol.
            r#"{"src":"shop/web-0","dst":"shop/api-0","protocol":"ICMP","icmp":{"type":8,"code":0}}"#,
            "\n",
            r#"{"src":"shop/api-0","dst":"shop/db-0","dst_port":5432}"#,
            "\n",
        ),
    );
    assert_eq!(
        (&lines[0]["verdict"], &lines[0]["category"]),
        (&Value::from("deny"), &Value::from("cni-dependent")),
        "{}",
        lines[0]
    );
    assert_eq!(
        (&lines[1]["verdict"], &lines[1]["category"]),
        (&Value::from("allow"), &Value::from("cni-dependent")),
        "{}",
        lines[1]
    );
    // TCP keeps the NetworkPolicy engine's verdict.
    assert_eq!(
        (&lines[2]["verdict"], &lines[2]["category"]),
        (&Value::from("allow"), &Value::from("decided"))
    );
}

#[test]
fn a_staged_policy_s_verdict_is_shown_beside_the_enforced_one() {
    let manifests = format!(
        "{MANIFESTS}---\n\
         apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\n\
         metadata: {{name: lock-down-db}}\n\
         spec:\n  order: 10\n  selector: app == 'db'\n  types: [Ingress]\n  \
         ingress: [{{action: Deny, source: {{selector: app == 'api'}}}}]\n"
    );
    let (lines, stderr) = check_with(
        "staged",
        &manifests,
        concat!(
            r#"{"src":"shop/api-0","dst":"shop/db-0","dst_port":5432}"#,
            "\n"
        ),
    );
    // Enforced: allowed, as before; staged: the new policy would deny it.
    assert_eq!(lines[0]["verdict"], "allow", "{stderr} {}", lines[0]);
    assert_eq!(lines[0]["staged"]["verdict"], "deny", "{}", lines[0]);
    let step = &lines[0]["staged"]["ingress"]["tiers"];
    assert!(
        step.as_array()
            .is_some_and(|s| s.iter().any(|t| t["policy"]["name"] == "lock-down-db")),
        "{}",
        lines[0]
    );
}

/// Nodes, a host-networked agent on `n2`, and a database on `n1` that admits the nodes'
/// network on its port only.
const NODES_AND_HOST_NETWORK: &str = "\
apiVersion: v1\nkind: NodeList\nitems:\n\
- metadata: {name: n1}\n  status: {addresses: [{type: InternalIP, address: 192.168.0.1}]}\n\
- metadata: {name: n2}\n  status: {addresses: [{type: InternalIP, address: 192.168.0.2}]}\n\
---\napiVersion: v1\nkind: PodList\nitems:\n\
- metadata: {name: db-0, namespace: shop, labels: {app: db}}\n  \
  spec: {nodeName: n1, containers: [{name: pg, image: pg}]}\n  status: {podIP: 10.1.0.5}\n\
- metadata: {name: api-0, namespace: shop, labels: {app: api}}\n  \
  spec: {nodeName: n2, containers: [{name: api, image: api}]}\n  status: {podIP: 10.1.0.6}\n\
- metadata: {name: agent, namespace: shop, labels: {app: agent}}\n  \
  spec: {nodeName: n2, hostNetwork: true, containers: [{name: a, image: a}]}\n  \
  status: {podIP: 192.168.0.2}\n\
---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
metadata: {name: db-from-nodes, namespace: shop}\n\
spec:\n  podSelector: {matchLabels: {app: db}}\n  \
  ingress: [{from: [{ipBlock: {cidr: 192.168.0.0/24}}], ports: [{port: 5432}]}]\n";

#[test]
fn the_cni_profile_decides_what_network_policy_leaves_open() {
    let flows = concat!(
        // A host-networked pod: its node's address, which the ipBlock admits, for Calico.
        r#"{"src":"shop/agent","dst":"shop/db-0","dst_port":5432}"#,
        "\n",
        // A ping from the pod's own node: never blocked.
        r#"{"src":"192.168.0.1","dst":"shop/db-0","protocol":"ICMP","icmp":{"type":8,"code":0}}"#,
        "\n",
        // A ping from another pod: the rule names a port, so the isolated pod drops it.
        r#"{"src":"shop/api-0","dst":"shop/db-0","protocol":"ICMP","icmp":{"type":8,"code":0}}"#,
        "\n",
    );
    let judged = |profile: &str| {
        let (lines, _) = check_with_args(
            profile,
            NODES_AND_HOST_NETWORK,
            flows,
            &["--cni-profile", profile],
        );
        lines
            .iter()
            .map(|l| {
                let verdict = l["verdict"].as_str().unwrap_or("-");
                let category = l["category"].as_str().unwrap_or("-");
                let error = l["error"].as_str().map_or("", |_| " (error)");
                format!("{verdict} {category}{error}")
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        judged("calico"),
        [
            "allow cni-dependent",
            "allow node-exempt",
            "deny cni-dependent"
        ]
    );
    assert_eq!(
        judged("cilium"),
        [
            "undefined undefined",
            "allow node-exempt",
            "deny cni-dependent"
        ]
    );
    assert_eq!(
        judged("generic"),
        ["undefined undefined", "- - (error)", "- - (error)"]
    );
}

#[test]
fn an_unknown_cni_profile_is_refused_with_the_choices() {
    let out = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["check", "--flows", "-", "--manifests", "/dev/null"])
        .args(["--cni-profile", "flannel"])
        .output()
        .expect("run check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("calico, cilium, generic"), "{stderr}");
}
