//! Counters: per worker, written by that worker only, summed when read.
//!
//! Each worker keeps plain `u64`s while it processes a burst and folds them into its
//! shared [`WorkerCounters`] once per burst (a load and a store per counter, no locked
//! instruction: a worker is the only writer of its own block).
//!
//! The names printed by `tern ctl show counters` are an interface: tools parse them.
//! Add names, never rename or reuse one.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a frame was dropped. `name()` is the stable external name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt,
    /// Ethertype tern does not handle (VLAN tags, LLDP, …).
    UnsupportedEthertype,
    /// Unicast to a MAC that is not the receiving port's.
    NotForUs,
    /// ARP that is not Ethernet/IPv4, or truncated.
    ArpMalformed,
    /// Frame ends inside the IPv4 header.
    Ipv4Truncated,
    Ipv4BadVersion,
    /// IHL below 5, or beyond the frame.
    Ipv4BadIhl,
    /// Total length below the header or beyond the frame.
    Ipv4BadTotalLength,
    Ipv4BadChecksum,
    /// Source address that cannot be a source (RFC 1812 §5.3.7, RFC 6890): 0/8 (0.0.0.0
    /// too), 127/8, multicast, 240/4, 255.255.255.255.
    Ipv4BadSource,
    /// Destination a router does not forward: 0/8, 127/8, multicast, 240/4, broadcast.
    Ipv4NotForwardable,
    Ipv6Truncated,
    Ipv6BadVersion,
    /// Payload length beyond the frame.
    Ipv6BadPayloadLength,
    /// Multicast, loopback or IPv4-mapped source; unspecified to a unicast destination.
    Ipv6BadSource,
    /// Link-local or multicast destination that is not ours to forward.
    Ipv6NotForwardable,
    /// TTL / hop limit expired (an ICMP error was sent, rate allowing).
    TtlExceeded,
    /// No route (an ICMP unreachable was sent, rate allowing).
    NoRoute,
    /// Too big for the egress MTU with DF set, or IPv6 (an ICMP error was sent).
    TooBig,
    /// Next hop unresolved and its hold queue full, or resolution failed.
    NeighborUnresolved,
    /// Addressed to us with a protocol we do not serve.
    LocalUnhandled,
    /// ICMP to us that is malformed (short, bad checksum).
    IcmpMalformed,
    /// The pool had no frame for a reply, a fragment or a copy.
    NoBuffer,
    /// The ring toward the worker that owns the frame's NAT session was full.
    HandoffFull,
    /// Transmit failed (device gone, queue full).
    TxError,
    /// Route points at a next hop that is not (or no longer) in the adjacency table.
    BadAdjacency,
    /// Tunnel packet ends inside a header.
    TunnelTruncated,
    /// An outer IPv4 fragment to a tunnel endpoint (tern does not reassemble outer packets).
    TunnelOuterFragment,
    /// Tunnel packet from a source no tunnel of that kind has as its remote (anti-spoofing).
    TunnelUnknownRemote,
    /// GRE key missing, unexpected or wrong for the tunnels between the endpoints.
    TunnelKeyMismatch,
    /// GRE checksum present but not configured, or configured but absent.
    GreChecksumMismatch,
    /// GRE checksum does not verify.
    GreBadChecksum,
    /// GRE sequence number missing, duplicated or out of order.
    GreBadSequence,
    /// GRE version other than 0.
    GreBadVersion,
    /// GRE flags other than checksum, key, sequence (routing, strict source route, recursion).
    GreBadFlags,
    /// Tunnel payload that is not IPv4/IPv6 or not of a family the tunnel carries.
    TunnelBadPayload,
    /// RFC 6040: outer CE on a Not-ECT inner packet.
    TunnelEcnDrop,
    /// The route to a tunnel's remote endpoint points into a tunnel: the packet would loop.
    TunnelLoop,
    /// NAT: transport header cut short, or a first fragment too short for it (RFC 1858).
    NatTruncated,
    /// NAT: inbound to a pool address with no mapping.
    NatNoMapping,
    /// NAT: inbound to a mapping whose filtering does not admit the sender.
    NatFiltered,
    /// NAT: a frontend with no backend up.
    NatNoBackend,
    /// NAT: session table full, nothing to early-drop (ICMP 3/13 sent).
    NatTableFull,
    /// NAT: no free external port in the class (ICMP 3/13 sent).
    NatPortsExhausted,
    /// NAT: the inside host is at its session quota (ICMP 3/13 sent).
    NatSessionQuota,
    /// NAT: the inside host is at its port quota (ICMP 3/13 sent).
    NatPortQuota,
    /// NAT: ICMP error about a session with a wrong checksum.
    NatIcmpBadChecksum,
    /// NAT: ICMP error to a pool address about no session.
    NatIcmpNoFlow,
    /// NAT: fragment overlapping another of its datagram.
    NatFragmentOverlap,
    /// NAT: early fragment with the hold list full.
    NatFragmentHoldFull,
    /// NAT: unsolicited SYN not held (list full, or a repeat).
    NatSynNotHeld,
    /// NAT: held fragment whose first fragment never came.
    NatFragmentTimeout,
}

