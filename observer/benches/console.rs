//! `cargo xtask bench console`: the web console with 2,000 workloads and 20,000 edges.
//! Prints its numbers (docs/benchmarks.md).
//!
//! The console server (`observer::ui::server::serve`) runs in this process over a hub
//! holding 20,000 synthetic records: 40 namespaces of 50 Deployments, each workload the
//! initiator of 10 connections (5 in its namespace, 5 to 5 other namespaces) on the
//! target's one port of 8, so 20,000 distinct edges (source, target, protocol, port);
//! one connection in ten denied, the rest allowed (verdicts copied from the fixtures in
//! `observer/tests/data/api/flows.jsonl`). A second console serves an empty hub.
//!
//! 1. The JSON API: `/api/map` at the workload level with all 20,000 edges, with the
//!    default 2,000, with one (the page's probe of the workload count), one namespace's
//!    workloads and the namespace level, each timed from
//!    connect to the last byte over loopback, in alternating rounds. References in the
//!    same rounds: the same bytes served as a static answer by a bare hyper server in this
//!    process (what the fold and the serialisation add), `/vendor/cytoscape.min.js` and
//!    `/api/status` from the console server. Then the fold and the serialisation alone,
//!    in process.
//! 2. The page in headless Chromium (`observer_lab::browser`), timed by the browser's
//!    own clock (`performance.now()` counts from the navigation's start): navigation →
//!    the first map drawn (`observerConsole.firstRenderMs`), the navigation entry and the
//!    page's `/api/map` fetches from the resource timings, against the same page over the
//!    empty hub and a trivial page (`/api/status`), in alternating rounds. Then, on the
//!    loaded page, `observerConsole.loadMap` for one namespace's workloads, the namespace
//!    level again, and the workload level with 2,000 edges (the most the page draws),
//!    against a load of the empty map, with their parts: the fetch (resource timing),
//!    `Response.json()` and Cytoscape's work before its draws (both wrapped), the page's
//!    own phases (`observerConsole.timings`), the canvas renderer's draws (its counters)
//!    and Chromium's long animation frames (the scripts' time by file).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use observer::flow::{FlowRecord, WorkloadInfo};
use observer::hub::FlowHub;
use observer::ui::routes::{Console, Role};
use observer::ui::service_map::{self, Level, MapQuery};
use observer_lab::browser::Browser;
use serde_json::{Value, json};

const NAMESPACES: usize = 40;
const PER_NAMESPACE: usize = 50;
const WORKLOADS: usize = NAMESPACES * PER_NAMESPACE;
/// Connections each workload initiates: half in its namespace, half to other namespaces.
const FAN_OUT: usize = 10;
const EDGES: usize = WORKLOADS * FAN_OUT;
/// The port a workload listens on is one of these (by its index).
const PORTS: [u16; 8] = [80, 443, 8080, 9090, 5432, 6379, 3306, 9092];
const API_ROUNDS: usize = 11;
const PAGE_ROUNDS: usize = 7;

fn workload_name(index: usize) -> (String, String) {
    (
        format!("ns-{}", index / PER_NAMESPACE),
        format!("svc-{}", index % PER_NAMESPACE),
    )
}

/// The 20,000 (source, target) workload pairs, distinct.
fn pairs() -> Vec<(usize, usize)> {
    let mut pairs = Vec::with_capacity(EDGES);
    for source in 0..WORKLOADS {
        let (ns, w) = (source / PER_NAMESPACE, source % PER_NAMESPACE);
        for k in 0..FAN_OUT / 2 {
            pairs.push((source, ns * PER_NAMESPACE + (w + 1 + k) % PER_NAMESPACE));
        }
        for k in 0..FAN_OUT / 2 {
            let other = (ns + 1 + 7 * k) % NAMESPACES;
            pairs.push((source, other * PER_NAMESPACE + (3 * w + k) % PER_NAMESPACE));
        }
    }
    let distinct: HashSet<_> = pairs.iter().collect();
    assert_eq!(distinct.len(), EDGES, "distinct edges");
    pairs
}

fn fixtures() -> Vec<FlowRecord> {
    include_str!("../tests/data/api/flows.jsonl")
        .lines()
        .map(|line| serde_json::from_str(line).expect("fixture flow"))
        .collect()
}

