//! Replays the Calico / AdminNetworkPolicy / ClusterNetworkPolicy ground-truth corpus
//! (tests/data/policy-corpus, its README explains the format and the semantics) through the
//! tiered engine (`observer::policy::tiered`): every scored probe's verdict, per-direction
//! verdicts, the deciding rule where the corpus names it, and staged verdicts.
//!
//! Every scored probe must pass; a failure prints each failing probe with what differed.
//! (The engine is not yet wired into the daemon or `observer check`: issue 17.)

use std::collections::BTreeMap;
use std::net::IpAddr;

use observer::policy::tiered::model::{World, WorldNamespace, WorldNode, WorldPod};
use observer::policy::tiered::{
    DirectionOutcome, End, Flow, Reason, TieredEngine, compile_objects, objects::ProtocolValue,
    protocol_number,
};
use serde_json::Value;

const CORPUS: &str = include_str!("data/policy-corpus/cases.json");
/// Scored probes in the corpus.
const SCORED: usize = 3195;

fn labels(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

fn world(case: &Value) -> World {
    let mut world = World::default();
    for ns in case["namespaces"].as_array().into_iter().flatten() {
        world.namespaces.push(WorldNamespace {
            name: ns["name"].as_str().unwrap_or_default().into(),
            labels: labels(&ns["labels"]),
        });
    }
    for pod in case["pods"].as_array().into_iter().flatten() {
        let ports = pod["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let protocol = protocol_number(
                    &ProtocolValue::Name(p["protocol"].as_str().unwrap_or("TCP").into()),
                    "port",
                )
                .expect("a known protocol");
                (
                    p["name"].as_str().unwrap_or_default().to_owned(),
                    p["port"].as_u64().unwrap_or_default() as u16,
                    protocol,
                )
            })
            .collect();
        world.pods.push(WorldPod {
            namespace: pod["namespace"].as_str().unwrap_or_default().into(),
            name: pod["name"].as_str().unwrap_or_default().into(),
            labels: labels(&pod["labels"]),
            ip: pod["ip"].as_str().and_then(|ip| ip.parse().ok()),
            ports,
            service_account: pod["serviceAccountName"]
                .as_str()
                .unwrap_or("default")
                .into(),
        });
    }
    for sa in case["serviceAccounts"].as_array().into_iter().flatten() {
        world.service_accounts.insert(
            (
                sa["namespace"].as_str().unwrap_or_default().into(),
                sa["name"].as_str().unwrap_or_default().into(),
            ),
            labels(&sa["labels"]),
        );
    }
    for node in case["nodes"].as_array().into_iter().flatten() {
        world.nodes.push(WorldNode {
            name: node["name"].as_str().unwrap_or_default().into(),
            labels: labels(&node["labels"]),
            ips: node["ips"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|ip| ip.as_str()?.parse().ok())
                .collect(),
        });
    }
    world
}

fn end(world: &World, text: &str) -> End {
    if let Ok(ip) = text.parse::<IpAddr>() {
        if let Some(i) = world.pods.iter().position(|p| p.ip == Some(ip)) {
            return End::Pod(i);
        }
        if let Some(i) = world.nodes.iter().position(|n| n.ips.contains(&ip)) {
            return End::Node(i, ip);
        }
        return End::Outside(ip);
    }
    let (ns, name) = text.split_once('/').expect("namespace/pod");
    End::Pod(
        world
            .pods
            .iter()
            .position(|p| p.namespace == ns && p.name == name)
            .unwrap_or_else(|| panic!("unknown pod {text}")),
    )
}

fn flow_of(world: &World, probe: &Value) -> Flow {
    let protocol = protocol_number(
        &ProtocolValue::Name(probe["protocol"].as_str().unwrap_or("TCP").into()),
        "probe",
    )
    .expect("a known protocol");
    Flow {
        source: end(world, probe["from"].as_str().unwrap_or_default()),
        destination: end(world, probe["to"].as_str().unwrap_or_default()),
        protocol,
        port: probe["port"].as_u64().map(|p| p as u16),
        icmp: probe.get("icmp").map(|i| {
            (
                i["type"].as_u64().unwrap_or_default() as u8,
                i["code"].as_u64().unwrap_or_default() as u8,
            )
        }),
    }
}

fn word(allowed: bool) -> &'static str {
    if allowed { "allow" } else { "deny" }
}