impl DropReason {
    /// The drop reason of a NAT verdict.
    pub fn nat(r: nat::Reason) -> DropReason {
        use nat::Reason as R;
        match r {
            R::Truncated => DropReason::NatTruncated,
            R::NoMapping => DropReason::NatNoMapping,
            R::Filtered => DropReason::NatFiltered,
            R::NoBackend => DropReason::NatNoBackend,
            R::TableFull => DropReason::NatTableFull,
            R::PortsExhausted => DropReason::NatPortsExhausted,
            R::SessionQuota => DropReason::NatSessionQuota,
            R::PortQuota => DropReason::NatPortQuota,
            R::IcmpBadChecksum => DropReason::NatIcmpBadChecksum,
            R::IcmpNoFlow => DropReason::NatIcmpNoFlow,
            R::FragmentOverlap => DropReason::NatFragmentOverlap,
            R::FragmentHoldFull => DropReason::NatFragmentHoldFull,
            R::SynNotHeld => DropReason::NatSynNotHeld,
        }
    }

    pub const ALL: [DropReason; 52] = [
        DropReason::Runt,
        DropReason::UnsupportedEthertype,
        DropReason::NotForUs,
        DropReason::ArpMalformed,
        DropReason::Ipv4Truncated,
        DropReason::Ipv4BadVersion,
        DropReason::Ipv4BadIhl,
        DropReason::Ipv4BadTotalLength,
        DropReason::Ipv4BadChecksum,
        DropReason::Ipv4BadSource,
        DropReason::Ipv4NotForwardable,
        DropReason::Ipv6Truncated,
        DropReason::Ipv6BadVersion,
        DropReason::Ipv6BadPayloadLength,
        DropReason::Ipv6BadSource,
        DropReason::Ipv6NotForwardable,
        DropReason::TtlExceeded,
        DropReason::NoRoute,
        DropReason::TooBig,
        DropReason::NeighborUnresolved,
        DropReason::LocalUnhandled,
        DropReason::IcmpMalformed,
        DropReason::NoBuffer,
        DropReason::HandoffFull,
        DropReason::TxError,
        DropReason::BadAdjacency,
        DropReason::TunnelTruncated,
        DropReason::TunnelOuterFragment,
        DropReason::TunnelUnknownRemote,
        DropReason::TunnelKeyMismatch,
        DropReason::GreChecksumMismatch,
        DropReason::GreBadChecksum,
        DropReason::GreBadSequence,
        DropReason::GreBadVersion,
        DropReason::GreBadFlags,
        DropReason::TunnelBadPayload,
        DropReason::TunnelEcnDrop,
        DropReason::TunnelLoop,
        DropReason::NatTruncated,
        DropReason::NatNoMapping,
        DropReason::NatFiltered,
        DropReason::NatNoBackend,
        DropReason::NatTableFull,
        DropReason::NatPortsExhausted,
        DropReason::NatSessionQuota,
        DropReason::NatPortQuota,
        DropReason::NatIcmpBadChecksum,
        DropReason::NatIcmpNoFlow,
        DropReason::NatFragmentOverlap,
        DropReason::NatFragmentHoldFull,
        DropReason::NatSynNotHeld,
        DropReason::NatFragmentTimeout,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::UnsupportedEthertype => "unsupported_ethertype",
            DropReason::NotForUs => "not_for_us",
            DropReason::ArpMalformed => "arp_malformed",
            DropReason::Ipv4Truncated => "ipv4_truncated",
            DropReason::Ipv4BadVersion => "ipv4_bad_version",
            DropReason::Ipv4BadIhl => "ipv4_bad_ihl",
            DropReason::Ipv4BadTotalLength => "ipv4_bad_total_length",
            DropReason::Ipv4BadChecksum => "ipv4_bad_checksum",
            DropReason::Ipv4BadSource => "ipv4_bad_source",
            DropReason::Ipv4NotForwardable => "ipv4_not_forwardable",
            DropReason::Ipv6Truncated => "ipv6_truncated",
            DropReason::Ipv6BadVersion => "ipv6_bad_version",
            DropReason::Ipv6BadPayloadLength => "ipv6_bad_payload_length",
            DropReason::Ipv6BadSource => "ipv6_bad_source",
            DropReason::Ipv6NotForwardable => "ipv6_not_forwardable",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::NoRoute => "no_route",
            DropReason::TooBig => "too_big",
            DropReason::NeighborUnresolved => "neighbor_unresolved",
            DropReason::LocalUnhandled => "local_unhandled",
            DropReason::IcmpMalformed => "icmp_malformed",
            DropReason::NoBuffer => "no_buffer",
            DropReason::HandoffFull => "handoff_full",
            DropReason::TxError => "tx_error",
            DropReason::BadAdjacency => "bad_adjacency",
            DropReason::TunnelTruncated => "tunnel_truncated",
            DropReason::TunnelOuterFragment => "tunnel_outer_fragment",
            DropReason::TunnelUnknownRemote => "tunnel_unknown_remote",
            DropReason::TunnelKeyMismatch => "tunnel_key_mismatch",
            DropReason::GreChecksumMismatch => "gre_checksum_mismatch",
            DropReason::GreBadChecksum => "gre_bad_checksum",
            DropReason::GreBadSequence => "gre_bad_sequence",
            DropReason::GreBadVersion => "gre_bad_version",
            DropReason::GreBadFlags => "gre_bad_flags",
            DropReason::TunnelBadPayload => "tunnel_bad_payload",
            DropReason::TunnelEcnDrop => "tunnel_ecn_drop",
            DropReason::TunnelLoop => "tunnel_loop",
            DropReason::NatTruncated => "nat_truncated",
            DropReason::NatNoMapping => "nat_no_mapping",
            DropReason::NatFiltered => "nat_filtered",
            DropReason::NatNoBackend => "nat_no_backend",
            DropReason::NatTableFull => "nat_table_full",
            DropReason::NatPortsExhausted => "nat_ports_exhausted",
            DropReason::NatSessionQuota => "nat_session_quota",
            DropReason::NatPortQuota => "nat_port_quota",
            DropReason::NatIcmpBadChecksum => "nat_icmp_bad_checksum",
            DropReason::NatIcmpNoFlow => "nat_icmp_no_flow",
            DropReason::NatFragmentOverlap => "nat_fragment_overlap",
            DropReason::NatFragmentHoldFull => "nat_fragment_hold_full",
            DropReason::NatSynNotHeld => "nat_syn_not_held",
            DropReason::NatFragmentTimeout => "nat_fragment_timeout",
        }
    }
}

