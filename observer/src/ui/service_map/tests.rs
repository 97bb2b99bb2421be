use super::*;

/// The API fixtures: 0 allowed shop/web → shop/api (ingress rule, egress not isolated),
/// 1 denied shop/web → db/postgres (db/default-deny), 2 UDP to an outside address without a
/// verdict, 3 ICMP without pods.
fn fixtures() -> Vec<FlowRecord> {
    include_str!("../../../tests/data/api/flows.jsonl")
        .lines()
        .map(|line| serde_json::from_str(line).expect("fixture"))
        .collect()
}

fn edge<'a>(map: &'a ServiceMap, source: &str, target: &str) -> &'a MapEdge {
    map.edges
        .iter()
        .find(|e| e.source == source && e.target == target)
        .unwrap_or_else(|| panic!("no edge {source} -> {target} in {:#?}", map.edges))
}

#[test]
fn workloads_are_nodes_and_connections_edges_coloured_by_verdict() {
    let records = fixtures();
    let map = build(&records, &MapQuery::default());
    let web_api = edge(&map, "wl:shop/Deployment/web", "wl:shop/Deployment/api");
    assert_eq!((web_api.protocol, web_api.port), (IpProtocol::TCP, 8080));
    assert_eq!(web_api.verdict, EdgeVerdict::Allowed);
    assert_eq!((web_api.packets, web_api.bytes), (18, 6600));
    let web_db = edge(&map, "wl:shop/Deployment/web", "wl:db/StatefulSet/postgres");
    assert_eq!(web_db.verdict, EdgeVerdict::Denied);
    assert!(
        web_db
            .denied_by
            .as_deref()
            .is_some_and(|by| by.contains("db/default-deny")),
        "{:?}",
        web_db.denied_by
    );
    let kinds: Vec<NodeKind> = map.nodes.iter().map(|n| n.kind).collect();
    assert!(kinds.contains(&NodeKind::External) || kinds.contains(&NodeKind::Unknown));
    assert_eq!(map.edges_left_out, 0);
}

#[test]
fn a_connection_counts_once_with_its_latest_counts() {
    let mut records = fixtures();
    let mut active = records[0].clone();
    active.state = FlowState::Active;
    active.fwd.packets = 4;
    active.fwd.bytes = 400;
    active.rev.packets = 2;
    active.rev.bytes = 900;
    // The active report, then the connection's final record (cumulative).
    records.insert(0, active);
    let map = build(&records, &MapQuery::default());
    let web_api = edge(&map, "wl:shop/Deployment/web", "wl:shop/Deployment/api");
    assert_eq!(web_api.connections.values().sum::<u64>(), 1);
    assert_eq!((web_api.packets, web_api.bytes), (18, 6600));
}

#[test]
fn the_namespace_level_folds_workloads_and_keeps_the_worst_verdict_first() {
    let mut records = fixtures();
    // shop/web also reaches db on another port, allowed.
    let mut allowed = records[1].clone();
    allowed.dst.port = 6432;
    allowed.src.port = 40_100;
    allowed.policy = records[0].policy.clone();
    records.push(allowed);
    let query = MapQuery {
        level: Level::Namespace,
        ..MapQuery::default()
    };
    let map = build(&records, &query);
    // Folded, the workloads are still counted, as the workload level counts them.
    assert_eq!(
        map.workloads,
        build(&records, &MapQuery::default()).workloads
    );
    assert!(map.workloads >= 3, "{}", map.workloads);
    assert!(
        map.nodes
            .iter()
            .any(|n| n.id == "ns:shop" && n.kind == NodeKind::Namespace)
    );
    let shop_shop = edge(&map, "ns:shop", "ns:shop");
    assert_eq!(shop_shop.verdict, EdgeVerdict::Allowed);
    let to_db: Vec<&MapEdge> = map
        .edges
        .iter()
        .filter(|e| e.source == "ns:shop" && e.target == "ns:db")
        .collect();
    assert_eq!(to_db.len(), 2, "one edge per port");
    assert!(to_db.iter().any(|e| e.verdict == EdgeVerdict::Denied));
}

#[test]
fn outside_peers_fold_by_prefix_and_the_heaviest_edges_are_kept() {
    let base = fixtures().swap_remove(2);
    let records: Vec<FlowRecord> = (0..10u8)
        .map(|i| {
            let mut r = base.clone();
            r.dst.ip = IpAddr::from([203, 0, 113, i]);
            r.dst.port = 1000 + u16::from(i);
            r.fwd.bytes = 100 * u64::from(i);
            r
        })
        .collect();
    let query = MapQuery {
        max_edges: 3,
        ..MapQuery::default()
    };
    let map = build(&records, &query);
    assert_eq!(map.edges.len(), 3);
    assert_eq!(map.edges_left_out, 7);
    let ports: Vec<u16> = map.edges.iter().map(|e| e.port).collect();
    assert_eq!(ports, [1009, 1008, 1007], "the heaviest, by bytes");
    assert!(map.edges.iter().all(|e| e.target == "ip:203.0.113.0/24"));
    assert!(
        map.nodes.len() <= 2,
        "only nodes the drawn edges touch: {:?}",
        map.nodes
    );
}

#[test]
fn namespaces_and_verdicts_select_what_is_drawn() {
    let records = fixtures();
    let only_db = MapQuery {
        namespaces: vec!["db".into()],
        ..MapQuery::default()
    };
    let map = build(&records, &only_db);
    assert_eq!(map.edges.len(), 1, "{:#?}", map.edges);
    assert_eq!(map.edges[0].target, "wl:db/StatefulSet/postgres");
    let only_denied = MapQuery {
        verdicts: vec![EdgeVerdict::Denied],
        ..MapQuery::default()
    };
    let map = build(&records, &only_denied);
    assert!(map.edges.iter().all(|e| e.verdict == EdgeVerdict::Denied));
    assert_eq!(map.edges.len(), 1);
    assert_eq!(map.nodes.len(), 2, "only the denied edge's ends");
}

#[test]
fn a_connection_whose_ends_are_named_later_moves_to_its_new_edge() {
    let records = fixtures();
    let named = records[0].clone();
    let mut unnamed = named.clone();
    unnamed.state = FlowState::Active;
    unnamed.dst.identity = Default::default();
    unnamed.fwd.bytes = 100;
    let map = build(&[unnamed, named], &MapQuery::default());
    assert_eq!(
        map.edges.len(),
        1,
        "the unnamed edge is empty and left: {:#?}",
        map.edges
    );
    let edge = &map.edges[0];
    assert_eq!(edge.target, "wl:shop/Deployment/api");
    assert_eq!(edge.connections.values().sum::<u64>(), 1);
    assert_eq!(edge.bytes, 6600);
}
