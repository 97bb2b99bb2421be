//! Manifest changes are seen when they happen (inotify), not at the next poll: with the
//! poll an hour away, a same-size replacement that keeps its mtime (`rsync -a`,
//! `touch -r`), a file added to a watched directory, and a file replaced by a rename each
//! publish a new view within seconds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use observer::cluster::publish::{SourceStats, watch_manifests};
use observer::cluster::view::ClusterView;
use tokio::sync::watch;

const POLICY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
metadata: {name: deny-all, namespace: db}\nspec: {podSelector: {}}\n";

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("manifest-watch-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Waits (up to 10 s, only to turn a hang into a failure) for the `n`th published view.
async fn published(stats: &SourceStats, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.published.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "view {n} was not published: the change was not seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn start(paths: Vec<PathBuf>) -> (Arc<SourceStats>, watch::Receiver<Option<Arc<ClusterView>>>) {
    let stats = Arc::new(SourceStats::default());
    let (tx, rx) = watch::channel(None);
    tokio::spawn(watch_manifests(
        paths,
        false,
        // The poll never comes within the test: only inotify can wake the reload.
        Duration::from_secs(3600),
        tx,
        Arc::clone(&stats),
    ));
    (stats, rx)
}

fn keep_mtime(file: &Path, modified: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(file)
        .and_then(|f| f.set_modified(modified))
        .expect("set mtime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_seen_at_once_without_waiting_for_the_poll() {
    let dir = scratch("at-once");
    let file = dir.join("policies.yaml");
    std::fs::write(&file, POLICY).expect("write");
    let modified = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .expect("mtime");
    let (stats, _views) = start(vec![file.clone()]);
    published(&stats, 1).await;

    // In place, same size, mtime kept.
    std::fs::write(&file, POLICY.replace("deny-all", "deny-xyz")).expect("rewrite");
    keep_mtime(&file, modified);
    published(&stats, 2).await;

    // Replaced by a rename, as rsync and editors do.
    let staged = dir.join(".policies.yaml.tmp");
    std::fs::write(&staged, POLICY.replace("deny-all", "deny-abc")).expect("stage");
    std::fs::rename(&staged, &file).expect("rename");
    published(&stats, 3).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_added_to_a_watched_directory_is_seen_at_once() {
    let dir = scratch("directory");
    std::fs::write(dir.join("a.yaml"), POLICY).expect("write");
    let (stats, _views) = start(vec![dir.clone()]);
    published(&stats, 1).await;
    std::fs::write(dir.join("b.yaml"), POLICY.replace("deny-all", "deny-other")).expect("write");
    published(&stats, 2).await;
    let _ = std::fs::remove_dir_all(&dir);
}
