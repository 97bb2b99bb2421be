//! Where the gRPC API listens, and how clients reach it: a TCP address, or a Unix socket
//! whose file permissions decide who may connect (the DaemonSet's choice: with
//! `hostNetwork`, a loopback port is open to every hostNetwork pod of the node).

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The prefix of a Unix socket address, as gRPC spells it (`unix:///run/observer/api.sock`;
/// `unix:/path` is accepted too).
pub const UNIX_SCHEME: &str = "unix:";

/// Permissions of the API's socket: the daemon's user only (root in the DaemonSet, so
/// `kubectl exec ... observer observe` works and other pods cannot connect).
pub const SOCKET_MODE: u32 = 0o600;

/// A listening address of the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiAddress {
    /// host:port.
    Tcp(SocketAddr),
    /// A Unix socket's path.
    Unix(PathBuf),
}

impl ApiAddress {
    /// Parses `host:port` or `unix:PATH` (`unix:///abs/path` or `unix:/abs/path`).
    pub fn parse(value: &str) -> Result<Self, String> {
        if let Some(path) = unix_path(value) {
            if !path.is_absolute() {
                return Err(format!("{value:?}: a Unix socket path must be absolute"));
            }
            return Ok(Self::Unix(path));
        }
        listen_address(value)
            .map(Self::Tcp)
            .map_err(|e| format!("{e}, nor unix:///path"))
    }
}

/// A TCP address to listen on: `ip:port`, or `host:port` with a host name the system
/// resolves (`localhost:4245` is `127.0.0.1:4245`; another name, its first address).
pub fn listen_address(value: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(address) = value.parse() {
        return Ok(address);
    }
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| format!("{value:?} is not host:port (e.g. 127.0.0.1:4245)"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{value:?}: {port:?} is not a port"))?;
    // `:PORT` and `localhost:PORT` mean the loopback: nothing is exposed by accident.
    if host == "localhost" || host.is_empty() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| format!("{value:?}: the host name {host:?} does not resolve"))
}

impl std::fmt::Display for ApiAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(address) => write!(f, "{address}"),
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// The socket path of a `unix:` address, or `None` for any other.
pub fn unix_path(value: &str) -> Option<PathBuf> {
    let rest = value.strip_prefix(UNIX_SCHEME)?;
    // unix:///abs → "/abs"; unix:/abs → "/abs".
    let path = rest.strip_prefix("//").unwrap_or(rest);
    Some(PathBuf::from(path))
}

/// A bound listener.
pub enum ApiListener {
    /// On a TCP address.
    Tcp(tokio::net::TcpListener),
    /// On a Unix socket, removed when this is dropped.
    Unix(tokio::net::UnixListener, SocketFile),
}

impl ApiListener {
    /// Where it listens (the port a `:0` address got).
    pub fn address(&self) -> Option<ApiAddress> {
        match self {
            Self::Tcp(listener) => listener.local_addr().ok().map(ApiAddress::Tcp),
            Self::Unix(_, file) => Some(ApiAddress::Unix(file.0.clone())),
        }
    }
}

/// The socket file of a Unix listener; removed on drop.
pub struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds `address`, naming it in the error. A socket file left by an earlier run is
/// replaced; any other file at the path is an error, never removed.
pub async fn bind(address: &ApiAddress) -> Result<ApiListener> {
    match address {
        ApiAddress::Tcp(address) => Ok(ApiListener::Tcp(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("binding the gRPC API to {address} (--grpc-listen)"))?,
        )),
        ApiAddress::Unix(path) => bind_unix(path),
    }
}

fn bind_unix(path: &Path) -> Result<ApiListener> {
    let context = || {
        format!(
            "binding the gRPC API to unix://{} (--grpc-listen)",
            path.display()
        )
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).with_context(context)?;
        }
        Ok(_) => bail!(
            "{}: {} exists and is not a socket; not removing it",
            context(),
            path.display()
        ),
        Err(_) => {}
    }
    let listener = tokio::net::UnixListener::bind(path).with_context(context)?;
    let file = SocketFile(path.to_path_buf());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .with_context(context)?;
    Ok(ApiListener::Unix(listener, file))
}

/// A client channel to `server`: `http://host:port`, `https://...` (with `tls`), or
/// `unix:///path`.
pub async fn connect(
    server: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<tonic::transport::Channel> {
    let failed = || format!("connecting to the observer API at {server}");
    match endpoint(server, tls)? {
        (endpoint, Some(connector)) => endpoint
            .connect_with_connector(connector)
            .await
            .with_context(failed),
        (endpoint, None) => endpoint.connect().await.with_context(failed),
    }
}

/// A channel to `server` (as [`connect`]) that connects on its first call and reconnects
/// after failures by itself: a relay keeps one per node observer. Its streams' HTTP/2
/// windows are small (256 KiB), so that what a slow client's stream holds in flight from
/// each node stays small: past it, the node's ring falls behind and the node says what
/// was lost. The connection's window is not a limit (every stream's is): unread data of
/// stalled streams must not stop the other streams on the same connection.
pub fn connect_lazy(
    server: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<tonic::transport::Channel> {
    const STREAM_WINDOW: u32 = 256 << 10;
    let (endpoint, connector) = endpoint(server, tls)?;
    let endpoint = endpoint
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(1 << 30);
    Ok(match (endpoint, connector) {
        (endpoint, Some(connector)) => endpoint.connect_with_connector_lazy(connector),
        (endpoint, None) => endpoint.connect_lazy(),
    })
}

/// Opens a Unix socket for a channel.
#[derive(Clone, Debug)]
pub struct UnixConnector(PathBuf);

impl tower::Service<http::Uri> for UnixConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}

/// The endpoint for `server`, and the connector when it is a Unix socket.
fn endpoint(
    server: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<(tonic::transport::Endpoint, Option<UnixConnector>)> {
    use tonic::transport::Endpoint;
    if let Some(path) = unix_path(server) {
        if tls.is_some() {
            bail!("--server {server}: TLS is for TCP addresses; a Unix socket is local");
        }
        // The URI is not used to connect; the connector opens the socket.
        return Ok((
            Endpoint::from_static("http://localhost"),
            Some(UnixConnector(path)),
        ));
    }
    let mut endpoint =
        Endpoint::from_shared(server.to_owned()).with_context(|| format!("--server {server}"))?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).context("TLS settings")?;
    }
    Ok((endpoint, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_tcp_or_unix() {
        assert_eq!(
            ApiAddress::parse("127.0.0.1:4245"),
            Ok(ApiAddress::Tcp("127.0.0.1:4245".parse().expect("address")))
        );
        for spelling in [
            "unix:///run/observer/api.sock",
            "unix:/run/observer/api.sock",
        ] {
            assert_eq!(
                ApiAddress::parse(spelling),
                Ok(ApiAddress::Unix("/run/observer/api.sock".into()))
            );
        }
        assert!(ApiAddress::parse("unix:relative.sock").is_err());
        assert!(ApiAddress::parse("localhost").is_err());
        assert_eq!(
            ApiAddress::parse("localhost:4245"),
            Ok(ApiAddress::Tcp("127.0.0.1:4245".parse().expect("address")))
        );
        let unknown = ApiAddress::parse("no-such-host.invalid:4245");
        assert!(
            unknown
                .as_ref()
                .is_err_and(|e| e.contains("does not resolve")),
            "{unknown:?}"
        );
        assert!(ApiAddress::parse("localhost:http").is_err());
    }
}