/// Differences between a direction's outcome and the corpus's `expected_by` entry.
fn decided_by(engine: &TieredEngine, outcome: &DirectionOutcome, want: &Value) -> Vec<String> {
    let mut wrong = Vec::new();
    let (reason, policy, rule, action, tier) = match &outcome.reason {
        Reason::Rule {
            policy,
            rule,
            action,
        } => {
            let p = &engine.policies[*policy];
            let name = match &p.namespace {
                Some(ns)
                    if p.kind.qualified().ends_with("NetworkPolicy")
                        && !p.kind.qualified().contains("Global")
                        && !p.kind.qualified().contains("Admin")
                        && !p.kind.qualified().contains("Cluster") =>
                {
                    format!("{ns}/{}", p.name)
                }
                _ => p.name.clone(),
            };
            let action = if *action == observer::policy::tiered::model::Action::Allow {
                "Allow"
            } else {
                "Deny"
            };
            (
                "rule",
                Some(name),
                Some(*rule),
                Some(action),
                Some(p.tier.clone()),
            )
        }
        Reason::EndOfTier(tier) => ("end-of-tier", None, None, Some("Deny"), Some(tier.clone())),
        Reason::Profile => ("profile", None, None, Some("Allow"), None),
        Reason::NotApplicable => ("not-applicable", None, None, None, None),
    };
    let check = |key: &str, got: Option<String>, wrong: &mut Vec<String>| {
        if let Some(expected) = want.get(key) {
            let expected = match expected {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if got.as_deref() != Some(expected.as_str()) {
                wrong.push(format!("{key}: got {got:?}, want {expected}"));
            }
        }
    };
    check("reason", Some(reason.to_owned()), &mut wrong);
    if want.get("reason").is_none() && reason != "rule" {
        wrong.push(format!("reason: got {reason}, want rule"));
    }
    check("policy", policy, &mut wrong);
    check("rule_index", rule.map(|r| r.to_string()), &mut wrong);
    check("action", action.map(str::to_owned), &mut wrong);
    check("tier", tier, &mut wrong);
    wrong
}

#[test]
fn the_policy_corpus_passes_through_the_tiered_engine() {
    let doc: Value = serde_json::from_str(CORPUS).expect("corpus is valid JSON");
    let cases = doc["cases"].as_array().expect("cases");
    let mut scored = 0;
    let mut passed = 0;
    let mut failures = Vec::new();
    let mut by_group: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or_default();
        let group = case["group"].as_str().unwrap_or_default().to_owned();
        let compiled = compile_objects(case["policies"].as_array().expect("policies"));
        assert!(
            compiled.errors.is_empty(),
            "{name}: objects left out: {:?}",
            compiled.errors
        );
        let mut engine = TieredEngine::new(compiled.policies, compiled.tiers);
        let mut world = world(case);
        // Unindexed first, then prepared and indexed (as the daemon runs it): both walks
        // must agree on every probe.
        let unindexed: Vec<_> = case["probes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|probe| engine.judge(&world, &flow_of(&world, probe), false))
            .collect();
        world.prepare();
        engine.index(&world);
        for (probe, unindexed) in case["probes"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(unindexed)
        {
            scored += 1;
            let flow = flow_of(&world, probe);
            let [egress, ingress] = engine.judge(&world, &flow, false);
            let mut wrong = Vec::new();
            if [egress.clone(), ingress.clone()] != unindexed {
                wrong.push(format!(
                    "the indexed walk differs from the unindexed one: {unindexed:?}"
                ));
            }
            let overall = word(egress.allowed && ingress.allowed);
            if probe["expected"].as_str() != Some(overall) {
                wrong.push(format!("flow: got {overall}"));
            }
            for (key, outcome) in [("expected_egress", &egress), ("expected_ingress", &ingress)] {
                if let Some(want) = probe[key].as_str()
                    && want != word(outcome.allowed)
                {
                    wrong.push(format!("{key}: got {}", word(outcome.allowed)));
                }
            }
            for (direction, outcome) in [("egress", &egress), ("ingress", &ingress)] {
                if let Some(want) = probe["expected_by"].get(direction) {
                    wrong.extend(
                        decided_by(&engine, outcome, want)
                            .into_iter()
                            .map(|w| format!("{direction} {w}")),
                    );
                }
            }
            if let Some(want) = probe["expected_staged"].as_str() {
                let [e, i] = engine.judge(&world, &flow, true);
                if want != word(e.allowed && i.allowed) {
                    wrong.push(format!("staged: got {}", word(e.allowed && i.allowed)));
                }
            }
            let entry = by_group.entry(group.clone()).or_default();
            entry.1 += 1;
            if wrong.is_empty() {
                passed += 1;
                entry.0 += 1;
            } else {
                failures.push(format!(
                    "{name}: {} -> {} {}/{} want {}: {}",
                    probe["from"],
                    probe["to"],
                    probe["protocol"],
                    probe["port"],
                    probe["expected"],
                    wrong.join("; ")
                ));
            }
        }
    }
    for failure in &failures {
        println!("FAIL {failure}");
    }
    for (group, (ok, all)) in &by_group {
        println!("{group}: {ok}/{all}");
    }
    println!("passed {passed} of {scored} scored probes");
    assert_eq!(scored, SCORED, "the corpus changed");
    assert_eq!(
        passed,
        scored,
        "{} probes fail (listed above)",
        failures.len()
    );
}