pub const DROP_REASONS: usize = DropReason::ALL.len();

/// Events counted besides drops.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub enum Event {
    Forwarded,
    Fragmented,
    FragmentsSent,
    IcmpSent,
    IcmpRateLimited,
    ArpReplied,
    NdpReplied,
    EchoReplied,
    Punted,
    /// Handed to the kernel through a host interface (see `io::host`).
    ToHost,
    TunnelDecapsulated,
    TunnelEncapsulated,
    TunnelIcmpRelayed,
    TunnelMtuLowered,
    /// NAT: a packet translated (either half).
    NatTranslated,
    /// NAT: an unsolicited SYN or an early fragment held.
    NatHeld,
    /// NAT: ICMP 3/3 sent for a held SYN after its 6 s.
    NatSynAnswered,
    /// NAT: a held fragment released after its first fragment.
    NatFragmentReleased,
    /// Handed to the worker that owns its NAT session (counted by the sender).
    HandedOff,
    /// Received from another worker's hand-off (counted by the owner).
    HandedIn,
    /// A partial TCP/UDP checksum (an offloading sender's) finished on receipt.
    ChecksumCompleted,
}

impl Event {
    pub const ALL: [Event; 21] = [
        Event::Forwarded,
        Event::Fragmented,
        Event::FragmentsSent,
        Event::IcmpSent,
        Event::IcmpRateLimited,
        Event::ArpReplied,
        Event::NdpReplied,
        Event::EchoReplied,
        Event::Punted,
        Event::ToHost,
        Event::TunnelDecapsulated,
        Event::TunnelEncapsulated,
        Event::TunnelIcmpRelayed,
        Event::TunnelMtuLowered,
        Event::NatTranslated,
        Event::NatHeld,
        Event::NatSynAnswered,
        Event::NatFragmentReleased,
        Event::HandedOff,
        Event::HandedIn,
        Event::ChecksumCompleted,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Event::Forwarded => "forwarded",
            Event::Fragmented => "fragmented",
            Event::FragmentsSent => "fragments_sent",
            Event::IcmpSent => "icmp_sent",
            Event::IcmpRateLimited => "icmp_rate_limited",
            Event::ArpReplied => "arp_replied",
            Event::NdpReplied => "ndp_replied",
            Event::EchoReplied => "echo_replied",
            Event::Punted => "punted",
            Event::ToHost => "to_host",
            Event::TunnelDecapsulated => "tunnel_decapsulated",
            Event::TunnelEncapsulated => "tunnel_encapsulated",
            Event::TunnelIcmpRelayed => "tunnel_icmp_relayed",
            Event::TunnelMtuLowered => "tunnel_mtu_lowered",
            Event::NatTranslated => "nat_translated",
            Event::NatHeld => "nat_held",
            Event::NatSynAnswered => "nat_syn_answered",
            Event::NatFragmentReleased => "nat_fragment_released",
            Event::HandedOff => "handed_off",
            Event::HandedIn => "handed_in",
            Event::ChecksumCompleted => "checksum_completed",
        }
    }
}

