//! Suggestions from a running observer: a lab node with workloads in two namespaces (web
//! and api in `shop`, a DNS pod in `kube-system`), web calling api through a Service and
//! both resolving names with the DNS pod. `observer suggest --server` returns, for each
//! workload, exactly the least-privilege set (compared structurally), and `observer check`
//! with those policies allows every observed flow and denies the pairs never seen. Needs
//! root.

mod support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;

use anyhow::{Context, Result};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use observer::cluster::manifests;
use observer_lab::traffic::tcp_exchange_via;
use observer_lab::{Lab, Pod, in_netns};
use serde_json::{Value, json};
use support::{Observer, require_root, scratch_dir};

fn cluster(web: &Pod, api: &Pod, dns: &Pod) -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: kube-system}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\n\
         spec: {clusterIP: 10.96.0.20, selector: {app: api}, ports: [{port: 80, targetPort: 8080}]}\n---\n",
    );
    text += &web.manifest("shop", "web-0", "web");
    text += &api.manifest("shop", "api-0", "api");
    // The DNS pod carries the label CoreDNS pods carry, not `app`.
    text += &dns
        .manifest("kube-system", "coredns-0", "coredns")
        .replace("{app: coredns}", "{k8s-app: kube-dns}");
    text
}

/// One DNS-like exchange from `client` to the DNS pod's port 53.
fn resolve(client: &Pod, dns: &Pod, server: &UdpSocket) -> Result<()> {
    let socket = in_netns(&client.netns, || UdpSocket::bind(("0.0.0.0", 0)))??;
    socket.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    socket.send_to(b"query", (dns.ipv4, 53))?;
    let mut buf = [0u8; 64];
    let (n, from) = server.recv_from(&mut buf)?;
    server.send_to(&buf[..n], from)?;
    socket.recv_from(&mut buf).context("the answer")?;
    Ok(())
}

fn rules(policy: &NetworkPolicy, field: &str) -> Value {
    let spec = serde_json::to_value(policy.spec.as_ref()).unwrap_or_default();
    spec[field].clone()
}

