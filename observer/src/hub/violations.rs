//! The retention of violations: the flows the policies deny, kept apart from the flow ring
//! under the cursors they had there, so that allowed flows never push them out. A
//! violations-only subscriber reads here and resumes exactly for as long as the last
//! `capacity` violations reach back, however many allowed flows came between; when
//! violations themselves were dropped, its gap says which cursors they were under. Pure:
//! the hub adds the lock.

use std::collections::VecDeque;

use super::ring::{Batch, Gap};

/// The latest `capacity` violations, by cursor.
#[derive(Debug)]
pub struct ViolationRing<T> {
    items: VecDeque<(u64, T)>,
    capacity: usize,
    /// The cursor of the newest violation dropped for room (0: none).
    dropped_through: u64,
    /// The cursors of the latest violations dropped, at most `capacity`, to count what a
    /// reader lost.
    dropped: VecDeque<u64>,
    /// The cursor of the newest dropped violation `dropped` no longer tracks (0: none).
    forgotten_through: u64,
    /// The first cursor of this run (earlier ones are another run's).
    first_cursor: u64,
    /// The newest cursor published (a violation or not): a read is complete up to it.
    newest: u64,
}

impl<T: Clone> ViolationRing<T> {
    /// An empty retention of `capacity` violations; this run's cursors start at
    /// `first_cursor`.
    pub fn new(capacity: usize, first_cursor: u64) -> Self {
        let first_cursor = first_cursor.max(1);
        Self {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            dropped_through: 0,
            dropped: VecDeque::new(),
            forgotten_through: 0,
            first_cursor,
            newest: first_cursor - 1,
        }
    }

    /// Keeps a violation published under `cursor`, dropping the oldest when full.
    pub fn push(&mut self, cursor: u64, item: T) {
        if self.items.len() == self.capacity
            && let Some((dropped, _)) = self.items.pop_front()
        {
            self.dropped_through = dropped;
            if self.dropped.len() == self.capacity
                && let Some(forgotten) = self.dropped.pop_front()
            {
                self.forgotten_through = forgotten;
            }
            self.dropped.push_back(dropped);
        }
        self.items.push_back((cursor, item));
        self.newest = self.newest.max(cursor);
    }

    /// Notes that every cursor up to `cursor` was published (violations or not).
    pub fn published_through(&mut self, cursor: u64) {
        self.newest = self.newest.max(cursor);
    }

    /// Violations held at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Violations held now.
    pub fn held(&self) -> usize {
        self.items.len()
    }

    /// The cursor before the oldest violation held (with nothing lost before it), or the
    /// newest cursor published when none is held: where "from the oldest" starts.
    pub fn before_oldest(&self) -> u64 {
        match self.items.front() {
            Some((cursor, _)) => cursor - 1,
            None => self.newest,
        }
    }

    /// How many violations under cursors `after + 1 ..= until` were dropped: exact while
    /// the reader is within `capacity` dropped violations, else at least that many.
    pub fn dropped_between(&self, after: u64, until: u64) -> u64 {
        let in_range = |c: &u64| *c > after && *c <= until;
        let tracked = self.dropped.iter().filter(|c| in_range(c)).count() as u64;
        // Older drops are no longer tracked one by one; the newest of them is known.
        tracked + u64::from(in_range(&self.forgotten_through))
    }

    /// Up to `max` violations after `after`, the violations lost between (a gap naming
    /// the cursors they were under), and the cursor the read is complete through: the
    /// last violation returned, or, when the rest was read, the newest cursor published.
    pub fn read_after(&self, after: u64, max: usize) -> (Batch<T>, u64) {
        let mut lost = Vec::new();
        let wanted = after.saturating_add(1);
        if after != 0 && wanted < self.first_cursor {
            lost.push(Gap::EarlierRun(wanted..=self.first_cursor - 1));
        }
        let wanted = wanted.max(self.first_cursor);
        if wanted <= self.dropped_through {
            lost.push(Gap::Overwritten(wanted..=self.dropped_through));
        }
        let start = self.items.partition_point(|(cursor, _)| *cursor <= after);
        let items: Vec<(u64, T)> = self.items.iter().skip(start).take(max).cloned().collect();
        let complete_through = if start + items.len() < self.items.len() {
            items.last().map_or(after, |(cursor, _)| *cursor)
        } else {
            self.newest.max(after)
        };
        (Batch { lost, items }, complete_through)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_outlive_the_allowed_flows_between_them() {
        let mut ring = ViolationRing::new(3, 100);
        // Violations at 100, 5,000 and 9,000, with allowed flows up to 9,999 around them.
        ring.push(100, 'a');
        ring.push(5_000, 'b');
        ring.push(9_000, 'c');
        ring.published_through(9_999);
        let (batch, through) = ring.read_after(100, 10);
        assert_eq!(batch.lost, vec![]);
        assert_eq!(batch.items, vec![(5_000, 'b'), (9_000, 'c')]);
        assert_eq!(through, 9_999, "complete up to the newest flow");
        assert_eq!(ring.before_oldest(), 99);
        let (batch, through) = ring.read_after(100, 1);
        assert_eq!((batch.items, through), (vec![(5_000, 'b')], 5_000));
    }

    #[test]
    fn dropped_violations_are_a_gap_naming_their_cursors() {
        let mut ring = ViolationRing::new(2, 100);
        for cursor in [100, 200, 300, 400] {
            ring.push(cursor, cursor);
        }
        // 100 and 200 were dropped; a reader after 150 missed the one under 200.
        let (batch, _) = ring.read_after(150, 10);
        assert_eq!(batch.lost, vec![Gap::Overwritten(151..=200)]);
        assert_eq!(ring.dropped_between(150, u64::MAX), 1);
        assert_eq!(ring.dropped_between(0, u64::MAX), 2);
        assert_eq!(ring.dropped_between(0, 150), 1, "only those up to the end");
        assert_eq!(batch.items, vec![(300, 300), (400, 400)]);
        // A reader after 200 missed nothing.
        assert_eq!(ring.read_after(200, 10).0.lost, vec![]);
        assert_eq!(ring.before_oldest(), 299);
        // A cursor of an earlier run.
        assert_eq!(
            ring.read_after(7, 10).0.lost,
            vec![Gap::EarlierRun(8..=99), Gap::Overwritten(100..=200)]
        );
    }

    #[test]
    fn drops_older_than_the_tracked_ones_count_at_least_once_and_only_after_the_reader() {
        let mut ring = ViolationRing::new(2, 100);
        for cursor in [100, 200, 300, 400, 500, 600] {
            ring.push(cursor, cursor);
        }
        // Dropped: 100, 200, 300, 400; tracked: 300, 400; 200 is the newest forgotten.
        assert_eq!(ring.dropped_between(150, u64::MAX), 3, "200, 300, 400");
        assert_eq!(ring.dropped_between(250, u64::MAX), 2, "300, 400");
        assert_eq!(ring.dropped_between(0, u64::MAX), 3, "at least 3 of the 4");
    }
}
