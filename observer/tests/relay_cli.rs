//! `observer relay`, the binary, with mutual TLS both ways: it dials two node observers
//! (served in process, requiring a client certificate) with its own certificate, serves
//! clients that present theirs (and refuses one that does not), answers `observer observe`
//! and `observer status` as a node would, exports every node's new flows to a real
//! OTLP/gRPC receiver, and serves the cluster's console over HTTPS.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use observer::api::server::{self, ApiConfig};
use observer::hub::FlowHub;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use support::otlp_receiver::Receiver;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

const WAIT: Duration = Duration::from_secs(30);

/// A CA and certificates it signed, written as PEM files in `dir`: `NAME.crt`, `NAME.key`.
fn pki(dir: &Path, names: &[&str]) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    std::fs::write(dir.join("ca.crt"), ca.pem()).expect("write");
    for name in names {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .signed_by(&key, &ca, &ca_key)
            .expect("certificate");
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).expect("write");
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write");
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).expect("pem")
}

/// A node observer on a loopback port, requiring client certificates of the CA.
async fn node(dir: &Path, name: &str) -> (Arc<FlowHub>, u16) {
    let hub = FlowHub::new(1_000);
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            read(dir, "node.crt"),
            read(dir, "node.key"),
        ))
        .client_ca_root(Certificate::from_pem(read(dir, "ca.crt")));
    let listener = server::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(server::serve(
        listener,
        Arc::clone(&hub),
        ApiConfig {
            tls: Some(tls),
            node_name: name.into(),
            ..ApiConfig::default()
        },
        std::future::pending(),
    ));
    (hub, port)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `observer CMD --server https://...` as the client `client` (None: no certificate).
fn cli(dir: &Path, port: u16, client: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_observer"));
    command.args(args);
    command.args(["--server", &format!("https://127.0.0.1:{port}")]);
    command.arg("--tls-ca").arg(dir.join("ca.crt"));
    command.args(["--tls-server-name", "localhost"]);
    if let Some(client) = client {
        command
            .arg("--tls-cert")
            .arg(dir.join(format!("{client}.crt")));
        command
            .arg("--tls-key")
            .arg(dir.join(format!("{client}.key")));
    }
    command.output().expect("observer")
}

/// `GET path` from the console on the loopback over HTTPS (the CA of `dir`), as the
/// client `client`: its JSON.
async fn https_get(dir: &Path, port: u16, path: &str) -> serde_json::Value {
    let text = https_text(dir, port, path, Some("client"))
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

/// The whole answer to `GET path` over HTTPS, presenting `client`'s certificate if any.
async fn https_text(
    dir: &Path,
    port: u16,
    path: &str,
    client: Option<&str>,
) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, pki_types::CertificateDer};
    let mut roots = RootCertStore::empty();
    let pem = std::fs::read(dir.join("ca.crt")).expect("CA");
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
        let cert: CertificateDer<'static> = cert.expect("PEM");
        roots.add(cert).expect("root");
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        Some(name) => {
            use rustls_pki_types::pem::PemObject;
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(dir.join(format!("{name}.crt")))
                    .expect("certificate")
                    .collect::<Result<_, _>>()
                    .expect("PEM");
            let key =
                rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key")))
                    .expect("key");
            builder.with_client_auth_cert(certs, key).expect("client")
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the console");
    let name = "localhost".try_into().expect("name");
    let mut tls = connector.connect(name, tcp).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await?;
    let mut text = String::new();
    // The server closes without close_notify at times: what was read is the answer, and
    // nothing read is the error.
    match tls.read_to_string(&mut text).await {
        Err(e) if text.is_empty() => Err(e),
        _ => Ok(text),
    }
}

