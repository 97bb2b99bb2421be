//! Malformed manifests and flow lines: clear errors (file, document, field), no panics,
//! and everything else still loads.

use std::path::PathBuf;

use observer::cluster::manifests::{self, LoadErrorKind, Manifests, load_paths};
use observer::policy::check::{CheckError, check_lines};
use observer::policy::{FieldProblem, PolicySnapshot};

const GOOD_POLICY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: good, namespace: x}\nspec: {podSelector: {}}\n";

fn with_good(bad: &str) -> String {
    format!(
        "{GOOD_POLICY}---\n{bad}\n---\n{}",
        GOOD_POLICY.replace("good", "good2")
    )
}

/// Parses `bad` between two valid policies and returns the single error's text.
fn single_error(bad: &str) -> (Manifests, String) {
    let m = manifests::parse("bad.yaml", &with_good(bad));
    assert_eq!(m.errors.len(), 1, "{:?}", m.errors);
    assert_eq!(
        m.objects.policies.len(),
        2,
        "the valid documents still load"
    );
    let text = m.errors[0].to_string();
    assert!(text.starts_with("bad.yaml: document 2"), "{text}");
    (m, text)
}

#[test]
fn truncated_yaml_is_a_syntax_error_for_that_document() {
    let (m, text) = single_error(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: t, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: ",
    );
    assert!(
        matches!(m.errors[0].kind, LoadErrorKind::Syntax(_)),
        "{text}"
    );
    assert_eq!(m.errors[0].location.line, Some(5), "{text}");
    assert!(
        text.contains("at line 11"),
        "absolute line (end of the truncated document): {text}"
    );
}

#[test]
fn unknown_kinds_are_warnings() {
    let m = manifests::parse(
        "mixed.yaml",
        &with_good(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 2}",
        ),
    );
    assert!(m.errors.is_empty());
    assert_eq!(m.objects.policies.len(), 2);
    assert_eq!(m.warnings.len(), 1);
    let w = m.warnings[0].to_string();
    assert!(w.contains("document 2") && w.contains("Deployment"), "{w}");
}

#[test]
fn wrong_types_name_the_field() {
    let (_, text) = single_error(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: w, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: [80]}]",
    );
    assert!(text.contains("spec.ingress[0].ports[0].port"), "{text}");
    let (_, text) = single_error(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: w, namespace: x}\nspec: {podSelector: \"app=web\"}",
    );
    assert!(text.contains("spec.podSelector"), "{text}");
    let (_, text) = single_error(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, ports: [{containerPort: http}]}]}",
    );
    assert!(
        text.contains("spec.containers[0].ports[0].containerPort"),
        "{text}"
    );
}

#[test]
fn invalid_policies_name_the_field() {
    let cases = [
        (
            "spec:\n  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]",
            "spec.ingress[0].from[0].ipBlock.cidr",
        ),
        (
            "spec:\n  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [nope]}}]}]",
            "spec.egress[0].to[0].ipBlock.except[0]",
        ),
        (
            "spec:\n  podSelector: {matchExpressions: [{key: a, operator: Equals, values: [b]}]}",
            "spec.podSelector.matchExpressions[0].operator",
        ),
        (
            "spec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: a, operator: In}]}}]}]",
            "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values",
        ),
        (
            "spec:\n  podSelector: {}\n  ingress: [{ports: [{port: 80, protocol: tcp}]}]",
            "spec.ingress[0].ports[0].protocol",
        ),
        (
            "spec:\n  podSelector: {}\n  ingress: [{ports: [{port: 90, endPort: 80}]}]",
            "spec.ingress[0].ports[0].endPort",
        ),
        (
            "spec:\n  podSelector: {}\n  policyTypes: [Inbound]",
            "spec.policyTypes[0]",
        ),
        (
            "spec:\n  podSelector: {}\n  ingress: [{from: [{}]}]",
            "spec.ingress[0].from[0]",
        ),
    ];
    for (spec, field) in cases {
        let doc = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: bad, namespace: x}}\n{spec}"
        );
        let (m, text) = single_error(&doc);
        assert!(text.contains(field), "{text}");
        match &m.errors[0].kind {
            LoadErrorKind::Invalid { kind, error } => {
                assert_eq!(*kind, "NetworkPolicy");
                assert_eq!(error.field, field);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn policy_without_name() {
    let (m, text) = single_error(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: x}\nspec: {podSelector: {}}",
    );
    assert!(text.contains("metadata.name"), "{text}");
    assert!(matches!(
        &m.errors[0].kind,
        LoadErrorKind::Invalid { error, .. } if error.problem == FieldProblem::Missing
    ));
}

#[test]
fn missing_kind_and_non_objects() {
    let (_, text) = single_error("metadata: {name: x}");
    assert!(text.contains("kind"), "{text}");
    let (_, text) = single_error("- just\n- a list");
    assert!(text.contains("expected an object"), "{text}");
}

#[test]
fn json_list_items_are_loaded_independently() {
    let json = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": "x"},
         "spec": {"podSelector": {"matchExpressions": [{"key": "a", "operator": "in", "values": ["b"]}]}}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicyList", "items": [
            {"metadata": {"name": "q", "namespace": "x"}, "spec": {"podSelector": {}}}]}
    ]}"#;
    let m = manifests::parse("list.json", json);
    assert_eq!(m.objects.namespaces.len(), 1);
    assert_eq!(
        m.objects.policies.len(),
        1,
        "the typed-list item loads without kind"
    );
    assert_eq!(m.warnings.len(), 1);
    assert_eq!(m.errors.len(), 1);
    let text = m.errors[0].to_string();
    assert!(
        text.starts_with("list.json: document 1")
            && text.contains("items[1].spec.podSelector.matchExpressions[0].operator"),
        "{text}"
    );
    let m = manifests::parse("broken.json", "{\"kind\": \"Namespace\", ");
    assert!(matches!(m.errors[0].kind, LoadErrorKind::Syntax(_)));
}

