//! Accepting connections for the small HTTP servers (the metrics, the console): at most a
//! fixed number served at once (more wait in the kernel's accept queue), and failed accepts
//! (out of file descriptors) backed off up to a second and logged once, instead of spinning.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The longest pause after failed accepts.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts connections with at most `slots` held at once; `what` names the server in the
/// log.
pub struct BoundedAcceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    backoff: Duration,
    what: &'static str,
}

impl BoundedAcceptor {
    /// Accepts on `listener`, `slots` connections at a time.
    pub fn new(listener: TcpListener, slots: usize, what: &'static str) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(slots)),
            backoff: Duration::ZERO,
            what,
        }
    }

    /// The next connection, with the slot it holds until dropped; `None` never comes
    /// while the server runs (the slots are never closed).
    pub async fn next(&mut self) -> Option<(TcpStream, OwnedSemaphorePermit)> {
        loop {
            // A free slot first: beyond the cap, connections wait in the accept queue.
            let slot = Arc::clone(&self.slots).acquire_owned().await.ok()?;
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    if !self.backoff.is_zero() {
                        tracing::info!(what = self.what, "accepting connections again");
                        self.backoff = Duration::ZERO;
                    }
                    return Some((stream, slot));
                }
                Err(e) => {
                    // Out of file descriptors, say: retrying at once would spin and flood
                    // the log. Warn when it starts, then wait longer each time.
                    if self.backoff.is_zero() {
                        tracing::warn!(what = self.what, error = %e, "accepting a connection failed; backing off");
                    }
                    self.backoff =
                        (self.backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                    drop(slot);
                    tokio::time::sleep(self.backoff).await;
                }
            }
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}
