//! What the API's client commands (`observe`, `status`, `suggest --server`) share: where
//! the server is and the TLS to reach it with, how a failure is reported and its exit
//! status (2 for usage and values the server refuses, 1 at run time, 0 on a closed pipe).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::api::server::read_pem;

/// Where the API is and how to reach it: shared by `observe` and `status`.
#[derive(Debug, Args)]
pub struct Connection {
    /// The observer's API (`observer run --grpc-listen`): `http://host:port`,
    /// `https://host:port` (with --tls-ca), or `unix:///path/to/socket`.
    #[arg(long, default_value = "http://127.0.0.1:4245")]
    pub server: String,
    #[command(flatten)]
    tls: ClientTls,
}

/// The client's TLS flags: shared by every command that calls the API.
#[derive(Debug, Args)]
pub struct ClientTls {
    /// CA (PEM) that the server's certificate chains to: connect with TLS (an https://
    /// server address).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for servers that require one; needs --tls-key.
    #[arg(long, requires = "tls_key", requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The name to expect in the server's certificate (default: the address's host).
    #[arg(long, requires = "tls_ca")]
    tls_server_name: Option<String>,
}

impl Connection {
    /// Connects to `--server` (see [`ClientTls::connect`]).
    pub async fn connect(&self) -> Result<tonic::transport::Channel, Failure> {
        self.tls.connect(&self.server).await
    }

    /// See [`ClientTls::explain`].
    pub fn explain(&self, failure: Failure) -> Failure {
        self.tls.explain(failure)
    }
}

impl ClientTls {
    /// Connects to `server`, with TLS when `--tls-ca` is given; a server without a scheme,
    /// or whose scheme the TLS flags contradict, is a usage error.
    pub async fn connect(&self, server: &str) -> Result<tonic::transport::Channel, Failure> {
        if !server.contains("://") {
            return Err(Failure::Usage(format!(
                "--server {server:?} has no scheme: write http://{server} (or https:// with \
                 --tls-ca, or unix:///path)"
            )));
        }
        if server.starts_with("https://") && self.tls_ca.is_none() {
            return Err(Failure::Usage(format!(
                "--server {server} is https: give the CA its certificate chains to (--tls-ca)"
            )));
        }
        if server.starts_with("http://") && self.tls_ca.is_some() {
            return Err(Failure::Usage(format!(
                "--server {server} is plaintext but --tls-ca asks for TLS: write https://"
            )));
        }
        let tls = match &self.tls_ca {
            Some(ca) => {
                let mut tls = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(read_pem(ca).map_err(Failure::usage)?));
                if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
                    tls = tls.identity(Identity::from_pem(
                        read_pem(cert).map_err(Failure::usage)?,
                        read_pem(key).map_err(Failure::usage)?,
                    ));
                }
                if let Some(name) = &self.tls_server_name {
                    tls = tls.domain_name(name.clone());
                }
                Some(tls)
            }
            None => None,
        };
        crate::api::listen::connect(server, tls)
            .await
            .map_err(|e| self.explain(Failure::Runtime(e)))
    }

    /// `failure`, with the TLS flags to check when TLS is on and the connection broke (a
    /// handshake the server refused shows as a transport error on the first call).
    pub fn explain(&self, failure: Failure) -> Failure {
        match failure {
            Failure::Runtime(e) if self.tls_ca.is_some() => {
                let text = format!("{e:#}");
                // How a refused handshake surfaces depends on when the client notices it.
                const BROKEN: [&str; 7] = [
                    "transport error",
                    "operation was canceled",
                    "certificate",
                    "handshake",
                    "connection reset",
                    "broken pipe",
                    "unexpected EOF",
                ];
                if !BROKEN.iter().any(|b| text.contains(b)) {
                    return Failure::Runtime(e);
                }
                let hint = if self.tls_cert.is_none() {
                    "if the server requires a client certificate (--grpc-tls-client-ca), give \
                     --tls-cert and --tls-key; else check --tls-ca and --tls-server-name"
                } else {
                    "check that --tls-cert is signed by the CA the server trusts, and \
                     --tls-ca and --tls-server-name"
                };
                Failure::Runtime(anyhow::anyhow!("{text} ({hint})"))
            }
            other => other,
        }
    }
}

/// How a client command failed: usage (exit 2) or at run time (exit 1).
#[derive(Debug)]
pub enum Failure {
    /// A bad flag or value, or one the server refused.
    Usage(String),
    /// Anything else.
    Runtime(anyhow::Error),
}

impl Failure {
    fn usage(e: impl std::fmt::Display) -> Self {
        Self::Usage(format!("{e:#}"))
    }

    /// A gRPC error: values the server refused are usage errors.
    pub fn from_status(what: &str, status: tonic::Status) -> Self {
        match status.code() {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => {
                Self::Usage(format!("{what}: {}", status.message()))
            }
            _ => Self::Runtime(anyhow::anyhow!("{what}: {}", status.message())),
        }
    }

    /// Prints it and gives its exit status.
    pub fn report(self) -> ExitCode {
        match self {
            Self::Usage(text) => {
                eprintln!("error: {text}");
                ExitCode::from(2)
            }
            Self::Runtime(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        }
    }
}

/// Runs a client command on a one-thread runtime and gives its exit status: 0 when it
/// ended well or its reader closed the pipe (`observer observe | head`), else the
/// failure's.
pub fn run_client(command: impl std::future::Future<Output = Result<(), Failure>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return Failure::Runtime(e.into()).report(),
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Runtime(e))
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(failure) => failure.report(),
    }
}
