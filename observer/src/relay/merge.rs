//! Merging several nodes' flow streams into one, by the time each flow was written: pure
//! logic, no I/O and no clock of its own (the caller passes the time).
//!
//! Each node's items leave in that node's order, always. Across nodes, the item released
//! next is the one written earliest among the nodes' heads, once no other connected node
//! can still send an earlier one: each other node has a later head, or has said (its
//! `Progress`) that everything it sends from now on was written later. A node that says
//! nothing holds the others back for at most the merge window: an item waiting longer
//! than that since it arrived is released anyway, and so is the head of a queue that
//! reached its bound. Items are then out of time order across nodes (never within one).

use std::collections::VecDeque;

/// One node's queue, in arrival order.
#[derive(Debug)]
struct NodeQueue<T> {
    /// (written, arrived, item), times in nanoseconds.
    items: VecDeque<(i64, i64, T)>,
    /// Everything it sends from now on was written after this (its latest `Progress`).
    written_through: Option<i64>,
    /// Connected and streaming: only such nodes hold the others back.
    live: bool,
}

/// The merge of several nodes' items (flows, gaps) of type `T`.
#[derive(Debug)]
pub struct Merge<T> {
    nodes: Vec<NodeQueue<T>>,
    window_ns: i64,
    bound: usize,
}

/// A node's place in a [`Merge`].
pub type Slot = usize;

impl<T> Merge<T> {
    /// An empty merge that holds items at most `window_ns` for other nodes, and at most
    /// `bound` items per node.
    pub fn new(window_ns: i64, bound: usize) -> Self {
        Self {
            nodes: Vec::new(),
            window_ns,
            bound: bound.max(1),
        }
    }

    /// A new node, live (it holds the others back until it sends or says progress).
    pub fn add_node(&mut self) -> Slot {
        self.nodes.push(NodeQueue {
            items: VecDeque::new(),
            written_through: None,
            live: true,
        });
        self.nodes.len() - 1
    }

    /// Whether `slot` is connected and streaming. A node that is not holds no one back;
    /// when it is live again, it knows nothing of its progress until it says it.
    pub fn set_live(&mut self, slot: Slot, live: bool) {
        if let Some(node) = self.nodes.get_mut(slot) {
            node.live = live;
            if !live {
                node.written_through = None;
            }
        }
    }

    /// An item from `slot`, written at `written`, arrived at `now`.
    pub fn push(&mut self, slot: Slot, written: i64, now: i64, item: T) {
        if let Some(node) = self.nodes.get_mut(slot) {
            node.items.push_back((written, now, item));
        }
    }

    /// `slot` says everything it sends from now on was written after `written_through`.
    pub fn progress(&mut self, slot: Slot, written_through: i64) {
        if let Some(node) = self.nodes.get_mut(slot) {
            node.written_through = Some(
                node.written_through
                    .map_or(written_through, |w| w.max(written_through)),
            );
        }
    }

    /// Takes items off the front of `slot`'s queue while it holds more than `keep` and its
    /// head is `droppable`, and returns them (oldest first).
    pub fn trim_front(
        &mut self,
        slot: Slot,
        keep: usize,
        droppable: impl Fn(&T) -> bool,
    ) -> Vec<T> {
        let mut taken = Vec::new();
        if let Some(node) = self.nodes.get_mut(slot) {
            while node.items.len() > keep
                && node.items.front().is_some_and(|(_, _, t)| droppable(t))
            {
                if let Some((_, _, item)) = node.items.pop_front() {
                    taken.push(item);
                }
            }
        }
        taken
    }

    /// Items queued from `slot`.
    pub fn queued(&self, slot: Slot) -> usize {
        self.nodes.get(slot).map_or(0, |n| n.items.len())
    }

    /// Items queued in all.
    pub fn len(&self) -> usize {
        self.nodes.iter().map(|n| n.items.len()).sum()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.nodes.iter().all(|n| n.items.is_empty())
    }

