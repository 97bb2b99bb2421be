//! Privileged end to end: traffic recorded by `observer run` in a lab with a cluster state,
//! replayed through `observer check` against a policy set (what-if).

mod support;

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use observer_lab::Lab;
use observer_lab::traffic::{ping, tcp_exchange, udp_exchange};
use support::{Observer, require_root, scratch_dir};

#[test]
fn recorded_flows_replay_against_a_proposed_policy() -> Result<()> {
    require_root();
    let dir = scratch_dir("replay");
    let mut lab = Lab::new()?;
    let a = lab.add_pod("a")?;
    let b = lab.add_pod("b")?;
    let pod = |name: &str, p: &observer_lab::Pod| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: lab, labels: {{app: {name}}}}}\n\
             spec: {{nodeName: lab-node, containers: [{{name: c, image: x}}]}}\n\
             status: {{podIP: {}, podIPs: [{{ip: {}}}, {{ip: \"{}\"}}]}}\n",
            p.ipv4, p.ipv4, p.ipv6
        )
    };
    let manifests = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: lab}}\n---\n{}---\n{}---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: b-from-a-tcp, namespace: lab}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: b}}}}\n\
         \x20 ingress:\n  - from: [{{podSelector: {{matchLabels: {{app: a}}}}}}]\n    ports: [{{protocol: TCP}}]\n",
        pod("a", &a),
        pod("b", &b)
    );
    let manifest_path = dir.join("proposed.yaml");
    std::fs::write(&manifest_path, manifests)?;
    // Recorded with a cluster state, so the records name pods and their node: the daemon's
    // own lines, every field of them, are what check reads.
    let manifest_arg = manifest_path.to_string_lossy().into_owned();
    let mut observer = Observer::start(
        &lab,
        &dir,
        &["--interfaces", "veth*", "--manifests", &manifest_arg],
    )?;
    observer.wait_attached(&["vetha", "vethb"])?;
    observer.wait_stat("cluster_views", 1)?;
    let tcp = tcp_exchange(&a, &b, IpAddr::V4(b.ipv4), 1000, 1000)?;
    let udp = udp_exchange(&a, &b, IpAddr::V6(b.ipv6), 2)?;
    ping(&a, IpAddr::V4(b.ipv4), 1)?;
    std::thread::sleep(Duration::from_millis(300));
    let stopped = observer.stop()?;
    // Its stderr is a file, not a terminal: plain text, no colour codes.
    assert!(stopped.log.contains("attached"), "{}", stopped.log);
    assert!(
        !stopped.log.contains('\u{1b}'),
        "ANSI codes: {:?}",
        stopped.log
    );

    let flow_log = dir.join("flows.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_observer"))
        .arg("check")
        .arg("--manifests")
        .arg(&manifest_path)
        .arg("--flows")
        .arg(&flow_log)
        .output()?;
    if !out.status.success() {
        bail!(
            "observer check failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&flow_log)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let verdicts: Vec<serde_json::Value> = String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(
        records.len(),
        verdicts.len(),
        "one verdict per recorded flow, in order"
    );
    let verdict_of = |protocol: &str, sport: u16| -> Result<&serde_json::Value> {
        let index = records
            .iter()
            .position(|r| r["protocol"] == protocol && r["src"]["port"] == sport)
            .with_context(|| format!("no {protocol} record from port {sport}"))?;
        Ok(&verdicts[index])
    };
    let tcp_verdict = verdict_of("TCP", tcp.0)?;
    assert_eq!(tcp_verdict["verdict"], "allow", "{tcp_verdict}");
    assert_eq!(
        tcp_verdict["ingress"]["decision"], "allowed",
        "{tcp_verdict}"
    );
    assert_eq!(tcp_verdict["ingress"]["policies"][0], "lab/b-from-a-tcp");
    let tier = &tcp_verdict["ingress"]["tiers"][0];
    assert_eq!(
        (
            &tier["tier"],
            &tier["policy"]["kind"],
            &tier["policy"]["name"]
        ),
        (
            &serde_json::json!("networkpolicy"),
            &serde_json::json!("NetworkPolicy"),
            &serde_json::json!("b-from-a-tcp")
        ),
        "{tcp_verdict}"
    );
    assert_eq!(
        (&tier["rule_index"], &tier["action"]),
        (&serde_json::json!(0), &serde_json::json!("allow"))
    );
    let tcp_record = records
        .iter()
        .find(|r| r["protocol"] == "TCP" && r["src"]["port"] == tcp.0)
        .context("no TCP record")?;
    assert_eq!(tcp_record["src"]["node"], "lab-node", "{tcp_record}");
    let udp_verdict = verdict_of("UDP", udp.0)?;
    assert_eq!(udp_verdict["verdict"], "deny", "{udp_verdict}");
    assert_eq!(
        udp_verdict["ingress"]["decision"], "denied",
        "{udp_verdict}"
    );
    assert_eq!(udp_verdict["ingress"]["policies"][0], "lab/b-from-a-tcp");
    let icmp_index = records
        .iter()
        .position(|r| r["protocol"] == "ICMP")
        .context("no ICMP record")?;
    // ICMP is judged as Calico and Cilium enforce NetworkPolicy: b's only rule names TCP.
    let icmp_verdict = &verdicts[icmp_index];
    assert_eq!(
        (&icmp_verdict["verdict"], &icmp_verdict["category"]),
        (
            &serde_json::json!("deny"),
            &serde_json::json!("cni-dependent")
        ),
        "{icmp_verdict}"
    );
    assert_eq!(icmp_verdict["ingress"]["tiers"][0]["tier"], "networkpolicy");
    Ok(())
}
