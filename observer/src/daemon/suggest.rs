//! The daemon's suggestion learner: a sink of the hub that learns every written record
//! (`crate::suggest::learn`), answered from by the API's `GetSuggestions`. With
//! `--suggest-state PATH` what it learned survives a restart: written atomically every
//! minute and at exit, read at start; a file that cannot be read as a learning state is
//! set aside (renamed) and said so, and learning starts empty.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::api::server::SuggestionSource;
use crate::cluster::view::ClusterView;
use crate::flow::WallClock;
use crate::hub::{FlowHub, WhenFull};
use crate::stats::RunStats;
use crate::suggest::generate::GenerateConfig;
use crate::suggest::learn::{LearnConfig, Learner, State};

/// Records queued for the learner before they are dropped (and counted as lost to it).
const QUEUE: usize = 16_384;
/// How often the state file is written.
const SAVE_EVERY: Duration = Duration::from_secs(60);
/// How often the learner's figures for the stats are counted.
const COUNT_EVERY: Duration = Duration::from_secs(1);
/// The learner's figures for the stats (`suggest_*`), counted by the learner's own task so
/// that the table task reads four atomics instead of walking every edge.
#[derive(Debug, Default)]
pub(super) struct SuggestCounts {
    edges: AtomicU64,
    dropped_edges: AtomicU64,
    learning: AtomicU64,
    stable: AtomicU64,
}

impl SuggestCounts {
    fn count(&self, learner: &Learner) {
        let learned = learner.learned();
        let now = WallClock::now().wall(WallClock::monotonic_now_ns());
        let stable_after = GenerateConfig::default().stable_after_ns;
        let (learning, stable) = learned.stability_counts(now, stable_after);
        self.edges
            .store(learned.edge_count() as u64, Ordering::Relaxed);
        self.dropped_edges
            .store(learned.skipped.dropped_edges, Ordering::Relaxed);
        self.learning.store(learning, Ordering::Relaxed);
        self.stable.store(stable, Ordering::Relaxed);
    }

    /// Copies the figures into the stats.
    pub(super) fn report(&self, stats: &mut RunStats) {
        stats.suggest_edges = self.edges.load(Ordering::Relaxed);
        stats.suggest_dropped_edges = self.dropped_edges.load(Ordering::Relaxed);
        stats.suggest_workloads_learning = self.learning.load(Ordering::Relaxed);
        stats.suggest_workloads_stable = self.stable.load(Ordering::Relaxed);
    }
}

/// What `start` started.
pub(super) struct Learning {
    /// Where the API answers from.
    pub(super) source: SuggestionSource,
    /// The figures for the stats.
    pub(super) counts: Arc<SuggestCounts>,
    /// The task: it writes the state a last time and ends when the hub closes.
    pub(super) task: JoinHandle<()>,
}

/// Starts learning, unless `max_edges` is 0.
pub(super) fn start(
    hub: &FlowHub,
    max_edges: usize,
    state_file: Option<PathBuf>,
    views: watch::Receiver<Option<Arc<ClusterView>>>,
    node: String,
) -> Option<Learning> {
    if max_edges == 0 {
        return None;
    }
    let mut learner = Learner::new(LearnConfig {
        max_edges,
        ..LearnConfig::default()
    });
    if let Some(path) = &state_file
        && let Some(state) = load(path)
    {
        learner.absorb(&state);
        info!(
            path = %path.display(),
            edges = learner.learned().edge_count(),
            "suggestion learning resumed from its state file"
        );
    }
    let learner = Arc::new(Mutex::new(learner));
    let mut queue = hub.subscribe("suggest", QUEUE, WhenFull::Drop, false);
    let counts = Arc::new(SuggestCounts::default());
    let (learning, counting) = (Arc::clone(&learner), Arc::clone(&counts));
    let task = tokio::spawn(async move {
        let mut save = tokio::time::interval(SAVE_EVERY);
        save.tick().await;
        let mut count = tokio::time::interval(COUNT_EVERY);
        loop {
            tokio::select! {
                entry = queue.recv() => match entry {
                    Some(entry) => match learning.lock() {
                        Ok(mut learner) => learner.learn(&entry.record),
                        // A panic while learning: learning stops, serving goes on.
                        Err(_) => return,
                    },
                    None => break,
                },
                _ = count.tick() => {
                    if let Ok(learner) = learning.lock() {
                        counting.count(&learner);
                    }
                }
                _ = save.tick() => save_off_the_runtime(&learning, state_file.as_ref()).await,
            }
        }
        save_off_the_runtime(&learning, state_file.as_ref()).await;
    });
    Some(Learning {
        source: SuggestionSource {
            learner,
            views,
            node,
        },
        counts,
        task,
    })
}

/// Writes the state file, if there is one, on a blocking thread: it is megabytes of JSON.
async fn save_off_the_runtime(learner: &Arc<Mutex<Learner>>, path: Option<&PathBuf>) {
    let Some(path) = path.cloned() else {
        return;
    };
    let learner = Arc::clone(learner);
    if let Err(e) = tokio::task::spawn_blocking(move || write(&learner, &path)).await {
        warn!(error = %e, "writing the suggestion state panicked");
    }
}

/// Reads a state file; a missing one is a first start, one that cannot be used is set
/// aside as `PATH.unreadable` and said so.
fn load(path: &Path) -> Option<State> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the suggestion state (--suggest-state); learning starts empty");
            return None;
        }
    };
    let problem = match State::decode(&text) {
        Ok(state) => return Some(state),
        Err(problem) => problem,
    };
    let aside = path.with_extension("unreadable");
    let moved = std::fs::rename(path, &aside);
    warn!(
        path = %path.display(),
        problem = %problem,
        set_aside_as = %aside.display(),
        moved = moved.is_ok(),
        "the suggestion state file (--suggest-state) is not a learning state; learning starts empty"
    );
    None
}

/// Writes the learner's state atomically (a temporary file, then a rename); a failure is
/// logged and the next write tries again.
fn write(learner: &Mutex<Learner>, path: &Path) {
    let Ok(state) = learner.lock().map(|l| l.state()) else {
        return;
    };
    let tmp = path.with_extension("tmp");
    let written = std::fs::write(&tmp, state.encode()).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        warn!(path = %path.display(), error = %e, "writing the suggestion state (--suggest-state)");
    }
}
