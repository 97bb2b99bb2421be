//! The buffer of recent flows that subscribers read from: a fixed capacity, each flow under
//! the next cursor, the oldest overwritten first. Pure: the hub adds the lock and the
//! wake-ups.

use std::collections::VecDeque;
use std::ops::RangeInclusive;

/// Cursors a reader should have had next but cannot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gap {
    /// Overwritten before the reader got to them.
    Overwritten(RangeInclusive<u64>),
    /// The reader's cursor is from an earlier run (cursors start above every earlier
    /// run's): what that run wrote after it is gone, how much is unknown. The range ends
    /// just before this run's first cursor.
    EarlierRun(RangeInclusive<u64>),
}

/// What a read found after a cursor.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch<T> {
    /// Cursors the reader should have had next but the ring no longer holds, in order.
    pub lost: Vec<Gap>,
    /// The items that follow, in cursor order.
    pub items: Vec<(u64, T)>,
}

/// A ring of the latest `capacity` items, numbered by consecutive cursors.
#[derive(Debug)]
pub struct FlowRing<T> {
    items: VecDeque<T>,
    capacity: usize,
    /// Cursor of `items[0]`.
    front_cursor: u64,
    /// Cursor of the first item ever pushed.
    first_cursor: u64,
}

impl<T: Clone> FlowRing<T> {
    /// An empty ring whose first item gets `first_cursor` (at least 1: 0 means "before
    /// everything").
    pub fn new(capacity: usize, first_cursor: u64) -> Self {
        Self {
            items: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
            front_cursor: first_cursor.max(1),
            first_cursor: first_cursor.max(1),
        }
    }

    /// Adds an item, dropping the oldest when full; returns its cursor.
    pub fn push(&mut self, item: T) -> u64 {
        if self.items.len() == self.capacity {
            self.items.pop_front();
            self.front_cursor += 1;
        }
        self.items.push_back(item);
        self.next_cursor() - 1
    }

    /// The cursor the next item will get.
    pub fn next_cursor(&self) -> u64 {
        self.front_cursor + self.items.len() as u64
    }

    /// Cursors of the oldest and newest items held, when any.
    pub fn bounds(&self) -> Option<RangeInclusive<u64>> {
        (!self.items.is_empty()).then(|| self.front_cursor..=self.next_cursor() - 1)
    }

    /// Most items it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Up to `max` items after cursor `after`, and the cursors between `after` and the
    /// first of them that the ring cannot deliver. A cursor at or past the newest yields
    /// nothing; 0, or `first_cursor - 1`, means "from the first item of this run".
    pub fn read_after(&self, after: u64, max: usize) -> Batch<T> {
        let mut wanted = after.saturating_add(1);
        let mut lost = Vec::new();
        if after != 0 && wanted < self.first_cursor {
            lost.push(Gap::EarlierRun(wanted..=self.first_cursor - 1));
        }
        wanted = wanted.max(self.first_cursor);
        if wanted < self.front_cursor {
            lost.push(Gap::Overwritten(wanted..=self.front_cursor - 1));
        }
        let start = wanted.max(self.front_cursor);
        let skip = usize::try_from(start - self.front_cursor).unwrap_or(usize::MAX);
        let items = self
            .items
            .iter()
            .skip(skip)
            .take(max)
            .enumerate()
            .map(|(i, item)| (start + i as u64, item.clone()))
            .collect();
        Batch { lost, items }
    }
}

#[cfg(test)]
mod tests {
    use super::{Batch, FlowRing, Gap};

    fn ring_of(capacity: usize, items: std::ops::Range<u32>) -> FlowRing<u32> {
        let mut ring = FlowRing::new(capacity, 100);
        for item in items {
            ring.push(item);
        }
        ring
    }

    #[test]
    fn cursors_follow_each_other_from_the_first() {
        let mut ring = FlowRing::new(4, 100);
        assert_eq!(ring.bounds(), None);
        assert_eq!(ring.push(7), 100);
        assert_eq!(ring.push(8), 101);
        assert_eq!(ring.bounds(), Some(100..=101));
        assert_eq!(ring.next_cursor(), 102);
    }

    #[test]
    fn reads_resume_exactly_after_a_cursor() {
        let ring = ring_of(8, 0..5);
        assert_eq!(
            ring.read_after(101, 2),
            Batch {
                lost: vec![],
                items: vec![(102, 2), (103, 3)]
            }
        );
        assert_eq!(ring.read_after(104, 10).items, vec![]);
        assert_eq!(ring.read_after(500, 10).items, vec![]);
        assert_eq!(ring.read_after(99, 1).items, vec![(100, 0)]);
        assert_eq!(ring.read_after(0, 1).items, vec![(100, 0)]);
        assert_eq!(ring.read_after(0, 1).lost, vec![]);
    }

    #[test]
    fn a_reader_behind_the_oldest_is_told_exactly_what_it_lost() {
        // Capacity 4, ten pushes: cursors 106..=109 held, 100..=105 overwritten.
        let ring = ring_of(4, 0..10);
        assert_eq!(ring.bounds(), Some(106..=109));
        let batch = ring.read_after(102, 10);
        assert_eq!(batch.lost, vec![Gap::Overwritten(103..=105)]);
        assert_eq!(batch.items.first(), Some(&(106, 6)));
        assert_eq!(batch.items.len(), 4);
        // From the start of this run (0): what was overwritten since.
        assert_eq!(
            ring.read_after(0, 1).lost,
            vec![Gap::Overwritten(100..=105)]
        );
    }

    #[test]
    fn a_cursor_from_an_earlier_run_is_reported_as_such() {
        let ring = ring_of(4, 0..10);
        assert_eq!(
            ring.read_after(40, 1).lost,
            vec![Gap::EarlierRun(41..=99), Gap::Overwritten(100..=105)]
        );
        let fresh = ring_of(4, 0..2);
        let batch = fresh.read_after(40, 10);
        assert_eq!(batch.lost, vec![Gap::EarlierRun(41..=99)]);
        assert_eq!(batch.items, vec![(100, 0), (101, 1)]);
    }
}
