//! One HTTP/1.1 request over a fresh connection, read to its end: what tests, benchmarks
//! and the demo ask an observer's console or metrics endpoint, without an HTTP client
//! crate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result};

/// An answer, whole.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `method path` to `address`, naming `host` as the Host, with `Connection: close`.
pub fn request(address: SocketAddr, host: &str, method: &str, path: &str) -> Result<Response> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading the answer to {method} {path}"))?;
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("no headers in the answer to {method} {path}"))?;
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line in the answer to {method} {path}: {head}"))?;
    Ok(Response {
        status,
        head,
        body: response[end + 4..].to_vec(),
    })
}

/// `GET path`, as a browser on the loopback asks it (`Host: localhost`).
pub fn get(address: SocketAddr, path: &str) -> Result<Response> {
    request(address, "localhost", "GET", path)
}
