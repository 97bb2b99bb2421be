//! Publishing cluster views: from manifests on disk (the static source, reloaded when the
//! files change), or from the Kubernetes source's states.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::manifests::{LiveManifests, ManifestChanges, Reload};
use super::state::{ChangedKinds, ClusterObjects};
use super::view::ClusterView;
use crate::policy::ObjectError;

/// Counters of the static source.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Views published.
    pub published: AtomicU64,
    /// Documents or objects skipped as invalid, in the latest load.
    pub invalid_objects: AtomicU64,
    /// Manifest files whose latest content does not parse or cannot be read, served from
    /// their last good content.
    pub stale_files: AtomicU64,
}

/// Loads `paths` now and publishes a view, then looks at the files again when inotify
/// reports a change to them, or every `interval` at the latest, and publishes a new view
/// whenever one changed (added, removed, or a new content). A file
/// whose new content does not parse keeps its last good content in the view, and is
/// counted stale (`cluster_source_stale`) until it parses again (`manifests/live.rs`).
pub async fn watch_manifests(
    paths: Vec<PathBuf>,
    strict: bool,
    interval: Duration,
    out: watch::Sender<Option<Arc<ClusterView>>>,
    stats: Arc<SourceStats>,
) {
    let mut live = LiveManifests::new(strict);
    let changes = ManifestChanges::watch(&paths);
    let mut previous: Option<Built> = None;
    loop {
        let built = tokio::task::block_in_place(|| {
            let reload = live.reload(&paths)?;
            let built = load(reload, &stats, previous.as_ref());
            crate::memory::release_unused();
            Some(built)
        });
        if let Some(built) = built {
            // Counted before sending, so a receiver that sees the view sees the count.
            stats.published.fetch_add(1, Ordering::Relaxed);
            if out.send(Some(Arc::clone(&built.view))).is_err() {
                return;
            }
            previous = Some(built);
        }
        changes.next(interval).await;
    }
}

/// Builds views from a Kubernetes source's states as it publishes them, once it is ready.
pub async fn watch_kubernetes(
    source: super::kubernetes::KubernetesSource,
    out: watch::Sender<Option<Arc<ClusterView>>>,
    stats: Arc<SourceStats>,
) {
    use super::source::ClusterSource;
    let mut states = source.subscribe();
    if super::source::wait_ready(&source).await.is_err() {
        warn!("the Kubernetes source stopped before its first full state");
        return;
    }
    let mut previous: Option<Built> = None;
    loop {
        let objects = states.borrow_and_update().clone();
        let built = tokio::task::block_in_place(|| {
            let (view, errors) = rebuild(previous.as_ref(), objects);
            for e in &errors {
                warn!(error = %e, "cluster: object left out");
            }
            let invalid = errors.len() as u64 + source.counters().invalid_objects;
            stats.invalid_objects.store(invalid, Ordering::Relaxed);
            crate::memory::release_unused();
            view
        });
        stats.published.fetch_add(1, Ordering::Relaxed);
        let sent = out.send(Some(Arc::clone(&built.view)));
        previous = Some(built);
        if sent.is_err() || states.changed().await.is_err() {
            return;
        }
    }
}

/// A published view and the state it was built from, kept to tell what the next state
/// changed.
struct Built {
    objects: Arc<ClusterObjects>,
    view: Arc<ClusterView>,
}

/// The view of `objects`, rebuilding only what the kinds that changed since `previous`
/// affect.
fn rebuild(previous: Option<&Built>, objects: Arc<ClusterObjects>) -> (Built, Vec<ObjectError>) {
    let changed = previous.map_or_else(ChangedKinds::all, |p| p.objects.changed_kinds(&objects));
    if !changed.is_empty() {
        info!(kinds = ?changed.kinds(), "cluster state changed; rebuilding what they affect");
    }
    let (view, errors) = ClusterView::rebuild(previous.map(|p| &*p.view), &objects, &changed);
    let built = Built {
        objects,
        view: Arc::new(view),
    };
    (built, errors)
}

/// Logs what a reload found and builds its view.
fn load(reload: Reload, stats: &SourceStats, previous: Option<&Built>) -> Built {
    for message in &reload.messages {
        match message.split_once(": ") {
            Some(("error", m)) => warn!(error = m, "manifests: skipped"),
            Some(("info", m)) => info!(message = m, "manifests"),
            _ => warn!(
                warning = message.trim_start_matches("warning: "),
                "manifests"
            ),
        }
    }
    stats
        .stale_files
        .store(reload.stale.len() as u64, Ordering::Relaxed);
    let objects = Arc::new(reload.objects);
    let (built, errors) = rebuild(previous, objects);
    for e in &errors {
        warn!(error = %e, "manifests: object left out");
    }
    stats
        .invalid_objects
        .store((reload.invalid + errors.len()) as u64, Ordering::Relaxed);
    let objects = &built.objects;
    info!(
        pods = objects.pods.len(),
        policies = objects.policies.len(),
        services = objects.services.len(),
        stale_files = reload.stale.len(),
        "cluster state loaded from manifests"
    );
    built
}
