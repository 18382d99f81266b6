//! The tunnel table: the configured tunnels, found by index (from an adjacency) or by
//! their outer endpoints and key (on receipt), with the little state a tunnel keeps:
//! GRE sequence numbers and the path MTU learned from ICMP.
//!
//! The table itself is immutable once built and shared by every worker; the state is in
//! atomics. The receive sequence check is a load and a store, not a compare-and-swap: a
//! tunnel's packets all share one outer 5-tuple, so they reach one worker queue.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::template::Template;
use crate::tunnel::{Decap, Kind, Spec};

/// One tunnel and its state.
#[derive(Debug)]
pub struct Tunnel {
    pub spec: Spec,
    template: Template,
    tx_sequence: AtomicU32,
    /// Bit 32 set once a sequence number was accepted; the low bits are that number.
    rx_sequence: AtomicU64,
    /// Path MTU towards the remote learned from ICMP (outer packet size); 0: none learned.
    path_mtu: AtomicU32,
}

impl Tunnel {
    pub fn new(spec: Spec) -> Tunnel {
        Tunnel {
            template: Template::new(&spec),
            spec,
            tx_sequence: AtomicU32::new(0),
            rx_sequence: AtomicU64::new(0),
            path_mtu: AtomicU32::new(0),
        }
    }

    /// The outer headers with the per-packet fields blank.
    #[inline(always)]
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// The largest inner packet the tunnel sends whole: the configured MTU, lowered by a
    /// learned path MTU less the encapsulation overhead.
    #[inline]
    pub fn mtu(&self) -> u16 {
        let learned = self.path_mtu.load(Relaxed) as usize;
        if learned == 0 {
            return self.spec.mtu;
        }
        let inner = learned.saturating_sub(self.template.overhead()) as u16;
        self.spec.mtu.min(inner)
    }

    /// Records an outer path MTU from an ICMP error; it only ever lowers. Values below the
    /// IPv4 minimum (68) are ignored as bogus. Returns whether the tunnel MTU changed.
    pub fn lower_path_mtu(&self, outer_mtu: u32) -> bool {
        if outer_mtu < 68 {
            return false;
        }
        let before = self.mtu();
        let current = self.path_mtu.load(Relaxed);
        if current == 0 || outer_mtu < current {
            self.path_mtu.store(outer_mtu, Relaxed);
        }
        self.mtu() != before
    }

    /// The sequence number for the next packet sent (RFC 2890 §2.2: starts at 0).
    #[inline]
    pub fn next_tx_sequence(&self) -> u32 {
        self.tx_sequence.fetch_add(1, Relaxed)
    }

    /// RFC 2890 §2.2 with serial number arithmetic (RFC 1982): a packet is accepted when its
    /// number is after the last accepted one; duplicates and older packets are refused.
    pub fn accept_sequence(&self, seq: u32) -> bool {
        let last = self.rx_sequence.load(Relaxed);
        if last >> 32 != 0 && (seq.wrapping_sub(last as u32) as i32) <= 0 {
            return false;
        }
        self.rx_sequence.store(1 << 32 | seq as u64, Relaxed);
        true
    }
}

/// How received packets find their tunnel: a flat key (addresses as integers) that hashes
/// in a few instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Endpoints {
    kind: Kind,
    local: u128,
    remote: u128,
}

/// An address as the receive lookups compare it: IPv4 in the low 32 bits. The kind of
/// tunnel says which family it is, so an IPv4 address and an IPv6 one never meet.
#[inline(always)]
pub fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => a.to_bits() as u128,
        IpAddr::V6(a) => a.to_bits(),
    }
}

impl Endpoints {
    #[inline(always)]
    fn new(kind: Kind, local: IpAddr, remote: IpAddr) -> Endpoints {
        Endpoints {
            kind,
            local: addr_bits(local),
            remote: addr_bits(remote),
        }
    }
}

/// Why a lookup by endpoints found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// No tunnel of this kind between these endpoints: spoofed or misdirected.
    UnknownRemote,
    /// Tunnels exist between the endpoints, but none with this key (or with no key).
    KeyMismatch,
}

/// Up to this many tunnels, receive lookups scan instead of hashing.
const SCAN_LIMIT: usize = 16;

