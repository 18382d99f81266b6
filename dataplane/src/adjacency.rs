//! What a FIB next-hop index points at. The FIB stores indices; the adjacency table
//! ([`lpm::NextHopTable`]) stores these, so a neighbour's MAC resolving or changing is one
//! write for every route through it.

use std::net::IpAddr;

use crate::wire::Mac;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adjacency {
    /// One of our own addresses: deliver to the local slow path.
    Local,
    /// A subnet broadcast address of ours: not forwarded, not answered.
    Broadcast,
    /// A connected subnet: the destination itself is the neighbour to resolve (glean).
    Glean { port: u16 },
    /// A neighbour that is being resolved: packets are handed to the control plane, which
    /// holds a few and sends them once the MAC is known.
    Incomplete { port: u16, ip: IpAddr },
    /// A resolved neighbour: rewrite the MACs and send.
    Neighbor { port: u16, ip: IpAddr, mac: Mac },
    /// Equal-cost members (adjacency indices); a flow hash picks one.
    Ecmp(Vec<u32>),
    /// Into a tunnel (index into the tunnel table): encapsulate, then send the outer packet
    /// by `via`, the FIB next hop of the tunnel's remote (`lpm::NO_ROUTE` while there is
    /// none). The control plane re-stacks `via` whenever a route changes, so encapsulation
    /// needs no second FIB lookup (VPP calls this a midchain adjacency).
    Tunnel { tunnel: u16, via: u32 },
}

/// Fixed indices: the first slots of the table.
pub const LOCAL: u32 = 0;
pub const BROADCAST: u32 = 1;
/// First index the control plane hands out.
pub const FIRST_DYNAMIC: u32 = 2;
/// Size of the adjacency table.
pub const CAPACITY: u32 = 1 << 16;
