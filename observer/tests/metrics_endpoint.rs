//! The metrics endpoint bounds what a client can hold: a connection that never sends its
//! request, or sends half of it, is closed; a scrape is answered and the connection closed.
//! It answers in the classic text format unless the scraper asks for OpenMetrics, and
//! promtool (installed by `cargo xtask setup` from Debian's `prometheus`) passes both.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use observer::metrics::{Metrics, server};

/// Long enough for the header timeout (5 s) on a slow machine; the test only waits that
/// long when the endpoint is broken.
const PATIENCE: Duration = Duration::from_secs(30);

fn start() -> std::net::SocketAddr {
    start_with(Metrics::new())
}

fn start_with(metrics: Metrics) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = server::bind("127.0.0.1:0".parse().expect("address"))
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("address"))
                .expect("send address");
            server::serve(listener, Arc::new(metrics)).await;
        });
    });
    rx.recv().expect("the server's address")
}

/// Reads until the server closes the connection; the bytes read.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => out,
        Err(e) => panic!("still open after {PATIENCE:?}: {e}"),
    }
}

#[test]
fn idle_and_half_sent_connections_are_closed() {
    let address = start();
    let mut idle = TcpStream::connect(address).expect("connect");
    let mut half = TcpStream::connect(address).expect("connect");
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .expect("half a request");
    assert!(read_to_close(&mut idle).is_empty());
    let answer = read_to_close(&mut half);
    // hyper answers a header timeout with nothing or a 408; either way it closes.
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[test]
fn a_scrape_is_answered_and_closed_even_when_the_client_asks_to_keep_it() {
    let address = start();
    let mut client = TcpStream::connect(address).expect("connect");
    client
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        .expect("request");
    let answer = String::from_utf8_lossy(&read_to_close(&mut client)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("text/plain; version=0.0.4"), "{answer}");
    assert!(!answer.contains("# EOF"), "{answer}");
}

/// A scrape's headers and body, with `accept` as the Accept header (none when empty).
fn scrape(address: std::net::SocketAddr, accept: &str) -> (String, String) {
    let mut client = TcpStream::connect(address).expect("connect");
    let accept = if accept.is_empty() {
        String::new()
    } else {
        format!("Accept: {accept}\r\n")
    };
    client
        .write_all(format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{accept}\r\n").as_bytes())
        .expect("request");
    let answer = String::from_utf8_lossy(&read_to_close(&mut client)).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("headers and body");
    (head.to_string(), body.to_string())
}

/// `promtool check metrics` on `body`: its verdict and what it said.
fn promtool(body: &str) -> (bool, String) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect(
            "promtool is missing: run `cargo xtask setup` as root (Debian's prometheus package)",
        );
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write the metrics");
    let output = child.wait_with_output().expect("promtool ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

#[test]
fn both_formats_are_negotiated_and_pass_promtool() {
    let metrics = Metrics::new();
    let mut stats = observer::stats::RunStats::default();
    stats.datapath.0.insert("packets_seen", 100);
    stats.datapath.0.insert("ringbuf_end_failed", 2);
    stats.table_full_packets = 3;
    metrics.observe_stats(&stats);
    metrics.observe_records(&support::api_flows());
    let address = start_with(metrics);

    let (head, classic) = scrape(address, "");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let (head, openmetrics) = scrape(
        address,
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    );
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    for body in [&classic, &openmetrics] {
        assert!(
            body.contains("observer_lost_packets_total{what=\"table_full\"} 3"),
            "{body}"
        );
        assert!(
            body.contains("observer_flows_total{verdict=\"deny\"} 1"),
            "{body}"
        );
        assert!(body.contains("process_open_fds"), "{body}");
        assert!(body.contains("observer_build_info{version="), "{body}");
    }
    // The classic format: parsed and lint-clean.
    let (passed, said) = promtool(&classic);
    assert!(passed, "promtool on the classic format: {said}\n{classic}");
    // OpenMetrics: parsed; promtool's linter reads the classic format, where a counter's
    // HELP names its `_total` series, while OpenMetrics names the family without it. That
    // is its only complaint, and only for counters whose family has its HELP.
    let (passed, said) = promtool(&openmetrics);
    if !passed {
        for complaint in said.lines() {
            let family = complaint
                .strip_suffix("_total no help text")
                .unwrap_or_else(|| panic!("promtool on OpenMetrics: {complaint}\n{said}"));
            assert!(
                openmetrics.contains(&format!("# HELP {family} "))
                    && openmetrics.contains(&format!("# TYPE {family} counter")),
                "{complaint}: no HELP for the counter family {family}"
            );
        }
    }
}