#[derive(Debug, Default)]
pub struct TunnelTable {
    tunnels: Vec<Tunnel>,
    /// aHash: keyed per process, and a few ns where SipHash costs tens on this path.
    by_endpoints: ahash::AHashMap<Endpoints, Vec<u16>>,
    /// Every tunnel's (endpoints, key), scanned instead of hashing while the table is small
    /// (the usual case: a scan of a few entries is cheaper than any hash).
    flat: Vec<(Endpoints, Option<u32>)>,
    /// Every tunnel's local address (`addr_bits`).
    locals: Vec<u128>,
    /// The IPv4 tunnels whose packets all have one shape on the wire, for [`Self::match_v4`].
    shapes_v4: Vec<Shape4>,
}

/// What every packet of an IPv4 tunnel without GRE checksum or sequence numbers looks
/// like in its first 28 bytes: an option-less outer header with the tunnel's protocol and
/// endpoints, then (GRE) the tunnel's flags and key. Recognising a packet is then a few
/// word compares, where the general path parses the GRE header and searches the table.
#[derive(Debug, Clone, Copy)]
struct Shape4 {
    /// Bytes 12..20 of the outer header (source = remote, destination = local) as one word.
    ends: u64,
    proto: u8,
    /// Bytes 20..28 under `mask`: for GRE the flags and protocol type, and the key if the
    /// tunnel has one; nothing for IPIP/6in4.
    after: u64,
    mask: u64,
    /// Offset of the inner header: 20, plus the GRE header.
    inner: u8,
    inner_v6: bool,
    index: u16,
}

impl Shape4 {
    #[inline(always)]
    fn decap(&self) -> Decap {
        Decap {
            tunnel: self.index,
            inner: self.inner as usize,
            inner_v6: self.inner_v6,
        }
    }

    /// The shapes of tunnel `index`'s packets: one per inner family it carries (GRE
    /// carries both, and says which in its protocol type).
    fn of(spec: &Spec, index: u16) -> Vec<Shape4> {
        let (IpAddr::V4(local), IpAddr::V4(remote)) = (spec.local, spec.remote) else {
            return Vec::new();
        };
        if spec.kind.outer_v6() || spec.checksum || spec.sequence {
            return Vec::new();
        }
        let mut ends = [0u8; 8];
        ends[..4].copy_from_slice(&remote.octets());
        ends[4..].copy_from_slice(&local.octets());
        let shape = |inner_v6: bool| {
            // GRE flags (only K, or none), the protocol type of the family, then the key.
            let protocol = if inner_v6 {
                wire::gre::TYPE_IPV6
            } else {
                wire::gre::TYPE_IPV4
            };
            let [p0, p1] = protocol.to_be_bytes();
            let (after, mask, gre_len) = match (spec.kind.is_gre(), spec.key) {
                (false, _) => ([0; 8], [0; 8], 0),
                (true, None) => (
                    [0, 0, p0, p1, 0, 0, 0, 0],
                    [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
                    4,
                ),
                (true, Some(k)) => {
                    let [a, b] = wire::gre::FLAG_KEY.to_be_bytes();
                    let [k0, k1, k2, k3] = k.to_be_bytes();
                    ([a, b, p0, p1, k0, k1, k2, k3], [0xff; 8], 8)
                }
            };
            Shape4 {
                ends: u64::from_ne_bytes(ends),
                proto: spec.kind.protocol(),
                after: u64::from_ne_bytes(after),
                mask: u64::from_ne_bytes(mask),
                inner: 20 + gre_len,
                inner_v6,
                index,
            }
        };
        [false, true]
            .into_iter()
            .filter(|&v6| spec.kind.carries(v6))
            .map(shape)
            .collect()
    }
}

/// The shape a receiver matched last, tried first for its next packet: a burst's tunnel
/// packets mostly come through one tunnel (VPP's GRE input keeps its last tunnel key for
/// the same reason). Each receiver (worker) keeps its own; the table is shared.
#[derive(Debug, Default, Clone, Copy)]
pub struct LastShape(usize);

impl TunnelTable {
    /// Builds the table; refuses two tunnels a receiver could not tell apart.
    pub fn new(specs: Vec<Spec>) -> Result<TunnelTable, String> {
        let mut t = TunnelTable::default();
        for spec in specs {
            spec.validate()
                .map_err(|e| format!("tunnel {}: {e}", spec.name))?;
            let ends = Endpoints::new(spec.kind, spec.local, spec.remote);
            let same = t.by_endpoints.entry(ends).or_default();
            if let Some(&other) = same
                .iter()
                .find(|&&i| t.tunnels[i as usize].spec.key == spec.key)
            {
                return Err(format!(
                    "tunnel {}: same kind, endpoints and key as tunnel {}",
                    spec.name, t.tunnels[other as usize].spec.name
                ));
            }
            if t.tunnels.len() >= u16::MAX as usize {
                return Err("too many tunnels".into());
            }
            same.push(t.tunnels.len() as u16);
            t.flat.push((ends, spec.key));
            t.shapes_v4
                .extend(Shape4::of(&spec, t.tunnels.len() as u16));
            if !t.locals.contains(&addr_bits(spec.local)) {
                t.locals.push(addr_bits(spec.local));
            }
            t.tunnels.push(Tunnel::new(spec));
        }
        if t.tunnels.len() > SCAN_LIMIT {
            // A scan that long costs more than the general path's hash lookup.
            t.shapes_v4.clear();
        }
        Ok(t)
    }

