//! Hand-written API objects in tests/fixtures, and builders for variants.

use serde_json::{Value, json};

/// Every fixture file, one object each.
pub const FILES: &[&str] = &[
    "namespace_shop.json",
    "node_worker1.json",
    "pod_web.json",
    "pod_db.json",
    "pod_backup.json",
    "pod_debug.json",
    "replicaset_web.json",
    "job_backup.json",
    "service_web.json",
    "endpointslice_web.json",
    "networkpolicy_web.json",
];

/// Loads one fixture by file name.
pub fn load(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// All fixtures.
pub fn all() -> Vec<Value> {
    FILES.iter().map(|f| load(f)).collect()
}

/// A copy of the web pod under another name and IP (`None`: no IP yet).
pub fn web_pod(name: &str, ip: Option<&str>) -> Value {
    let mut pod = load("pod_web.json");
    pod["metadata"]["name"] = json!(name);
    pod["metadata"]["uid"] = json!(format!("uid-{name}"));
    match ip {
        Some(ip) => {
            pod["status"]["podIP"] = json!(ip);
            pod["status"]["podIPs"] = json!([{ "ip": ip }]);
        }
        None => {
            // A pod accepted but not yet scheduled: no node, no IP.
            pod["spec"]["nodeName"] = Value::Null;
            pod["status"] = json!({ "phase": "Pending" });
        }
    }
    pod
}

/// The namespace fixture with `team` relabelled.
pub fn namespace_with_team(team: &str) -> Value {
    let mut ns = load("namespace_shop.json");
    ns["metadata"]["labels"]["team"] = json!(team);
    ns
}
