//! The node observers a relay reads: one channel each (HTTP/2, shared by every client's
//! stream), and what the relay knows of each for `ServerStatus`. A status check per node
//! keeps that current: every few seconds while it answers, with backoff while it does not.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::wire::proto::{NodeConnection, ServerStatusRequest, observer_client::ObserverClient};

/// How often a connected node's status is checked.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long a status check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Backoff between failed checks: from the first to the last, doubling.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(30));

/// One node observer.
#[derive(Debug)]
pub struct Peer {
    /// Where it is dialled.
    pub address: String,
    /// The channel to it (reconnects by itself).
    pub channel: Channel,
    state: Mutex<PeerState>,
    /// Flows received from it, over every stream.
    pub flows_received: AtomicU64,
    /// Lag of the latest flow received, in milliseconds.
    pub lag_ms: AtomicU64,
    /// Changes when its state does (name learned, connected or not).
    changed: watch::Sender<()>,
}

#[derive(Debug, Default, Clone)]
struct PeerState {
    node_name: String,
    connected: bool,
    /// Whether a check has finished (answered or failed).
    checked: bool,
    last_error: String,
    flows_published: u64,
    flows_lost_to_subscribers: u64,
}

impl Peer {
    fn state(&self) -> MutexGuard<'_, PeerState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Its node's name, once it answered a status check.
    pub fn node_name(&self) -> Option<String> {
        let state = self.state();
        (!state.node_name.is_empty()).then(|| state.node_name.clone())
    }

    /// Whether its last status check answered.
    pub fn connected(&self) -> bool {
        self.state().connected
    }

    /// Whether a status check has finished since it was added.
    pub fn checked(&self) -> bool {
        self.state().checked
    }

    /// The latest failure (empty when connected).
    pub fn last_error(&self) -> String {
        self.state().last_error.clone()
    }

    /// Waits until its state changes.
    pub async fn changed(&self) {
        let mut rx = self.changed.subscribe();
        let _ = rx.changed().await;
    }

    /// Counts a flow received, written at `written_ns`.
    pub fn received(&self, written_ns: i64) {
        self.flows_received.fetch_add(1, Ordering::Relaxed);
        let lag = crate::hub::now_ns().saturating_sub(written_ns).max(0) / 1_000_000;
        self.lag_ms
            .store(u64::try_from(lag).unwrap_or(0), Ordering::Relaxed);
    }

    /// What `ServerStatus` says of it.
    pub fn connection(&self) -> NodeConnection {
        let state = self.state().clone();
        NodeConnection {
            address: self.address.clone(),
            node_name: state.node_name,
            connected: state.connected,
            last_error: state.last_error,
            flows_received: self.flows_received.load(Ordering::Relaxed),
            lag_ms: self.lag_ms.load(Ordering::Relaxed),
            flows_published: state.flows_published,
            flows_lost_to_subscribers: state.flows_lost_to_subscribers,
        }
    }

    /// Checks its status once: records its name and figures, or the failure.
    async fn check(&self) -> bool {
        let mut client = ObserverClient::new(self.channel.clone());
        let answer =
            tokio::time::timeout(CHECK_TIMEOUT, client.server_status(ServerStatusRequest {})).await;
        let mut state = self.state();
        let was = (state.connected, state.node_name.clone());
        state.checked = true;
        match answer {
            Ok(Ok(status)) => {
                let status = status.into_inner();
                state.connected = true;
                state.last_error.clear();
                if !status.node_name.is_empty() {
                    state.node_name = status.node_name;
                }
                state.flows_published = status.flows_published;
                state.flows_lost_to_subscribers = status.flows_lost_to_subscribers;
            }
            Ok(Err(status)) => {
                state.connected = false;
                state.last_error = format!("{}: {}", status.code(), status.message());
            }
            Err(_) => {
                state.connected = false;
                state.last_error = format!("no status answer within {CHECK_TIMEOUT:?}");
            }
        }
        let connected = state.connected;
        if was != (state.connected, state.node_name.clone()) {
            if connected {
                tracing::info!(address = %self.address, node = %state.node_name, "node observer connected");
            } else {
                tracing::warn!(address = %self.address, error = %state.last_error, "node observer unreachable; retrying");
            }
        }
        drop(state);
        self.changed.send_replace(());
        connected
    }
}

/// Each peer by address, with the task that checks it.
type Entries = BTreeMap<String, (Arc<Peer>, tokio::task::JoinHandle<()>)>;

/// The set of node observers, kept by the peer list (static or discovered).
#[derive(Debug)]
pub struct PeerSet {
    tls: Option<ClientTlsConfig>,
    peers: Mutex<Entries>,
    /// The current peers; client streams watch it for nodes that join or leave.
    list: watch::Sender<Vec<Arc<Peer>>>,
}

impl PeerSet {
    /// An empty set whose channels use `tls` (`None`: plaintext).
    pub fn new(tls: Option<ClientTlsConfig>) -> Arc<Self> {
        Arc::new(Self {
            tls,
            peers: Mutex::new(BTreeMap::new()),
            list: watch::channel(Vec::new()).0,
        })
    }

    fn peers(&self) -> MutexGuard<'_, Entries> {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes the set exactly `addresses`: new ones are dialled (within a status check),
    /// gone ones dropped. An address that cannot be a channel is logged and skipped.
    pub fn set(&self, addresses: &[String]) {
        let mut peers = self.peers();
        let mut changed = false;
        peers.retain(|address, (_, checks)| {
            let keep = addresses.contains(address);
            if !keep {
                tracing::info!(%address, "node observer left the peer list");
                checks.abort();
                changed = true;
            }
            keep
        });
        for address in addresses {
            if peers.contains_key(address) {
                continue;
            }
            let channel = match crate::api::listen::connect_lazy(address, self.tls.clone()) {
                Ok(channel) => channel,
                Err(e) => {
                    tracing::warn!(%address, error = %format!("{e:#}"), "skipping a peer");
                    continue;
                }
            };
            let peer = Arc::new(Peer {
                address: address.clone(),
                channel,
                state: Mutex::new(PeerState::default()),
                flows_received: AtomicU64::new(0),
                lag_ms: AtomicU64::new(0),
                changed: watch::channel(()).0,
            });
            let checks = tokio::spawn(keep_checking(Arc::clone(&peer)));
            peers.insert(address.clone(), (peer, checks));
            changed = true;
        }
        if changed {
            let list = peers.values().map(|(peer, _)| Arc::clone(peer)).collect();
            self.list.send_replace(list);
        }
    }

    /// The current peers, and a receiver that sees changes.
    pub fn watch(&self) -> watch::Receiver<Vec<Arc<Peer>>> {
        self.list.subscribe()
    }

    /// What `ServerStatus` says of each.
    pub fn connections(&self) -> Vec<NodeConnection> {
        self.list.borrow().iter().map(|p| p.connection()).collect()
    }
}

impl Drop for PeerSet {
    fn drop(&mut self) {
        for (_, checks) in self.peers().values() {
            checks.abort();
        }
    }
}

/// Checks `peer` for as long as it is in the set.
async fn keep_checking(peer: Arc<Peer>) {
    let mut backoff = BACKOFF.0;
    loop {
        if peer.check().await {
            backoff = BACKOFF.0;
            tokio::time::sleep(CHECK_EVERY).await;
        } else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }
}