/// One record per edge: a pod of each workload, the target's port, varied traffic.
fn records() -> Vec<FlowRecord> {
    let fixtures = fixtures();
    let (allowed, denied) = (&fixtures[0], &fixtures[1]);
    assert_eq!(allowed.verdict_name(), "allow", "fixture 0");
    assert_eq!(denied.verdict_name(), "deny", "fixture 1");
    let endpoint = |record: &mut observer::flow::RecordEndpoint, index: usize| {
        let (namespace, name) = workload_name(index);
        record.ip = IpAddr::V4(Ipv4Addr::new(
            10,
            (index / PER_NAMESPACE) as u8,
            (index % PER_NAMESPACE) as u8,
            10,
        ));
        let identity = &mut record.identity;
        identity.pod = Some(format!("{name}-7d4b9c-x{}", index % 7));
        identity.pod_uid = None;
        identity.labels = Some(BTreeMap::from([("app".to_owned(), name.clone())]));
        identity.service_account = Some(name.clone());
        identity.workload = Some(WorkloadInfo {
            kind: "Deployment".into(),
            name,
        });
        identity.namespace = Some(namespace);
        identity.node = Some(format!("node-{}", index % 3));
    };
    pairs()
        .into_iter()
        .enumerate()
        .map(|(i, (source, target))| {
            let mut r = if i % 10 == 3 {
                denied.clone()
            } else {
                allowed.clone()
            };
            endpoint(&mut r.src, source);
            endpoint(&mut r.dst, target);
            r.src.port = 10_000 + i as u16;
            r.dst.port = PORTS[target % PORTS.len()];
            r.service = None;
            r.node_name = Some(format!("node-{}", source % 3));
            // Traffic spread over three orders of magnitude: the heaviest edges differ.
            let weight = (i as u64).wrapping_mul(2_654_435_761) % 1_000;
            r.fwd.packets = 2 + weight / 10;
            r.fwd.bytes = 120 + weight * weight;
            r.rev.packets = 1 + weight / 20;
            r.rev.bytes = 60 + weight * 37;
            r
        })
        .collect()
}

fn console(hub: Arc<FlowHub>) -> Console {
    Console {
        hub,
        role: Role::Node,
        node: "node-0".into(),
        views: None,
        profile: Default::default(),
        suggestions: None,
    }
}

/// `GET path` over a fresh connection: the time from connect to the last byte, and the
/// body.
fn get(address: SocketAddr, path: &str) -> (Duration, Vec<u8>) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("response");
    let took = start.elapsed();
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers")
        + 4;
    let head = String::from_utf8_lossy(&response[..end]);
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{path}: a chunked answer: {head}"
    );
    (took, response[end..].to_vec())
}

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

fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "no samples");
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn size(bytes: usize) -> String {
    if bytes >= 100_000 {
        format!("{:.2} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.1} kB", bytes as f64 / 1e3)
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

fn api(address: SocketAddr, runtime: &tokio::runtime::Runtime, records: &[FlowRecord]) {
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

/// Waits for the page's first map: what it took, by the page's clock (null until then).
/// `timings` is the page's own account of that load (`observerConsole.timings`: fetch,
/// elements, add, layout, frame); `draws` the canvas renderer's counters so far.
const FIRST_RENDER: &str = r#"
const oc = window.observerConsole;
if (!oc || oc.firstRenderMs == null) return null;
const nav = performance.getEntriesByType('navigation')[0];
const maps = performance.getEntriesByType('resource')
  .filter((e) => e.name.includes('/api/map'))
  .map((e) => ({ url: e.name.replace(location.origin, ''), start: e.startTime,
                 headers: e.responseStart, end: e.responseEnd, bytes: e.encodedBodySize }));
const error = document.getElementById('error');
const r = oc.cy.renderer();
return { first: oc.firstRenderMs, lastMap: oc.lastMapMs, responseEnd: nav.responseEnd,
  domContentLoaded: nav.domContentLoadedEventEnd, load: nav.loadEventEnd, maps,
  timings: Object.assign({}, oc.timings || {}),
  draws: { count: r.redrawCount || 0, total: r.redrawTotalTime || 0, last: r.lastDrawTime || 0 },
  nodes: oc.cy.nodes('[kind != "group"]').length, edges: oc.cy.edges().length,
  error: error && !error.hidden ? document.getElementById('error-text').textContent : null };
"#;

/// Sums the long animation frames (Chromium's `long-animation-frame` entries: frames over
/// 50 ms, with the scripts that ran in them) from `from` on: their time, the scripts' time
/// by file, and the style, layout and paint after the scripts. Prepended to the scripts
/// below.
const LOAF: &str = r#"
const loafSum = (entries, from) => {
  const out = { frames: 0, duration: 0, render: 0, 'cytoscape.min.js': 0, 'app.js': 0, 'views.js': 0, other: 0 };
  for (const e of entries) {
    if (e.startTime + e.duration < from) continue;
    out.frames++;
    out.duration += e.duration;
    if (e.styleAndLayoutStart) out.render += e.startTime + e.duration - e.styleAndLayoutStart;
    for (const sc of e.scripts || []) {
      const file = (sc.sourceURL || '').split('/').pop().split('?')[0];
      out[file in out && file !== 'other' ? file : 'other'] += sc.duration;
    }
  }
  return out;
};
const loafWatch = (buffered) => {
  const entries = [];
  let po = null;
  try {
    po = new PerformanceObserver((list) => entries.push(...list.getEntries()));
    po.observe({ type: 'long-animation-frame', buffered });
  } catch (_) { po = null; }
  return { available: !!po, take: () => { if (po) { entries.push(...po.takeRecords()); po.disconnect(); } return entries; } };
};
"#;

/// Waits until the canvas has not been drawn for 500 ms (at most 10 s): when its last
/// draw ended (the renderer's `lastDrawTime`, on the page's clock), how many draws and
/// their time in all (the renderer's counters), and the long animation frames since the
/// navigation.
const SETTLE: &str = r#"
const done = arguments[arguments.length - 1];
const r = window.observerConsole.cy.renderer();
const loaf = loafWatch(true);
const start = performance.now();
let last = r.lastDrawTime || 0, since = start;
const tick = () => {
  const now = performance.now();
  if ((r.lastDrawTime || 0) !== last) { last = r.lastDrawTime || 0; since = now; }
  if (now - since >= 500 || now - start > 10000) {
    done({ last: r.lastDrawTime || 0, count: r.redrawCount || 0, total: r.redrawTotalTime || 0,
           loaf: loaf.available ? loafSum(loaf.take(), 0) : null });
  } else {
    setTimeout(tick, 20);
  }
};
tick();
"#;

/// The trivial page's load, by the page's clock (null until its load event ended).
const TRIVIAL_LOAD: &str = r#"
const nav = performance.getEntriesByType('navigation')[0];
return nav && nav.loadEventEnd > 0 ? { load: nav.loadEventEnd, responseEnd: nav.responseEnd } : null;
"#;

/// `observerConsole.loadMap(arguments[0])` timed, with its parts: the fetch (resource
/// timing), `Response.json()` (the body's arrival and parse, by wrapping it), the page's
/// own phases (`observerConsole.timings`), then the canvas until it settles (as
/// `SETTLE`) with the time Cytoscape spent before its draws (its `beforeRender`
/// callbacks, wrapped: styles, edge geometry, texture queues). Auto-refresh is turned off first so that no refresh runs before or inside
/// the measure.
const LOAD_MAP: &str = r#"
const done = arguments[arguments.length - 1];
const params = arguments[0];
const oc = window.observerConsole;
const r = oc.cy.renderer();
const refresh = document.getElementById('auto-refresh');
if (refresh) refresh.checked = false;
performance.clearResourceTimings();
let jsonMs = 0;
const json = Response.prototype.json;
Response.prototype.json = async function () {
  const t = performance.now();
  try { return await json.call(this); } finally { jsonMs += performance.now() - t; }
};
const before = { count: r.redrawCount || 0, total: r.redrawTotalTime || 0 };
// Cytoscape's work before each canvas draw (styles, edge geometry, texture queues).
let prep = 0;
const wrapped = (r.beforeRenderCallbacks || []).map((cb) => {
  const fn = cb.fn;
  cb.fn = function () {
    const t = performance.now();
    try { return fn.apply(this, arguments); } finally { prep += performance.now() - t; }
  };
  return [cb, fn];
});
const unwrap = () => { for (const [cb, fn] of wrapped) cb.fn = fn; };
const loaf = loafWatch(false);
const t0 = performance.now();
oc.loadMap(params).then((result) => {
  const total = performance.now() - t0;
  Response.prototype.json = json;
  const timings = Object.assign({}, oc.timings || {});
  const maps = performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/api/map'))
    .map((e) => ({ start: e.startTime - t0, headers: e.responseStart - t0, end: e.responseEnd - t0,
                   bytes: e.encodedBodySize }));
  let last = r.lastDrawTime || 0, since = performance.now();
  const tick = () => {
    const now = performance.now();
    if ((r.lastDrawTime || 0) !== last) { last = r.lastDrawTime || 0; since = now; }
    if (now - since < 500 && now - t0 < 15000) { setTimeout(tick, 20); return; }
    unwrap();
    done({ total, prep, result, json: jsonMs, timings, maps,
           settled: (r.lastDrawTime || 0) - t0, draws: (r.redrawCount || 0) - before.count,
           drawTotal: (r.redrawTotalTime || 0) - before.total,
           loaf: loaf.available ? loafSum(loaf.take(), t0) : null,
           nodes: oc.cy.nodes('[kind != "group"]').length, edges: oc.cy.edges().length });
  };
  tick();
}, (e) => { Response.prototype.json = json; unwrap(); done({ error: String(e) }); });
"#;

/// Two animation frames, as a check that the headless page runs frames (the page waits
/// for one after drawing; without frames it would wait its 250 ms timeout).
const TWO_FRAMES: &str = r#"
const done = arguments[arguments.length - 1];
const t = performance.now();
requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t)));
"#;