pub const EVENTS: usize = Event::ALL.len();

/// Per-interface packet and byte counts, and what became of the frames received.
///
/// On a port every received frame has exactly one outcome, so (summed over workers, with
/// nothing in flight between them):
/// `rx_packets = forwarded + punted + local + drops`, and `drops` is the sum of the
/// port's drop reasons. A frame handed to the worker that owns its NAT session gets its
/// outcome there. Frames tern originates (ICMP errors, echo replies, fragments after the
/// first, held packets it releases) are not received frames: their drops count in the
/// `originated` row. Tunnels count the inner packets they carry (rx after decapsulation,
/// tx before encapsulation); those packets' outcomes count on the port they arrived by.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortCounts {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Received and dropped, for any reason.
    pub drops: u64,
    /// Received and sent on towards a next hop (a fragmented packet counts once).
    pub forwarded: u64,
    /// Received and handed to the control plane to wait for neighbour resolution.
    pub punted: u64,
    /// Received and taken by tern: answered, learned from, held by the NAT, handed to
    /// the kernel through the host interface.
    pub local: u64,
    /// Queued for transmission on this port and refused by the device (drop `tx_error`).
    pub tx_errors: u64,
}

impl PortCounts {
    const FIELDS: usize = 9;

    fn fields_mut(&mut self) -> [&mut u64; Self::FIELDS] {
        [
            &mut self.rx_packets,
            &mut self.rx_bytes,
            &mut self.tx_packets,
            &mut self.tx_bytes,
            &mut self.drops,
            &mut self.forwarded,
            &mut self.punted,
            &mut self.local,
            &mut self.tx_errors,
        ]
    }
}

/// DropReason counts by reason for one interface (or for tern's own frames).
pub type DropRow = [u64; DROP_REASONS];

/// What a worker accumulates during one burst.
#[derive(Debug, Clone)]
pub struct Local {
    /// Per interface (the physical ports first, then the tunnels), then one row for the
    /// frames tern originated ([`Local::origin`]).
    pub drops: Vec<DropRow>,
    /// Bit r: row r (the last bit: any row from 63 on) has a count to flush.
    dirty: u64,
    pub events: [u64; EVENTS],
    /// Per interface: the physical ports first, then the tunnels.
    pub ports: Vec<PortCounts>,
}

impl Local {
    pub fn new(interfaces: usize) -> Local {
        Local {
            drops: vec![[0; DROP_REASONS]; interfaces + 1],
            dirty: 0,
            events: [0; EVENTS],
            ports: vec![PortCounts::default(); interfaces],
        }
    }
    /// The drop row of frames tern originated.
    pub fn origin(&self) -> u16 {
        self.ports.len() as u16
    }
    /// Counts a drop of a frame received on `port` (or of tern's own: [`Local::origin`]).
    #[inline(always)]
    pub fn drop(&mut self, port: u16, reason: DropReason) {
        self.drop_many(port, reason, 1);
    }
    /// Counts `n` drops of one reason on `port` (or of tern's own).
    #[inline(always)]
    pub fn drop_many(&mut self, port: u16, reason: DropReason, n: u64) {
        let row = (port as usize).min(self.ports.len());
        self.drops[row][reason as usize] += n;
        self.dirty |= 1 << row.min(63);
        if let Some(p) = self.ports.get_mut(row) {
            p.drops += n;
        }
    }
    #[inline(always)]
    pub fn event(&mut self, e: Event) {
        self.events[e as usize] += 1;
    }
}

