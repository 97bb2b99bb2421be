//! Table-driven tests for [`workload_of`] and snapshot helpers.

use super::*;

fn owner(kind: &str, name: &str, uid: &str, controller: Option<bool>) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller,
        ..Default::default()
    }
}

fn meta(ns: Option<&str>, name: &str, uid: &str, owners: Vec<OwnerReference>) -> ObjectMeta {
    ObjectMeta {
        namespace: ns.map(str::to_owned),
        name: Some(name.into()),
        uid: Some(uid.into()),
        owner_references: (!owners.is_empty()).then_some(owners),
        ..Default::default()
    }
}

fn pod(ns: Option<&str>, owners: Vec<OwnerReference>) -> Pod {
    Pod {
        metadata: meta(ns, "p", "pod-uid", owners),
        ..Default::default()
    }
}

fn objects() -> ClusterObjects {
    let rs = |name: &str, uid: &str, owners| {
        Arc::new(ReplicaSet {
            metadata: meta(Some("shop"), name, uid, owners),
            ..Default::default()
        })
    };
    let job = |name: &str, uid: &str, owners| {
        Arc::new(Job {
            metadata: meta(Some("shop"), name, uid, owners),
            ..Default::default()
        })
    };
    ClusterObjects {
        replica_sets: vec![
            rs(
                "web-1",
                "rs-1",
                vec![owner("Deployment", "web", "d-1", Some(true))],
            ),
            rs("orphan-rs", "rs-2", vec![]),
            rs(
                "argo-rs",
                "rs-3",
                vec![owner("Rollout", "canary", "r-1", Some(true))],
            ),
        ],
        jobs: vec![
            job(
                "backup-1",
                "job-1",
                vec![owner("CronJob", "backup", "cj-1", Some(true))],
            ),
            job("once", "job-2", vec![]),
        ],
        ..Default::default()
    }
}

fn w(kind: WorkloadKind, name: &str) -> Option<Workload> {
    Some(Workload {
        kind,
        name: name.into(),
    })
}

#[test]
fn workload_resolution_table() {
    use WorkloadKind::*;
    let objs = objects();
    let ctl = |kind: &str, name: &str, uid: &str| vec![owner(kind, name, uid, Some(true))];
    let cases: Vec<(&str, Pod, Option<Workload>)> = vec![
        ("bare pod", pod(Some("shop"), vec![]), None),
        (
            "rs owned by deployment",
            pod(Some("shop"), ctl("ReplicaSet", "web-1", "rs-1")),
            w(Deployment, "web"),
        ),
        (
            "rs without owner",
            pod(Some("shop"), ctl("ReplicaSet", "orphan-rs", "rs-2")),
            w(ReplicaSet, "orphan-rs"),
        ),
        (
            "rs not in state yet",
            pod(Some("shop"), ctl("ReplicaSet", "later", "rs-9")),
            w(ReplicaSet, "later"),
        ),
        (
            "rs with non-deployment owner",
            pod(Some("shop"), ctl("ReplicaSet", "argo-rs", "rs-3")),
            w(ReplicaSet, "argo-rs"),
        ),
        (
            "rs uid mismatch (name reused)",
            pod(Some("shop"), ctl("ReplicaSet", "web-1", "old")),
            w(ReplicaSet, "web-1"),
        ),
        (
            "rs in another namespace",
            pod(Some("other"), ctl("ReplicaSet", "web-1", "rs-1")),
            w(ReplicaSet, "web-1"),
        ),
        (
            "owner ref without uid",
            pod(Some("shop"), ctl("ReplicaSet", "web-1", "")),
            w(Deployment, "web"),
        ),
        (
            "statefulset",
            pod(Some("shop"), ctl("StatefulSet", "db", "s-1")),
            w(StatefulSet, "db"),
        ),
        (
            "daemonset",
            pod(Some("shop"), ctl("DaemonSet", "agent", "ds-1")),
            w(DaemonSet, "agent"),
        ),
        (
            "job owned by cronjob",
            pod(Some("shop"), ctl("Job", "backup-1", "job-1")),
            w(CronJob, "backup"),
        ),
        (
            "job without owner",
            pod(Some("shop"), ctl("Job", "once", "job-2")),
            w(Job, "once"),
        ),
        (
            "unknown owner kind",
            pod(Some("shop"), ctl("Rollout", "canary", "r-1")),
            w(Other("Rollout".into()), "canary"),
        ),
        (
            "pod without namespace",
            pod(None, ctl("ReplicaSet", "web-1", "rs-1")),
            w(ReplicaSet, "web-1"),
        ),
        (
            "controller ref preferred over first",
            pod(
                Some("shop"),
                vec![
                    owner("ConfigMap", "cm", "c-1", None),
                    owner("StatefulSet", "db", "s-1", Some(true)),
                ],
            ),
            w(StatefulSet, "db"),
        ),
        (
            "no controller flag: first valid owner",
            pod(
                Some("shop"),
                vec![
                    owner("", "", "", Some(true)),
                    owner("DaemonSet", "agent", "ds-1", None),
                ],
            ),
            w(DaemonSet, "agent"),
        ),
        (
            "only malformed owners",
            pod(Some("shop"), vec![owner("", "x", "", Some(true))]),
            None,
        ),
        (
            "empty owner list",
            Pod {
                metadata: ObjectMeta {
                    owner_references: Some(vec![]),
                    ..Default::default()
                },
                ..Default::default()
            },
            None,
        ),
    ];
    for (name, pod, want) in cases {
        assert_eq!(workload_of(&pod, &objs), want, "case: {name}");
    }
}

#[test]
fn workload_display_and_kind_round_trip() {
    for kind in [
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "Rollout",
    ] {
        assert_eq!(WorkloadKind::from_kind(kind).as_str(), kind);
    }
    let wl = Workload {
        kind: WorkloadKind::Other("Rollout".into()),
        name: "canary".into(),
    };
    assert_eq!(wl.to_string(), "Rollout/canary");
}

#[test]
fn sort_makes_snapshots_order_independent() {
    let ns = |name: &str| {
        Arc::new(Namespace {
            metadata: meta(None, name, name, vec![]),
            ..Default::default()
        })
    };
    let p = |ns: &str| Arc::new(pod(Some(ns), vec![]));
    let mut a = ClusterObjects {
        namespaces: vec![ns("b"), ns("a")],
        pods: vec![p("z"), p("a")],
        ..Default::default()
    };
    let mut b = ClusterObjects {
        namespaces: vec![ns("a"), ns("b")],
        pods: vec![p("a"), p("z")],
        ..Default::default()
    };
    assert_ne!(a, b);
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(a.len(), 4);
    assert!(!a.is_empty());
    assert!(ClusterObjects::default().is_empty());
}

#[test]
fn changed_kinds_compare_shared_objects_by_pointer_and_the_rest_by_value() {
    let p = |ns: &str| Arc::new(pod(Some(ns), vec![]));
    let shared = p("a");
    let a = ClusterObjects {
        pods: vec![Arc::clone(&shared), p("b")],
        jobs: objects().jobs,
        ..Default::default()
    };
    // Same pods (one shared, one an equal copy), other jobs.
    let b = ClusterObjects {
        pods: vec![shared, p("b")],
        ..Default::default()
    };
    let changed = a.changed_kinds(&b);
    assert_eq!(changed.kinds(), ["Job"]);
    assert!(changed.contains::<Job>() && !changed.contains::<Pod>());
    assert!(a.changed_kinds(&a.clone()).is_empty());
    assert_eq!(
        ClusterObjects::default().changed_kinds(&a).kinds(),
        ["Pod", "Job"]
    );
}