/// What the long-animation-frame sums name (`LOAF`).
const LOAF_KEYS: [&str; 7] = [
    "duration",
    "cytoscape.min.js",
    "app.js",
    "views.js",
    "other",
    "render",
    "frames",
];

/// The page's phases of a map load (`observerConsole.timings`), as the page names them.
const PHASES: [&str; 5] = ["fetch", "elements", "add", "layout", "frame"];

fn num(value: &Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key} in {value}"))
}

/// A page's measures over the rounds, by name.
#[derive(Default)]
struct Samples(BTreeMap<String, Vec<f64>>);

impl Samples {
    fn add(&mut self, name: &str, value: f64) {
        self.0.entry(name.to_owned()).or_default().push(value);
    }

    /// Adds `value[key]` when it is a number (a phase an older page does not report is
    /// left out).
    fn add_opt(&mut self, name: &str, value: &Value, key: &str) {
        if let Some(v) = value[key].as_f64() {
            self.add(name, v);
        }
    }

    fn median(&self, name: &str) -> f64 {
        median(
            self.0
                .get(name)
                .unwrap_or_else(|| panic!("no samples of {name}"))
                .clone(),
        )
    }

    /// The median in ms, or "–" when there is none.
    fn ms(&self, name: &str) -> String {
        match self.0.get(name) {
            Some(v) if !v.is_empty() => format!("{:.0}", median(v.clone())),
            _ => "–".into(),
        }
    }

    fn ratio(&self, a: &str, b: &str) -> f64 {
        median(
            self.0[a]
                .iter()
                .zip(&self.0[b])
                .map(|(x, y)| x / y)
                .collect(),
        )
    }

    fn get(&self, name: &str, round: usize) -> f64 {
        self.0
            .get(name)
            .and_then(|v| v.get(round))
            .copied()
            .unwrap_or(f64::NAN)
    }
}

/// The interactive loads measured on the loaded page, in this order (each one draws
/// afresh: its level or namespace differs from the one before).
fn interactions() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "ns0",
            "one namespace's workloads: `loadMap({level: 'workload', namespace: 'ns-0'})`",
            json!({"level": "workload", "namespace": "ns-0"}),
        ),
        (
            "namespaces",
            "the namespace level again: `loadMap({level: 'namespace'})`",
            json!({"level": "namespace"}),
        ),
        (
            "wl2000",
            "stress: the workload level, 2,000 edges: `loadMap({level: 'workload', max_edges: 2000})`",
            json!({"level": "workload", "max_edges": 2000}),
        ),
    ]
}