fn node_names(flows: &str) -> Vec<String> {
    let mut names: Vec<String> = flows
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["flow"]["node_name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_binary_uses_mutual_tls_both_ways_serves_the_cli_and_exports_otlp() {
    let dir = support::scratch_dir("relay-cli");
    pki(&dir, &["node", "relay-peer", "relay", "client"]);
    let (hub_a, port_a) = node(&dir, "node-a").await;
    let (hub_b, port_b) = node(&dir, "node-b").await;
    let mut records = support::api_flows();
    for (hub, name) in [(&hub_a, "node-a"), (&hub_b, "node-b")] {
        for r in &mut records {
            r.node_name = Some(name.into());
        }
        hub.publish(records.clone()).await;
    }
    // The OTLP receiver.
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let otlp = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(receiver.clone().serve(listener));
    let port = free_port();
    let metrics_port = free_port();
    let ui_port = free_port();
    let path = |f: &str| dir.join(f).display().to_string();
    let relay = Relay(
        Command::new(env!("CARGO_BIN_EXE_observer"))
            .args(["relay", "--merge-window", "200ms"])
            .args(["--peer", &format!("https://localhost:{port_a}")])
            .args(["--peer", &format!("https://localhost:{port_b}")])
            .args(["--peer-tls-ca", &path("ca.crt")])
            .args(["--peer-tls-cert", &path("relay-peer.crt")])
            .args(["--peer-tls-key", &path("relay-peer.key")])
            .args(["--grpc-listen", &format!("127.0.0.1:{port}")])
            .args(["--grpc-tls-cert", &path("relay.crt")])
            .args(["--grpc-tls-key", &path("relay.key")])
            .args(["--grpc-tls-client-ca", &path("ca.crt")])
            .args(["--otlp-endpoint", &otlp])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(["--ui-listen", &format!(":{ui_port}")])
            .args(["--ui-tls-cert", &path("relay.crt")])
            .args(["--ui-tls-key", &path("relay.key")])
            .args(["--ui-tls-client-ca", &path("ca.crt")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("relay.log")).expect("log"))
            .spawn()
            .expect("observer relay"),
    );
    // Ready once both nodes answered the relay's status checks (through its mutual TLS).
    let deadline = Instant::now() + WAIT;
    let status = loop {
        let out = cli(&dir, port, Some("client"), &["status", "-o", "json"]);
        if out.status.success() {
            let status: serde_json::Value =
                serde_json::from_slice(&out.stdout).expect("status JSON");
            let connected = status["nodes"]
                .as_array()
                .is_some_and(|n| n.iter().filter(|n| n["connected"] == true).count() == 2);
            if connected {
                break status;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the relay never connected both nodes: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("relay.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut names: Vec<&str> = status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["node"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["node-a", "node-b"]);
    // Both nodes' held flows, through the relay, with `observe`.
    let out = cli(
        &dir,
        port,
        Some("client"),
        &["observe", "--from-oldest", "-o", "jsonl"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let n = records.len();
    let want: Vec<String> = ["node-a", "node-b"]
        .iter()
        .flat_map(|name| std::iter::repeat_n(name.to_string(), n))
        .collect();
    assert_eq!(node_names(&stdout), want, "{stdout}");
    // The console (on the loopback, over HTTPS) draws both nodes' flows, merged.
    let deadline = Instant::now() + WAIT;
    loop {
        let map = https_get(&dir, ui_port, "/api/map").await;
        let denied = map["edges"].as_array().is_some_and(|edges| {
            edges.iter().any(|e| {
                e["verdict"] == "denied"
                    && e["source"] == "wl:shop/Deployment/web"
                    && e["target"] == "wl:db/StatefulSet/postgres"
            })
        });
        if denied {
            break;
        }
        assert!(Instant::now() < deadline, "the relay's console map: {map}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = https_get(&dir, ui_port, "/api/status").await;
    assert_eq!(status["role"], "relay", "{status}");
    assert_eq!(status["violations_held"], 2, "one per node: {status}");
    let viewer = https_get(
        &dir,
        ui_port,
        "/api/policy_view?workload=wl:shop/Deployment/web",
    )
    .await;
    assert!(
        viewer["note"]
            .as_str()
            .is_some_and(|n| n.contains("relay holds no cluster state")),
        "{viewer}"
    );
    // A client without a certificate is refused.
    let out = cli(&dir, port, None, &["status", "-o", "json"]);
    assert!(
        !out.status.success(),
        "a client without a certificate was served"
    );
    // New flows on both nodes reach the collector, each once (the relay's export stream
    // opened on each node when the node first answered; give it a moment).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (hub, name) in [(&hub_a, "node-a"), (&hub_b, "node-b")] {
        for r in &mut records {
            r.node_name = Some(name.into());
        }
        hub.publish(records.clone()).await;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let bodies: Vec<String> = receiver.bodies();
        let mut got: Vec<String> = bodies
            .iter()
            .filter_map(|b| serde_json::from_str::<serde_json::Value>(b).ok())
            .filter_map(|v| v["node_name"].as_str().map(str::to_owned))
            .collect();
        got.sort();
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline && got.len() <= want.len(),
            "the collector got {got:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The relay's metrics say the same (the OTLP figures once the exporter counted them).
    let deadline = Instant::now() + WAIT;
    let metrics = loop {
        let metrics = scrape(metrics_port);
        if metrics.contains(&format!("observer_otlp_sent_records_total {}", want.len())) {
            break metrics;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for node in ["node-a", "node-b"] {
        let line = format!(
            "observer_relay_node_connected{{node=\"{node}\",address=\"https://localhost:{}\"}} 1",
            if node == "node-a" { port_a } else { port_b }
        );
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    assert!(
        metrics.contains(&format!("observer_relay_flows_sent_total {}", want.len())),
        "{metrics}"
    );
    for what in [
        "otlp_unsent",
        "relay_export",
        "relay_subscriber",
        "relay_console",
    ] {
        let line = format!("observer_lost_records_total{{what=\"{what}\"}} 0");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    assert!(
        metrics.contains("process_resident_memory_bytes"),
        "{metrics}"
    );
    drop(relay);
}

/// `GET /metrics` (the classic text format).
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}
