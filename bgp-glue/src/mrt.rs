//! MRT (RFC 6396) TABLE_DUMP_V2 import: a RIB dump (BIRD's `mrt dump`, RIPE RIS and
//! RouteViews `bview` files) read as routes with their BGP attributes, to pre-seed or
//! benchmark the FIB.
//!
//! A record is a 12-byte header (timestamp, type, subtype, length) and its body. tern reads
//! type 13 (TABLE_DUMP_V2): the PEER_INDEX_TABLE naming the collector's peers, then one
//! RIB_IPV4_UNICAST / RIB_IPV6_UNICAST record per prefix holding every peer's entry (peer
//! index, originated time, path attributes). The attributes go through the UPDATE decoder
//! (4-octet AS paths, RFC 7606 outcomes): each entry is rewritten as the UPDATE that would
//! have announced it, with the abbreviated MP_REACH_NLRI of RFC 6396 §4.3.4 expanded.
//! Other record types, multicast and ADD-PATH RIBs are skipped and counted.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::codec::{self, Attributes, Context, Family, Update};

const TABLE_DUMP_V2: u16 = 13;
const PEER_INDEX_TABLE: u16 = 1;
const RIB_IPV4_UNICAST: u16 = 2;
const RIB_IPV6_UNICAST: u16 = 4;
const ATTR_MP_REACH: u8 = 14;
const FLAG_EXTENDED: u8 = 0x10;
/// Bigger records are not RIB records a router writes: refuse rather than allocate.
const MAX_RECORD: usize = 16 << 20;

/// A peer of the collector, from the PEER_INDEX_TABLE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MrtPeer {
    pub bgp_id: Ipv4Addr,
    pub address: IpAddr,
    pub asn: u32,
}

/// One peer's route to one prefix.
#[derive(Debug, Clone)]
pub struct MrtRoute {
    pub prefix: IpNet,
    /// Index into the dump's peer table.
    pub peer: u16,
    pub attributes: Attributes,
}

/// The routes of a TABLE_DUMP_V2 stream, record by record.
pub struct TableDump<R> {
    reader: R,
    peers: Vec<MrtPeer>,
    ready: std::vec::IntoIter<MrtRoute>,
    seen_peer_table: bool,
    /// After an error the stream is over (there is no resynchronising a byte stream).
    failed: bool,
    /// What was not turned into routes, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
}

impl<R: Read> TableDump<R> {
    pub fn new(reader: R) -> TableDump<R> {
        TableDump {
            reader,
            peers: Vec::new(),
            ready: Vec::new().into_iter(),
            seen_peer_table: false,
            failed: false,
            skipped: BTreeMap::new(),
        }
    }

    /// The collector's peers (from the last PEER_INDEX_TABLE read).
    pub fn peers(&self) -> &[MrtPeer] {
        &self.peers
    }

    fn skip(&mut self, why: &'static str) {
        *self.skipped.entry(why).or_default() += 1;
    }

    /// The next record's type, subtype and body; `None` at a clean end of the stream.
    fn record(&mut self) -> Result<Option<(u16, u16, Vec<u8>)>, String> {
        let mut header = [0u8; 12];
        let mut got = 0;
        while got < header.len() {
            match self.reader.read(&mut header[got..]) {
                Ok(0) if got == 0 && self.seen_peer_table => return Ok(None),
                Ok(0) if got == 0 => {
                    return Err("no TABLE_DUMP_V2 peer table: not a RIB dump".into())
                }
                Ok(0) => return Err("MRT record header cut short".into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("MRT read: {e}")),
            }
        }
        let kind = u16::from_be_bytes([header[4], header[5]]);
        let subtype = u16::from_be_bytes([header[6], header[7]]);
        let len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
        if len > MAX_RECORD {
            return Err(format!("MRT record of {len} bytes: not a RIB dump"));
        }
        let mut body = vec![0; len];
        self.reader
            .read_exact(&mut body)
            .map_err(|e| format!("MRT record cut short: {e}"))?;
        Ok(Some((kind, subtype, body)))
    }
}

