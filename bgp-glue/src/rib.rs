//! The BGP RIB: every accepted path per prefix (the candidates are the peers' Adj-RIBs-In
//! after import policy), the best path per RFC 4271 §9.1.2.2, the multipath set, and the
//! changes the FIB needs, collected per batch.
//!
//! Decision process, in order (as BIRD, FRR and most routers do it):
//! 1. highest LOCAL_PREF (100 when absent);
//! 2. shortest AS_PATH (an AS_SET counts one);
//! 3. lowest ORIGIN (IGP < EGP < INCOMPLETE);
//! 4. lowest MED, compared only between paths from the same neighbouring AS (absent = 0);
//! 5. eBGP over iBGP;
//! 6. (IGP cost to the next hop: tern's next hops are on connected networks, all equal);
//! 7. lowest router id (ORIGINATOR_ID when present);
//! 8. lowest peer address.
//!
//! Paths equal through step 5 that come from different peers with different next hops form
//! the multipath (ECMP) set, up to the configured maximum.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;

use crate::wire::{Attributes, Family};

/// Index of a peer in the speaker's table.
pub type PeerId = u16;

/// One peer's path to a prefix.
#[derive(Debug, Clone)]
pub struct Path {
    pub peer: PeerId,
    pub attributes: Arc<Attributes>,
    /// The next hop the FIB resolves (from NEXT_HOP or MP_REACH_NLRI).
    pub next_hop: IpAddr,
    /// Kept across the peer's graceful restart, until refreshed or the timer ends.
    pub stale: bool,
}

/// What the decision process needs to know about the peer a path came from.
#[derive(Debug, Clone, Copy)]
pub struct PeerFacts {
    pub ebgp: bool,
    pub router_id: Ipv4Addr,
    pub address: IpAddr,
}

/// A change for the FIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Install or replace `prefix` with these next hops (one, or an ECMP set).
    Set {
        prefix: IpNet,
        next_hops: Vec<IpAddr>,
        ebgp: bool,
    },
    Remove {
        prefix: IpNet,
    },
}

#[derive(Default)]
struct Entry {
    paths: Vec<Path>,
    /// What the FIB has now for this prefix (to send only real changes).
    installed: Option<(Vec<IpAddr>, bool)>,
}

pub struct Rib {
    entries: HashMap<IpNet, Entry, ahash::RandomState>,
    multipath: usize,
    /// Prefixes touched since the last `take_changes`.
    dirty: Vec<IpNet>,
    installed: [usize; 2],
}

impl Rib {
    pub fn new(multipath: usize) -> Rib {
        Rib {
            entries: HashMap::default(),
            multipath: multipath.max(1),
            dirty: Vec::new(),
            installed: [0; 2],
        }
    }

    /// Offers `path` for `prefix`, replacing the same peer's previous one. Returns whether
    /// the peer had no path for it before (for prefix counting).
    pub fn announce(&mut self, prefix: IpNet, path: Path) -> bool {
        let entry = self.entries.entry(prefix).or_default();
        let new = match entry.paths.iter_mut().find(|p| p.peer == path.peer) {
            Some(old) => {
                *old = path;
                false
            }
            None => {
                entry.paths.push(path);
                true
            }
        };
        self.dirty.push(prefix);
        new
    }

    /// Withdraws `peer`'s path for `prefix`; returns whether it had one.
    pub fn withdraw(&mut self, prefix: IpNet, peer: PeerId) -> bool {
        let Some(entry) = self.entries.get_mut(&prefix) else {
            return false;
        };
        let before = entry.paths.len();
        entry.paths.retain(|p| p.peer != peer);
        let removed = entry.paths.len() != before;
        if removed {
            self.dirty.push(prefix);
        }
        removed
    }

    /// Withdraws every path of `peer` (session down without graceful restart), or of the
    /// peer's stale paths only; `family` limits it to one family. Returns how many went,
    /// IPv4 and IPv6.
    pub fn withdraw_peer(
        &mut self,
        peer: PeerId,
        only_stale: bool,
        family: Option<Family>,
    ) -> [usize; 2] {
        let mut removed = [0; 2];
        for (prefix, entry) in self.entries.iter_mut() {
            if family.is_some_and(|f| f != Family::of(prefix)) {
                continue;
            }
            let before = entry.paths.len();
            entry
                .paths
                .retain(|p| p.peer != peer || (only_stale && !p.stale));
            if entry.paths.len() != before {
                removed[usize::from(matches!(prefix, IpNet::V6(_)))] += before - entry.paths.len();
                self.dirty.push(*prefix);
            }
        }
        removed
    }

    /// Marks every path of `peer` stale (its session went down and it can restart
    /// gracefully). Forwarding does not change.
    pub fn mark_stale(&mut self, peer: PeerId) -> usize {
        let mut n = 0;
        for entry in self.entries.values_mut() {
            for p in entry.paths.iter_mut().filter(|p| p.peer == peer) {
                p.stale = true;
                n += 1;
            }
        }
        n
    }

