//! The control-side RIB: every route from every source, and the one winner per prefix that
//! reaches the FIB.
//!
//! Each source (connected, static, BGP, tunnel) offers candidates with an administrative
//! distance; the lowest distance wins (ties: the source offered first stays). A route
//! either names its next-hop index directly or names a gateway address to be resolved
//! recursively through the non-recursive routes (a BGP next hop resolved through a connected
//! or static route). When a route under a gateway changes, every route through that gateway
//! is re-resolved; a route whose gateway no longer resolves leaves the FIB until it does.

use std::collections::{BTreeMap, BTreeSet};

use smallvec::SmallVec;

use crate::{Family, Fib, FibError};

/// Where a route came from. Lower default distance wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// Our own addresses (delivered locally, never forwarded).
    Local,
    Connected,
    /// A host route to a resolved neighbour on a connected network.
    Neighbor,
    Static,
    Tunnel,
    /// Routes zebra (FRR) chose, over FPM.
    Fpm,
    Ebgp,
    Ibgp,
}

impl Source {
    /// Administrative distances as on common routers (Cisco/FRR values).
    pub fn default_distance(self) -> u8 {
        match self {
            Source::Local => 0,
            Source::Connected => 0,
            Source::Neighbor => 0,
            Source::Static => 1,
            Source::Tunnel => 5,
            // Already FRR's best: above static and tunnel routes, below tern's own BGP
            // should both run (they should not).
            Source::Fpm => 10,
            Source::Ebgp => 20,
            Source::Ibgp => 200,
        }
    }

    pub const ALL: [Source; 8] = [
        Source::Local,
        Source::Connected,
        Source::Neighbor,
        Source::Static,
        Source::Tunnel,
        Source::Fpm,
        Source::Ebgp,
        Source::Ibgp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Connected => "connected",
            Source::Neighbor => "neighbor",
            Source::Static => "static",
            Source::Tunnel => "tunnel",
            Source::Fpm => "fpm",
            Source::Ebgp => "ebgp",
            Source::Ibgp => "ibgp",
        }
    }
}

/// How a route reaches its next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via<A> {
    /// A next-hop table index, already known (connected, static with a resolved neighbour).
    NextHop(u32),
    /// A gateway address to resolve through the non-recursive routes.
    Recursive(A),
}

impl<A> Via<A> {
    /// The same route with its gateway converted (e.g. to `IpAddr`).
    pub fn map<B>(self, f: impl FnOnce(A) -> B) -> Via<B> {
        match self {
            Via::NextHop(nh) => Via::NextHop(nh),
            Via::Recursive(gw) => Via::Recursive(f(gw)),
        }
    }