impl<R: Read> Iterator for TableDump<R> {
    type Item = Result<MrtRoute, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.advance();
        self.failed = matches!(item, Some(Err(_)));
        item
    }
}

impl<R: Read> TableDump<R> {
    fn advance(&mut self) -> Option<Result<MrtRoute, String>> {
        loop {
            if let Some(r) = self.ready.next() {
                return Some(Ok(r));
            }
            let (kind, subtype, body) = match self.record() {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            let result = match (kind, subtype) {
                (TABLE_DUMP_V2, PEER_INDEX_TABLE) => peer_index(&body).map(|p| {
                    self.peers = p;
                    self.seen_peer_table = true;
                }),
                (TABLE_DUMP_V2, RIB_IPV4_UNICAST) => self.rib(&body, Family::Ipv4),
                (TABLE_DUMP_V2, RIB_IPV6_UNICAST) => self.rib(&body, Family::Ipv6),
                (TABLE_DUMP_V2, _) => {
                    self.skip("other TABLE_DUMP_V2 subtype (multicast, ADD-PATH, generic)");
                    Ok(())
                }
                _ => {
                    self.skip("not TABLE_DUMP_V2");
                    Ok(())
                }
            };
            if let Err(e) = result {
                return Some(Err(e));
            }
        }
    }
}

impl<R: Read> TableDump<R> {
    /// A RIB record: sequence number, prefix, then each peer's entry.
    fn rib(&mut self, body: &[u8], family: Family) -> Result<(), String> {
        let bad = |what: &str| format!("malformed RIB record: {what}");
        let mut r = Cursor(body);
        r.take(4).ok_or_else(|| bad("sequence number"))?;
        // The prefix is in NLRI encoding: its length in bits, then the significant octets.
        let nlri = r.0;
        let len = r.u8().ok_or_else(|| bad("prefix length"))?;
        let octets = usize::from(len).div_ceil(8);
        r.take(octets).ok_or_else(|| bad("prefix"))?;
        let prefix = codec::prefixes(&nlri[..1 + octets], family)
            .and_then(|p| p.first().copied())
            .ok_or_else(|| bad("prefix length"))?;
        let count = r.u16().ok_or_else(|| bad("entry count"))?;
        let mut routes = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let peer = r.u16().ok_or_else(|| bad("peer index"))?;
            r.take(4).ok_or_else(|| bad("originated time"))?;
            let attr_len = usize::from(r.u16().ok_or_else(|| bad("attribute length"))?);
            let attrs = r.take(attr_len).ok_or_else(|| bad("attributes"))?;
            if usize::from(peer) >= self.peers.len() {
                self.skip("entry for a peer not in the peer table");
                continue;
            }
            let Some(update) = as_update(&prefix, attrs) else {
                self.skip("malformed attributes");
                continue;
            };
            match Update::decode(
                &update,
                Context {
                    asn4: true,
                    ebgp: false,
                },
            ) {
                Ok(u) if u.announced.contains(&prefix) => routes.push(MrtRoute {
                    prefix,
                    peer,
                    attributes: u.attributes,
                }),
                // Missing ORIGIN or AS_PATH (e.g. a non-BGP route in a BIRD dump), or a
                // malformed attribute: RFC 7606 would withdraw it.
                Ok(_) => self.skip("attributes treated as withdraw (RFC 7606)"),
                Err(_) => self.skip("malformed attributes"),
            }
        }
        self.ready = routes.into_iter();
        Ok(())
    }
}

