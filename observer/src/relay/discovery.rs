//! Finding the node observers through the Kubernetes API: the EndpointSlices of a headless
//! Service that selects the DaemonSet's pods (`deploy/relay.yaml`), watched like the
//! other kinds (list, then watch; backoff on errors; read-only RBAC on endpointslices in
//! the Service's namespace). Every change makes the peer set exactly the ready endpoints.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, reflector, watcher};

use kube::{Api, Client};

use super::peers::PeerSet;

/// Where the node observers are listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerService {
    /// The headless Service's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The name of its port that serves the API (the only port when empty).
    pub port_name: String,
    /// `https` or `http`: how the addresses are dialled.
    pub scheme: &'static str,
}

impl PeerService {
    /// `NAMESPACE/NAME`.
    pub fn parse(value: &str) -> Result<(String, String), String> {
        match value.split_once('/') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => {
                Ok((namespace.to_owned(), name.to_owned()))
            }
            _ => Err(format!(
                "{value:?} is not NAMESPACE/NAME (the headless Service over the observers)"
            )),
        }
    }
}

/// The addresses to dial for the ready endpoints of `slices` (one per endpoint: its first
/// address, at the Service's API port), sorted.
pub fn addresses<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    service: &PeerService,
) -> Vec<String> {
    let mut addresses = Vec::new();
    for slice in slices {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| {
                p.name.as_deref().unwrap_or_default() == service.port_name
                    || (service.port_name.is_empty() && ports.len() == 1)
            })
            .and_then(|p| p.port);
        let Some(port) = port else { continue };
        for endpoint in slice.endpoints.iter().flatten() {
            // Not ready: terminating, or not passing its readiness probe.
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            let Some(address) = endpoint.addresses.first() else {
                continue;
            };
            if !ready {
                continue;
            }
            let host = if address.contains(':') {
                format!("[{address}]")
            } else {
                address.clone()
            };
            addresses.push(format!("{}://{host}:{port}", service.scheme));
        }
    }
    addresses.sort();
    addresses.dedup();
    addresses
}

/// Keeps `peers` equal to the Service's ready endpoints for as long as it runs.
pub async fn discover(client: Client, service: PeerService, peers: Arc<PeerSet>) {
    let api: Api<EndpointSlice> = Api::namespaced(client, &service.namespace);
    let config =
        watcher::Config::default().labels(&format!("kubernetes.io/service-name={}", service.name));
    let (store, writer) = reflector::store();
    let mut events = std::pin::pin!(reflector(writer, watcher(api, config)).default_backoff());
    let mut last: Option<Vec<String>> = None;
    loop {
        match events.next().await {
            // A relist is complete at InitDone: the store is then whole.
            Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                // The last good peer set stays; the watcher retries with backoff.
                tracing::warn!(
                    service = %format!("{}/{}", service.namespace, service.name),
                    error = %e,
                    "watching the observers' EndpointSlices failed; keeping the last peers"
                );
                continue;
            }
            None => return,
        }
        let slices = store.state();
        let now = addresses(slices.iter().map(|s| s.as_ref()), &service);
        if last.as_ref() != Some(&now) {
            tracing::info!(peers = now.len(), "node observers discovered");
            peers.set(&now);
            last = Some(now);
        }
    }
}