    /// Runs the decision process on every touched prefix and returns what the FIB must do.
    pub fn take_changes(&mut self, peers: &[PeerFacts]) -> Vec<Change> {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        let mut changes = Vec::new();
        for prefix in dirty {
            let Some(entry) = self.entries.get_mut(&prefix) else {
                continue;
            };
            let selected = select(&entry.paths, peers, self.multipath);
            let slot = usize::from(matches!(prefix, IpNet::V6(_)));
            match (selected, &entry.installed) {
                (None, None) => {}
                (None, Some(_)) => {
                    entry.installed = None;
                    self.installed[slot] -= 1;
                    changes.push(Change::Remove { prefix });
                }
                (Some(now), before) => {
                    if before.as_ref() != Some(&now) {
                        if before.is_none() {
                            self.installed[slot] += 1;
                        }
                        changes.push(Change::Set {
                            prefix,
                            next_hops: now.0.clone(),
                            ebgp: now.1,
                        });
                        entry.installed = Some(now);
                    }
                }
            }
            if entry.paths.is_empty() {
                self.entries.remove(&prefix);
            }
        }
        changes
    }

    /// Prefixes with at least one path.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Prefixes installed in the FIB, IPv4 and IPv6.
    pub fn installed(&self) -> [usize; 2] {
        self.installed
    }

    /// The paths for `prefix`, best first.
    pub fn paths(&self, prefix: &IpNet, peers: &[PeerFacts]) -> Vec<Path> {
        let mut paths = self
            .entries
            .get(prefix)
            .map(|e| e.paths.clone())
            .unwrap_or_default();
        paths.sort_by(|a, b| compare(a, b, peers));
        paths
    }

    /// Every prefix with its paths, best first (for `show bgp routes`).
    pub fn all(&self, peers: &[PeerFacts]) -> Vec<(IpNet, Vec<Path>)> {
        let mut out: Vec<(IpNet, Vec<Path>)> = self
            .entries
            .iter()
            .map(|(k, e)| {
                let mut p = e.paths.clone();
                p.sort_by(|a, b| compare(a, b, peers));
                (*k, p)
            })
            .collect();
        out.sort_by_key(|e| e.0);
        out
    }
}

/// The best path's next hops (with the multipath set) and whether it is external.
fn select(paths: &[Path], peers: &[PeerFacts], multipath: usize) -> Option<(Vec<IpAddr>, bool)> {
    let best = paths.iter().min_by(|a, b| compare(a, b, peers))?;
    let ebgp = facts(peers, best.peer).ebgp;
    let mut hops = vec![best.next_hop];
    if multipath > 1 {
        let mut others: Vec<&Path> = paths
            .iter()
            .filter(|p| p.peer != best.peer && equal_cost(p, best, peers))
            .collect();
        others.sort_by(|a, b| compare(a, b, peers));
        for p in others {
            if hops.len() >= multipath {
                break;
            }
            if !hops.contains(&p.next_hop) {
                hops.push(p.next_hop);
            }
        }
        hops.sort();
    }
    Some((hops, ebgp))
}

fn facts(peers: &[PeerFacts], id: PeerId) -> PeerFacts {
    peers.get(id as usize).copied().unwrap_or(PeerFacts {
        ebgp: false,
        router_id: Ipv4Addr::BROADCAST,
        address: IpAddr::V4(Ipv4Addr::BROADCAST),
    })
}

fn local_pref(a: &Attributes) -> u32 {
    a.local_pref.unwrap_or(100)
}

/// Steps 1-5 of the decision process.
fn compare_cost(a: &Path, b: &Path, peers: &[PeerFacts]) -> Ordering {
    let (x, y) = (&*a.attributes, &*b.attributes);
    let (fa, fb) = (facts(peers, a.peer), facts(peers, b.peer));
    local_pref(y)
        .cmp(&local_pref(x))
        .then(x.path_len().cmp(&y.path_len()))
        .then(x.origin.cmp(&y.origin))
        .then_with(|| {
            if x.first_as() == y.first_as() {
                x.med.unwrap_or(0).cmp(&y.med.unwrap_or(0))
            } else {
                Ordering::Equal
            }
        })
        .then(fb.ebgp.cmp(&fa.ebgp))
}

fn equal_cost(a: &Path, b: &Path, peers: &[PeerFacts]) -> bool {
    compare_cost(a, b, peers) == Ordering::Equal
}

