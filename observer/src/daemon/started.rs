//! Connection-started items: a connection judged at its first packet and published at
//! once, so that a violation reaches the API's subscribers in milliseconds instead of when
//! the connection's record is written (the close grace, the report interval).
//!
//! A connection to a Service is first seen at the client's interface, addressed to the
//! ClusterIP; policy applies to the backend. The backend-side packet (same protocol and
//! source, after kube-proxy's DNAT) arrives microseconds later when the backend runs on
//! this node; for a backend elsewhere, conntrack knows it once the packet has passed
//! netfilter. So an item addressed to a Service waits up to a small window for its
//! backend-side item, then is judged (conntrack asked for what is still unpaired); if the
//! backend is still unknown, it goes out with `backend: unresolved` and no verdict, and the
//! connection's record carries the verdict later.

use std::collections::VecDeque;

use crate::enrich::{Enricher, NatTable};
use crate::flow::FlowRecord;

/// Service-addressed items held at most, waiting for their backends; past it an item is
/// judged at once with what is known.
const MAX_WAITING: usize = 16_384;

/// The items between the table and the hub.
#[derive(Debug)]
pub(super) struct StartedItems {
    /// How long a Service-addressed item waits for its backend (ns).
    window_ns: u64,
    /// (deadline, item), oldest first.
    waiting: VecDeque<(u64, FlowRecord)>,
}

impl StartedItems {
    /// Items that wait up to `window_ns` for a Service backend.
    pub(super) fn new(window_ns: u64) -> Self {
        Self {
            window_ns,
            waiting: VecDeque::new(),
        }
    }

    /// Takes the table's new items at `now` (CLOCK_MONOTONIC ns); returns those ready to
    /// publish, judged: every item that addresses no Service, with the waiting item its
    /// backend side completes.
    pub(super) fn accept(
        &mut self,
        items: Vec<FlowRecord>,
        enricher: &Enricher,
        now: u64,
        read_nat: impl FnOnce() -> Option<NatTable>,
    ) -> Vec<FlowRecord> {
        let mut ready = Vec::with_capacity(items.len());
        for item in items {
            if self.window_ns > 0
                && self.waiting.len() < MAX_WAITING
                && enricher.addresses_service(&item)
            {
                self.waiting.push_back((now + self.window_ns, item));
                continue;
            }
            let front = self.waiting.iter().position(|(_, w)| {
                (w.protocol, w.src.ip, w.src.port) == (item.protocol, item.src.ip, item.src.port)
            });
            if let Some((_, front)) = front.and_then(|i| self.waiting.remove(i)) {
                // The pair goes into one batch, where enrichment merges it.
                ready.push(front);
            }
            ready.push(item);
        }
        enricher.enrich_batch(&mut ready, read_nat);
        ready
    }

    /// The waiting items whose window ended by `now`, judged with what is known (conntrack
    /// for backends elsewhere).
    pub(super) fn expire(
        &mut self,
        enricher: &Enricher,
        now: u64,
        read_nat: impl FnOnce() -> Option<NatTable>,
    ) -> Vec<FlowRecord> {
        let due = self
            .waiting
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .count();
        let mut ready: Vec<FlowRecord> = self.waiting.drain(..due).map(|(_, r)| r).collect();
        enricher.enrich_batch(&mut ready, read_nat);
        ready
    }

    /// When the oldest waiting item's window ends.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.waiting.front().map(|(deadline, _)| *deadline)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::manifests;
    use crate::cluster::view::ClusterView;
    use crate::flow::{Counts, FlowState, IpProtocol, RecordEndpoint, ServiceBackend};

    const CLUSTER: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
        apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\n\
        status: {podIP: 10.0.0.1}\n---\n\
        apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, labels: {app: db}}\n\
        status: {podIP: 10.0.0.2}\n---\n\
        apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: shop}\n\
        spec: {clusterIP: 10.96.0.9, selector: {app: db}, ports: [{port: 80, targetPort: 5432}]}\n---\n\
        apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
        metadata: {name: db-closed, namespace: shop}\nspec: {podSelector: {matchLabels: {app: db}}}\n";

    fn enricher() -> Enricher {
        let loaded = manifests::parse("started.yaml", CLUSTER);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let mut enricher = Enricher::new(1_000_000_000);
        enricher.update(0, Arc::new(ClusterView::build(&loaded.into_objects()).0));
        enricher
    }

    fn item(dst: &str, port: u16) -> FlowRecord {
        let end = |ip: &str, port| RecordEndpoint {
            ip: ip.parse().expect("an address"),
            port,
            identity: Default::default(),
        };
        let mut item = FlowRecord::between(
            end("10.0.0.1", 40_000),
            end(dst, port),
            IpProtocol::TCP,
            FlowState::Started,
        );
        item.fwd = Counts {
            packets: 1,
            bytes: 60,
        };
        item.first_seen_ns = 10;
        item.last_seen_ns = 10;
        item
    }

    #[test]
    fn an_item_that_addresses_no_service_is_judged_at_once() {
        let mut items = StartedItems::new(5_000_000);
        let ready = items.accept(vec![item("10.0.0.2", 5432)], &enricher(), 10, || None);
        assert_eq!(ready.len(), 1);
        assert_eq!(
            ready[0].verdict_kind(),
            Some(crate::policy::VerdictKind::Deny)
        );
        assert_eq!(items.next_deadline(), None);
    }

    #[test]
    fn a_service_item_waits_for_its_backend_side_and_is_judged_against_it() {
        let enricher = enricher();
        let mut items = StartedItems::new(5_000_000);
        assert!(
            items
                .accept(vec![item("10.96.0.9", 80)], &enricher, 10, || None)
                .is_empty()
        );
        assert_eq!(items.next_deadline(), Some(5_000_010));
        let ready = items.accept(vec![item("10.0.0.2", 5432)], &enricher, 20, || None);
        assert_eq!(ready.len(), 1, "merged into one item");
        let service = ready[0].service.as_ref().expect("the Service");
        assert_eq!(
            (service.name.as_str(), service.backend),
            ("db", ServiceBackend::Observed)
        );
        assert_eq!(ready[0].dst.identity.pod.as_deref(), Some("db"));
        assert_eq!(
            ready[0].verdict_kind(),
            Some(crate::policy::VerdictKind::Deny)
        );
        assert_eq!(items.next_deadline(), None);
    }

    #[test]
    fn a_service_item_whose_backend_stays_unknown_goes_out_unresolved_after_its_window() {
        let enricher = enricher();
        let mut items = StartedItems::new(5_000_000);
        let _ = items.accept(vec![item("10.96.0.9", 80)], &enricher, 10, || None);
        assert!(items.expire(&enricher, 5_000_009, || None).is_empty());
        let ready = items.expire(&enricher, 5_000_010, || None);
        assert_eq!(ready.len(), 1);
        let service = ready[0].service.as_ref().expect("the Service");
        assert_eq!(service.backend, ServiceBackend::Unresolved);
        assert_eq!(ready[0].policy, None, "the record judges it later");
    }
}
