//! Publishing cluster views: from manifests on disk (the static source, reloaded when the
//! files change), or from the Kubernetes source's states.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{info, warn};

use super::manifests::{expand_paths, load_paths};
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
}

/// Loads `paths` now and publishes a view, then polls the files every `interval` and
/// publishes a new view whenever one changes (a file added, removed, or modified).
pub async fn watch_manifests(
    paths: Vec<PathBuf>,
    interval: Duration,
    out: watch::Sender<Option<Arc<ClusterView>>>,
    stats: Arc<SourceStats>,
) {
    let mut last = None;
    let mut previous: Option<Built> = None;
    loop {
        let fingerprint = fingerprint(&paths);
        if last.as_ref() != Some(&fingerprint) {
            let built = tokio::task::block_in_place(|| {
                let built = load(&paths, &stats, previous.as_ref());
                crate::memory::release_unused();
                built
            });
            // Counted before sending, so a receiver that sees the view sees the count.
            stats.published.fetch_add(1, Ordering::Relaxed);
            if out.send(Some(Arc::clone(&built.view))).is_err() {
                return;
            }
            previous = Some(built);
            last = Some(fingerprint);
        }
        tokio::time::sleep(interval).await;
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

fn load(paths: &[PathBuf], stats: &SourceStats, previous: Option<&Built>) -> Built {
    let loaded = load_paths(paths);
    for w in &loaded.warnings {
        warn!(warning = %w, "manifests");
    }
    for e in &loaded.errors {
        warn!(error = %e, "manifests: skipped");
    }
    let load_errors = loaded.errors.len();
    let objects = Arc::new(loaded.into_objects());
    let (built, errors) = rebuild(previous, objects);
    let objects = &built.objects;
    for e in &errors {
        warn!(error = %e, "manifests: object left out");
    }
    stats
        .invalid_objects
        .store((load_errors + errors.len()) as u64, Ordering::Relaxed);
    info!(
        pods = objects.pods.len(),
        policies = objects.policies.len(),
        services = objects.services.len(),
        "cluster state loaded from manifests"
    );
    built
}

/// Names, sizes and modification times of the files behind `paths`.
fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    expand_paths(paths)
        .into_iter()
        .filter_map(Result::ok)
        .map(|f| {
            let meta = std::fs::metadata(&f).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (f, len, modified)
        })
        .collect()
}