    pub fn len(&self) -> usize {
        self.tunnels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tunnels.is_empty()
    }

    #[inline]
    pub fn get(&self, index: u16) -> Option<&Tunnel> {
        self.tunnels.get(index as usize)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tunnel> {
        self.tunnels.iter()
    }

    pub fn position(&self, name: &str) -> Option<u16> {
        self.tunnels
            .iter()
            .position(|t| t.spec.name == name)
            .map(|i| i as u16)
    }

    /// Whether `a` (`addr_bits`) is the local endpoint of some tunnel: the cheap pre-check
    /// before decap.
    #[inline]
    pub fn is_local(&self, a: u128) -> bool {
        self.locals.contains(&a)
    }

    /// The tunnel an outer IPv4 packet (`head`: its first 28 bytes, header validated) is
    /// for, when it has exactly the shape that tunnel's packets have (see `Shape4`), as a
    /// [`Decap`] not yet checked past the outer headers. `None` says only "not this way":
    /// the general path decides, and says why not.
    #[inline(always)]
    pub fn match_v4(&self, head: &[u8; 28], last: &mut LastShape) -> Option<Decap> {
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&head[at..at + 8]);
            u64::from_ne_bytes(w)
        };
        let (ends, after, proto) = (word(12), word(20), head[9]);
        let fits = |s: &Shape4| s.ends == ends && after & s.mask == s.after && s.proto == proto;
        if let Some(s) = self.shapes_v4.get(last.0) {
            if fits(s) {
                return Some(s.decap());
            }
        }
        // A plain loop: `Iterator::position` here was an out-of-line call, ~15
        // instructions per entry where this is ~6.
        for (i, s) in self.shapes_v4.iter().enumerate() {
            if fits(s) {
                last.0 = i;
                return Some(s.decap());
            }
        }
        None
    }

    /// Some tunnel of `kind` between the endpoints, whatever its key: for an ICMP quote
    /// that stops before the GRE key.
    pub fn any_between(&self, kind: Kind, local: IpAddr, remote: IpAddr) -> Option<u16> {
        self.by_endpoints
            .get(&Endpoints::new(kind, local, remote))
            .and_then(|same| same.first().copied())
    }

    /// The tunnel that takes a packet of `kind` from `remote` to `local` with `key`, with
    /// Linux's key rule: a keyed tunnel takes only its key, an unkeyed one only unkeyed
    /// packets.
    pub fn find(
        &self,
        kind: Kind,
        local: IpAddr,
        remote: IpAddr,
        key: Option<u32>,
    ) -> Result<u16, Miss> {
        self.find_bits(kind, addr_bits(local), addr_bits(remote), key)
    }

