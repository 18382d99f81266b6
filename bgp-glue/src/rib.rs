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
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use smallvec::SmallVec;

use crate::codec::{Attributes, Family};

/// Index of a peer in the speaker's table.
pub type PeerId = u16;

/// One peer's path to a prefix. Sixteen bytes: at a full table there are millions of these.
/// The next hop is not stored but read from the attributes (`Attributes::next_hop_for`);
/// every prefix of an UPDATE shares them.
#[derive(Debug, Clone)]
pub struct Path {
    pub peer: PeerId,
    /// Kept across the peer's graceful restart, until refreshed or the timer ends.
    pub stale: bool,
    pub attributes: Arc<Attributes>,
}

/// What the decision process needs to know about the peer a path came from.
#[derive(Debug, Clone, Copy)]
pub struct PeerFacts {
    pub ebgp: bool,
    pub router_id: Ipv4Addr,
    pub address: IpAddr,
}

/// A route's next hops: one, or an ECMP set. Inline while there is one, so that a full
/// feed's million changes allocate nothing on the heap (each would be freed on the control
/// thread, another arena).
pub type NextHops = SmallVec<[IpAddr; 1]>;

/// A change for the FIB. The RIB does not remember what it last sent: a `Set` may repeat
/// the next hops the FIB already has (the sink makes that a no-op), a `Remove` may name a
/// prefix that was never installed, and a batch may name a prefix more than once (applied
/// in order, the last one counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Install or replace `prefix` with these next hops (one, or an ECMP set).
    Set {
        prefix: IpNet,
        next_hops: NextHops,
        ebgp: bool,
    },
    Remove {
        prefix: IpNet,
    },
}

impl Change {
    pub fn prefix(&self) -> IpNet {
        match self {
            Change::Set { prefix, .. } | Change::Remove { prefix } => *prefix,
        }
    }
}

/// The accepted paths for one prefix; nearly always one, kept inline.
type Paths = SmallVec<[Path; 1]>;

/// Paths per prefix, one ordered map per family so that an IPv4 key is 5 bytes, not 18.
#[derive(Default)]
struct Table {
    v4: BTreeMap<Ipv4Net, Paths>,
    v6: BTreeMap<Ipv6Net, Paths>,
}

impl Table {
    fn get(&self, net: &IpNet) -> Option<&Paths> {
        match net {
            IpNet::V4(n) => self.v4.get(n),
            IpNet::V6(n) => self.v6.get(n),
        }
    }

    fn get_mut(&mut self, net: &IpNet) -> Option<&mut Paths> {
        match net {
            IpNet::V4(n) => self.v4.get_mut(n),
            IpNet::V6(n) => self.v6.get_mut(n),
        }
    }

    fn get_or_default(&mut self, net: IpNet) -> &mut Paths {
        match net {
            IpNet::V4(n) => self.v4.entry(n).or_default(),
            IpNet::V6(n) => self.v6.entry(n).or_default(),
        }
    }

    fn remove(&mut self, net: &IpNet) {
        match net {
            IpNet::V4(n) => self.v4.remove(n),
            IpNet::V6(n) => self.v6.remove(n),
        };
    }

    /// Every prefix of `family` (both when `None`), in prefix order, IPv4 first.
    fn iter_mut(
        &mut self,
        family: Option<Family>,
    ) -> impl Iterator<Item = (IpNet, &mut Paths)> + '_ {
        let v4 = family.is_none_or(|f| f == Family::Ipv4);
        let v6 = family.is_none_or(|f| f == Family::Ipv6);
        let a = self.v4.iter_mut().filter(move |_| v4);
        let b = self.v6.iter_mut().filter(move |_| v6);
        a.map(|(n, p)| (IpNet::V4(*n), p))
            .chain(b.map(|(n, p)| (IpNet::V6(*n), p)))
    }

    /// Every prefix after `after` (from the first when `None`), in `iter`'s order.
    fn iter_after(&self, after: Option<IpNet>) -> Box<dyn Iterator<Item = (IpNet, &Paths)> + '_> {
        use std::ops::Bound::{Excluded, Unbounded};
        match after {
            None => Box::new(self.iter()),
            Some(IpNet::V4(n)) => Box::new(
                self.v4
                    .range((Excluded(n), Unbounded))
                    .map(|(n, p)| (IpNet::V4(*n), p))
                    .chain(self.v6.iter().map(|(n, p)| (IpNet::V6(*n), p))),
            ),
            Some(IpNet::V6(n)) => Box::new(
                self.v6
                    .range((Excluded(n), Unbounded))
                    .map(|(n, p)| (IpNet::V6(*n), p)),
            ),
        }
    }

    fn iter(&self) -> impl Iterator<Item = (IpNet, &Paths)> + '_ {
        let a = self.v4.iter().map(|(n, p)| (IpNet::V4(*n), p));
        a.chain(self.v6.iter().map(|(n, p)| (IpNet::V6(*n), p)))
    }

    fn len(&self) -> [usize; 2] {
        [self.v4.len(), self.v6.len()]
    }
}

