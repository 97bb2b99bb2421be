//! A live manifests source: last good content on a broken write, replacements that keep
//! size and mtime, touches, deletions.

use std::path::PathBuf;
use std::process::Command;

use super::LiveManifests;

const DENY: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: db}\n---\n\
apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: db}\n\
spec: {podSelector: {}}\n";

fn dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("live-manifests-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn policy_names(objects: &crate::cluster::state::ClusterObjects) -> Vec<String> {
    objects
        .policies
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

#[test]
fn a_file_that_stops_parsing_keeps_its_last_good_content_and_is_reported_stale() {
    let dir = dir("stale");
    let file = dir.join("policies.yaml");
    std::fs::write(&file, DENY).expect("write");
    let mut live = LiveManifests::default();
    let first = live.reload(std::slice::from_ref(&dir)).expect("first load");
    assert_eq!(policy_names(&first.objects), ["deny-all"]);
    assert!(first.stale.is_empty());

    // Half written: the second document is cut in the middle of a flow mapping.
    std::fs::write(&file, &DENY[..DENY.len() - 12]).expect("truncate");
    let broken = live.reload(std::slice::from_ref(&dir)).expect("a change");
    assert_eq!(
        policy_names(&broken.objects),
        ["deny-all"],
        "still judged by it"
    );
    assert_eq!(broken.stale.len(), 1);
    assert!(
        broken.stale[0].1.contains("does not parse"),
        "{:?}",
        broken.stale
    );
    assert!(
        broken
            .messages
            .iter()
            .any(|m| m.contains("keeping its last good content")),
        "{:?}",
        broken.messages
    );
    // Still broken: nothing new to publish.
    assert!(live.reload(std::slice::from_ref(&dir)).is_none());

    let fixed = DENY.replace("deny-all", "deny-all-2");
    std::fs::write(&file, fixed).expect("fix");
    let fixed = live.reload(std::slice::from_ref(&dir)).expect("a change");
    assert_eq!(policy_names(&fixed.objects), ["deny-all-2"]);
    assert!(fixed.stale.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_replacement_of_the_same_size_with_its_mtime_kept_is_seen() {
    let dir = dir("rsync");
    let file = dir.join("policies.yaml");
    let reference = dir.join("reference");
    std::fs::write(&file, DENY).expect("write");
    std::fs::write(&reference, "").expect("write");
    let keep_mtime = || {
        let status = Command::new("touch")
            .arg("-r")
            .arg(&reference)
            .arg(&file)
            .status()
            .expect("touch runs");
        assert!(status.success());
    };
    keep_mtime();
    let mut live = LiveManifests::default();
    assert!(live.reload(std::slice::from_ref(&file)).is_some());
    // Same length, other name, same mtime (as rsync -a or touch -r leave it).
    let renamed = DENY.replace("deny-all", "deny-xyz");
    assert_eq!(renamed.len(), DENY.len());
    std::fs::write(&file, renamed).expect("replace");
    keep_mtime();
    let reload = live
        .reload(std::slice::from_ref(&file))
        .expect("the replacement is seen");
    assert_eq!(policy_names(&reload.objects), ["deny-xyz"]);
    // Touched without a change of content: no new state.
    keep_mtime();
    assert!(live.reload(std::slice::from_ref(&file)).is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_deleted_file_takes_its_objects_with_it_and_skipped_entries_are_named() {
    let dir = dir("deleted");
    std::fs::write(dir.join("a.yaml"), DENY).expect("write");
    std::fs::create_dir_all(dir.join("nested")).expect("subdir");
    std::fs::write(dir.join("nested/b.yaml"), DENY).expect("write");
    std::fs::write(dir.join("README.md"), "notes").expect("write");
    let mut live = LiveManifests::default();
    let first = live.reload(std::slice::from_ref(&dir)).expect("first load");
    assert_eq!(policy_names(&first.objects), ["deny-all"], "one level deep");
    for skipped in ["nested", "README.md"] {
        assert!(
            first
                .messages
                .iter()
                .any(|m| m.contains(skipped) && m.contains("skipped")),
            "{skipped}: {:?}",
            first.messages
        );
    }
    std::fs::remove_file(dir.join("a.yaml")).expect("remove");
    let gone = live.reload(std::slice::from_ref(&dir)).expect("a change");
    assert!(gone.objects.policies.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
