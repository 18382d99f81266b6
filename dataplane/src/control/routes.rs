//! Route programming: static routes, routes fed by BGP and zebra with the next-hop groups
//! they share, adjacencies and the tunnels stacked on them.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use lpm::rib::{Route, Source, Via};

use crate::adjacency::{self, Adjacency};
use crate::config::StaticRoute;
use crate::control_msg::Feed;

use super::Control;

impl Feed {
    /// The RIB source a change goes in as, and the feed's other source the prefix leaves
    /// (an eBGP route replacing an iBGP one).
    pub(super) fn sources(self, ebgp: bool) -> (Source, Option<Source>) {
        match (self, ebgp) {
            (Feed::Bgp, true) => (Source::Ebgp, Some(Source::Ibgp)),
            (Feed::Bgp, false) => (Source::Ibgp, Some(Source::Ebgp)),
            (Feed::Fpm, _) => (Source::Fpm, None),
        }
    }
}

/// What offering a route to the RIB did: where the routes it replaced (same source) and
/// evicted (the other BGP source) pointed, and whether the FIB took it (the RIB holds the
/// route either way).
pub(super) struct Offered {
    pub(super) replaced: Option<Via<IpAddr>>,
    pub(super) evicted: Option<Via<IpAddr>>,
    pub(super) installed: Result<(), String>,
}

impl Offered {
    pub(super) fn of<A>(added: lpm::rib::Added<A>, widen: impl Fn(A) -> IpAddr + Copy) -> Offered {
        Offered {
            replaced: added.replaced.map(|r| r.via.map(widen)),
            evicted: added.evicted.map(|r| r.via.map(widen)),
            installed: added.installed.map_err(|e| e.to_string()),
        }
    }
}

/// The adjacency fed routes with the same next hops share: a neighbour's own adjacency for
/// one on-link next hop, an ECMP adjacency for several, none for a next hop resolved
/// recursively through the FIB. `users` counts the routes in the RIB that point at it.
pub(super) struct NextHopGroup {
    pub(super) via: GroupVia,
    pub(super) users: usize,
}

#[derive(Clone, Copy)]
pub(super) enum GroupVia {
    /// A neighbour's adjacency (not owned by the group).
    Neighbor(u32),
    /// An ECMP adjacency the group owns.
    Ecmp(u32),
    Recursive(IpAddr),
}

impl GroupVia {
    pub(super) fn route_via(self) -> Via<IpAddr> {
        match self {
            GroupVia::Neighbor(a) | GroupVia::Ecmp(a) => Via::NextHop(a),
            GroupVia::Recursive(gw) => Via::Recursive(gw),
        }
    }
}

impl Control {
    pub(super) fn allocate(&mut self, adj: Adjacency) -> Result<u32, String> {
        let index = match self.free_adjacencies.pop() {
            Some(i) => i,
            None if self.next_adjacency < adjacency::CAPACITY => {
                self.next_adjacency += 1;
                self.next_adjacency - 1
            }
            None => return Err("adjacency table full".into()),
        };
        self.adjacencies.set(index, adj);
        Ok(index)
    }

    pub(super) fn release(&mut self, index: u32) {
        self.adjacencies.clear(index);
        self.free_adjacencies.push(index);
    }

    /// Offers a route to the RIB and, through it, the FIB, withdrawing `evict`'s route for
    /// the prefix in the same step (see [`Offered`]). A next hop of the wrong family is
    /// refused before the RIB sees it. The tunnel adjacencies are not re-stacked here:
    /// [`Control::add`] does it per route, a BGP batch once at its end.
    pub(super) fn offer(
        &mut self,
        net: IpNet,
        source: Source,
        via: Via<IpAddr>,
        evict: Option<Source>,
    ) -> Result<Offered, String> {
        let distance = source.default_distance();
        let other_family = || format!("{net}: a next hop of the other family does not resolve");
        Ok(match net {
            IpNet::V4(n) => {
                let via = via.try_map(|g| match g {
                    IpAddr::V4(g) => Some(g),
                    IpAddr::V6(_) => None,
                });
                let via = via.ok_or_else(other_family)?;
                let route = Route {
                    source,
                    distance,
                    via,
                };
                Offered::of(self.rib4.add(n, route, evict), IpAddr::V4)
            }
            IpNet::V6(n) => {
                let via = via.try_map(|g| match g {
                    IpAddr::V6(g) => Some(g),
                    IpAddr::V4(_) => None,
                });
                let via = via.ok_or_else(other_family)?;
                let route = Route {
                    source,
                    distance,
                    via,
                };
                Offered::of(self.rib6.add(n, route, evict), IpAddr::V6)
            }
        })
    }