    /// `find` with the addresses as `addr_bits`: what decapsulation reads off the wire.
    #[inline]
    pub fn find_bits(
        &self,
        kind: Kind,
        local: u128,
        remote: u128,
        key: Option<u32>,
    ) -> Result<u16, Miss> {
        let wanted = Endpoints {
            kind,
            local,
            remote,
        };
        if self.flat.len() <= SCAN_LIMIT {
            let mut miss = Miss::UnknownRemote;
            // Remote first: the field that tells tunnels apart most often.
            for (i, (ends, k)) in self.flat.iter().enumerate() {
                if ends.remote == remote && ends.local == local && ends.kind == kind {
                    if *k == key {
                        return Ok(i as u16);
                    }
                    miss = Miss::KeyMismatch;
                }
            }
            return Err(miss);
        }
        let same = self.by_endpoints.get(&wanted).ok_or(Miss::UnknownRemote)?;
        same.iter()
            .copied()
            .find(|&i| self.tunnels[i as usize].spec.key == key)
            .ok_or(Miss::KeyMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::{Dscp, Ttl};

    fn spec(name: &str, key: Option<u32>) -> Spec {
        Spec {
            name: name.into(),
            kind: Kind::Gre,
            local: "192.0.2.1".parse().expect("addr"),
            remote: "192.0.2.2".parse().expect("addr"),
            key,
            sequence: false,
            checksum: false,
            ttl: Ttl::Fixed(64),
            dscp: Dscp::Inherit,
            mtu: 1476,
        }
    }

    #[test]
    fn keys_select_tunnels_like_linux() {
        let t = TunnelTable::new(vec![spec("plain", None), spec("k7", Some(7))]).expect("table");
        let (l, r) = (t.tunnels[0].spec.local, t.tunnels[0].spec.remote);
        assert_eq!(t.find(Kind::Gre, l, r, None), Ok(0));
        assert_eq!(t.find(Kind::Gre, l, r, Some(7)), Ok(1));
        assert_eq!(t.find(Kind::Gre, l, r, Some(8)), Err(Miss::KeyMismatch));
        assert_eq!(t.find(Kind::Gre, r, l, None), Err(Miss::UnknownRemote));
        assert_eq!(t.find(Kind::Ipip, l, r, None), Err(Miss::UnknownRemote));
        let only_keyed = TunnelTable::new(vec![spec("k7", Some(7))]).expect("table");
        assert_eq!(
            only_keyed.find(Kind::Gre, l, r, None),
            Err(Miss::KeyMismatch),
            "a keyed tunnel refuses unkeyed packets"
        );
        assert!(TunnelTable::new(vec![spec("a", Some(1)), spec("b", Some(1))]).is_err());
    }

    /// The scan (small tables) and the hash map (large ones) give the same answers.
    #[test]
    fn scan_and_hash_lookups_agree() {
        for count in [3usize, 40] {
            let specs: Vec<Spec> = (0..count)
                .map(|i| {
                    let mut s = spec(&format!("t{i}"), (i % 4 != 0).then_some(i as u32 % 4));
                    s.remote = IpAddr::from([192, 0, 2, 10 + (i / 4) as u8]);
                    s
                })
                .collect();
            let t = TunnelTable::new(specs.clone()).expect("table");
            assert_eq!(t.flat.len() <= SCAN_LIMIT, count == 3);
            let local = specs[0].local;
            for last in 8..25u8 {
                let remote = IpAddr::from([192, 0, 2, last]);
                for key in [None, Some(0), Some(1), Some(2), Some(3), Some(9)] {
                    let same: Vec<usize> =
                        (0..count).filter(|&i| specs[i].remote == remote).collect();
                    let expected = match same.iter().find(|&&i| specs[i].key == key) {
                        Some(&i) => Ok(i as u16),
                        None if same.is_empty() => Err(Miss::UnknownRemote),
                        None => Err(Miss::KeyMismatch),
                    };
                    assert_eq!(
                        t.find(Kind::Gre, local, remote, key),
                        expected,
                        "{count} {remote} {key:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn sequence_numbers_use_serial_arithmetic() {
        let t = Tunnel::new(spec("s", None));
        assert!(
            t.accept_sequence(u32::MAX - 1),
            "first packet sets the window"
        );
        assert!(t.accept_sequence(u32::MAX));
        assert!(t.accept_sequence(0), "wraps around");
        assert!(!t.accept_sequence(0), "duplicate");
        assert!(!t.accept_sequence(u32::MAX), "older");
        assert!(
            t.accept_sequence(5),
            "a gap is accepted (loss, not reordering)"
        );
        assert!(!t.accept_sequence(3), "reordered behind the gap");
    }

    #[test]
    fn path_mtu_only_lowers_and_bounds_the_tunnel_mtu() {
        let t = Tunnel::new(spec("p", None));
        assert_eq!(t.mtu(), 1476);
        assert!(
            !t.lower_path_mtu(1600),
            "a larger path leaves the configured MTU"
        );
        assert!(t.lower_path_mtu(1400));
        assert_eq!(t.mtu(), 1400 - 24);
        assert!(!t.lower_path_mtu(1450), "never raised by ICMP");
        assert!(!t.lower_path_mtu(10), "bogus values ignored");
        assert_eq!(t.mtu(), 1376);
    }
}
