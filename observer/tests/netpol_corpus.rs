//! Replays the NetworkPolicy ground-truth corpus (tests/data/netpol-corpus) through the
//! manifest loader, the engine and the `check` path.

use std::collections::BTreeSet;

use observer::cluster::manifests;
use observer::policy::check::check_lines;
use observer::policy::{DirectionVerdict, Endpoint, FlowQuery, PolicySnapshot, Protocol, evaluate};
use serde_json::{Value, json};

const CORPUS: &str = include_str!("data/netpol-corpus/cases.json");
const EXPECTED_PROBES: usize = 2530;

fn cases() -> Vec<Value> {
    let doc: Value = serde_json::from_str(CORPUS).expect("corpus is valid JSON");
    doc["cases"].as_array().expect("cases array").clone()
}

/// Builds a `v1 List` of the case's objects and loads it like a manifest file.
fn snapshot(case: &Value) -> PolicySnapshot {
    let mut items = Vec::new();
    for ns in case["namespaces"].as_array().into_iter().flatten() {
        items.push(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns["name"], "labels": ns["labels"]}}));
    }
    for pod in case["pods"].as_array().into_iter().flatten() {
        let ports: Vec<Value> = pod["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| json!({"name": p["name"], "containerPort": p["port"], "protocol": p["protocol"]}))
            .collect();
        items.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod["name"], "namespace": pod["namespace"], "labels": pod["labels"]},
            "spec": {"containers": [{"name": "c", "image": "img", "ports": ports}]},
            "status": {"podIP": pod["ip"], "podIPs": [{"ip": pod["ip"]}]}}));
    }
    items.extend(case["policies"].as_array().into_iter().flatten().cloned());
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let loaded = manifests::parse("case.json", &list.to_string());
    assert!(
        loaded.errors.is_empty() && loaded.warnings.is_empty(),
        "{}: {:?} {:?}",
        case["name"],
        loaded.errors,
        loaded.warnings
    );
    let (input, errors) = loaded.snapshot_input();
    assert!(errors.is_empty(), "{}: {errors:?}", case["name"]);
    PolicySnapshot::build(&input)
}

fn endpoint(snap: &PolicySnapshot, s: &str) -> Endpoint {
    if let Ok(ip) = s.parse() {
        return snap.resolve_ip(ip);
    }
    let (ns, pod) = s.split_once('/').expect("ns/pod");
    let id = snap
        .pod_id(ns, pod)
        .unwrap_or_else(|| panic!("unknown pod {s}"));
    Endpoint::Pod { id, ip: None }
}

fn word(allowed: bool) -> &'static str {
    if allowed { "allow" } else { "deny" }
}

fn allowing_policies(v: &DirectionVerdict<&str>) -> BTreeSet<String> {
    v.allowing_rules()
        .map(|r| r.policy.name.to_owned())
        .collect()
}

/// Checks one probe; returns a failure description.
fn check_probe(snap: &PolicySnapshot, probe: &Value) -> Option<String> {
    let from = probe["from"].as_str()?;
    let to = probe["to"].as_str()?;
    let protocol = Protocol::from_api(probe["protocol"].as_str()?)?;
    let query = FlowQuery {
        src: endpoint(snap, from),
        dst: endpoint(snap, to),
        port: u16::try_from(probe["port"].as_u64()?).ok()?,
        protocol,
    };
    let v = evaluate(snap, &query);
    let mut problems = Vec::new();
    if probe["expected"].as_str() != Some(word(v.allowed)) {
        problems.push(format!("expected {} got {:?}", probe["expected"], v));
    }
    for (key, dir) in [
        ("expected_ingress", &v.ingress),
        ("expected_egress", &v.egress),
    ] {
        if let Some(want) = probe[key].as_str()
            && want != word(dir.permits())
        {
            problems.push(format!("{key} {want} got {dir:?}"));
        }
    }
    for (key, dir) in [("ingress", &v.ingress), ("egress", &v.egress)] {
        if let Some(names) = probe["allowed_by"][key].as_array() {
            let want: BTreeSet<String> = names
                .iter()
                .filter_map(Value::as_str)
                .map(|n| n.rsplit('/').next().unwrap_or(n).to_owned())
                .collect();
            if want != allowing_policies(dir) {
                problems.push(format!("allowed_by.{key} {want:?} got {dir:?}"));
            }
        }
    }
    (!problems.is_empty()).then(|| format!("{from} -> {to} {}: {}", probe, problems.join("; ")))
}

#[test]
fn corpus_probes_all_pass() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in cases() {
        let snap = snapshot(&case);
        for probe in case["probes"].as_array().into_iter().flatten() {
            checked += 1;
            if let Some(f) = check_probe(&snap, probe) {
                failures.push(format!("[{}] {f}", case["name"]));
            }
        }
        // contested_probes are unscored by design and deliberately not evaluated.
    }
    println!(
        "netpol corpus: {checked} probes checked, {} failed",
        failures.len()
    );
    for f in failures.iter().take(40) {
        println!("FAIL {f}");
    }
    assert!(failures.is_empty(), "{} probes failed", failures.len());
    assert_eq!(checked, EXPECTED_PROBES, "probe count changed");
}

#[test]
fn corpus_probes_through_check_lines() {
    let mut checked = 0;
    for case in cases() {
        let snap = snapshot(&case);
        let probes = case["probes"].as_array().cloned().unwrap_or_default();
        // Alternate between the string and object endpoint forms.
        let input: String = probes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let line = if i % 2 == 0 {
                    json!({"src": p["from"], "dst": p["to"], "dst_port": p["port"],
                        "protocol": p["protocol"].as_str().map(str::to_lowercase)})
                } else {
                    let obj = |s: &str| match s.split_once('/') {
                        Some((ns, pod)) => json!({"namespace": ns, "pod": pod}),
                        None => json!({"ip": s}),
                    };
                    let mut dst = obj(p["to"].as_str().unwrap_or_default());
                    dst["port"] = p["port"].clone();
                    json!({"src": obj(p["from"].as_str().unwrap_or_default()), "dst": dst,
                        "protocol": p["protocol"], "tcp_flags": ["SYN"], "state": "closed"})
                };
                line.to_string() + "\n"
            })
            .collect();
        let mut out = Vec::new();
        let summary = check_lines(&snap, input.as_bytes(), &mut out).expect("check runs");
        assert_eq!(summary.lines, probes.len());
        let lines: Vec<Value> = String::from_utf8(out)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("output is JSON"))
            .collect();
        assert_eq!(lines.len(), probes.len());
        for (probe, line) in probes.iter().zip(&lines) {
            assert_eq!(
                line["verdict"], probe["expected"],
                "[{}] {probe} -> {line}",
                case["name"]
            );
            assert!(
                line["ingress"]["decision"].is_string() && line["egress"]["decision"].is_string()
            );
            checked += 1;
        }
    }
    assert_eq!(checked, EXPECTED_PROBES);
}