/// The PEER_INDEX_TABLE: collector id, view name, then each peer.
fn peer_index(body: &[u8]) -> Result<Vec<MrtPeer>, String> {
    let bad = |what: &str| format!("malformed PEER_INDEX_TABLE: {what}");
    let mut r = Cursor(body);
    r.take(4).ok_or_else(|| bad("collector id"))?;
    let name_len = usize::from(r.u16().ok_or_else(|| bad("view name"))?);
    r.take(name_len).ok_or_else(|| bad("view name"))?;
    let count = r.u16().ok_or_else(|| bad("peer count"))?;
    let mut peers = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let kind = r.u8().ok_or_else(|| bad("peer type"))?;
        let id = r.take(4).ok_or_else(|| bad("peer BGP id"))?;
        let bgp_id = Ipv4Addr::new(id[0], id[1], id[2], id[3]);
        let address = match kind & 1 {
            0 => IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(r.take(4).ok_or_else(|| bad("peer address"))?)
                    .map_err(|_| bad("peer address"))?,
            )),
            _ => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(r.take(16).ok_or_else(|| bad("peer address"))?)
                    .map_err(|_| bad("peer address"))?,
            )),
        };
        let asn = match kind & 2 {
            0 => u32::from(r.u16().ok_or_else(|| bad("peer AS"))?),
            _ => r.u32().ok_or_else(|| bad("peer AS"))?,
        };
        peers.push(MrtPeer {
            bgp_id,
            address,
            asn,
        });
    }
    Ok(peers)
}

/// The UPDATE body that would have announced `prefix` with `attrs`: an IPv4 prefix in the
/// NLRI field (or in MP_REACH_NLRI when the entry has one), an IPv6 prefix in
/// MP_REACH_NLRI, whose abbreviated MRT form (next-hop length and next hop only) is
/// expanded. `None` if the attribute list does not parse.
fn as_update(prefix: &IpNet, attrs: &[u8]) -> Option<Vec<u8>> {
    let family = Family::of(prefix);
    let mut out_attrs = Vec::with_capacity(attrs.len() + 24);
    let mut nlri_in_mp = false;
    let mut rest = attrs;
    while !rest.is_empty() {
        let (&flags, tail) = rest.split_first()?;
        let (&kind, tail) = tail.split_first()?;
        let (len, head, tail) = if flags & FLAG_EXTENDED != 0 {
            let len = usize::from(u16::from_be_bytes([*tail.first()?, *tail.get(1)?]));
            (len, 4, tail.get(2..)?)
        } else {
            (usize::from(*tail.first()?), 3, tail.get(1..)?)
        };
        let value = tail.get(..len)?;
        let whole = rest.get(..head + len)?;
        rest = tail.get(len..)?;
        if kind != ATTR_MP_REACH {
            out_attrs.extend_from_slice(whole);
            continue;
        }
        // Abbreviated (RFC 6396 §4.3.4) when the first byte is the rest's length;
        // otherwise a full MP_REACH_NLRI whose own NLRI we replace.
        let next_hop = match value.split_first() {
            Some((&n, hop)) if usize::from(n) == hop.len() => value,
            _ => {
                let n = usize::from(*value.get(3)?);
                value.get(3..4 + n)?
            }
        };
        let mut mp = family.afi().to_be_bytes().to_vec();
        mp.push(codec::SAFI_UNICAST);
        mp.extend_from_slice(next_hop);
        mp.push(0);
        codec::push_prefix(&mut mp, prefix);
        push_attribute(&mut out_attrs, flags, kind, &mp);
        nlri_in_mp = true;
    }
    if family == Family::Ipv6 && !nlri_in_mp {
        // An IPv6 route without a next hop: nothing to announce it with.
        return None;
    }
    let mut body = vec![0, 0];
    body.extend_from_slice(&u16::try_from(out_attrs.len()).ok()?.to_be_bytes());
    body.extend_from_slice(&out_attrs);
    if !nlri_in_mp {
        codec::push_prefix(&mut body, prefix);
    }
    Some(body)
}

