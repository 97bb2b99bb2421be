use super::Metrics;
use crate::flow::fixtures::flows;
use crate::stats::RunStats;

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn totals_become_counters_that_only_grow_by_what_grew() {
    let metrics = Metrics::new();
    let mut stats = RunStats::default();
    stats.datapath.0.insert("packets_seen", 100);
    stats.datapath.0.insert("ringbuf_end_failed", 2);
    stats.table_full_packets = 3;
    stats.connections_live = 7;
    metrics.observe_stats(&stats);
    stats.datapath.0.insert("packets_seen", 150);
    metrics.observe_stats(&stats);
    metrics.observe_stats(&stats);
    let text = metrics.render();
    assert_eq!(
        value(
            &text,
            "observer_datapath_events_total{counter=\"packets_seen\"}"
        ),
        Some(150.0),
        "{text}"
    );
    // Each loss under the metric of its unit.
    assert_eq!(
        value(&text, "observer_lost_events_total{what=\"ringbuf_end\"}"),
        Some(2.0)
    );
    assert_eq!(
        value(&text, "observer_lost_packets_total{what=\"table_full\"}"),
        Some(3.0)
    );
    assert_eq!(value(&text, "observer_connections"), Some(7.0));
    assert!(
        text.contains("# TYPE observer_lost_events counter"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("observer_build_info{version="), "{text}");
    assert!(
        value(&text, "process_resident_memory_bytes").is_some_and(|v| v > 0.0),
        "{text}"
    );
    let classic = metrics.render_classic();
    assert!(
        classic.contains("# TYPE observer_lost_events_total counter"),
        "{classic}"
    );
    assert!(!classic.contains("# EOF"), "{classic}");
}

#[test]
fn records_are_counted_by_state_and_verdict_and_denials_by_namespaces() {
    let metrics = Metrics::new();
    metrics.observe_records(&flows());
    let text = metrics.render();
    for (series, count) in [
        (
            "observer_records_total{state=\"closed\",verdict=\"allow\"}",
            1.0,
        ),
        (
            "observer_records_total{state=\"expired\",verdict=\"deny\"}",
            1.0,
        ),
        (
            "observer_records_total{state=\"active\",verdict=\"none\"}",
            1.0,
        ),
        (
            "observer_records_total{state=\"evicted\",verdict=\"none\"}",
            1.0,
        ),
        (
            "observer_denied_connections_total{source_namespace=\"shop\",destination_namespace=\"db\"}",
            1.0,
        ),
        (
            "observer_denied_connections_by_policy_kind_total{policy_kind=\"NetworkPolicy\",tier=\"networkpolicy\"}",
            1.0,
        ),
        // Traffic of ended connections (the active record is not counted).
        ("observer_flows_total{verdict=\"allow\"}", 1.0),
        ("observer_flows_total{verdict=\"deny\"}", 1.0),
        ("observer_flows_total{verdict=\"none\"}", 1.0),
        ("observer_flow_packets_total{verdict=\"allow\"}", 18.0),
        ("observer_flow_bytes_total{verdict=\"allow\"}", 6600.0),
    ] {
        assert_eq!(value(&text, series), Some(count), "{series} in {text}");
    }
}

#[test]
fn denied_namespace_pairs_are_capped() {
    let metrics = Metrics::new();
    let denied = flows().swap_remove(1);
    for i in 0..super::MAX_NAMESPACE_PAIRS + 5 {
        let mut record = denied.clone();
        record.src.identity.namespace = Some(format!("ns-{i}"));
        metrics.observe_records(&[record]);
    }
    let text = metrics.render();
    let pairs = text
        .lines()
        .filter(|l| l.starts_with("observer_denied_connections_total{"))
        .count();
    assert_eq!(pairs, super::MAX_NAMESPACE_PAIRS + 1, "the cap and _other");
    assert_eq!(
        value(
            &text,
            "observer_denied_connections_total{source_namespace=\"_other\",destination_namespace=\"_other\"}"
        ),
        Some(5.0)
    );
}