    /// Withdraws `source`'s route for `net` (tunnels not re-stacked, as for `offer`);
    /// returns where it pointed, if there was one.
    pub(super) fn withdraw(
        &mut self,
        net: IpNet,
        source: Source,
    ) -> Result<Option<Via<IpAddr>>, String> {
        let result = match net {
            IpNet::V4(n) => self
                .rib4
                .remove(n, source)
                .map(|r| r.map(|r| r.via.map(IpAddr::V4))),
            IpNet::V6(n) => self
                .rib6
                .remove(n, source)
                .map(|r| r.map(|r| r.via.map(IpAddr::V6))),
        };
        result.map_err(|e| e.to_string())
    }

    pub(super) fn add(&mut self, net: IpNet, source: Source, adjacency: u32) -> Result<(), String> {
        self.offer(net, source, Via::NextHop(adjacency), None)?
            .installed?;
        self.restack_tunnels();
        Ok(())
    }

    pub(super) fn remove(&mut self, net: IpNet, source: Source) -> Result<bool, String> {
        let removed = self.withdraw(net, source)?;
        self.restack_tunnels();
        Ok(removed.is_some())
    }

    /// Stacks every tunnel adjacency on the current FIB next hop of its remote. Runs after
    /// every route change: one lookup per tunnel, and a write only where the answer moved.
    pub(super) fn restack_tunnels(&mut self) {
        for (t, &adjacency) in self.tunnel_adjacency.iter().enumerate() {
            let Some(tunnel) = self.tunnels.get(t as u16) else {
                continue;
            };
            let via = match tunnel.spec.remote {
                IpAddr::V4(a) => self.rib4.fib().lookup(a),
                IpAddr::V6(a) => self.rib6.fib().lookup(a),
            }
            .unwrap_or(lpm::NO_ROUTE);
            let stacked = Adjacency::Tunnel {
                tunnel: t as u16,
                via,
            };
            if self.adjacencies.get(adjacency) != Some(&stacked) {
                self.adjacencies.set(adjacency, stacked);
            }
        }
    }

