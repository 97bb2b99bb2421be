//! Who held an IP address when: the time-aware IP → pod history.
//!
//! Pod IPs are reused. A flow is attributed by the time of its first packet, so the
//! observer keeps, per IP, the intervals during which each holder had it, long enough to
//! attribute flows that are written long after they started. Times are CLOCK_MONOTONIC
//! nanoseconds of when the observer learned of each change.

use std::collections::HashMap;
use std::net::IpAddr;

use super::view::Holder;

/// One holding; holdings of an IP are kept in the order they began.
#[derive(Debug, Clone)]
struct Held {
    until: Option<u64>,
    holder: Holder,
}

/// Per IP, the holders in time order. Pure: the caller passes the times.
#[derive(Debug, Default)]
pub struct IdentityHistory {
    by_ip: HashMap<IpAddr, Vec<Held>>,
    retention_ns: u64,
}

impl IdentityHistory {
    /// Keeps ended holdings for `retention_ns` after they end.
    pub fn new(retention_ns: u64) -> Self {
        Self {
            retention_ns,
            ..Self::default()
        }
    }

    /// Records the holders of a new view, learned at `now`.
    pub fn update(&mut self, now: u64, holders: &HashMap<IpAddr, Holder>) {
        for (ip, holder) in holders {
            let held = self.by_ip.entry(*ip).or_default();
            match held.last_mut() {
                Some(last) if last.until.is_none() && last.holder.same_as(holder) => {
                    // Same holder; its labels or workload may have changed.
                    last.holder = holder.clone();
                }
                last => {
                    if let Some(last) = last.filter(|l| l.until.is_none()) {
                        last.until = Some(now);
                    }
                    held.push(Held {
                        until: None,
                        holder: holder.clone(),
                    });
                }
            }
        }
        for (ip, held) in &mut self.by_ip {
            if let Some(last) = held.last_mut().filter(|l| l.until.is_none())
                && !holders.contains_key(ip)
            {
                last.until = Some(now);
            }
        }
        let horizon = now.saturating_sub(self.retention_ns);
        self.by_ip.retain(|_, held| {
            held.retain(|h| h.until.is_none_or(|u| u >= horizon));
            !held.is_empty()
        });
    }

    /// Who held `ip` at time `t`. Watch events lag the datapath, so a packet that precedes
    /// the event announcing its sender belongs to the next holder once the previous one's
    /// holding has ended: the first holding not yet ended at `t` wins.
    pub fn lookup(&self, ip: IpAddr, t: u64) -> Option<&Holder> {
        self.by_ip
            .get(&ip.to_canonical())?
            .iter()
            .find(|h| h.until.is_none_or(|u| t < u))
            .map(|h| &h.holder)
    }

    /// Number of IPs with a history.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// True when no IP has a history.
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::view::PodIdentity;

    fn pod(name: &str, uid: &str) -> Holder {
        Holder::Pod(Arc::new(PodIdentity {
            info: Arc::new(crate::policy::PodInfo {
                namespace: "ns".into(),
                name: name.into(),
                ..Default::default()
            }),
            uid: Some(uid.into()),
            workload: None,
            service_account: None,
        }))
    }

    fn name(h: Option<&Holder>) -> Option<String> {
        match h? {
            Holder::Pod(p) => Some(p.info.name.clone()),
            Holder::Node(n) => Some(n.to_string()),
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 5));

    #[test]
    fn ip_reuse_attributes_each_flow_by_its_first_packet() {
        let mut h = IdentityHistory::new(1_000);
        h.update(100, &[(IP, pod("old", "u1"))].into());
        h.update(200, &HashMap::new()); // old deleted
        h.update(300, &[(IP, pod("new", "u2"))].into());
        assert_eq!(
            name(h.lookup(IP, 50)),
            Some("old".into()),
            "before the first view"
        );
        assert_eq!(name(h.lookup(IP, 150)), Some("old".into()));
        assert_eq!(
            name(h.lookup(IP, 250)),
            Some("new".into()),
            "event lag: next holder"
        );
        assert_eq!(name(h.lookup(IP, 350)), Some("new".into()));
    }

    #[test]
    fn a_new_holder_replaces_the_old_one_without_a_gap() {
        let mut h = IdentityHistory::new(1_000);
        h.update(100, &[(IP, pod("old", "u1"))].into());
        h.update(200, &[(IP, pod("new", "u2"))].into());
        assert_eq!(name(h.lookup(IP, 199)), Some("old".into()));
        assert_eq!(name(h.lookup(IP, 200)), Some("new".into()));
    }

    #[test]
    fn same_uid_keeps_one_holding_and_ended_ones_are_pruned() {
        let mut h = IdentityHistory::new(100);
        h.update(100, &[(IP, pod("a", "u1"))].into());
        h.update(150, &[(IP, pod("a", "u1"))].into());
        h.update(200, &HashMap::new());
        assert_eq!(name(h.lookup(IP, 10)), Some("a".into()));
        assert_eq!(name(h.lookup(IP, 250)), None, "ended, no successor");
        h.update(400, &HashMap::new());
        assert!(h.is_empty(), "pruned after the retention");
    }
}
