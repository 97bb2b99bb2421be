//! The console's HTTP/1.1 server: plaintext or TLS (mutual TLS with a client CA), a task
//! per connection, bounded: at most [`MAX_CONNECTIONS`] at once, [`HEADER_TIMEOUT`] to send
//! the request headers, [`CONNECTION_TIMEOUT`] in all unless the answer is a live stream
//! (Server-Sent Events, themselves at most [`MAX_STREAMS`]). One request per connection;
//! answers are made by `routes`.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::routes::{self, Console};
use crate::api::server::TlsFiles;

/// Connections served at once; more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 64;
/// Live streams (violations) at once; more get 503.
pub const MAX_STREAMS: usize = 16;
/// Time a connection has to send its request headers (and finish TLS).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may stay open in all, unless it carries a live stream.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// An answer's body: whole, or a live stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// Binds the console's address, naming it in the error.
pub async fn bind(address: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the console to {address} (--ui-listen)"))
}

/// The TLS the console serves with (`--ui-tls-cert`, `--ui-tls-key`, `--ui-tls-client-ca`),
/// read and checked now so that bad files stop the start, naming the file.
pub fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no certificate", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading a private key from {}", files.key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .with_context(|| format!("{}: not a CA certificate", ca.display()))?;
            }
            let verifier =
                tokio_rustls::rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .with_context(|| format!("{}: client CA", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .with_context(|| format!("{} and {}", files.cert.display(), files.key.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", path.display()))
}

/// Serves the console until the task is aborted.
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, console: Console) {
    let console = Arc::new(console);
    // Plaintext on the loopback, a page of another site could reach it through a name
    // that resolves to 127.0.0.1 (DNS rebinding): only the loopback's own names are served.
    let loopback_only = tls.is_none() && listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let streams = Arc::new(Semaphore::new(MAX_STREAMS));
    let mut acceptor = crate::accept::BoundedAcceptor::new(listener, MAX_CONNECTIONS, "console");
    while let Some((stream, slot)) = acceptor.next().await {
        let (console, streams, tls) = (Arc::clone(&console), Arc::clone(&streams), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => connection(stream, console, streams, loopback_only).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection(stream, console, streams, false).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "console: TLS handshake"),
                        Err(_) => tracing::debug!("console: TLS handshake too slow"),
                    }
                }
            }
            drop(slot);
        });
    }
}

/// One connection: one request, answered. `loopback_only`: only requests naming the
/// loopback as their Host are answered.
async fn connection<S>(
    stream: S,
    console: Arc<Console>,
    streams: Arc<Semaphore>,
    loopback_only: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let streaming = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&streaming);
    let service = service_fn(move |request: Request<Incoming>| {
        let (console, streams, flag) = (
            Arc::clone(&console),
            Arc::clone(&streams),
            Arc::clone(&flag),
        );
        async move {
            if loopback_only && !routes::names_loopback(&request) {
                return Ok::<Response<Body>, Infallible>(routes::foreign_host(&request));
            }
            let answer = routes::answer(&request, &console, &streams).await;
            if answer.streaming {
                flag.store(true, Ordering::Relaxed);
            }
            Ok::<Response<Body>, Infallible>(answer.response)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let deadline = tokio::time::sleep(CONNECTION_TIMEOUT);
    tokio::pin!(deadline);
    let mut timed = true;
    loop {
        tokio::select! {
            result = &mut connection => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "console: HTTP connection");
                }
                return;
            }
            () = &mut deadline, if timed => {
                // A live stream stays as long as its client; anything else is closed.
                if !streaming.load(Ordering::Relaxed) {
                    tracing::debug!("console: HTTP connection open too long: closed");
                    return;
                }
                timed = false;
            }
        }
    }
}
