//! The daemon's suggestion learner: a sink of the hub that learns every written record
//! (`crate::suggest::learn`), answered from by the API's `GetSuggestions`.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::server::SuggestionSource;
use crate::cluster::view::ClusterView;
use crate::hub::{FlowHub, WhenFull};
use crate::suggest::learn::{LearnConfig, Learner};

/// Records queued for the learner before they are dropped (and counted as lost to it).
const QUEUE: usize = 16_384;

/// Starts learning, unless `max_edges` is 0: the source the API answers from, and the
/// task, which ends when the hub closes.
pub(super) fn start(
    hub: &FlowHub,
    max_edges: usize,
    views: watch::Receiver<Option<Arc<ClusterView>>>,
) -> Option<(SuggestionSource, JoinHandle<()>)> {
    if max_edges == 0 {
        return None;
    }
    let learner = Arc::new(Mutex::new(Learner::new(LearnConfig {
        max_edges,
        ..LearnConfig::default()
    })));
    let mut queue = hub.subscribe("suggest", QUEUE, WhenFull::Drop, false);
    let learning = Arc::clone(&learner);
    let task = tokio::spawn(async move {
        while let Some(entry) = queue.recv().await {
            // A poisoned lock means a panic while learning: learning stops, serving goes on.
            let Ok(mut learner) = learning.lock() else {
                return;
            };
            learner.learn(&entry.record);
        }
    });
    Some((SuggestionSource { learner, views }, task))
}
