//! The gRPC API over mutual TLS: certificates made for the test (rcgen), a real tonic
//! server, the tonic client and the `observer observe` binary.

use std::sync::Arc;
use std::time::Duration;

use observer::api::server::{self, ApiConfig};
use observer::hub::FlowHub;
use observer::wire::proto::{
    GetFlowsRequest, get_flows_request::Start, get_flows_response::Event,
    observer_client::ObserverClient,
};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tokio::sync::oneshot;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

const WAIT: Duration = Duration::from_secs(20);

mod support;

use support::api_flows as flows;

/// A CA, a server certificate for `localhost`, and a client certificate, as PEM.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issue = |name: &str| {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .signed_by(&key, &ca, &ca_key)
            .expect("certificate");
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca: ca.pem(),
        server: issue("localhost"),
        client: issue("observer-client"),
    }
}

/// A mutual-TLS server with the fixture flows; returns its port and a stop handle.
async fn serve_tls(pki: &Pki) -> (u16, oneshot::Sender<()>) {
    let hub = FlowHub::with_first_cursor(64, 1);
    hub.publish(flows()).await;
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&pki.server.0, &pki.server.1))
        .client_ca_root(Certificate::from_pem(&pki.ca));
    let listener = server::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server::serve(
        listener,
        Arc::clone(&hub),
        ApiConfig {
            tls: Some(tls),
            ..ApiConfig::default()
        },
        async {
            let _ = stopped.await;
        },
    ));
    (port, stop)
}

/// Flow count of a from-oldest stream, or the error that stopped it.
async fn read_all(endpoint: Endpoint) -> Result<usize, String> {
    let channel = tokio::time::timeout(WAIT, endpoint.connect())
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let mut client = ObserverClient::new(channel);
    let request = GetFlowsRequest {
        start: Some(Start::FromOldest(true)),
        ..Default::default()
    };
    let mut stream = client
        .get_flows(request)
        .await
        .map_err(|e| format!("get_flows: {e}"))?
        .into_inner();
    let mut count = 0;
    while let Some(message) = stream.message().await.map_err(|e| format!("stream: {e}"))? {
        count += usize::from(matches!(message.event, Some(Event::Flow(_))));
    }
    Ok(count)
}

fn tls_endpoint(port: u16, pki: &Pki, with_client_cert: bool) -> Endpoint {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if with_client_cert {
        tls = tls.identity(Identity::from_pem(&pki.client.0, &pki.client.1));
    }
    Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_clients_with_a_certificate_from_the_ca_get_flows() {
    let pki = pki();
    let (port, _stop) = serve_tls(&pki).await;

    assert_eq!(read_all(tls_endpoint(port, &pki, true)).await, Ok(4));
    let without_cert = read_all(tls_endpoint(port, &pki, false)).await;
    assert!(
        without_cert.is_err(),
        "a client without a certificate got {without_cert:?}"
    );
    let plaintext = Endpoint::from_shared(format!("http://127.0.0.1:{port}")).expect("endpoint");
    let plaintext = read_all(plaintext).await;
    assert!(plaintext.is_err(), "a plaintext client got {plaintext:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_speaks_mutual_tls_with_its_flags() {
    let pki = pki();
    let (port, _stop) = serve_tls(&pki).await;
    let dir = std::env::temp_dir().join(format!("observer-api-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path.to_string_lossy().to_string()
    };
    let (ca, cert, key) = (
        write("ca.pem", &pki.ca),
        write("client.pem", &pki.client.0),
        write("client-key.pem", &pki.client.1),
    );
    let server = format!("https://127.0.0.1:{port}");
    let run = |extra: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_observer"));
        command
            .args([
                "observe",
                "--server",
                &server,
                "--from-oldest",
                "--violations",
            ])
            .args(["--tls-ca", &ca, "--tls-server-name", "localhost"])
            .args(extra);
        command.output()
    };
    let ok = tokio::time::timeout(WAIT, run(&["--tls-cert", &cert, "--tls-key", &key]))
        .await
        .expect("observe in time")
        .expect("observe runs");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&ok.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "the one denied fixture flow: {lines:?}");
    assert_eq!(lines[0]["cursor"], 2);
    assert_eq!(lines[0]["flow"]["verdict"], "deny");

    let refused = tokio::time::timeout(WAIT, run(&[]))
        .await
        .expect("observe in time")
        .expect("observe runs");
    assert!(
        !refused.status.success(),
        "no client certificate, yet it read flows"
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("--tls-cert"), "names the flag to fix: {said}");
    // observer suggest --server takes the same TLS flags: over mutual TLS it reaches the
    // RPC (this server learns no suggestions, and says so).
    let suggest = tokio::process::Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["suggest", "--server", &server])
        .args(["--tls-ca", &ca, "--tls-server-name", "localhost"])
        .args(["--tls-cert", &cert, "--tls-key", &key])
        .output();
    let suggest = tokio::time::timeout(WAIT, suggest)
        .await
        .expect("suggest in time")
        .expect("suggest runs");
    let said = String::from_utf8_lossy(&suggest.stderr);
    assert!(said.contains("does not learn suggestions"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}
