//! Telling the manifest reloader when to look again: inotify (through the `notify` crate)
//! wakes it as soon as a manifest or a file in a manifests directory changes, and a poll
//! every interval stays as the fallback (file systems without inotify, such as NFS, and
//! a watcher that could not be set up). What changed is always decided by the reload's
//! stamps and content hashes, never by the event itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// Events within this of the first are taken together: an editor's save, or `kubectl`'s
/// write and rename, is one reload.
const SETTLE: Duration = Duration::from_millis(50);

/// Wakes the reloader on file system events about the manifests.
pub struct ManifestChanges {
    /// Kept alive: dropping it stops the events.
    _watcher: Option<RecommendedWatcher>,
    wake: Arc<Notify>,
}

impl ManifestChanges {
    /// Watches `paths`: a directory itself, a file through its directory (so that a file
    /// replaced by a rename, as `rsync` and editors do, is still seen). A path that cannot
    /// be watched is logged; polling covers it.
    pub fn watch(paths: &[PathBuf]) -> Self {
        let wake = Arc::new(Notify::new());
        let woken = Arc::clone(&wake);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                woken.notify_one();
            }
        });
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(error) => {
                tracing::warn!(%error, "no inotify: manifest changes are found by polling only");
                return Self {
                    _watcher: None,
                    wake,
                };
            }
        };
        for path in paths {
            let target = if path.is_dir() {
                path.as_path()
            } else {
                path.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
            };
            if let Err(error) = watcher.watch(target, RecursiveMode::NonRecursive) {
                tracing::warn!(
                    path = %target.display(),
                    %error,
                    "cannot watch for changes: this path is polled only"
                );
            }
        }
        Self {
            _watcher: Some(watcher),
            wake,
        }
    }

    /// Waits for a change event (and lets a burst settle), or `poll` at the most.
    pub async fn next(&self, poll: Duration) {
        if tokio::time::timeout(poll, self.wake.notified())
            .await
            .is_ok()
        {
            tokio::time::sleep(SETTLE).await;
        }
    }
}