pub struct Rib {
    entries: Table,
    multipath: usize,
    /// Prefixes touched since the last `take_changes`, to select again then.
    dirty: Vec<IpNet>,
    /// Prefixes that had no path until one was announced since the last `take_changes`,
    /// with that path: their selection needs no lookup (a full table arrives this way).
    fresh: Vec<(IpNet, Path)>,
}

impl Rib {
    pub fn new(multipath: usize) -> Rib {
        Rib {
            entries: Table::default(),
            multipath: multipath.max(1),
            dirty: Vec::new(),
            fresh: Vec::new(),
        }
    }

    /// Offers `path` for `prefix`, replacing the same peer's previous one. Returns whether
    /// the peer had no path for it before (for prefix counting).
    pub fn announce(&mut self, prefix: IpNet, path: Path) -> bool {
        let paths = self.entries.get_or_default(prefix);
        if paths.is_empty() {
            paths.push(path.clone());
            self.fresh.push((prefix, path));
            return true;
        }
        let new = match paths.iter_mut().find(|p| p.peer == path.peer) {
            Some(old) => {
                *old = path;
                false
            }
            None => {
                paths.push(path);
                true
            }
        };
        self.dirty.push(prefix);
        new
    }

    /// Withdraws `peer`'s path for `prefix`; returns whether it had one.
    pub fn withdraw(&mut self, prefix: IpNet, peer: PeerId) -> bool {
        let Some(paths) = self.entries.get_mut(&prefix) else {
            return false;
        };
        let before = paths.len();
        paths.retain(|p| p.peer != peer);
        let removed = paths.len() != before;
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
        for (prefix, paths) in self.entries.iter_mut(family) {
            let before = paths.len();
            paths.retain(|p| p.peer != peer || (only_stale && !p.stale));
            if paths.len() != before {
                removed[usize::from(matches!(prefix, IpNet::V6(_)))] += before - paths.len();
                self.dirty.push(prefix);
            }
        }
        removed
    }

