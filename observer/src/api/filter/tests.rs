use super::{FilterError, Selection};
use crate::flow::fixtures::flows;
use crate::wire::proto::FlowFilter;

/// Which of the fixture flows (0: allowed web→api, 1: denied web→postgres, 2: UDP to an
/// external IPv6 address without verdict, 3: ICMP echo, evicted) the filters pass.
fn passing(allow: &[FlowFilter], deny: &[FlowFilter]) -> Vec<usize> {
    let selection = Selection::compile(allow, deny).expect("valid filters");
    flows()
        .iter()
        .enumerate()
        .filter(|(_, f)| selection.matches(f))
        .map(|(i, _)| i)
        .collect()
}

fn filter(edit: impl FnOnce(&mut FlowFilter)) -> FlowFilter {
    let mut f = FlowFilter::default();
    edit(&mut f);
    f
}

fn s(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

#[test]
fn no_filter_passes_everything() {
    assert_eq!(passing(&[], &[]), vec![0, 1, 2, 3]);
}

#[test]
fn each_field_selects_its_flows() {
    let cases: Vec<(FlowFilter, Vec<usize>)> = vec![
        (filter(|f| f.verdict = s(&["deny"])), vec![1]),
        (filter(|f| f.verdict = s(&["none"])), vec![2, 3]),
        (filter(|f| f.verdict = s(&["ALLOW", "deny"])), vec![0, 1]),
        (
            filter(|f| f.source_ip = s(&["10.244.1.0/24"])),
            vec![0, 1, 3],
        ),
        (filter(|f| f.destination_ip = s(&["2001:db8::53"])), vec![2]),
        (filter(|f| f.source_pod = s(&["shop/web-1"])), vec![0, 1, 2]),
        (filter(|f| f.destination_pod = s(&["db/"])), vec![1]),
        (filter(|f| f.namespace = s(&["db"])), vec![1]),
        (
            filter(|f| f.source_label = s(&["app=web,tier"])),
            vec![0, 1],
        ),
        (filter(|f| f.source_label = s(&["app"])), vec![0, 1]),
        (
            filter(|f| f.destination_label = s(&["app=postgres", "app=api"])),
            vec![0, 1],
        ),
        (filter(|f| f.protocol = s(&["udp", "icmp"])), vec![2, 3]),
        (filter(|f| f.destination_port = vec![5432, 53]), vec![1, 2]),
        (filter(|f| f.protocol = s(&["17"])), vec![2]),
        (filter(|f| f.state = s(&["evicted", "closed"])), vec![0, 3]),
        (
            filter(|f| f.workload = s(&["StatefulSet/postgres"])),
            vec![1],
        ),
        (filter(|f| f.workload = s(&["Deployment/web"])), vec![0, 1]),
    ];
    for (f, expected) in cases {
        assert_eq!(passing(std::slice::from_ref(&f), &[]), expected, "{f:?}");
    }
}

#[test]
fn fields_of_one_filter_all_apply_and_filters_of_a_list_are_alternatives() {
    let web_denied = filter(|f| {
        f.source_pod = s(&["shop/web-1"]);
        f.verdict = s(&["deny"]);
    });
    assert_eq!(passing(std::slice::from_ref(&web_denied), &[]), vec![1]);
    let icmp = filter(|f| f.protocol = s(&["ICMP"]));
    assert_eq!(passing(&[web_denied, icmp.clone()], &[]), vec![1, 3]);
    // Deny removes what it matches from what allow passed.
    assert_eq!(passing(&[], std::slice::from_ref(&icmp)), vec![0, 1, 2]);
}

#[test]
fn bad_values_are_refused_naming_the_filter_and_field() {
    let cases = [
        (filter(|f| f.source_ip = s(&["10.0.0.300"])), "source_ip"),
        (filter(|f| f.source_pod = s(&["web-1"])), "source_pod"),
        (
            filter(|f| f.destination_label = s(&["=x"])),
            "destination_label",
        ),
        (
            filter(|f| f.destination_port = vec![70_000]),
            "destination_port",
        ),
        (filter(|f| f.protocol = s(&["tpc"])), "protocol"),
        (filter(|f| f.verdict = s(&["denied"])), "verdict"),
        (filter(|f| f.state = s(&["open"])), "state"),
        (filter(|f| f.workload = s(&["web"])), "workload"),
    ];
    for (bad, field) in cases {
        let err = Selection::compile(&[FlowFilter::default()], &[FlowFilter::default(), bad])
            .expect_err(field);
        assert_eq!((err.list, err.index, err.field), ("deny", 1, field));
    }
    let err: FilterError =
        Selection::compile(&[filter(|f| f.verdict = s(&["maybe"]))], &[]).expect_err("verdict");
    assert_eq!(
        err.to_string(),
        "allow[0].verdict: \"maybe\" is not allow, deny, undefined or none"
    );
}
