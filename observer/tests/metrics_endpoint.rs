//! The metrics endpoint bounds what a client can hold: a connection that never sends its
//! request, or sends half of it, is closed; a scrape is answered and the connection closed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use observer::metrics::{Metrics, server};

/// Long enough for the header timeout (5 s) on a slow machine; the test only waits that
/// long when the endpoint is broken.
const PATIENCE: Duration = Duration::from_secs(30);

fn start() -> std::net::SocketAddr {
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
            server::serve(listener, Arc::new(Metrics::new())).await;
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
    assert!(answer.contains("# EOF"), "{answer}");
}