    /// The next item due at `now`, with its node.
    pub fn pop(&mut self, now: i64) -> Option<(Slot, T)> {
        let (slot, written, arrived) = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(slot, n)| n.items.front().map(|(w, a, _)| (slot, *w, *a)))
            .min_by_key(|(_, written, _)| *written)?;
        let safe = self.nodes.iter().enumerate().all(|(other, n)| {
            other == slot
                || !n.live
                || match n.items.front() {
                    Some((w, _, _)) => *w >= written,
                    None => n.written_through.is_some_and(|w| w >= written),
                }
        });
        let waited = now.saturating_sub(arrived) >= self.window_ns;
        let full = self.nodes[slot].items.len() >= self.bound;
        if !(safe || waited || full) {
            // The oldest head may wait; another node's full queue may not.
            return self.pop_full();
        }
        self.nodes[slot]
            .items
            .pop_front()
            .map(|(_, _, item)| (slot, item))
    }

    /// The head of a queue at its bound, if any.
    fn pop_full(&mut self) -> Option<(Slot, T)> {
        let slot = self
            .nodes
            .iter()
            .position(|n| n.items.len() >= self.bound)?;
        self.nodes[slot]
            .items
            .pop_front()
            .map(|(_, _, item)| (slot, item))
    }

    /// When the next item is due even if no node says more: the earliest-written head's
    /// window, the one [`Self::pop`] waits for (`None`: nothing waits).
    pub fn next_deadline(&self) -> Option<i64> {
        self.nodes
            .iter()
            .filter_map(|n| n.items.front())
            .min_by_key(|(written, _, _)| *written)
            .map(|(_, arrived, _)| arrived.saturating_add(self.window_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: i64 = 1_000;

    fn drain(merge: &mut Merge<&'static str>, now: i64) -> Vec<&'static str> {
        std::iter::from_fn(|| merge.pop(now).map(|(_, item)| item)).collect()
    }

    #[test]
    fn heads_leave_in_written_order_once_every_node_has_spoken() {
        let mut merge = Merge::new(WINDOW, 100);
        let (a, b) = (merge.add_node(), merge.add_node());
        merge.push(a, 10, 0, "a10");
        merge.push(a, 30, 0, "a30");
        // b has said nothing: a's head waits for it.
        assert_eq!(drain(&mut merge, 0), Vec::<&str>::new());
        merge.push(b, 20, 0, "b20");
        assert_eq!(drain(&mut merge, 0), ["a10", "b20"]);
        // b's queue is empty and it said nothing more: a30 waits ...
        assert_eq!(merge.next_deadline(), Some(WINDOW));
        // ... until b says it has nothing before 40,
        merge.progress(b, 40);
        assert_eq!(drain(&mut merge, 0), ["a30"]);
        assert!(merge.is_empty());
    }

    #[test]
    fn a_silent_node_holds_the_others_back_for_the_window_only() {
        let mut merge = Merge::new(WINDOW, 100);
        let (a, _b) = (merge.add_node(), merge.add_node());
        merge.push(a, 10, 5, "a10");
        assert_eq!(drain(&mut merge, WINDOW + 4), Vec::<&str>::new());
        assert_eq!(drain(&mut merge, WINDOW + 5), ["a10"]);
    }

    #[test]
    fn nodes_that_are_not_live_hold_no_one_back_and_keep_their_order() {
        let mut merge = Merge::new(WINDOW, 100);
        let (a, b) = (merge.add_node(), merge.add_node());
        merge.set_live(b, false);
        merge.push(a, 50, 0, "a50");
        assert_eq!(drain(&mut merge, 0), ["a50"]);
        // b's backlog arrives late, older than what a sent: once a says it has nothing
        // older, in b's order (a queue leaves only by its head).
        merge.push(b, 30, 0, "b30");
        merge.push(b, 20, 0, "b20");
        assert_eq!(drain(&mut merge, 0), Vec::<&str>::new());
        merge.progress(a, 60);
        assert_eq!(drain(&mut merge, 0), ["b30", "b20"]);
    }

    #[test]
    fn a_full_queue_is_released_even_when_another_head_waits() {
        let mut merge = Merge::new(WINDOW, 2);
        let (a, b, _c) = (merge.add_node(), merge.add_node(), merge.add_node());
        merge.push(a, 10, 0, "a10");
        merge.push(b, 20, 0, "b20");
        merge.push(b, 21, 0, "b21");
        // c is silent, a's head waits; b is at its bound: its head goes.
        assert_eq!(drain(&mut merge, 0), ["b20"]);
        assert_eq!(merge.queued(b), 1);
        assert_eq!(merge.len(), 2);
    }
}
