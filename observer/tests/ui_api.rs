//! The console's API over real HTTP (`observer run --ui-listen`): the service map of the
//! flows the hub holds as JSON, parameters that select and fold it, the flows behind an
//! edge explained, a declared policy, the live violations as Server-Sent Events resumed
//! by cursor, the page's files, 400 with a message for bad parameters, and clients that
//! go away costing nothing.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use observer::hub::FlowHub;
use observer::ui::routes::{Console, Role};

/// `method path` over a fresh connection: the status code and the body.
fn call(address: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    call_as(address, "localhost", method, path)
}

/// The same, naming `host` as the Host.
fn call_as(address: std::net::SocketAddr, host: &str, method: &str, path: &str) -> (u16, String) {
    let answer = observer_lab::http::request(address, host, method, path).expect("HTTP");
    (answer.status, answer.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_is_served_as_json_and_bad_parameters_are_refused() {
    let hub = FlowHub::new(64);
    hub.publish(support::api_flows()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(observer::ui::server::serve(listener, None, console(hub)));

    let (status, body) = tokio::task::spawn_blocking(move || call(address, "GET", "/api/map"))
        .await
        .expect("call");
    assert_eq!(status, 200, "{body}");
    let map: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let edges = map["edges"].as_array().expect("edges");
    let denied: Vec<&serde_json::Value> =
        edges.iter().filter(|e| e["verdict"] == "denied").collect();
    assert_eq!(denied.len(), 1, "{body}");
    assert_eq!(denied[0]["source"], "wl:shop/Deployment/web");
    assert_eq!(denied[0]["target"], "wl:db/StatefulSet/postgres");
    assert_eq!(denied[0]["port"], 5432);
    assert!(
        denied[0]["denied_by"]
            .as_str()
            .is_some_and(|by| by.contains("db/default-deny")),
        "{body}"
    );

    // Folded by namespace, only the violations.
    let (status, body) = tokio::task::spawn_blocking(move || {
        call(address, "GET", "/api/map?level=namespace&verdict=denied")
    })
    .await
    .expect("call");
    assert_eq!(status, 200, "{body}");
    let map: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let edges = map["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 1, "{body}");
    assert_eq!(edges[0]["source"], "ns:shop");
    assert_eq!(edges[0]["target"], "ns:db");

    // A client that goes away without asking anything costs nothing.
    let idle = TcpStream::connect(address).expect("connect");
    drop(idle);
    for (path, status_wanted, names) in [
        ("/api/map?level=galaxy", 400, "level"),
        ("/api/map?max_edges=0", 400, "max_edges"),
        ("/api/map?verdict=maybe", 400, "verdict"),
        ("/api/map?colour=red", 400, "colour"),
        ("/elsewhere", 404, "/api/"),
        (
            "/api/edge?source=a&target=b&protocol=TCP",
            400,
            "port: required",
        ),
        (
            "/api/edge?source=a&target=b&protocol=HTTP&port=1",
            400,
            "protocol \"HTTP\"",
        ),
        ("/api/policy?kind=Firewall&name=x", 400, "kind \"Firewall\""),
        (
            "/api/policy?kind=NetworkPolicy&namespace=db&name=default-deny",
            404,
            "no cluster state",
        ),
        (
            "/api/policy_view?workload=wl:shop/Deployment/web",
            200,
            "no cluster state",
        ),
        ("/api/suggestions", 200, "--suggest-max-edges 0"),
        (
            "/api/suggestions?workload=wl:a//",
            400,
            "wl:NAMESPACE/Kind/name",
        ),
        ("/api/violations?after=x", 400, "after \"x\""),
        ("/api/violations?start=later", 400, "start \"later\""),
    ] {
        let (status, body) = tokio::task::spawn_blocking(move || call(address, "GET", path))
            .await
            .expect("call");
        assert_eq!(status, status_wanted, "{path}: {body}");
        assert!(body.contains(names), "{path}: {body}");
    }
    let (status, _) = tokio::task::spawn_blocking(move || call(address, "POST", "/api/map"))
        .await
        .expect("call");
    assert_eq!(status, 405);
    // On the loopback without TLS, only the loopback's names are served: a page of another
    // site reaching it through DNS rebinding gets nothing.
    for (host, wanted) in [
        ("evil.example:9090", 421),
        ("127.0.0.1:9090", 200),
        ("[::1]:9090", 200),
    ] {
        let (status, body) =
            tokio::task::spawn_blocking(move || call_as(address, host, "GET", "/api/status"))
                .await
                .expect("call");
        assert_eq!(status, wanted, "Host {host}: {body}");
    }
}

/// A console of `hub` on a node without cluster state or suggestions.
fn console(hub: std::sync::Arc<FlowHub>) -> Console {
    Console {
        hub,
        role: Role::Node,
        node: "node-a".into(),
        views: None,
        profile: Default::default(),
        suggestions: None,
    }
}

async fn serve(hub: std::sync::Arc<FlowHub>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(observer::ui::server::serve(listener, None, console(hub)));
    address
}

async fn get(address: std::net::SocketAddr, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || call(address, "GET", path))
        .await
        .expect("call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_answers_its_flows_explained_and_the_page_is_served() {
    let hub = FlowHub::new(64);
    hub.publish(support::api_flows()).await;
    let address = serve(hub).await;
    let (status, body) = get(
        address,
        "/api/edge?source=wl%3Ashop%2FDeployment%2Fweb&target=wl%3Adb%2FStatefulSet%2Fpostgres\
         &protocol=TCP&port=5432",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let edge: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(edge["total"], 1, "{body}");
    let flow = &edge["flows"][0];
    assert_eq!(flow["verdict"], "denied");
    assert_eq!(flow["record"]["dst"]["port"], 5432);
    let summary = flow["explanation"]["summary"].as_str().expect("summary");
    assert!(summary.contains("db/default-deny"), "{summary}");
    assert_eq!(
        flow["explanation"]["steps"][0]["policy"]["name"],
        "default-deny"
    );

    let (status, body) = get(address, "/api/status").await;
    assert_eq!(status, 200, "{body}");
    let status_json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(status_json["role"], "node");
    assert_eq!(status_json["violations_held"], 1, "{body}");
    assert_eq!(status_json["cluster_state"], false);

    for (path, wanted) in [
        ("/", "<html"),
        ("/app.js", "observerConsole"),
        ("/vendor/cytoscape.min.js", "Cytoscape Consortium"),
    ] {
        let (status, body) = get(address, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains(wanted), "{path}: no {wanted:?}");
    }
}

/// Reads Server-Sent Events from `stream` until `events` `violation` or `lost` events came;
/// answers them as (event, id, data).
fn read_events(stream: &mut TcpStream, events: usize) -> Vec<(String, String, String)> {
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    let mut found = Vec::new();
    while found.len() < events {
        let n = stream.read(&mut buffer).expect("read the stream");
        assert!(n > 0, "the stream ended: {text}");
        text.push_str(&String::from_utf8_lossy(&buffer[..n]));
        found = text
            .split("\n\n")
            .filter_map(|block| {
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(str::to_owned)
                };
                Some((field("event: ")?, field("id: ")?, field("data: ")?))
            })
            .collect();
    }
    found
}

fn open_stream(address: std::net::SocketAddr, path: &str, last_event: Option<u64>) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let resume = last_event
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{resume}\r\n"
    )
    .expect("request");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violations_arrive_live_and_a_reconnection_resumes_after_its_last_event() {
    let hub = FlowHub::new(64);
    let address = serve(std::sync::Arc::clone(&hub)).await;
    let flows = support::api_flows();
    let denied = flows[1].clone();
    hub.publish(flows).await;

    let first = tokio::task::spawn_blocking(move || {
        let mut stream = open_stream(address, "/api/violations", None);
        read_events(&mut stream, 1)
    })
    .await
    .expect("stream");
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].0, "violation");
    let data: serde_json::Value = serde_json::from_str(&first[0].2).expect("JSON");
    assert_eq!(data["verdict"], "denied");
    assert!(
        data["explanation"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("default-deny"))
    );
    let last_id: u64 = first[0].1.parse().expect("cursor id");

    // Two more violations (and allowed flows between them) while the page was away.
    let mut later = support::api_flows();
    later.push(denied.clone());
    hub.publish(later).await;
    // The browser reconnects with Last-Event-ID: exactly the two it missed, in order.
    let resumed = tokio::task::spawn_blocking(move || {
        let mut stream = open_stream(address, "/api/violations", Some(last_id));
        let events = read_events(&mut stream, 2);
        drop(stream);
        events
    })
    .await
    .expect("stream");
    let ids: Vec<u64> = resumed.iter().map(|e| e.1.parse().expect("id")).collect();
    assert_eq!(resumed.len(), 2, "{resumed:?}");
    assert!(ids[0] > last_id && ids[1] > ids[0], "{ids:?}");

    // A live one: published after the stream caught up, with the pause resumed by `after`.
    let path = format!("/api/violations?after={}", ids[1]);
    let reader = tokio::task::spawn_blocking(move || {
        let mut stream = open_stream(address, &path, None);
        read_events(&mut stream, 1)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    hub.publish(vec![denied]).await;
    let live = reader.await.expect("stream");
    assert_eq!(live[0].0, "violation");
    assert!(live[0].1.parse::<u64>().expect("id") > ids[1]);

    // Clients that went away hold nothing: the subscribers they were are gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..50 {
        if hub.status().subscribers == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(hub.status().subscribers, 0);
}