/// One worker's published counters.
pub struct WorkerCounters {
    /// As [`Local::drops`].
    drops: Vec<[AtomicU64; DROP_REASONS]>,
    events: [AtomicU64; EVENTS],
    ports: Vec<[AtomicU64; PortCounts::FIELDS]>,
    /// Flushes so far: the worker's loop is alive while this moves (health monitor).
    heartbeat: AtomicU64,
}

impl WorkerCounters {
    pub fn heartbeat(&self) -> u64 {
        self.heartbeat.load(Relaxed)
    }

    pub fn new(interfaces: usize) -> WorkerCounters {
        WorkerCounters {
            drops: (0..=interfaces)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            events: std::array::from_fn(|_| AtomicU64::new(0)),
            ports: (0..interfaces)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            heartbeat: AtomicU64::new(0),
        }
    }

    /// Frames this worker received and sent, over all its ports (how the load spreads).
    pub fn packets(&self) -> (u64, u64) {
        self.ports.iter().fold((0, 0), |(rx, tx), c| {
            (rx + c[0].load(Relaxed), tx + c[2].load(Relaxed))
        })
    }

    /// Adds `local` in and zeroes it. Only the owning worker calls this.
    pub fn flush(&self, local: &mut Local) {
        self.heartbeat
            .store(self.heartbeat.load(Relaxed) + 1, Relaxed);
        fn add(c: &AtomicU64, v: &mut u64) {
            if *v != 0 {
                c.store(c.load(Relaxed) + *v, Relaxed);
                *v = 0;
            }
        }
        if local.dirty != 0 {
            for (r, (c, row)) in self.drops.iter().zip(local.drops.iter_mut()).enumerate() {
                if local.dirty & (1 << r.min(63)) != 0 {
                    c.iter().zip(row.iter_mut()).for_each(|(c, v)| add(c, v));
                }
            }
            local.dirty = 0;
        }
        for (c, v) in self.events.iter().zip(local.events.iter_mut()) {
            add(c, v);
        }
        for (c, p) in self.ports.iter().zip(local.ports.iter_mut()) {
            c.iter().zip(p.fields_mut()).for_each(|(c, v)| add(c, v));
        }
    }
}

/// Counters summed over workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// By reason, over every interface, tern's own frames and transmit errors.
    pub drops: Vec<(&'static str, u64)>,
    pub events: Vec<(&'static str, u64)>,
    pub ports: Vec<PortCounts>,
    /// By reason, per interface then tern's own frames (as [`Local::drops`]); transmit
    /// errors are the ports' `tx_errors`.
    pub drop_rows: Vec<DropRow>,
}

impl Totals {
    /// The non-zero drop reasons of row `row` (an interface, or the last: tern's own).
    pub fn reasons(&self, row: usize) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let row = self.drop_rows.get(row);
        DropReason::ALL.iter().filter_map(move |d| {
            let n = row.map_or(0, |r| r[*d as usize]);
            (n != 0).then(|| (d.name(), n))
        })
    }
}

pub fn sum(workers: &[std::sync::Arc<WorkerCounters>], interfaces: usize) -> Totals {
    let mut t = Totals {
        drops: DropReason::ALL.iter().map(|d| (d.name(), 0)).collect(),
        events: Event::ALL.iter().map(|e| (e.name(), 0)).collect(),
        ports: vec![PortCounts::default(); interfaces],
        drop_rows: vec![[0; DROP_REASONS]; interfaces + 1],
    };
    for w in workers {
        for (row, c) in t.drop_rows.iter_mut().zip(&w.drops) {
            for (v, c) in row.iter_mut().zip(c) {
                *v += c.load(Relaxed);
            }
        }
        for (i, c) in w.events.iter().enumerate() {
            t.events[i].1 += c.load(Relaxed);
        }
        for (p, c) in t.ports.iter_mut().zip(&w.ports) {
            for (v, c) in p.fields_mut().into_iter().zip(c) {
                *v += c.load(Relaxed);
            }
        }
    }
    for row in &t.drop_rows {
        for (total, v) in t.drops.iter_mut().zip(row) {
            total.1 += v;
        }
    }
    t.drops[DropReason::TxError as usize].1 += t.ports.iter().map(|p| p.tx_errors).sum::<u64>();
    t
}
