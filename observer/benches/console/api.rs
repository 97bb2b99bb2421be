//! Part 1, the JSON API: `/api/map` timed over loopback from connect to the last byte,
//! against the same bytes served static by a bare hyper server, a static asset and
//! `/api/status`, in alternating rounds; then the fold and the serialisation in process.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use observer::flow::FlowRecord;
use observer::ui::service_map::{self, Level, MapQuery};
use serde_json::Value;

use crate::report::{get, median, ms, size};

const API_ROUNDS: usize = 11;

/// Serves fixed bodies by path: the reference "the same bytes, already made".
async fn serve_bytes(listener: tokio::net::TcpListener, bodies: Arc<HashMap<String, Bytes>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let bodies = Arc::clone(&bodies);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let body = bodies
                    .get(request.uri().path())
                    .cloned()
                    .unwrap_or_default();
                async move {
                    let mut response = Response::new(Full::new(body));
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

struct ApiCase {
    label: &'static str,
    path: &'static str,
    query: MapQuery,
}

fn api_cases() -> Vec<ApiCase> {
    let workload = |max_edges| MapQuery {
        level: Level::Workload,
        max_edges,
        ..MapQuery::default()
    };
    vec![
        ApiCase {
            label: "workload level, all 20,000 edges (max_edges=20000)",
            path: "/api/map?level=workload&max_edges=20000",
            query: workload(20_000),
        },
        ApiCase {
            label: "workload level, default max_edges (2,000 drawn)",
            path: "/api/map?level=workload",
            query: workload(2_000),
        },
        ApiCase {
            label: "workload level, max_edges=1 (the page's probe of the workload count)",
            path: "/api/map?level=workload&max_edges=1",
            query: workload(1),
        },
        ApiCase {
            label: "one namespace's workloads (namespace=ns-0)",
            path: "/api/map?level=workload&namespace=ns-0",
            query: MapQuery {
                namespaces: vec!["ns-0".into()],
                ..workload(2_000)
            },
        },
        ApiCase {
            label: "namespace level",
            path: "/api/map?level=namespace",
            query: MapQuery {
                level: Level::Namespace,
                ..workload(2_000)
            },
        },
    ]
}

pub(crate) fn api(address: SocketAddr, runtime: &tokio::runtime::Runtime, records: &[FlowRecord]) {
    let cases = api_cases();
    // What each answer is, and the same bytes for the static reference.
    let mut bodies = HashMap::new();
    for (i, case) in cases.iter().enumerate() {
        let (_, body) = get(address, case.path);
        let map: Value = serde_json::from_slice(&body).expect("map JSON");
        println!(
            "  {}: {} nodes, {} edges, {} left out, workloads {}; {}",
            case.path,
            map["nodes"].as_array().map_or(0, Vec::len),
            map["edges"].as_array().map_or(0, Vec::len),
            map["edges_left_out"],
            map["workloads"],
            size(body.len())
        );
        bodies.insert(format!("/same-bytes/{i}"), Bytes::from(body));
    }
    let sizes: Vec<usize> = (0..cases.len())
        .map(|i| bodies[&format!("/same-bytes/{i}")].len())
        .collect();
    let bare = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let bare_address = bare.local_addr().expect("address");
    runtime.spawn(serve_bytes(bare, Arc::new(bodies)));
    let asset = "/vendor/cytoscape.min.js";
    let asset_bytes = get(address, asset).1.len();
    let status_bytes = get(address, "/api/status").1.len();

    // Alternating rounds: every request once per round, the references beside them.
    let mut map_ms = vec![Vec::new(); cases.len()];
    let mut same_ms = vec![Vec::new(); cases.len()];
    let mut same_ratio = vec![Vec::new(); cases.len()];
    let mut asset_ratio = vec![Vec::new(); cases.len()];
    let (mut asset_ms, mut status_ms) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        // Warm-up: connections, allocator, caches.
        for (i, case) in cases.iter().enumerate() {
            get(address, case.path);
            get(bare_address, &format!("/same-bytes/{i}"));
        }
    }
    for _ in 0..API_ROUNDS {
        let a = ms(get(address, asset).0);
        let s = ms(get(address, "/api/status").0);
        asset_ms.push(a);
        status_ms.push(s);
        for (i, case) in cases.iter().enumerate() {
            let m = ms(get(address, case.path).0);
            let same = ms(get(bare_address, &format!("/same-bytes/{i}")).0);
            map_ms[i].push(m);
            same_ms[i].push(same);
            same_ratio[i].push(m / same);
            asset_ratio[i].push(m / a);
        }
    }

    // In process: the fold and the serialisation alone (the answer's work, no HTTP).
    let mut fold_ms = vec![Vec::new(); cases.len()];
    let mut serialize_ms = vec![Vec::new(); cases.len()];
    for _ in 0..API_ROUNDS {
        for (i, case) in cases.iter().enumerate() {
            let start = Instant::now();
            let map = service_map::build(records.iter(), &case.query);
            fold_ms[i].push(ms(start.elapsed()));
            let start = Instant::now();
            let body = serde_json::to_vec(&map).expect("serialise");
            serialize_ms[i].push(ms(start.elapsed()));
            assert_eq!(body.len(), sizes[i], "{}: the same answer", case.path);
        }
    }

    let asset_median = median(asset_ms.clone());
    println!(
        "\nJSON API, {API_ROUNDS} alternating rounds over loopback (connect to last byte), medians:"
    );
    println!(
        "| request | answer | median | the same bytes, static (ratio) | / cytoscape.min.js | fold | serialise |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (i, case) in cases.iter().enumerate() {
        println!(
            "| {} `{}` | {} | {:.1} ms | {:.2} ms ({:.1}×) | {:.1}× | {:.1} ms | {:.1} ms |",
            case.label,
            case.path,
            size(sizes[i]),
            median(map_ms[i].clone()),
            median(same_ms[i].clone()),
            median(same_ratio[i].clone()),
            median(asset_ratio[i].clone()),
            median(fold_ms[i].clone()),
            median(serialize_ms[i].clone()),
        );
    }
    println!(
        "| reference: `{asset}` (static asset) | {} | {:.2} ms | | 1.0× | | |",
        size(asset_bytes),
        asset_median
    );
    println!(
        "| reference: `/api/status` | {} | {:.2} ms | | {:.2}× | | |",
        size(status_bytes),
        median(status_ms.clone()),
        median(
            status_ms
                .iter()
                .zip(&asset_ms)
                .map(|(s, a)| s / a)
                .collect()
        )
    );
}