#[test]
fn a_running_observer_suggests_exactly_what_was_seen_and_the_suggestion_holds() -> Result<()> {
    require_root();
    let dir = scratch_dir("suggest");
    let mut lab = Lab::new()?;
    let web = lab.add_pod("web")?;
    let api = lab.add_pod("api")?;
    let dns = lab.add_pod("dns")?;
    let vip: IpAddr = "10.96.0.20".parse()?;
    let backend = SocketAddr::new(IpAddr::V4(api.ipv4), 8080);
    lab.add_dnat("tcp", vip, 80, backend)?;
    let manifests_path = dir.join("cluster.yaml");
    std::fs::write(&manifests_path, cluster(&web, &api, &dns))?;
    let manifests_arg = manifests_path.to_string_lossy().to_string();
    let mut observer = Observer::start(
        &lab,
        &dir,
        &[
            "--interfaces",
            "veth*",
            "--manifests",
            &manifests_arg,
            "--idle-timeout",
            "1s",
            "--close-grace",
            "200ms",
        ],
    )?;
    observer.wait_attached(&["vethweb", "vethapi", "vethdns"])?;
    observer.wait_stat("cluster_views", 1)?;

    tcp_exchange_via(
        &web,
        &api.netns,
        backend,
        SocketAddr::new(vip, 80),
        100,
        100,
    )?;
    let dns_server = in_netns(&dns.netns, || UdpSocket::bind((IpAddr::V4(dns.ipv4), 53)))??;
    dns_server.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    resolve(&web, &dns, &dns_server)?;
    resolve(&api, &dns, &dns_server)?;
    // Every connection's record is written (TCP closed, UDP idle), and learned: web and
    // api each have two edges, the DNS pod two (the stats, and so the metrics, say so).
    observer.wait_stat("records_written", 3)?;
    observer.wait_stat("suggest_edges", 6)?;
    let stats = observer.stats_now()?;
    assert_eq!(stats["suggest_workloads_learning"], 3, "{stats}");
    assert_eq!(stats["suggest_dropped_edges"], 0, "{stats}");
    std::thread::sleep(std::time::Duration::from_millis(1500));

    let out = Lab::command_in(lab.node_netns(), env!("CARGO_BIN_EXE_observer"))
        .args(["suggest", "--server", "http://127.0.0.1:4245"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}\n{}", observer.stats_now()?);
    let yaml = String::from_utf8_lossy(&out.stdout).to_string();
    let loaded = manifests::parse("suggested.yaml", &yaml);
    assert!(loaded.errors.is_empty(), "{:?}\n{yaml}", loaded.errors);
    let policies: Vec<NetworkPolicy> = loaded
        .into_objects()
        .policies
        .iter()
        .map(|p| (**p).clone())
        .collect();
    let named = |name: &str| {
        policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .with_context(|| format!("no {name} in\n{yaml}"))
    };
    let dns_peer = json!({
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}});
    let dns_ports = json!([{"port": 53, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]);
    let web_policy = named("web-0-observed")?;
    assert_eq!(rules(web_policy, "ingress"), json!([]));
    assert_eq!(
        rules(web_policy, "egress"),
        json!([
            {"to": [dns_peer], "ports": dns_ports},
            {"to": [{"podSelector": {"matchLabels": {"app": "api"}}}],
             "ports": [{"port": 8080, "protocol": "TCP"}]},
        ]),
        "through the Service: the backend's port"
    );
    let api_policy = named("api-0-observed")?;
    assert_eq!(
        rules(api_policy, "ingress"),
        json!([{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                "ports": [{"port": 8080, "protocol": "TCP"}]}])
    );
    assert_eq!(
        rules(api_policy, "egress"),
        json!([{"to": [dns_peer], "ports": dns_ports}])
    );
    let dns_policy = named("coredns-0-observed")?;
    assert_eq!(rules(dns_policy, "egress"), json!([]));
    assert_eq!(
        rules(dns_policy, "ingress").as_array().map(Vec::len),
        Some(2),
        "from web and from api"
    );

    // The suggestion with the cluster: observed flows allowed, pairs never seen denied.
    let suggested_path = dir.join("suggested.yaml");
    std::fs::write(&suggested_path, &yaml)?;
    let flows = [
        json!({"src": "shop/web-0", "dst": "shop/api-0", "dst_port": 8080}),
        json!({"src": "shop/web-0", "dst": "kube-system/coredns-0", "dst_port": 53, "protocol": "UDP"}),
        json!({"src": "shop/api-0", "dst": "kube-system/coredns-0", "dst_port": 53, "protocol": "UDP"}),
        json!({"src": "shop/api-0", "dst": "shop/web-0", "dst_port": 8080}),
        json!({"src": "kube-system/coredns-0", "dst": "shop/web-0", "dst_port": 80}),
        json!({"src": "shop/web-0", "dst": "shop/api-0", "dst_port": 9090}),
    ];
    let flows_path = dir.join("check.jsonl");
    std::fs::write(
        &flows_path,
        flows
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    )?;
    let checked = Command::new(env!("CARGO_BIN_EXE_observer"))
        .arg("check")
        .arg("--flows")
        .arg(&flows_path)
        .arg("--manifests")
        .arg(&manifests_path)
        .arg(&suggested_path)
        .output()?;
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let verdicts: Vec<String> = String::from_utf8_lossy(&checked.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).map_or_else(
                |_| "?".into(),
                |v| v["verdict"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        ["allow", "allow", "allow", "deny", "deny", "deny"]
    );
    observer.stop()?;
    Ok(())
}

#[test]
fn what_was_learned_survives_a_restart_and_a_bad_state_file_is_set_aside() -> Result<()> {
    require_root();
    let dir = scratch_dir("suggest-state");
    let mut lab = Lab::new()?;
    let web = lab.add_pod("web")?;
    let api = lab.add_pod("api")?;
    let dns = lab.add_pod("dns")?;
    let manifests_path = dir.join("cluster.yaml");
    std::fs::write(&manifests_path, cluster(&web, &api, &dns))?;
    let manifests_arg = manifests_path.to_string_lossy().to_string();
    let state = dir.join("suggest-state.json");
    let state_arg = state.to_string_lossy().to_string();
    // Not a learning state: set aside, and the daemon starts anyway.
    std::fs::write(&state, b"{\"hello\": 1}")?;
    let args = [
        "--interfaces",
        "veth*",
        "--manifests",
        &manifests_arg,
        "--idle-timeout",
        "1s",
        "--suggest-state",
        &state_arg,
    ];
    let mut observer = Observer::start(&lab, &dir, &args)?;
    observer.wait_attached(&["vethweb", "vethapi", "vethdns"])?;
    observer.wait_stat("cluster_views", 1)?;
    assert!(
        dir.join("suggest-state.unreadable").exists(),
        "the bad file is kept aside"
    );
    let dns_server = in_netns(&dns.netns, || UdpSocket::bind((IpAddr::V4(dns.ipv4), 53)))??;
    dns_server.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    resolve(&web, &dns, &dns_server)?;
    observer.wait_stat("records_written", 1)?;
    let stopped = observer.stop()?;
    assert!(
        stopped.log.contains("not a learning state"),
        "{}",
        stopped.log
    );
    let saved = std::fs::read_to_string(&state)?;
    assert!(saved.contains("observer-suggest-state"), "{saved}");

    // Restarted with no traffic at all: the suggestion is still there.
    let mut observer = Observer::start(&lab, &dir, &args)?;
    observer.wait_attached(&["vethweb", "vethapi", "vethdns"])?;
    observer.wait_stat("cluster_views", 1)?;
    let out = Lab::command_in(lab.node_netns(), env!("CARGO_BIN_EXE_observer"))
        .args(["suggest", "--server", "http://127.0.0.1:4245"])
        .output()?;
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(yaml.contains("name: \"web-0-observed\""), "{yaml}");
    assert!(yaml.contains("\"k8s-app\": \"kube-dns\""), "{yaml}");
    observer.stop()?;
    Ok(())
}