fn loaf_header() -> String {
    LOAF_KEYS
        .iter()
        .map(|k| match *k {
            "duration" => "frames' time".to_owned(),
            "render" => "style, layout, paint".to_owned(),
            "frames" => "frames".to_owned(),
            "other" => "other scripts".to_owned(),
            file => format!("scripts in {file}"),
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

fn loaf_values(s: &Samples, prefix: &str) -> String {
    LOAF_KEYS
        .iter()
        .map(|k| s.ms(&format!("{prefix}.loaf.{k}")))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// FNV-1a of `bytes`: which version of the page was measured (it is being worked on).
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn page(big: SocketAddr, empty: SocketAddr) {
    let (_, app) = get(big, "/app.js");
    let browser = Browser::start().expect("headless Chromium (run `cargo xtask setup`)");
    let version = browser.capabilities()["browserVersion"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let mut s = Samples::default();
    let mut first_maps: Vec<Value> = Vec::new();
    let mut shapes = BTreeMap::new();
    let wait = Duration::from_secs(60);
    // One page load untimed: Chromium's own start-up (caches, compiler) out of round 1.
    browser.goto(&format!("http://{big}/")).expect("page");
    browser.wait_for(FIRST_RENDER, wait).expect("first render");
    for round in 0..PAGE_ROUNDS {
        // The three loads in an order that rotates, so none always follows another.
        for step in 0..3 {
            match (round + step) % 3 {
                0 => {
                    browser
                        .goto(&format!("http://{empty}/"))
                        .expect("empty page");
                    let v = browser.wait_for(FIRST_RENDER, wait).expect("empty map");
                    s.add("empty.first", num(&v, "first"));
                    s.add("empty.load", num(&v, "load"));
                    // The reference for the loads on the loaded page: a load of the
                    // empty map (drawn afresh: another level).
                    let v = browser
                        .execute_async(
                            &format!("{LOAF}{LOAD_MAP}"),
                            vec![json!({"level": "namespace"})],
                        )
                        .expect("empty loadMap");
                    s.add("empty.reload", num(&v, "total"));
                }
                1 => {
                    browser
                        .goto(&format!("http://{big}/api/status"))
                        .expect("trivial page");
                    let v = browser.wait_for(TRIVIAL_LOAD, wait).expect("trivial load");
                    s.add("trivial.load", num(&v, "load"));
                }
                _ => {
                    browser.goto(&format!("http://{big}/")).expect("big page");
                    let v = browser.wait_for(FIRST_RENDER, wait).expect("big map");
                    if let Some(error) = v["error"].as_str() {
                        panic!("the page shows an error: {error}");
                    }
                    let first = num(&v, "first");
                    for key in ["first", "responseEnd", "domContentLoaded", "load"] {
                        s.add(&format!("big.{key}"), num(&v, key));
                    }
                    for phase in PHASES {
                        s.add_opt(&format!("big.t.{phase}"), &v["timings"], phase);
                    }
                    let maps = v["maps"].as_array().cloned().unwrap_or_default();
                    let last_end = maps.iter().map(|m| num(m, "end")).fold(0.0, f64::max);
                    let first_start = maps.first().map_or(0.0, |m| num(m, "start"));
                    s.add("big.first_fetch_start", first_start);
                    s.add("big.after_fetches", first - last_end);
                    for (i, m) in maps.iter().enumerate() {
                        s.add(
                            &format!("big.map{i}.wait"),
                            num(m, "headers") - num(m, "start"),
                        );
                        s.add(&format!("big.map{i}.took"), num(m, "end") - num(m, "start"));
                    }
                    shapes.insert("first", (num(&v, "nodes"), num(&v, "edges")));
                    first_maps = maps;
                    let settled = browser
                        .execute_async(&format!("{LOAF}{SETTLE}"), Vec::new())
                        .expect("settle");
                    for k in LOAF_KEYS {
                        s.add_opt(&format!("big.loaf.{k}"), &settled["loaf"], k);
                    }
                    s.add("big.settled", num(&settled, "last").max(first));
                    s.add("big.draws", num(&settled, "count"));
                    s.add("big.drawTotal", num(&settled, "total"));
                    s.add("big.drawsAtFirst", num(&v["draws"], "count"));
                    let frames = browser
                        .execute_async(TWO_FRAMES, Vec::new())
                        .expect("frames");
                    s.add("frames", frames.as_f64().unwrap_or(f64::NAN));
                    for (key, _, params) in interactions() {
                        let v = browser
                            .execute_async(&format!("{LOAF}{LOAD_MAP}"), vec![params])
                            .expect("loadMap");
                        if let Some(error) = v["error"].as_str().or(v["result"]["error"].as_str()) {
                            panic!("loadMap {key}: {error}");
                        }
                        let maps = v["maps"].as_array().cloned().unwrap_or_default();
                        let wait_headers = maps
                            .iter()
                            .map(|m| num(m, "headers") - num(m, "start"))
                            .sum::<f64>();
                        s.add(&format!("{key}.total"), num(&v, "total"));
                        s.add(&format!("{key}.headers"), wait_headers);
                        s.add(&format!("{key}.json"), num(&v, "json"));
                        for phase in PHASES {
                            s.add_opt(&format!("{key}.t.{phase}"), &v["timings"], phase);
                        }
                        s.add(
                            &format!("{key}.settled"),
                            num(&v, "settled").max(num(&v, "total")),
                        );
                        s.add(&format!("{key}.draws"), num(&v, "draws"));
                        s.add(&format!("{key}.prep"), num(&v, "prep"));
                        for k in LOAF_KEYS {
                            s.add_opt(&format!("{key}.loaf.{k}"), &v["loaf"], k);
                        }
                        s.add(&format!("{key}.drawTotal"), num(&v, "drawTotal"));
                        s.add(
                            &format!("{key}.bytes"),
                            maps.iter().map(|m| num(m, "bytes")).sum(),
                        );
                        shapes.insert(key, (num(&v, "nodes"), num(&v, "edges")));
                    }
                }
            }
        }
        println!(
            "  round {}: first map {:.0} ms, canvas settled {:.0} ms (empty map {:.0} ms, \
             trivial page {:.0} ms); ns-0 {:.0} ms, namespaces {:.0} ms, 2,000 workload \
             edges {:.0} ms",
            round + 1,
            s.get("big.first", round),
            s.get("big.settled", round),
            s.get("empty.first", round),
            s.get("trivial.load", round),
            s.get("ns0.total", round),
            s.get("namespaces.total", round),
            s.get("wl2000.total", round),
        );
    }
    let errors: Vec<String> = browser
        .console_log()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.level == "SEVERE" && !e.message.contains("favicon.ico"))
        .map(|e| e.message)
        .collect();
    drop(browser);

    println!(
        "\nThe page (app.js {} bytes, FNV-1a {:016x}) in headless Chromium {version} \
         (1400×900 window), {PAGE_ROUNDS} rounds (empty-map page, 2,000-workload page, \
         trivial page, in rotating order), medians by the page's clock from the \
         navigation's start:",
        app.len(),
        fingerprint(&app)
    );
    println!("| measure | median | reference | ratio |");
    println!("| --- | --- | --- | --- |");
    let (nodes, edges) = shapes["first"];
    println!(
        "| **navigation → first map drawn** (`firstRenderMs`; auto view: {nodes} namespaces, {edges} edges) | **{:.0} ms** | the same page over an empty hub: {:.0} ms | {:.1}× |",
        s.median("big.first"),
        s.median("empty.first"),
        s.ratio("big.first", "empty.first"),
    );
    println!(
        "| the same | | a trivial page (`/api/status`), load event end: {:.0} ms | {:.1}× |",
        s.median("trivial.load"),
        s.ratio("big.first", "trivial.load"),
    );
    println!(
        "| navigation → the canvas's last draw (no draw for 500 ms after it) | {:.0} ms | | |",
        s.median("big.settled"),
    );
    println!(
        "| navigation: HTML response end / DOMContentLoaded / load event end | {:.0} / {:.0} / {:.0} ms | empty-map page's load event end: {:.0} ms | {:.1}× |",
        s.median("big.responseEnd"),
        s.median("big.domContentLoaded"),
        s.median("big.load"),
        s.median("empty.load"),
        s.ratio("big.load", "empty.load"),
    );
    println!(
        "| the page's first `/api/map` fetch starts at | {:.0} ms | | |",
        s.median("big.first_fetch_start")
    );
    for (i, m) in first_maps.iter().enumerate() {
        println!(
            "| fetch {} `{}` ({}): to headers / to last byte | {:.0} / {:.0} ms | | |",
            i + 1,
            m["url"].as_str().unwrap_or("?"),
            size(num(m, "bytes") as usize),
            s.median(&format!("big.map{i}.wait")),
            s.median(&format!("big.map{i}.took")),
        );
    }
    println!(
        "| after the last fetch's last byte, until `firstRenderMs` | {:.0} ms | | |",
        s.median("big.after_fetches")
    );
    println!(
        "| the page's phases of that load (`observerConsole.timings`): {} | {} ms | | |",
        PHASES.join(" / "),
        PHASES
            .iter()
            .map(|p| s.ms(&format!("big.t.{p}")))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "| canvas draws until settled, and their time in all (renderer counters) | {:.0} draws, {:.0} ms | | |",
        s.median("big.draws"),
        s.median("big.drawTotal"),
    );
    println!(
        "| long animation frames (over 50 ms) since the navigation, until settled: {} | {} | | |",
        loaf_header(),
        loaf_values(&s, "big"),
    );
    println!(
        "| two animation frames (a check that headless Chromium runs frames) | {:.0} ms | | |",
        s.median("frames")
    );
    println!(
        "\nInteractive loads on the loaded page (`observerConsole.loadMap`), medians over the rounds, ms:"
    );
    println!(
        "| load | drawn | total | / a load of the empty map ({:.0} ms) | server (request → headers) | `Response.json()` (body + parse) | page's phases: {} | Cytoscape before its draws | canvas draws (time) | canvas settled after |",
        s.median("empty.reload"),
        PHASES.join(" / ")
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (key, label, _) in interactions() {
        let (nodes, edges) = shapes[key];
        println!(
            "| {label} | {nodes} nodes, {edges} edges ({}) | **{:.0}** | {:.1}× | {:.0} | {:.0} | {} | {:.0} | {:.0} ({:.0}) | {:.0} |",
            size(s.median(&format!("{key}.bytes")) as usize),
            s.median(&format!("{key}.total")),
            s.ratio(&format!("{key}.total"), "empty.reload"),
            s.median(&format!("{key}.headers")),
            s.median(&format!("{key}.json")),
            PHASES
                .iter()
                .map(|p| s.ms(&format!("{key}.t.{p}")))
                .collect::<Vec<_>>()
                .join(" / "),
            s.median(&format!("{key}.prep")),
            s.median(&format!("{key}.draws")),
            s.median(&format!("{key}.drawTotal")),
            s.median(&format!("{key}.settled")),
        );
    }
    println!(
        "\nWhere the main thread went in those loads: long animation frames (over 50 ms) from \
         the call until the canvas settled, medians, ms:"
    );
    println!("| load | {} |", loaf_header().replace(" / ", " | "));
    println!("| --- |{}", " --- |".repeat(LOAF_KEYS.len()));
    for (key, _, _) in interactions() {
        println!("| {key} | {} |", loaf_values(&s, key).replace(" / ", " | "));
    }
    if !errors.is_empty() {
        println!("\nbrowser console errors ({}):", errors.len());
        for e in errors.iter().take(10) {
            println!("  {e}");
        }
    }
}

fn serve(runtime: &tokio::runtime::Runtime, hub: Arc<FlowHub>) -> SocketAddr {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let address = listener.local_addr().expect("address");
    runtime.spawn(observer::ui::server::serve(listener, None, console(hub)));
    address
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let records = records();
    let hub = FlowHub::new(32_768);
    runtime.block_on(hub.publish(records.clone()));
    let big = serve(&runtime, hub);
    let empty = serve(&runtime, FlowHub::new(1_024));
    let (_, status) = get(big, "/api/status");
    println!(
        "console over {EDGES} records: {NAMESPACES} namespaces × {PER_NAMESPACE} Deployments, \
         {EDGES} edges, one connection in ten denied; /api/status: {}",
        String::from_utf8_lossy(&status).trim()
    );
    let started = Instant::now();
    api(big, &runtime, &records);
    println!("(API part: {:.0} s)\n", started.elapsed().as_secs_f64());
    let started = Instant::now();
    page(big, empty);
    println!("(page part: {:.0} s)", started.elapsed().as_secs_f64());
}