/// The full decision process; `Less` means `a` is better.
pub fn compare(a: &Path, b: &Path, peers: &[PeerFacts]) -> Ordering {
    let (fa, fb) = (facts(peers, a.peer), facts(peers, b.peer));
    let id = |p: &Path, f: PeerFacts| p.attributes.originator_id.unwrap_or(f.router_id);
    compare_cost(a, b, peers)
        .then(id(a, fa).cmp(&id(b, fb)))
        .then(fa.address.cmp(&fb.address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Segment;

    fn peers() -> Vec<PeerFacts> {
        (0..4)
            .map(|i| PeerFacts {
                ebgp: i != 3,
                router_id: Ipv4Addr::new(10, 0, 0, 10 - i as u8),
                address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + i as u8)),
            })
            .collect()
    }

    fn path(peer: PeerId, asns: &[u32], f: impl FnOnce(&mut Attributes)) -> Path {
        let mut a = Attributes {
            as_path: vec![Segment::Sequence(asns.to_vec())],
            ..Attributes::default()
        };
        f(&mut a);
        Path {
            peer,
            attributes: Arc::new(a),
            next_hop: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + peer as u8)),
            stale: false,
        }
    }

    fn best(paths: &[Path]) -> PeerId {
        paths
            .iter()
            .min_by(|a, b| compare(a, b, &peers()))
            .map(|p| p.peer)
            .unwrap_or(99)
    }

    #[test]
    fn decision_process_steps_in_order() {
        // Local preference beats a shorter path.
        let lp = [
            path(0, &[1], |_| {}),
            path(3, &[1, 2, 3], |a| a.local_pref = Some(200)),
        ];
        assert_eq!(best(&lp), 3);
        // Shorter AS path; an AS_SET counts one.
        let len = [
            path(0, &[1, 2, 3], |_| {}),
            path(1, &[1], |a| a.as_path.push(Segment::Set(vec![7, 8, 9]))),
        ];
        assert_eq!(best(&len), 1);
        // Origin.
        let origin = [
            path(0, &[1], |a| a.origin = 2),
            path(1, &[1], |a| a.origin = 0),
        ];
        assert_eq!(best(&origin), 1);
        // MED only within the same neighbouring AS.
        let med_same = [
            path(0, &[1], |a| a.med = Some(50)),
            path(1, &[1], |a| a.med = Some(10)),
        ];
        assert_eq!(best(&med_same), 1);
        let med_other = [
            path(0, &[1], |a| a.med = Some(50)),
            path(1, &[2], |a| a.med = Some(10)),
        ];
        // Different ASes: MED ignored, router id decides (peer 1 has the lower id).
        assert_eq!(best(&med_other), 1);
        // eBGP over iBGP.
        let kind = [path(3, &[1], |_| {}), path(0, &[1], |_| {})];
        assert_eq!(best(&kind), 0);
        // Router id: peer 2 (10.0.0.8) below peer 0 (10.0.0.10).
        let id = [path(0, &[1], |_| {}), path(2, &[1], |_| {})];
        assert_eq!(best(&id), 2);
    }

    #[test]
    fn multipath_set_and_changes_only_when_they_change() {
        let p = peers();
        let mut rib = Rib::new(4);
        let net: IpNet = "198.18.0.0/24".parse().unwrap();
        rib.announce(net, path(0, &[1], |_| {}));
        rib.announce(net, path(1, &[2], |_| {}));
        // Longer path: not part of the set.
        rib.announce(net, path(2, &[1, 5], |_| {}));
        let changes = rib.take_changes(&p);
        let Change::Set { next_hops, .. } = &changes[0] else {
            panic!("{changes:?}")
        };
        assert_eq!(next_hops.len(), 2);
        // The longer path going changes nothing for the FIB.
        rib.withdraw(net, 2);
        assert!(rib.take_changes(&p).is_empty());
        rib.withdraw(net, 0);
        assert_eq!(
            rib.take_changes(&p),
            vec![Change::Set {
                prefix: net,
                next_hops: vec!["192.0.2.11".parse().unwrap()],
                ebgp: true
            }]
        );
        rib.withdraw_peer(1, false, None);
        assert_eq!(rib.take_changes(&p), vec![Change::Remove { prefix: net }]);
        assert!(rib.is_empty());
    }

    #[test]
    fn stale_paths_stay_until_refreshed_or_swept() {
        let p = peers();
        let mut rib = Rib::new(1);
        let a: IpNet = "198.18.1.0/24".parse().unwrap();
        let b: IpNet = "198.18.2.0/24".parse().unwrap();
        rib.announce(a, path(0, &[1], |_| {}));
        rib.announce(b, path(0, &[1], |_| {}));
        rib.take_changes(&p);
        assert_eq!(rib.mark_stale(0), 2);
        assert!(rib.take_changes(&p).is_empty());
        // The peer is back and re-announces `a` only; End-of-RIB sweeps `b`.
        rib.announce(a, path(0, &[1], |_| {}));
        rib.withdraw_peer(0, true, None);
        assert_eq!(rib.take_changes(&p), vec![Change::Remove { prefix: b }]);
        assert_eq!(rib.len(), 1);
    }
}
