//! What the workers, the BGP speaker, zebra's feed and the ctl server send the control
//! thread (control/): its mailbox's message type, imported by both sides.

use std::net::IpAddr;
use std::sync::mpsc::Sender;

use serde_json::Value;

use crate::wire::Mac;

pub enum ControlMsg {
    /// A routed packet (TTL already decremented, source MAC set) waiting for `ip`'s MAC.
    Resolve {
        port: u16,
        ip: IpAddr,
        frame: Vec<u8>,
    },
    /// A neighbour heard from (ARP, NDP).
    Learned {
        port: u16,
        ip: IpAddr,
        mac: Mac,
    },
    /// A batch of route changes from BGP or from zebra.
    Routes(Feed, Vec<bgp_glue::Change>),
    /// A `tern ctl` request; the words after `tern ctl`.
    Ctl {
        words: Vec<String>,
        reply: Sender<Result<Value, String>>,
    },
    /// One page of a route listing (listing.rs).
    RoutePage {
        query: crate::listing::RouteQuery,
        cursor: crate::listing::Cursor,
        reply: Sender<crate::listing::Page>,
    },
    Stop,
}

/// Where a batch of route changes comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Bgp,
    /// zebra over FPM: FRR chose the routes, tern installs them.
    Fpm,
}
