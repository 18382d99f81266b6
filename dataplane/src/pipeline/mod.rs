//! The burst pipeline. A worker runs each stage over the whole burst before the next one,
//! so code and data stay in cache and FIB lookups are batched with prefetch:
//!
//! ```text
//! parse   validate Ethernet / ARP / IPv4 / IPv6, classify        → drop[reason] | arp | ip
//!   decap in the same pass: tunnel packets to our endpoints are
//!         checked, stripped, the inner packet validated            (tunnel.rs)
//! nat     conntrack + DNAT, return half of SNAT (pre-routing)    (nat.rs)
//! route   batched FIB lookup of every IP destination             → adjacency index
//! then per frame, by adjacency (the worker's stage methods, worker/forward.rs and
//! worker/originate.rs, calling the functions here):
//!   local     ARP, ICMP echo, NDP to us                          (local.rs)
//!   forward   TTL / hop limit + RFC 1624 checksum                (ttl.rs)
//!             egress MTU: ICMP too-big                            (mtu.rs)
//!             SNAT (post-routing)                                 (nat.rs)
//!             fragment when DF is clear                           (mtu.rs)
//!             into a tunnel: encapsulate in the headroom, route
//!             the outer packet to the remote endpoint              (tunnel.rs)
//!             MAC rewrite, queue on the egress port              (rewrite.rs)
//!   punt      unresolved neighbour → control plane        (worker/forward.rs)
//! ICMP errors are built in icmp.rs, rate-limited per worker.
//! ```

pub mod icmp;
pub mod local;
pub mod mtu;
pub mod nat;
pub mod parse;
pub mod rewrite;
pub mod route;
pub mod ttl;
pub mod tunnel;

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::counters::DropReason;

/// What parsing decided about a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Drop(DropReason),
    Arp,
    /// IPv4 with its destination (host order) and header offset.
    V4 {
        dst: u32,
    },
    V6 {
        dst: u128,
    },
    /// IPv6 to a multicast group we listen to (all-nodes, solicited-node): local only.
    V6Multicast,
    /// Kept by a stage (the NAT holds a copy): the frame is freed, not counted as a drop.
    Absorbed,
    /// The NAT could not create a session: drop with this reason and answer ICMP 3/13.
    Refused(DropReason),
    /// Its NAT session belongs to another worker: hand it over (handoff.rs).
    Elsewhere(u16),
}

/// Per-frame state the stages pass along.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub class: Class,
    /// Adjacency index from the FIB, or `lpm::NO_ROUTE`.
    pub next_hop: u32,
    /// What NAT pre-routing made of the packet, for post-routing.
    pub nat: NatMark,
}

/// What NAT pre-routing made of a frame, for post-routing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NatMark {
    /// Not seen by the NAT (no NAT, or not from an inside or outside interface).
    #[default]
    Unseen,
    /// Belongs to session `.0` (already translated on the way in, if DNAT or a reply);
    /// `.1` is pre-routing's reading of it, if it still describes the packet.
    Session(::nat::Handle, Option<nat::Reading>),
    /// Passed unchanged; `.0` is pre-routing's reading of it.
    Passed(Option<nat::Reading>),
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            class: Class::Drop(DropReason::Runt),
            next_hop: lpm::NO_ROUTE,
            nat: NatMark::Unseen,
        }
    }
}

/// A port's addresses and link parameters, as the workers see them.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub name: String,
    pub mac: crate::wire::Mac,
    pub mtu: u16,
    pub v4: Vec<ipnet::Ipv4Net>,
    pub v6: Vec<ipnet::Ipv6Net>,
    /// fe80::/64 address derived from the MAC (EUI-64).
    pub link_local: Ipv6Addr,
    /// Finish the partial TCP/UDP checksums of offloading senders (`wire::partial`): set
    /// on AF_XDP ports, where the kernel's "checksum partial" mark does not reach tern. A
    /// TAP reader gets finished sums from the kernel.
    pub completes_partial_checksums: bool,
}

impl PortInfo {
    /// A port with MAC `mac`, MTU 1500 and no addresses: what the stages' unit tests
    /// receive on.
    #[cfg(test)]
    pub(crate) fn bare(mac: crate::wire::Mac) -> PortInfo {
        PortInfo {
            name: "t".into(),
            mac,
            mtu: 1500,
            v4: Vec::new(),
            v6: Vec::new(),
            link_local: Ipv6Addr::UNSPECIFIED,
            completes_partial_checksums: false,
        }
    }

    pub fn new(i: &crate::config::Interface) -> PortInfo {
        PortInfo {
            name: i.name.clone(),
            mac: i.mac,
            mtu: i.mtu,
            v4: i.v4.clone(),
            v6: i.v6.clone(),
            link_local: link_local(&i.mac),
            completes_partial_checksums: i.backend == crate::config::Backend::AfXdp,
        }
    }
    pub fn v4_source(&self) -> Option<Ipv4Addr> {
        self.v4.first().map(|n| n.addr())
    }
    /// A global address of the port if it has one, else its link-local address.
    pub fn v6_source(&self) -> Ipv6Addr {
        self.v6.first().map(|n| n.addr()).unwrap_or(self.link_local)
    }
    pub fn owns_v6(&self, a: Ipv6Addr) -> bool {
        a == self.link_local || self.v6.iter().any(|n| n.addr() == a)
    }
    pub fn owns_v4(&self, a: Ipv4Addr) -> bool {
        self.v4.iter().any(|n| n.addr() == a)
    }
}

/// The modified EUI-64 link-local address of a MAC (RFC 4291 appendix A).
pub fn link_local(mac: &crate::wire::Mac) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 2, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}
