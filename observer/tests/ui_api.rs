//! The console's data API over real HTTP (`observer run --ui-listen`): the service map of
//! the flows the hub holds as JSON, parameters that select and fold it, 400 with a message
//! for bad ones, and a client that goes away mid-request costing nothing.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use observer::hub::FlowHub;

/// `method path` over a fresh connection: the status code and the body.
fn call(address: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: observer\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("response");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_is_served_as_json_and_bad_parameters_are_refused() {
    let hub = FlowHub::new(64);
    hub.publish(support::api_flows()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(observer::ui::http::serve(listener, hub));

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
        ("/elsewhere", 404, "/api/map"),
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
}
