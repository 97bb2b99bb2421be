//! `cargo xtask demo`: the observer's main job, end to end on one machine.
//!
//! Builds a lab node with three pods described by manifests (a namespace, Deployments, a
//! StatefulSet, a Service behind nftables DNAT, NetworkPolicies), runs the observer in it,
//! makes a little traffic of every kind, stops the observer (which flushes every
//! connection), and prints the records: who talked to whom, how much, and whether the
//! policies allow it; then the violations a gRPC subscriber (`observer observe --follow
//! --violations`, started before the traffic) received, its stream ended by the stop: each
//! denied connection first at its first packet (`started`), then with its record.
//!
//! The observer serves the web console in the lab node, forwarded to the host's loopback;
//! the demo prints its address and what its map shows. With `--ui` the lab stays up (a
//! denied connection every few seconds, for the live violations) until Enter is pressed.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result, bail};
use observer_api::record::{FlowRecord, FlowState, RecordEndpoint};
use observer_api::verdict::RuleAction;
use observer_lab::observer::ObserverProcess;
use observer_lab::traffic::{ping, tcp_exchange, tcp_exchange_via, udp_exchange};
use observer_lab::{Lab, OUTSIDE_IPV4, Pod};

use crate::shell::{build_observer, is_root, target_dir};

/// The console's port inside the lab node, and the host port it is forwarded to (another
/// when taken).
const CONSOLE_PORT: u16 = 9090;

/// Runs the demo; `keep` keeps the lab and its console up until Enter is pressed.
pub fn run(keep: bool) -> Result<()> {
    crate::setup::run()?;
    if !is_root() {
        bail!("the demo loads eBPF programs and makes network namespaces: run it as root");
    }
    let binary = build_observer(false)?;
    Lab::remove_stale();
    let mut lab = Lab::new()?;
    let web = lab.add_pod("web")?;
    let api = lab.add_pod("api")?;
    let db = lab.add_pod("db")?;
    let dir = target_dir().join("demo");
    std::fs::create_dir_all(&dir)?;
    let api_vip: IpAddr = "10.96.0.20".parse()?;
    let api_backend = SocketAddr::new(IpAddr::V4(api.ipv4), 8080);
    lab.add_dnat("tcp", api_vip, 80, api_backend)?;
    let manifests = dir.join("cluster.yaml");
    std::fs::write(&manifests, demo_manifests(&web, &api, &db))?;
    println!(
        "lab node {} with pods (manifests: {}):",
        lab.node_netns(),
        manifests.display()
    );
    for pod in lab.pods() {
        println!(
            "  {:<4} {:<12} {:<16} via {}",
            pod.name, pod.ipv4, pod.ipv6, pod.host_interface
        );
    }
    println!("  Service shop/api {api_vip}:80 -> api:8080 (nftables DNAT, as kube-proxy does)");

    let manifests_arg = manifests.to_string_lossy().to_string();
    // The lab node's name in the manifests; on a cluster the DaemonSet passes spec.nodeName.
    let mut observer = ObserverProcess::start(
        &lab,
        &binary,
        &dir,
        &[
            "--manifests",
            &manifests_arg,
            "--node-name",
            "lab-node",
            "--ui-listen",
            &format!("127.0.0.1:{CONSOLE_PORT}"),
        ],
    )?;
    observer.wait_attached(&["vethweb", "vethapi", "vethdb"])?;
    let console = observer_lab::forward::forward(
        SocketAddr::from(([127, 0, 0, 1], CONSOLE_PORT)),
        lab.node_netns(),
        SocketAddr::from(([127, 0, 0, 1], CONSOLE_PORT)),
    )?;
    // A gRPC subscriber, as a consumer would run one: every violation, as it is written.
    let violations = Lab::command_in(lab.node_netns(), &binary.to_string_lossy())
        .args(["observe", "--follow", "--from-oldest", "--violations"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting observer observe")?;
    println!("observer attached; making traffic...");
    for _ in 0..2 {
        let vip = SocketAddr::new(api_vip, 80);
        tcp_exchange_via(&web, &api.netns, api_backend, vip, 20_000, 80_000)?;
    }
    tcp_exchange(&api, &db, IpAddr::V4(db.ipv4), 4_000, 64_000)?;
    tcp_exchange(&api, &db, IpAddr::V6(db.ipv6), 2_000, 16_000)?;
    tcp_exchange(&web, &db, IpAddr::V4(db.ipv4), 500, 500)?;
    udp_exchange(&web, &api, IpAddr::V4(api.ipv4), 5)?;
    ping(&web, IpAddr::V4(db.ipv4), 3)?;
    ping(&db, IpAddr::V4(OUTSIDE_IPV4), 2)?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    show_console(console)?;
    if keep {
        println!(
            "\nthe lab stays up: open http://{console}/ (web -> db is denied again every 5 s); \
             press Enter to stop"
        );
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_line(&mut String::new());
            let _ = done_tx.send(());
        });
        while done_rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .is_err()
        {
            tcp_exchange(&web, &db, IpAddr::V4(db.ipv4), 200, 200)?;
        }
    }
    let stopped = observer.stop()?;

    // Names come from the records themselves: the observer's enrichment. The flow log is
    // read back through the record's own type (observer-api), as any Rust consumer would.
    println!(
        "\n{:<6} {:<28} {:<28} {:>12} {:>12} {:<6} {:<7} {:<18} decided by",
        "proto", "from", "to", "fwd pkts/B", "rev pkts/B", "state", "verdict", "service"
    );
    let mut shown = 0;
    let mut node = None;
    for line in stopped.flow_log.lines() {
        let r: FlowRecord =
            serde_json::from_str(line).with_context(|| format!("flow log line: {line}"))?;
        let (src, dst) = (name(&r.src), name(&r.dst));
        // Link-local IPv6 housekeeping (router and neighbour discovery) is real traffic, but
        // not what the demo is about.
        if src.starts_with("fe80") || dst.starts_with("ff02") || dst.starts_with("fe80") {
            continue;
        }
        shown += 1;
        node = node.or(r.node_name.clone());
        let service = r.service.as_ref().map_or("-".into(), |s| {
            format!("{}/{}:{}", s.namespace, s.name, s.port)
        });
        println!(
            "{:<6} {:<28} {:<28} {:>12} {:>12} {:<6} {:<7} {:<18} {}",
            r.protocol.to_string(),
            format!("{src}:{}", r.src.port),
            format!("{dst}:{}", r.dst.port),
            format!("{}/{}", r.fwd.packets, r.fwd.bytes),
            format!("{}/{}", r.rev.packets, r.rev.bytes),
            r.state.name(),
            r.verdict_name(),
            service,
            decided_by(&r)
        );
    }
    if shown == 0 {
        bail!("the observer wrote no pod records: {}", stopped.flow_log);
    }
    let total = stopped.flow_log.lines().count();
    println!(
        "\n{shown} pod connections shown ({total} records in all, with IPv6 housekeeping), \
         observed on node {}",
        node.as_deref().unwrap_or("?")
    );
    println!(
        "flow log (JSON Lines): {}",
        observer_file(&dir, "flows.jsonl")
    );
    println!("counters: {}", stopped.stats["datapath"]);

    // The daemon ended the subscriber's stream after its last records.
    let streamed = violations
        .wait_with_output()
        .context("waiting for observer observe")?;
    if !streamed.status.success() {
        bail!(
            "observer observe failed: {}",
            String::from_utf8_lossy(&streamed.stderr)
        );
    }
    let lines = String::from_utf8_lossy(&streamed.stdout).to_string();
    println!(
        "
violations streamed over gRPC (observer observe --follow --violations): {}",
        lines.lines().count()
    );
    let mut at_start = 0;
    for line in lines.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("observe line: {line}"))?;
        let f: FlowRecord = serde_json::from_value(v["flow"].clone())
            .with_context(|| format!("observe line's flow: {line}"))?;
        // A connection's violation arrives twice: at its first packet (`started`), and
        // with its record when it ends.
        if f.state == FlowState::Started {
            at_start += 1;
        }
        println!(
            "  cursor {} [{}]: {} {}:{} -> {}:{} {}",
            v["cursor"],
            f.state.name(),
            f.protocol,
            name(&f.src),
            f.src.port,
            name(&f.dst),
            f.dst.port,
            decided_by(&f)
        );
    }
    println!(
        "  {at_start} of them arrived as the connection started (its first packet), before \
         its record"
    );
    if at_start == 0 {
        bail!("no violation arrived at a connection's first packet");
    }
    suggest(&binary, &dir, &manifests)
}