    /// Installs a static route (as `[[route]]` in the config or `tern ctl route add`).
    pub fn add_static(&mut self, route: StaticRoute) -> Result<(), String> {
        let adjacency = match (route.via, route.interface) {
            _ if route.tunnel.is_some() => route
                .tunnel
                .and_then(|t| self.tunnel_adjacency.get(t).copied())
                .ok_or("no such tunnel")?,
            (Some(gw), _) => {
                let own = self.ports.iter().any(|p| match gw {
                    IpAddr::V4(a) => p.owns_v4(a),
                    IpAddr::V6(a) => p.owns_v6(a),
                });
                if own {
                    return Err(format!("{gw} is tern's own address"));
                }
                let port = route
                    .interface
                    .map(|p| p as u16)
                    .or_else(|| self.port_for(gw))
                    .ok_or_else(|| format!("gateway {gw} is not on a connected network"))?;
                let n = self.neighbor(port, gw)?;
                n.gateway_of += 1;
                let adjacency = n.adjacency;
                self.ensure_host_route(gw)?;
                adjacency
            }
            (None, Some(port)) => self.glean.get(port).copied().ok_or("no such interface")?,
            (None, None) => return Err("a route needs a gateway or an interface".into()),
        };
        self.add(route.prefix, Source::Static, adjacency)?;
        // A replaced route no longer holds its old gateway.
        if let Some(gw) = self
            .statics
            .insert(route.prefix, route)
            .and_then(|old| old.via)
        {
            if let Some(n) = self.neighbors.get_mut(&gw) {
                n.gateway_of = n.gateway_of.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// Installs, replaces or removes one route from a feed (the caller re-stacks the
    /// tunnels once per batch). A `Set` that repeats what the RIB has is a lookup and no
    /// write.
    pub(super) fn apply_fed(&mut self, feed: Feed, change: bgp_glue::Change) -> Result<(), String> {
        match change {
            bgp_glue::Change::Set {
                prefix,
                next_hops,
                ebgp,
            } => {
                let (source, other) = feed.sources(ebgp);
                let via = self.join_group(&next_hops)?;
                // Each fed route in the RIB holds one share of its group: give back the one
                // it no longer holds (the old group, or the new one if the RIB refused it).
                let offered = match self.offer(prefix, source, via, other) {
                    Ok(offered) => offered,
                    Err(refused) => {
                        self.leave_group(via);
                        return Err(refused);
                    }
                };
                // The replaced route's share, and the evicted other source's.
                for v in [offered.replaced, offered.evicted].into_iter().flatten() {
                    self.leave_group(v);
                }
                offered.installed
            }
            bgp_glue::Change::Remove { prefix } => {
                let (source, other) = feed.sources(true);
                self.drop_fed_route(prefix, source)?;
                match other {
                    Some(other) => self.drop_fed_route(prefix, other),
                    None => Ok(()),
                }
            }
        }
    }

    pub(super) fn drop_fed_route(&mut self, prefix: IpNet, source: Source) -> Result<(), String> {
        if let Some(via) = self.withdraw(prefix, source)? {
            self.leave_group(via);
        }
        Ok(())
    }

    /// A share of the group for a next-hop set, the group created on first use. The set is
    /// normalised to what forwarding uses (its on-link next hops, else its first one, which
    /// resolves recursively), so that one group never has two sets and the via a route
    /// holds names its group.
    pub(super) fn join_group(&mut self, hops: &[IpAddr]) -> Result<Via<IpAddr>, String> {
        // On the stack: a full feed joins a group per route, nearly always of one hop.
        let mut key: smallvec::SmallVec<[IpAddr; 4]> = hops
            .iter()
            .copied()
            .filter(|gw| self.port_for(*gw).is_some())
            .collect();
        if key.is_empty() {
            key.extend(hops.first().copied());
        }
        if let Some(g) = self.bgp_groups.get_mut(key.as_slice()) {
            g.users += 1;
            return Ok(g.via.route_via());
        }
        let mut members = Vec::with_capacity(key.len());
        for &gw in &key {
            if let Some(port) = self.port_for(gw) {
                let n = self.neighbor(port, gw)?;
                n.gateway_of += 1;
                let adjacency = n.adjacency;
                self.ensure_host_route(gw)?;
                members.push(adjacency);
            }
        }
        let via = match (members.as_slice(), key.first()) {
            ([one], _) => GroupVia::Neighbor(*one),
            ([], Some(gw)) => GroupVia::Recursive(*gw),
            ([], None) => return Err("a BGP route without next hop".into()),
            (many, _) => GroupVia::Ecmp(self.allocate(Adjacency::Ecmp(many.to_vec()))?),
        };
        let key: Arc<[IpAddr]> = key.as_slice().into();
        self.bgp_group_of.insert(via.route_via(), key.clone());
        self.bgp_groups.insert(key, NextHopGroup { via, users: 1 });
        Ok(via.route_via())
    }

    /// Gives back one share of the group a BGP route pointed at; the last one frees it.
    pub(super) fn leave_group(&mut self, via: Via<IpAddr>) {
        let Some(key) = self.bgp_group_of.get(&via).cloned() else {
            return;
        };
        let Some(g) = self.bgp_groups.get_mut(&key) else {
            return;
        };
        g.users -= 1;
        if g.users > 0 {
            return;
        }
        let group = g.via;
        self.bgp_groups.remove(&key);
        self.bgp_group_of.remove(&via);
        match group {
            GroupVia::Recursive(_) => return,
            GroupVia::Ecmp(a) => self.release(a),
            GroupVia::Neighbor(_) => {}
        }
        for gw in key.iter() {
            if let Some(n) = self.neighbors.get_mut(gw) {
                n.gateway_of = n.gateway_of.saturating_sub(1);
            }
        }
    }

    pub(super) fn remove_static(&mut self, prefix: IpNet) -> Result<bool, String> {
        let Some(route) = self.statics.remove(&prefix) else {
            return Ok(false);
        };
        self.remove(prefix, Source::Static)?;
        if let Some(n) = route.via.and_then(|gw| self.neighbors.get_mut(&gw)) {
            n.gateway_of = n.gateway_of.saturating_sub(1);
        }
        Ok(true)
    }
}