    /// Marks every path of `peer` stale (its session went down and it can restart
    /// gracefully). Forwarding does not change.
    pub fn mark_stale(&mut self, peer: PeerId) -> usize {
        let mut n = 0;
        for (_, paths) in self.entries.iter_mut(None) {
            for p in paths.iter_mut().filter(|p| p.peer == peer) {
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
        let mut changes = Vec::with_capacity(self.fresh.len() + dirty.len());
        // The fresh first: a fresh prefix touched again since is also dirty, and its
        // selection from the table as it is now comes after and wins.
        for (prefix, path) in self.fresh.drain(..) {
            let selected = select(&prefix, std::slice::from_ref(&path), peers, self.multipath);
            if let Some((next_hops, ebgp)) = selected {
                changes.push(Change::Set {
                    prefix,
                    next_hops,
                    ebgp,
                });
            }
        }
        self.fresh.shrink_to(4096);
        for prefix in dirty {
            let Some(paths) = self.entries.get(&prefix) else {
                continue;
            };
            let selected = select(&prefix, paths, peers, self.multipath);
            if paths.is_empty() {
                self.entries.remove(&prefix);
            }
            changes.push(match selected {
                None => Change::Remove { prefix },
                Some((next_hops, ebgp)) => Change::Set {
                    prefix,
                    next_hops,
                    ebgp,
                },
            });
        }
        self.dirty.shrink_to(4096);
        changes
    }

    /// Prefixes with at least one path.
    pub fn len(&self) -> usize {
        let [v4, v6] = self.entries.len();
        v4 + v6
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Prefixes installed in the FIB, IPv4 and IPv6: every prefix with a path has a best
    /// one (prefixes left without paths go at the next `take_changes`).
    pub fn installed(&self) -> [usize; 2] {
        self.entries.len()
    }

    /// The paths for `prefix`, best first.
    pub fn paths(&self, prefix: &IpNet, peers: &[PeerFacts]) -> Vec<Path> {
        let mut paths = self
            .entries
            .get(prefix)
            .map(|p| p.to_vec())
            .unwrap_or_default();
        paths.sort_by(|a, b| compare(a, b, peers));
        paths
    }

    /// One page of `show bgp routes`: from the prefix after `after`, at most `max`
    /// prefixes looked at, those `admit` takes with their paths (best first), and the last
    /// prefix looked at when the table goes on (`None`: the listing is complete).
    pub fn page(
        &self,
        after: Option<IpNet>,
        max: usize,
        peers: &[PeerFacts],
        admit: impl Fn(&IpNet, &[Path]) -> bool,
    ) -> (Vec<(IpNet, Vec<Path>)>, Option<IpNet>) {
        let mut rows = Vec::new();
        let mut last = None;
        for (seen, (net, paths)) in self.entries.iter_after(after).enumerate() {
            if seen == max {
                return (rows, last);
            }
            last = Some(net);
            if admit(&net, paths) {
                let mut p = paths.to_vec();
                p.sort_by(|a, b| compare(a, b, peers));
                rows.push((net, p));
            }
        }
        (rows, None)
    }
}

/// The best path's next hops (with the multipath set) and whether it is external; `None`
/// when no path is left.
fn select(
    prefix: &IpNet,
    paths: &[Path],
    peers: &[PeerFacts],
    multipath: usize,
) -> Option<(NextHops, bool)> {
    let best = paths.iter().min_by(|a, b| compare(a, b, peers))?;
    let ebgp = facts(peers, best.peer).ebgp;
    let mut hops: NextHops = best.attributes.next_hop_for(prefix).into_iter().collect();
    if multipath > 1 {
        let mut others: Vec<&Path> = paths
            .iter()
            .filter(|p| p.peer != best.peer && equal_cost(p, best, peers))
            .collect();
        others.sort_by(|a, b| compare(a, b, peers));
        for hop in others
            .iter()
            .filter_map(|p| p.attributes.next_hop_for(prefix))
        {
            if hops.len() >= multipath {
                break;
            }
            if !hops.contains(&hop) {
                hops.push(hop);
            }
        }
        hops.sort();
    }
    // The speaker accepts only paths with a next hop; an empty set would be a bug there.
    (!hops.is_empty()).then_some((hops, ebgp))
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
    use crate::codec::Segment;

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
        a.next_hop = Some(Ipv4Addr::new(192, 0, 2, 10 + peer as u8));
        f(&mut a);
        Path {
            peer,
            attributes: Arc::new(a),
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
    fn multipath_set_follows_equal_cost_paths() {
        let p = peers();
        let mut rib = Rib::new(4);
        let net: IpNet = "198.18.0.0/24".parse().unwrap();
        rib.announce(net, path(0, &[1], |_| {}));
        rib.announce(net, path(1, &[2], |_| {}));
        // Longer path: not part of the set.
        rib.announce(net, path(2, &[1, 5], |_| {}));
        // A batch may name a prefix more than once (here: first fresh with one path, then
        // selected again); the last change counts.
        let changes = rib.take_changes(&p);
        let Some(last @ Change::Set { next_hops, .. }) = changes.last() else {
            panic!("{changes:?}")
        };
        assert_eq!(next_hops.len(), 2);
        // The longer path going leaves the set as it was (the sink sees the same hops).
        rib.withdraw(net, 2);
        assert_eq!(rib.take_changes(&p), vec![last.clone()]);
        rib.withdraw(net, 0);
        assert_eq!(
            rib.take_changes(&p),
            vec![Change::Set {
                prefix: net,
                next_hops: smallvec::smallvec!["192.0.2.11".parse().unwrap()],
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
        let refreshed = Change::Set {
            prefix: a,
            next_hops: smallvec::smallvec!["192.0.2.10".parse().unwrap()],
            ebgp: true,
        };
        assert_eq!(
            rib.take_changes(&p),
            vec![refreshed, Change::Remove { prefix: b }]
        );
        assert_eq!(rib.len(), 1);
    }
}