/// The console's address and what its map shows now (asked over HTTP, as the page does).
fn show_console(console: SocketAddr) -> Result<()> {
    let mut map = serde_json::Value::Null;
    // Connections are written a moment after they close: wait for the map to have them.
    for _ in 0..50 {
        let answer = observer_lab::http::get(console, "/api/map")
            .with_context(|| format!("asking the console at {console}"))?;
        map = serde_json::from_slice(&answer.body)
            .with_context(|| format!("the console's map: {}", answer.text()))?;
        if map["edges"].as_array().is_some_and(|e| e.len() >= 3) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let edges = map["edges"].as_array().cloned().unwrap_or_default();
    let denied = edges.iter().filter(|e| e["verdict"] == "denied").count();
    println!(
        "\nweb console: http://{console}/ (the lab node's 127.0.0.1:{CONSOLE_PORT}, forwarded); \
         its map now: {} nodes, {} edges, {denied} denied",
        map["nodes"].as_array().map_or(0, Vec::len),
        edges.len()
    );
    if edges.is_empty() {
        bail!("the console's map has no edge: {map}");
    }
    Ok(())
}

/// The policies `observer suggest` learns from the demo's flow log, and their proof.
fn suggest(
    binary: &std::path::Path,
    dir: &std::path::Path,
    manifests: &std::path::Path,
) -> Result<()> {
    let out = std::process::Command::new(binary)
        .arg("suggest")
        .arg("--flows")
        .arg(dir.join("flows.jsonl"))
        .arg("--manifests")
        .arg(manifests)
        .output()
        .context("running observer suggest")?;
    println!(
        "\nsuggested policies (observer suggest --flows {} --manifests {}):\n",
        observer_file(dir, "flows.jsonl"),
        manifests.display()
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    println!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("observer suggest failed: the proof did not hold, or it could not run");
    }
    Ok(())
}

/// How the record names an end: namespace/pod, the node, or the address.
fn name(end: &RecordEndpoint) -> String {
    end.display_name()
}

/// The tier decisions behind a verdict, per direction: which policy's which rule allowed
/// the flow, or which policies isolate the pod with no rule allowing it.
fn decided_by(r: &FlowRecord) -> String {
    let Some(verdict) = &r.policy else {
        return "- (no verdict)".into();
    };
    let mut steps = Vec::new();
    for (direction, d) in [("ingress", &verdict.ingress), ("egress", &verdict.egress)] {
        for t in &d.tiers {
            let (action, rule) = match (t.action, t.rule_index) {
                (RuleAction::Allow, Some(i)) => ("allowed by", format!(" rule {i}")),
                (RuleAction::Deny, None) => ("denied: no rule of", " allows".to_string()),
                (RuleAction::Deny, Some(i)) => ("denied by", format!(" rule {i}")),
                (RuleAction::Pass, i) => (
                    "passed on by",
                    i.map_or(String::new(), |i| format!(" rule {i}")),
                ),
                (RuleAction::Allow, None) => ("allowed by", String::new()),
            };
            steps.push(format!(
                "{direction} {action} {} {}{rule} (tier {})",
                t.policy.kind.name(),
                t.policy,
                t.tier
            ));
        }
    }
    if steps.is_empty() {
        return "- (no policy selects either pod)".into();
    }
    steps.join("; ")
}

/// The lab as Kubernetes would describe it: namespace shop, Deployments web and api, a
/// StatefulSet db, the Service api, NetworkPolicies that let web reach api and api reach
/// db over TCP only, and, as a Calico cluster would have them, a global default deny (with
/// DNS to kube-system exempted) and an ordered shop policy that lets its pods reach each
/// other: verdicts then walk Calico's tiers, NetworkPolicies included.
fn demo_manifests(web: &Pod, api: &Pod, db: &Pod) -> String {
    let pod = |name: &str, app: &str, owner_kind: &str, owner: &str, p: &Pod| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: shop\n  uid: uid-{name}\n  \
             labels: {{app: {app}}}\n  ownerReferences: [{{apiVersion: apps/v1, kind: {owner_kind}, name: {owner}, uid: o-{owner}, controller: true}}]\n\
             spec: {{nodeName: lab-node, serviceAccountName: {app}, containers: [{{name: main, image: {app}, ports: [{{name: http, containerPort: 8080}}]}}]}}\n\
             status: {{phase: Running, podIP: {}, podIPs: [{{ip: {}}}, {{ip: \"{}\"}}]}}\n---\n",
            p.ipv4, p.ipv4, p.ipv6
        )
    };
    let replica_set = |deployment: &str| {
        format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {deployment}-6c9f\n  namespace: shop\n  uid: o-{deployment}-6c9f\n  \
             ownerReferences: [{{apiVersion: apps/v1, kind: Deployment, name: {deployment}, uid: d-{deployment}, controller: true}}]\n\
             spec: {{selector: {{matchLabels: {{app: {deployment}}}}}}}\n---\n"
        )
    };
    let mut text = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {name: lab-node}\nstatus: {addresses: [{type: InternalIP, address: 10.99.0.1}]}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\n\
         spec: {clusterIP: 10.96.0.20, selector: {app: api}, ports: [{port: 80, targetPort: http}]}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: api-from-web, namespace: shop}\n\
         spec:\n  podSelector: {matchLabels: {app: api}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: web}}}]\n    ports: [{port: http}]\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-from-api, namespace: shop}\n\
         spec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: api}}}]\n    ports: [{protocol: TCP}]\n---\n\
         apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: default-deny}\n\
         spec:\n  order: 2000\n  namespaceSelector: kubernetes.io/metadata.name not in {'kube-system', 'calico-system'}\n  \
         types: [Ingress, Egress]\n  egress:\n  - action: Allow\n    protocol: UDP\n    destination:\n      \
         namespaceSelector: projectcalico.org/name == 'kube-system'\n      selector: k8s-app == 'kube-dns'\n      ports: [53]\n---\n\
         apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: shop-internal, namespace: shop}\n\
         spec:\n  order: 100\n  selector: all()\n  types: [Egress]\n  egress:\n  - action: Allow\n    destination: {selector: all()}\n---\n",
    );
    text += &replica_set("web");
    text += &replica_set("api");
    text += &pod("web-6c9f-k2x8d", "web", "ReplicaSet", "web-6c9f", web);
    text += &pod("api-6c9f-q7r2m", "api", "ReplicaSet", "api-6c9f", api);
    text += &pod("db-0", "db", "StatefulSet", "db", db);
    text
}

fn observer_file(dir: &std::path::Path, name: &str) -> String {
    dir.join(name).display().to_string()
}