#[test]
fn every_truncation_of_a_manifest_is_handled() {
    let full = with_good(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x, labels: {a: b}}\nspec:\n  containers:\n  - name: c\n    ports: [{name: http, containerPort: 80}]\nstatus: {podIP: 10.0.0.1}",
    );
    for end in (0..=full.len()).filter(|&i| full.is_char_boundary(i)) {
        for name in ["t.yaml", "t.json"] {
            let m = manifests::parse(name, &full[..end]);
            let (input, _) = m.snapshot_input();
            let _ = PolicySnapshot::build(&input);
        }
    }
}

#[test]
fn load_paths_reports_unreadable_files_and_expands_directories() {
    let dir = std::env::temp_dir().join(format!("policy-malformed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("b.yaml"), GOOD_POLICY).expect("write");
    std::fs::write(dir.join("a.json"), "{\"kind\": ").expect("write");
    std::fs::write(dir.join("notes.txt"), "ignored").expect("write");
    let m = load_paths(&[dir.clone(), PathBuf::from("/nonexistent/policy.yaml")]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(m.objects.policies.len(), 1);
    assert_eq!(m.errors.len(), 2, "{:?}", m.errors);
    assert!(m.errors[0].to_string().contains("a.json: document 1"));
    assert!(matches!(m.errors[1].kind, LoadErrorKind::Io(_)));
    assert!(m.errors[1].to_string().contains("/nonexistent/policy.yaml"));
}

fn run_check(input: &str) -> (Result<usize, CheckError>, String) {
    let m = manifests::parse(
        "c.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nstatus: {podIP: 10.0.0.1}\n",
    );
    let (input_objs, _) = m.snapshot_input();
    let snap = PolicySnapshot::build(&input_objs);
    let mut out = Vec::new();
    let r = check_lines(&snap, input.as_bytes(), &mut out).map(|s| s.lines);
    (r, String::from_utf8(out).unwrap_or_default())
}

#[test]
fn malformed_check_lines_name_the_line() {
    let good = r#"{"src": "x/a", "dst": "1.2.3.4", "dst_port": 80}"#;
    let bad = [
        ("not json", "invalid JSON"),
        (r#"{"dst": "x/a", "dst_port": 80}"#, "src: missing"),
        (r#"{"src": "x/a", "dst": "x/a"}"#, "dst_port"),
        (
            r#"{"src": "x/a", "dst": "x/a", "dst_port": 70000}"#,
            "dst_port",
        ),
        (
            r#"{"src": "x/a", "dst": "x/a", "dst_port": 80, "protocol": "GRE"}"#,
            "protocol",
        ),
        (
            r#"{"src": "nonsense", "dst": "x/a", "dst_port": 80}"#,
            "src",
        ),
        (
            r#"{"src": {"pod": "a"}, "dst": "x/a", "dst_port": 80}"#,
            "src.namespace",
        ),
        (
            r#"{"src": {"ip": "1.2.3"}, "dst": "x/a", "dst_port": 80}"#,
            "src.ip",
        ),
        (
            r#"{"src": "x/a", "dst": {"ip": "1.1.1.1", "port": 1}, "dst_port": 2}"#,
            "disagrees",
        ),
        ("[1, 2]", "object"),
    ];
    for (line, needle) in bad {
        let (r, out) = run_check(&format!("{good}\n\n{line}\n{good}\n"));
        let err = r.expect_err(line);
        let text = err.to_string();
        assert!(matches!(err, CheckError::Line { line: 3, .. }), "{text}");
        assert!(
            text.starts_with("line 3: ") && text.contains(needle),
            "{text}"
        );
        assert_eq!(
            out.lines().count(),
            1,
            "lines before the bad one were written"
        );
    }
}

#[test]
fn unevaluable_lines_are_reported_per_line() {
    let input = [
        r#"{"src": "x/a", "dst": "x/zz", "dst_port": 80}"#,
        r#"{"src":{"ip":"10.0.0.1","port":43210},"dst":{"ip":"10.0.0.3","port":0},"protocol":"ICMP","fwd":{"packets":1},"rev":{},"tcp_flags":[],"state":"closed","interfaces":["eth0"]}"#,
        r#"{"src": "x/a", "dst": "x/a", "protocol": "icmpv6"}"#,
        r#"{"src":{"ip":"10.0.0.1","port":43210},"dst":{"ip":"10.0.0.3","port":8080},"protocol":"TCP","first_seen":"t","last_seen":"t"}"#,
    ]
    .join("\n");
    let (r, out) = run_check(&input);
    assert_eq!(r.expect("runs"), 4);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert!(
        lines[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown pod x/zz"))
    );
    assert!(
        lines[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("ICMP"))
    );
    assert_eq!(lines[2]["protocol"], "ICMPv6");
    assert_eq!(lines[3]["verdict"], "allow");
    assert_eq!(lines[3]["src"]["pod"], "a");
    assert_eq!(lines[3]["dst"]["kind"], "external");
}

#[test]
fn a_byte_order_mark_is_not_content() {
    let m = manifests::parse("bom.yaml", &format!("\u{feff}{}", with_good("")));
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    assert_eq!(m.objects.policies.len(), 2);
    let json =
        "\u{feff}{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"x\"}}";
    let m = manifests::parse("bom.json", json);
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    assert_eq!(m.objects.namespaces.len(), 1);
}

#[test]
fn entries_of_a_directory_that_are_not_read_are_named() {
    let dir = std::env::temp_dir().join(format!("malformed-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("nested")).expect("dirs");
    std::fs::write(dir.join("good.yaml"), GOOD_POLICY).expect("write");
    std::fs::write(dir.join("nested/deny.yaml"), GOOD_POLICY).expect("write");
    std::os::unix::fs::symlink(dir.join("missing.yaml"), dir.join("dangling.yaml")).expect("link");
    std::os::unix::fs::symlink(dir.join("loop.yaml"), dir.join("loop.yaml")).expect("loop");
    let fifo = std::process::Command::new("mkfifo")
        .arg(dir.join("pipe.yaml"))
        .status()
        .expect("mkfifo");
    assert!(fifo.success());
    let m = load_paths(std::slice::from_ref(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        m.objects.policies.len(),
        1,
        "only good.yaml: {:?}",
        m.warnings
    );
    for (entry, why) in [
        ("nested", "subdirectory"),
        ("dangling.yaml", "leads nowhere"),
        ("loop.yaml", "leads nowhere"),
        ("pipe.yaml", "not a regular file"),
    ] {
        assert!(
            m.warnings
                .iter()
                .any(|w| w.location.file.ends_with(entry) && w.message.contains(why)),
            "{entry}: {:?}",
            m.warnings
        );
    }
}

#[test]
fn what_the_api_server_refuses_is_refused_naming_the_field() {
    let policy = |spec: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: x}}\nspec: {spec}\n"
        )
    };
    let block = |except: &str| {
        policy(&format!(
            "{{podSelector: {{}}, ingress: [{{from: [{{ipBlock: {{cidr: 10.0.0.0/16, except: [{except}]}}}}]}}]}}"
        ))
    };
    let cases = [
        (block("10.1.0.0/24"), "spec.ingress[0].from[0].ipBlock.except[0]", "not inside"),
        (block("\"fd00::/64\""), "spec.ingress[0].from[0].ipBlock.except[0]", "not inside"),
        (block("10.0.0.0/16"), "spec.ingress[0].from[0].ipBlock.except[0]", "not inside"),
        (
            policy("{podSelector: {matchLabels: {\"bad key!\": x}}}"),
            "spec.podSelector.matchLabels",
            "invalid label key",
        ),
        (
            policy("{podSelector: {matchExpressions: [{key: app, operator: In, values: [-bad-]}]}}"),
            "spec.podSelector.matchExpressions[0].values[0]",
            "invalid label value",
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: Bad_Name, namespace: x}\nspec: {podSelector: {}}\n".to_string(),
            "metadata.name",
            "invalid name",
        ),
    ];
    for (doc, field, what) in cases {
        let (m, message) = single_error(&doc);
        assert!(
            message.contains(field) && message.contains(what),
            "{field}: {message}"
        );
        assert_eq!(m.objects.policies.len(), 2, "the others still load");
    }
    // Inside its cidr, smaller: fine.
    let m = manifests::parse("ok.yaml", &block("10.0.1.0/24"));
    assert!(m.errors.is_empty(), "{:?}", m.errors);
}

#[test]
fn a_duplicate_key_is_refused_not_resolved_to_the_last() {
    let doc = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n\
               spec:\n  podSelector: {matchLabels: {app: db}}\n  podSelector: {}\n";
    let (m, message) = single_error(doc);
    assert!(
        message.contains("duplicate key \"podSelector\""),
        "{message}"
    );
    assert_eq!(m.objects.policies.len(), 2);
}

#[test]
fn an_unknown_field_is_a_warning_naming_it_and_strict_refuses_it() {
    let doc = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: typo, namespace: x}\n\
               spec:\n  podSelecter: {matchLabels: {app: db}}\n  ingress: [{form: [{podSelector: {}}]}]\n";
    let m = manifests::parse("typo.yaml", doc);
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    let warnings: Vec<String> = m.warnings.iter().map(ToString::to_string).collect();
    for field in ["spec.podSelecter", "spec.ingress[0].form"] {
        assert!(
            warnings.iter().any(|w| w.contains(field)),
            "{field}: {warnings:?}"
        );
    }
    let mut strict = Manifests {
        strict: true,
        ..Manifests::default()
    };
    manifests::parse_into("typo.yaml", doc, &mut strict);
    assert!(strict.objects.policies.is_empty(), "refused under --strict");
    assert!(
        strict
            .errors
            .iter()
            .any(|e| e.to_string().contains("spec.podSelecter")),
        "{:?}",
        strict.errors
    );
}

#[test]
fn deep_nesting_is_refused_before_parsing() {
    // 100,000 levels in 200 KB: the parser alone took minutes on this.
    let levels = 100_000;
    let deep = format!(
        "{GOOD_POLICY}---\na: {}{}\n",
        "[".repeat(levels),
        "]".repeat(levels)
    );
    let m = manifests::parse("deep.yaml", &deep);
    assert_eq!(m.objects.policies.len(), 1, "the other document loads");
    let message = m
        .errors
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        message.contains("nested deeper than 100 levels"),
        "{message}"
    );
    assert!(message.contains("document 2"), "{message}");
    // Brackets in quotes and comments are text.
    let quoted = format!("{GOOD_POLICY}# {}\n", "[".repeat(200));
    assert!(manifests::parse("quoted.yaml", &quoted).errors.is_empty());
}

#[test]
fn the_daemons_own_records_replay_through_the_records_type() {
    let policy = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
                  apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop, labels: {app: web}}\n\
                  spec: {nodeName: node-a}\nstatus: {podIP: 10.244.1.10}\n---\n\
                  apiVersion: v1\nkind: Pod\nmetadata: {name: api-1, namespace: shop, labels: {app: api}}\n\
                  spec: {nodeName: node-a}\nstatus: {podIP: 10.244.1.20}\n---\n\
                  apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: api, namespace: shop}\n\
                  spec: {podSelector: {matchLabels: {app: api}}, ingress: [{ports: [{port: 9999}]}]}\n";
    let m = manifests::parse("cluster.yaml", policy);
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    let (input, _) = m.snapshot_input();
    let snapshot = PolicySnapshot::build(&input);
    // Every field the flow log writes (node, labels, workload, service, verdict, tiers).
    let records = include_str!("data/api/flows.jsonl");
    let mut out = Vec::new();
    let summary = check_lines(&snapshot, records.as_bytes(), &mut out).expect("all lines read");
    assert_eq!(summary.lines, records.lines().count());
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out).lines().next().unwrap_or("{}"))
            .expect("an output line");
    // web-1 -> api-1:8080, where only port 9999 is allowed now.
    assert_eq!(first["verdict"], "deny", "{first}");
    assert_eq!(first["src"]["pod"], "web-1");
    // A record with a field the type refuses is named as not a record.
    let broken = records
        .lines()
        .next()
        .unwrap_or_default()
        .replace("\"state\":\"closed\"", "\"state\":\"open\"");
    let err = check_lines(&snapshot, broken.as_bytes(), Vec::new()).expect_err("refused");
    assert!(
        matches!(&err, CheckError::Line { line: 1, message } if message.contains("not a flow-log record")),
        "{err}"
    );
}
