//! Reading the kernel's flow counters, from the flow cache (summing CPUs) and the shared
//! flow hash map, and letting go of keys once their connections are written.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use aya::maps::{HashMap as KernelHashMap, Map, MapData};
use observer_common::{FlowKey, FlowStats};

use super::flow_cache::FlowCache;
use super::flow_sum::add;

/// Owns the flow hash map and the flow cache.
///
/// The map is read by its keys, not walked: every key the programs insert is announced by
/// a NEW_FLOW event, so a read looks up the keys it was told of (one system call each),
/// where a walk would visit every bucket of the map (65,536 by default) however few flows
/// it holds, at every poll, on CPUs the traffic needs. An announcement can be lost (the
/// ring buffer was full, counted): then, and every so often anyway, the map is walked.
pub struct FlowMapReader {
    map: KernelHashMap<MapData, FlowKey, FlowStats>,
    cache: Option<FlowCache>,
    /// Keys that may be in the map: announced, and not yet found gone.
    known: HashSet<FlowKey>,
}

impl FlowMapReader {
    pub(super) fn new(map: Map, cache: Option<FlowCache>) -> Result<Self> {
        Ok(Self {
            map: KernelHashMap::try_from(map)?,
            cache,
            known: HashSet::new(),
        })
    }

    /// Keys the programs announced (NEW_FLOW events) since the last read.
    pub fn announce(&mut self, keys: impl IntoIterator<Item = FlowKey>) {
        self.known.extend(keys);
    }

    /// Every key with its counters summed over CPUs and over the cache and the hash map (a
    /// key moves between them when cache slots are released and reclaimed): the map's
    /// announced keys, or, with `walk`, every key it holds (which then become the known
    /// ones). Keys deleted meanwhile are skipped; errors reading one key do not stop the
    /// read (they are counted).
    pub fn read_all(&mut self, out: &mut Vec<(FlowKey, FlowStats)>, walk: bool) -> usize {
        let mut errors = 0;
        let mut totals: HashMap<FlowKey, FlowStats> = HashMap::new();
        if walk {
            self.known.clear();
            for item in self.map.iter() {
                match item {
                    Ok((key, value)) => {
                        self.known.insert(key);
                        add(totals.entry(key).or_default(), &value)
                    }
                    Err(_) => errors += 1,
                }
            }
        } else {
            let map = &self.map;
            self.known.retain(|key| match map.get(key, 0) {
                Ok(value) => {
                    add(totals.entry(*key).or_default(), &value);
                    true
                }
                // Only this process deletes keys (or it was a cache slot's, never in the
                // map): a key not found is gone until announced again.
                Err(aya::maps::MapError::KeyNotFound) => false,
                Err(_) => {
                    errors += 1;
                    true
                }
            });
        }
        if let Some(cache) = &mut self.cache {
            cache.scan(|key, stats| add(totals.entry(key).or_default(), &stats));
        }
        out.extend(totals.into_iter().filter(|(_, stats)| stats.packets > 0));
        errors
    }

    /// Deletes keys whose connections were written, each with the counts its record
    /// reported for it, and returns, per key, what the kernel counted beyond those (the
    /// tail: late packets that would otherwise be dropped with the key). Missing keys are
    /// not an error.
    ///
    /// A map key is read, then deleted: a packet counted between the two system calls is
    /// lost. That window is one system call, where it used to be a whole poll interval.
    pub fn remove(&mut self, released: &[(FlowKey, FlowStats)]) -> Vec<(FlowKey, FlowStats)> {
        let mut tails = Vec::new();
        for (key, reported) in released {
            let mut last = FlowStats::default();
            if let Ok(value) = self.map.get(key, 0) {
                add(&mut last, &value);
            }
            let _ = self.map.remove(key);
            self.known.remove(key);
            if let Some(cache) = &self.cache {
                add(&mut last, &cache.release(key));
            }
            if let Some(tail) = tail(&last, reported) {
                tails.push((*key, tail));
            }
        }
        tails
    }
}

/// What `last` counted beyond `read` (the same key, later: here, what a record reported):
/// `None` when nothing. The tail's packets are stamped with `last`'s last-seen time, and
/// carry the flags `read` had not seen.
fn tail(last: &FlowStats, read: &FlowStats) -> Option<FlowStats> {
    let packets = last.packets.checked_sub(read.packets).filter(|p| *p > 0)?;
    Some(FlowStats {
        packets,
        bytes: last.bytes.saturating_sub(read.bytes),
        first_seen_ns: last.last_seen_ns,
        last_seen_ns: last.last_seen_ns,
        tcp_flags: last.tcp_flags & !read.tcp_flags,
        flags: last.flags & !read.flags,
        pad: [0; 4],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(packets: u64, bytes: u64, last_seen_ns: u64, tcp_flags: u16) -> FlowStats {
        FlowStats {
            packets,
            bytes,
            first_seen_ns: 100,
            last_seen_ns,
            tcp_flags,
            ..FlowStats::default()
        }
    }

    #[test]
    fn tail_is_what_came_after_the_read() {
        let read = stats(10, 1_000, 500, 0x12);
        let last = stats(12, 1_180, 900, 0x13);
        let tail = tail(&last, &read).expect("two late packets");
        assert_eq!((tail.packets, tail.bytes), (2, 180));
        assert_eq!((tail.first_seen_ns, tail.last_seen_ns), (900, 900));
        assert_eq!(
            tail.tcp_flags, 0x01,
            "only the flag the read had not seen (FIN)"
        );
    }

    #[test]
    fn no_tail_when_nothing_came_or_the_counts_went_back() {
        let read = stats(10, 1_000, 500, 0x12);
        assert_eq!(tail(&read, &read), None);
        // A slot reclaimed by a new occupant before the release reads fewer packets.
        assert_eq!(tail(&stats(1, 60, 900, 0x02), &read), None);
    }
}
