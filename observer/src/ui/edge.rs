//! The flows behind one edge of the service map: the latest record of each of its
//! connections, newest first, each with its verdict explained. Pure.

use serde::Serialize;

use super::explain::{Explanation, explain};
use super::service_map::{
    EdgeVerdict, MapQuery, edge_port, latest_per_connection, node_of, selected, verdict_of,
};
use crate::flow::{FlowRecord, IpProtocol};

/// Which edge: as the map drew it.
#[derive(Clone, Debug)]
pub struct EdgeQuery {
    /// The map it was drawn on (level and filters).
    pub map: MapQuery,
    /// The initiators' node id.
    pub source: String,
    /// The responders' node id.
    pub target: String,
    /// The protocol.
    pub protocol: IpProtocol,
    /// The responder port (0 without ports).
    pub port: u16,
    /// Flows answered at most.
    pub limit: usize,
}

/// One flow behind an edge.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeFlow<'a> {
    /// The connection's latest record (the flow log's JSON).
    pub record: &'a FlowRecord,
    /// Its verdict as the map colours it.
    pub verdict: EdgeVerdict,
    /// Why.
    pub explanation: Explanation,
}

/// The flows behind an edge.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeFlows<'a> {
    /// Newest first, at most the query's limit.
    pub flows: Vec<EdgeFlow<'a>>,
    /// Connections behind the edge in all.
    pub total: usize,
}

/// The flows of `records` (oldest first) behind the edge `query` names.
pub fn flows<'a>(
    records: impl IntoIterator<Item = &'a FlowRecord>,
    query: &EdgeQuery,
) -> EdgeFlows<'a> {
    // The latest record of a connection may name its ends differently from an earlier one
    // (they were named later), so the edge is checked on the latest only.
    let latest = latest_per_connection(records, |record| {
        record.protocol == query.protocol
            && edge_port(record) == query.port
            && selected(record, &query.map)
    });
    let mut behind: Vec<&FlowRecord> = latest
        .into_values()
        .filter(|r| {
            node_of(&r.src, query.map.level).id == query.source
                && node_of(&r.dst, query.map.level).id == query.target
        })
        .filter(|r| query.map.verdicts.is_empty() || query.map.verdicts.contains(&verdict_of(r)))
        .collect();
    behind.sort_by(|a, b| {
        b.last_seen
            .cmp(&a.last_seen)
            .then_with(|| (a.src.ip, a.src.port).cmp(&(b.src.ip, b.src.port)))
    });
    let total = behind.len();
    EdgeFlows {
        flows: behind
            .into_iter()
            .take(query.limit)
            .map(|record| EdgeFlow {
                record,
                verdict: verdict_of(record),
                explanation: explain(record.policy.as_ref()),
            })
            .collect(),
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowState;
    use crate::ui::service_map::Level;

    fn fixtures() -> Vec<FlowRecord> {
        include_str!("../../tests/data/api/flows.jsonl")
            .lines()
            .map(|line| serde_json::from_str(line).expect("fixture"))
            .collect()
    }

    fn query(source: &str, target: &str, port: u16) -> EdgeQuery {
        EdgeQuery {
            map: MapQuery::default(),
            source: source.to_owned(),
            target: target.to_owned(),
            protocol: IpProtocol::TCP,
            port,
            limit: 10,
        }
    }

    #[test]
    fn an_edge_answers_the_latest_record_of_each_connection_explained() {
        let mut records = fixtures();
        let denied = records[1].clone();
        let mut second = denied.clone();
        second.src.port += 1;
        second.last_seen.0 += 1_000_000_000;
        let mut earlier = denied.clone();
        earlier.state = FlowState::Active;
        earlier.fwd.packets = 1;
        records.insert(0, earlier);
        records.push(second);
        let edge = flows(
            &records,
            &query("wl:shop/Deployment/web", "wl:db/StatefulSet/postgres", 5432),
        );
        assert_eq!(edge.total, 2);
        assert_eq!(edge.flows[0].record.src.port, denied.src.port + 1);
        assert_eq!(edge.flows[1].record.fwd.packets, denied.fwd.packets);
        assert_eq!(edge.flows[0].verdict, EdgeVerdict::Denied);
        assert!(
            edge.flows[0]
                .explanation
                .summary
                .contains("db/default-deny")
        );
        let other = flows(
            &records,
            &query("wl:shop/Deployment/web", "wl:db/StatefulSet/postgres", 80),
        );
        assert_eq!(other.total, 0);
        let mut namespaces = query("ns:shop", "ns:db", 5432);
        namespaces.map.level = Level::Namespace;
        namespaces.limit = 1;
        let folded = flows(&records, &namespaces);
        assert_eq!((folded.total, folded.flows.len()), (2, 1));
    }
}