    /// The same route with its gateway converted where `f` can (e.g. an `IpAddr` to the
    /// one family a table holds); `None` when it cannot.
    pub fn try_map<B>(self, f: impl FnOnce(A) -> Option<B>) -> Option<Via<B>> {
        Some(match self {
            Via::NextHop(nh) => Via::NextHop(nh),
            Via::Recursive(gw) => Via::Recursive(f(gw)?),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<A> {
    pub source: Source,
    pub distance: u8,
    pub via: Via<A>,
}

/// What `show routes` prints for a prefix: the winner and where it points now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed<N, A> {
    pub net: N,
    pub route: Route<A>,
    /// The FIB next hop, `None` while a recursive gateway does not resolve.
    pub next_hop: Option<u32>,
}

/// The routes offered for one prefix, inline while there is one.
type Candidates<A> = SmallVec<[Route<A>; 1]>;

/// What [`Rib::add`] did.
#[derive(Debug)]
pub struct Added<A> {
    /// The same source's route it replaced.
    pub replaced: Option<Route<A>>,
    /// The evicted source's route it withdrew.
    pub evicted: Option<Route<A>>,
    /// Whether the FIB took the change.
    pub installed: Result<(), FibError>,
}

/// The winner among a prefix's routes: the lowest administrative distance.
fn best<A: Copy>(list: &[Route<A>]) -> Option<Route<A>> {
    list.iter().copied().min_by_key(|r| r.distance)
}

/// The prefixes routed through one gateway, and what the gateway resolves to now.
type GatewayUsers<F> = (BTreeSet<<F as Family>::Net>, Option<u32>);

pub struct Rib<F: Family>
where
    F::Addr: Ord,
{
    /// Every source's route per prefix. Nearly every prefix has one, kept inline: at a full
    /// BGP table a heap allocation per prefix would cost more than the FIB itself.
    candidates: BTreeMap<F::Net, Candidates<F::Addr>>,
    /// Gateway → the prefixes whose winner resolves through it, and its resolution.
    gateways: BTreeMap<F::Addr, GatewayUsers<F>>,
    fib: Fib<F>,
    /// Winning routes per source (indexed by `Source as usize`), kept as winners change.
    winners_by_source: [usize; Source::ALL.len()],
    /// How many times a prefix's winner changed (what reached the FIB).
    winner_changes: u64,
}

impl<F: Family> Rib<F>
where
    F::Addr: Ord,
{
    pub fn new(fib: Fib<F>) -> Self {
        Rib {
            candidates: BTreeMap::new(),
            gateways: BTreeMap::new(),
            fib,
            winners_by_source: [0; Source::ALL.len()],
            winner_changes: 0,
        }
    }

    pub fn fib(&self) -> &Fib<F> {
        &self.fib
    }

    /// Offers (or replaces) `source`'s route for `net`, and withdraws `evict`'s route for
    /// it if there is one (a BGP prefix moving between eBGP and iBGP). One lookup in the
    /// prefix map for all of it: at a full table each is a walk of cache misses, and a BGP
    /// feed offers a million routes. The RIB keeps the route even when the FIB refuses it.
    pub fn add(
        &mut self,
        net: F::Net,
        route: Route<F::Addr>,
        evict: Option<Source>,
    ) -> Added<F::Addr> {
        let list = self.candidates.entry(net).or_default();
        let before = best(list);
        let replaced = match list.iter_mut().find(|r| r.source == route.source) {
            Some(existing) => Some(std::mem::replace(existing, route)),
            None => {
                list.push(route);
                None
            }
        };
        let evicted = evict
            .and_then(|e| list.iter().position(|r| r.source == e))
            .map(|at| list.remove(at));
        let after = best(list);
        Added {
            replaced,
            evicted,
            installed: self.changed(net, before, after),
        }
    }

    /// Withdraws `source`'s route for `net`; returns it if there was one.
    pub fn remove(
        &mut self,
        net: F::Net,
        source: Source,
    ) -> Result<Option<Route<F::Addr>>, FibError> {
        let Some(list) = self.candidates.get_mut(&net) else {
            return Ok(None);
        };
        let Some(at) = list.iter().position(|r| r.source == source) else {
            return Ok(None);
        };
        let before = best(list);
        let removed = list.remove(at);
        let after = best(list);
        if list.is_empty() {
            self.candidates.remove(&net);
        }
        self.changed(net, before, after)?;
        Ok(Some(removed))
    }

    /// The winning routes of the prefixes from `start` on, in prefix order: a listing
    /// resumes here page by page, so none is built whole.
    pub fn installed_from(
        &self,
        start: std::ops::Bound<&F::Net>,
    ) -> impl Iterator<Item = Installed<F::Net, F::Addr>> + '_ {
        self.candidates
            .range((start, std::ops::Bound::Unbounded))
            .filter_map(|(net, _)| self.get(net))
    }

    /// The winning route for exactly `net`, if there is one.
    pub fn get(&self, net: &F::Net) -> Option<Installed<F::Net, F::Addr>> {
        let route = self.winner(net)?;
        Some(Installed {
            net: *net,
            route,
            next_hop: self.fib.get(net),
        })
    }

    /// How many times a prefix's winning route changed (offers that changed nothing, such
    /// as a route offered again as it was, do not count).
    pub fn winner_changes(&self) -> u64 {
        self.winner_changes
    }

    /// How many prefixes `source`'s route wins (constant time).
    pub fn winners(&self, source: Source) -> usize {
        self.winners_by_source[source as usize]
    }

    fn winner(&self, net: &F::Net) -> Option<Route<F::Addr>> {
        best(self.candidates.get(net)?)
    }

    /// Brings the FIB (and the gateways' users) from winner `before` to winner `after`.
    fn changed(
        &mut self,
        net: F::Net,
        before: Option<Route<F::Addr>>,
        after: Option<Route<F::Addr>>,
    ) -> Result<(), FibError> {
        if before == after {
            return Ok(());
        }
        self.winner_changes += 1;
        if let Some(b) = before {
            self.winners_by_source[b.source as usize] -= 1;
        }
        if let Some(a) = after {
            self.winners_by_source[a.source as usize] += 1;
        }
        if let Some(Route {
            via: Via::Recursive(gw),
            ..
        }) = before
        {
            if let Some((users, _)) = self.gateways.get_mut(&gw) {
                users.remove(&net);
                if users.is_empty() {
                    self.gateways.remove(&gw);
                }
            }
        }
        match after {
            None => {
                self.fib.remove(net)?;
            }
            Some(Route {
                via: Via::NextHop(nh),
                ..
            }) => {
                self.fib.insert(net, nh)?;
            }
            Some(Route {
                via: Via::Recursive(gw),
                ..
            }) => {
                let resolved = self.resolve(gw);
                let (users, cached) = self
                    .gateways
                    .entry(gw)
                    .or_insert_with(|| (BTreeSet::new(), resolved));
                users.insert(net);
                *cached = resolved;
                match resolved {
                    Some(nh) => self.fib.insert(net, nh)?,
                    None => self.fib.remove(net)?,
                };
            }
        }
        let direct_changed = matches!(
            before,
            Some(Route {
                via: Via::NextHop(_),
                ..
            })
        ) || matches!(
            after,
            Some(Route {
                via: Via::NextHop(_),
                ..
            })
        );
        if direct_changed {
            self.reresolve()?;
        }
        Ok(())
    }

    /// The next hop of the longest non-recursive winner covering `gw`.
    fn resolve(&self, gw: F::Addr) -> Option<u32> {
        let key = F::addr_key(gw);
        let bits = <F::Key as crate::trie::Key>::BITS;
        (0..=bits).rev().find_map(|len| {
            let net = F::key_net(crate::trie::Key::masked(key, len), len);
            match self.winner(&net)?.via {
                Via::NextHop(nh) => Some(nh),
                Via::Recursive(_) => None,
            }
        })
    }

    fn reresolve(&mut self) -> Result<(), FibError> {
        let gateways: Vec<F::Addr> = self.gateways.keys().copied().collect();
        for gw in gateways {
            let resolved = self.resolve(gw);
            let Some((users, cached)) = self.gateways.get_mut(&gw) else {
                continue;
            };
            if *cached == resolved {
                continue;
            }
            *cached = resolved;
            let users: Vec<F::Net> = users.iter().copied().collect();
            for net in users {
                match resolved {
                    Some(nh) => self.fib.insert(net, nh)?,
                    None => self.fib.remove(net)?,
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Qsbr, V4};
    use std::net::Ipv4Addr;

    fn route(source: Source, via: Via<Ipv4Addr>) -> Route<Ipv4Addr> {
        Route {
            source,
            distance: source.default_distance(),
            via,
        }
    }

    #[test]
    fn lowest_distance_wins_and_recursive_routes_follow_their_gateway() {
        let mut rib = Rib::<V4>::new(Fib::with_groups(Qsbr::new(), 64).expect("fib"));
        let lan = "192.0.2.0/24".parse().expect("net");
        let far = "198.18.0.0/15".parse().expect("net");
        let gw = Ipv4Addr::new(192, 0, 2, 1);
        let probe = Ipv4Addr::new(198, 19, 1, 1);

        rib.add(far, route(Source::Ebgp, Via::Recursive(gw)), None)
            .installed
            .expect("add");
        assert_eq!(
            rib.fib().lookup(probe),
            None,
            "gateway does not resolve yet"
        );

        rib.add(lan, route(Source::Connected, Via::NextHop(3)), None)
            .installed
            .expect("add");
        assert_eq!(
            rib.fib().lookup(probe),
            Some(3),
            "resolved through the connected route"
        );

        rib.add(far, route(Source::Static, Via::NextHop(9)), None)
            .installed
            .expect("add");
        assert_eq!(
            rib.fib().lookup(probe),
            Some(9),
            "static (1) beats eBGP (20)"
        );
        rib.remove(far, Source::Static).expect("remove");
        assert_eq!(rib.fib().lookup(probe), Some(3), "eBGP takes over again");

        rib.add(lan, route(Source::Connected, Via::NextHop(4)), None)
            .installed
            .expect("add");
        assert_eq!(
            rib.fib().lookup(probe),
            Some(4),
            "re-resolved when the route under it changed"
        );

        rib.remove(lan, Source::Connected).expect("remove");
        assert_eq!(
            rib.fib().lookup(probe),
            None,
            "gateway gone: route leaves the FIB"
        );
        let shown: Vec<_> = rib.installed_from(std::ops::Bound::Unbounded).collect();
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].next_hop, None);
    }

    #[test]
    fn winners_are_counted_per_source() {
        let mut rib = Rib::<V4>::new(Fib::with_groups(Qsbr::new(), 64).expect("fib"));
        let a = "198.18.0.0/24".parse().expect("net");
        let b = "198.18.1.0/24".parse().expect("net");
        rib.add(a, route(Source::Ebgp, Via::NextHop(1)), None)
            .installed
            .expect("add");
        rib.add(b, route(Source::Ebgp, Via::NextHop(1)), None)
            .installed
            .expect("add");
        // A replacement by the same source changes nothing in the counts.
        rib.add(b, route(Source::Ebgp, Via::NextHop(2)), None)
            .installed
            .expect("add");
        assert_eq!(rib.winners(Source::Ebgp), 2);
        rib.add(a, route(Source::Static, Via::NextHop(3)), None)
            .installed
            .expect("add");
        assert_eq!(
            (rib.winners(Source::Ebgp), rib.winners(Source::Static)),
            (1, 1),
            "static wins a"
        );
        rib.remove(a, Source::Static).expect("remove");
        rib.remove(b, Source::Ebgp).expect("remove");
        assert_eq!(
            (rib.winners(Source::Ebgp), rib.winners(Source::Static)),
            (1, 0)
        );
        rib.remove(a, Source::Ebgp).expect("remove");
        assert!(Source::ALL.iter().all(|&s| rib.winners(s) == 0));
    }
}