fn push_attribute(out: &mut Vec<u8>, flags: u8, kind: u8, value: &[u8]) {
    match u8::try_from(value.len()) {
        Ok(len) => out.extend_from_slice(&[flags & !FLAG_EXTENDED, kind, len]),
        Err(_) => {
            out.extend_from_slice(&[flags | FLAG_EXTENDED, kind]);
            out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(value);
}

/// Big-endian reads off the front of a slice.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three periodic dumps BIRD 2.0.12 wrote for `protocol mrt { table master4; }`
    /// (tests/data/bird-2.0.12-mrt.conf): a static route carrying ORIGIN, AS_PATH 65001 and
    /// NEXT_HOP 192.0.2.2, and a blackhole route without BGP attributes.
    const BIRD_V4: &[u8] = include_bytes!("../tests/data/bird-2.0.12-master4.mrt");
    /// The same for `master6`: 2001:db8:5::/48 with ORIGIN and AS_PATH, no next hop.
    const BIRD_V6: &[u8] = include_bytes!("../tests/data/bird-2.0.12-master6.mrt");

    #[test]
    fn bird_dump_reads_as_routes() {
        let mut dump = TableDump::new(BIRD_V4);
        let routes: Vec<MrtRoute> = dump.by_ref().collect::<Result<_, _>>().expect("routes");
        // One route per dump.
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[0].prefix, "198.18.5.0/24".parse::<IpNet>().unwrap());
        assert_eq!(
            routes[0].attributes.next_hop,
            Some(Ipv4Addr::new(192, 0, 2, 2))
        );
        assert_eq!(routes[0].attributes.as_path_string(), "65001");
        assert_eq!(dump.peers().len(), 1);
        // The blackhole has no BGP attributes: RFC 7606 treats it as withdrawn.
        let withdrawn = dump
            .skipped
            .get("attributes treated as withdraw (RFC 7606)");
        assert_eq!(withdrawn, Some(&3), "{:?}", dump.skipped);
        // IPv6 without a next hop cannot be announced: skipped, not an error.
        let mut dump = TableDump::new(BIRD_V6);
        assert_eq!(dump.by_ref().count(), 0);
        assert_eq!(
            dump.skipped.get("malformed attributes"),
            Some(&3),
            "{:?}",
            dump.skipped
        );
    }

    #[test]
    fn abbreviated_and_full_mp_reach_both_expand() {
        let prefix: IpNet = "2001:db8:5::/48".parse().unwrap();
        let hop: Ipv6Addr = "2001:db8:a::2".parse().unwrap();
        let origin_path = [0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9];
        let mut abbreviated = origin_path.to_vec();
        abbreviated.extend_from_slice(&[0x80, 14, 17, 16]);
        abbreviated.extend_from_slice(&hop.octets());
        let mut full = origin_path.to_vec();
        full.extend_from_slice(&[0x80, 14, 28, 0, 2, 1, 16]);
        full.extend_from_slice(&hop.octets());
        full.extend_from_slice(&[0, 48, 0x20, 0x01, 0x0d, 0xb8, 0, 5]);
        for attrs in [abbreviated, full] {
            let body = as_update(&prefix, &attrs).expect("update");
            let u = Update::decode(
                &body,
                Context {
                    asn4: true,
                    ebgp: false,
                },
            )
            .expect("decode");
            assert_eq!(u.announced, vec![prefix]);
            assert_eq!(u.attributes.next_hop_for(&prefix), Some(IpAddr::V6(hop)));
        }
    }

    #[test]
    fn truncated_dumps_are_errors_not_panics() {
        let whole = BIRD_V4.to_vec();
        for cut in 1..whole.len() {
            let dump = TableDump::new(&whole[..cut]);
            for r in dump {
                let _ = r;
            }
        }
        assert!(TableDump::new(&b"not a dump"[..])
            .next()
            .expect("an answer")
            .is_err());
        assert!(TableDump::new(&[][..]).next().expect("an answer").is_err());
        let mut huge = whole.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(TableDump::new(&huge[..])
            .next()
            .expect("an answer")
            .is_err());
    }
}
