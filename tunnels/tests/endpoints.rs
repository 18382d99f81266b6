//! Encapsulation and decapsulation through the public API: every kind round-trips, every
//! malformation or mismatch is refused with its own error, ECN follows RFC 6040 on real
//! headers, ICMP about outer packets lowers the MTU, and arbitrary bytes never panic.

use std::net::IpAddr;

use tunnels::decap::{decap_general, Decap, Error};
use tunnels::icmp::{outer_error, Relay};
use tunnels::{encap, Dscp, Kind, LastShape, Spec, Ttl, TunnelTable};

/// Decapsulation of one packet, with no memo of earlier ones.
fn decap(rx: &TunnelTable, p: &mut [u8]) -> Result<Decap, Error> {
    tunnels::decap(rx, p, &mut LastShape::default())
}

fn spec(kind: Kind) -> Spec {
    let (local, remote): (IpAddr, IpAddr) = if kind.outer_v6() {
        (
            "2001:db8:1::1".parse().unwrap(),
            "2001:db8:2::1".parse().unwrap(),
        )
    } else {
        ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap())
    };
    Spec {
        name: kind.name().into(),
        kind,
        local,
        remote,
        key: None,
        sequence: false,
        checksum: false,
        ttl: Ttl::Fixed(64),
        dscp: Dscp::Inherit,
        mtu: 1400,
    }
}

/// The same spec seen from the other end.
fn mirror(s: &Spec) -> Spec {
    Spec {
        local: s.remote,
        remote: s.local,
        ..s.clone()
    }
}

fn inner_v4(tos: u8, payload: usize) -> Vec<u8> {
    let mut p = vec![0u8; 20 + payload];
    wire::ipv4::Header {
        tos,
        total_len: (20 + payload) as u16,
        ident: 0x1234,
        flags_frag: wire::ipv4::FLAG_DF,
        ttl: 63,
        ..wire::ipv4::Header::new(17, [192, 0, 2, 2].into(), [203, 0, 113, 2].into())
    }
    .emit(&mut p);
    for (i, b) in p[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

fn inner_v6(tclass: u8, payload: usize) -> Vec<u8> {
    let mut p = vec![0u8; 40 + payload];
    wire::ipv6::write(
        &mut p,
        payload as u16,
        17,
        63,
        "2001:db8:a::2".parse().unwrap(),
        "2001:db8:b::2".parse().unwrap(),
    );
    p[0] = 0x60 | tclass >> 4;
    p[1] = tclass << 4;
    p
}

/// Encapsulates `inner` through `tx` (tunnel 0 of the table) and returns the outer packet.
fn encapsulate(tx: &TunnelTable, inner: &[u8]) -> Vec<u8> {
    let t = tx.get(0).unwrap();
    let mut packet = vec![0u8; t.spec.overhead()];
    packet.extend_from_slice(inner);
    assert!(encap(t, &mut packet), "encap refused");
    packet
}

fn pair(s: Spec) -> (TunnelTable, TunnelTable) {
    let rx = mirror(&s);
    (
        TunnelTable::new(vec![s]).unwrap(),
        TunnelTable::new(vec![rx]).unwrap(),
    )
}

#[test]
fn every_kind_and_gre_option_round_trips() {
    let mut cases = Vec::new();
    for kind in [Kind::Ipip, Kind::SixInFour, Kind::Gre, Kind::Gre6] {
        if kind.is_gre() {
            for bits in 0..8 {
                let mut s = spec(kind);
                s.checksum = bits & 1 != 0;
                s.key = (bits & 2 != 0).then_some(0x0102_0304);
                s.sequence = bits & 4 != 0;
                cases.push(s);
            }
        } else {
            cases.push(spec(kind));
        }
    }
    for s in cases {
        let (tx, rx) = pair(s.clone());
        for v6 in [false, true] {
            if !s.kind.carries(v6) {
                continue;
            }
            let inner = if v6 {
                inner_v6(0, 100)
            } else {
                inner_v4(0, 100)
            };
            let mut outer = encapsulate(&tx, &inner);
            assert_eq!(outer.len(), s.overhead() + inner.len());
            let d = decap(&rx, &mut outer).unwrap_or_else(|e| panic!("{s:?}: {e:?}"));
            assert_eq!(d.tunnel, 0);
            assert_eq!(d.inner_v6, v6);
            assert_eq!(&outer[d.inner..], &inner[..], "{s:?}");
            if !s.kind.outer_v6() {
                assert_eq!(wire::checksum(&outer[..20]), 0, "outer IPv4 checksum");
                assert_eq!(outer[8], 64, "fixed TTL");
                assert_eq!(
                    wire::ipv4::flags_frag(&outer) & wire::ipv4::FLAG_DF,
                    wire::ipv4::FLAG_DF
                );
            } else {
                assert_eq!(wire::ipv6::payload_len(&outer), outer.len() - 40);
            }
        }
        // The wrong family for the kind is refused by the encapsulator.
        if !s.kind.carries(true) {
            let t = tx.get(0).unwrap();
            let mut p = vec![0u8; s.overhead()];
            p.extend_from_slice(&inner_v6(0, 10));
            assert!(!encap(t, &mut p));
        }
    }
}

#[test]
fn ttl_and_dscp_inherit_or_fixed() {
    let mut s = spec(Kind::Gre);
    s.ttl = Ttl::Inherit;
    s.dscp = Dscp::Inherit;
    let (tx, _) = pair(s.clone());
    let outer = encapsulate(&tx, &inner_v4(0xb8 | 0b10, 8)); // EF, ECT(0)
    assert_eq!(outer[8], 63, "inherited TTL");
    assert_eq!(outer[1], 0xb8 | 0b10, "inherited DSCP, ECN copied");
    s.ttl = Ttl::Fixed(9);
    s.dscp = Dscp::Fixed(10);
    let (tx, _) = pair(s);
    let outer = encapsulate(&tx, &inner_v4(0xb8 | 0b11, 8));
    assert_eq!(outer[8], 9);
    assert_eq!(
        outer[1],
        10 << 2 | 0b11,
        "fixed DSCP, CE copied (normal mode)"
    );
    let mut s6 = spec(Kind::Gre6);
    s6.ttl = Ttl::Inherit;
    let (tx, _) = pair(s6);
    let outer = encapsulate(&tx, &inner_v6(0xb9, 8));
    assert_eq!(outer[7], 63);
    assert_eq!((outer[0] & 0x0f) << 4 | outer[1] >> 4, 0xb9);
}

#[test]
fn each_refusal_has_its_own_reason() {
    let mut s = spec(Kind::Gre);
    s.key = Some(7);
    s.checksum = true;
    s.sequence = true;
    let (tx, rx) = pair(s.clone());
    let good = encapsulate(&tx, &inner_v4(0, 64));
    let try_decap = |mut p: Vec<u8>| decap(&rx, &mut p);

    // Wrong remote: rewrite the outer source (and fix the header checksum).
    let mut p = good.clone();
    p[15] = 99;
    wire::ipv4::fill_checksum(&mut p);
    assert_eq!(try_decap(p), Err(Error::UnknownRemote));

    // Wrong key, missing key.
    let mut other = s.clone();
    other.key = Some(8);
    assert_eq!(
        try_decap(encapsulate(&pair(other).0, &inner_v4(0, 64))),
        Err(Error::KeyMismatch)
    );
    let mut other = s.clone();
    other.key = None;
    assert_eq!(
        try_decap(encapsulate(&pair(other).0, &inner_v4(0, 64))),
        Err(Error::KeyMismatch)
    );

    // Checksum absent although configured.
    let mut other = s.clone();
    other.checksum = false;
    assert_eq!(
        try_decap(encapsulate(&pair(other).0, &inner_v4(0, 64))),
        Err(Error::ChecksumMismatch)
    );

    // Bad checksum: flip a payload byte.
    let mut p = good.clone();
    let last = p.len() - 1;
    p[last] ^= 0xff;
    assert_eq!(try_decap(p), Err(Error::BadChecksum));

    // Sequence: the good packet is accepted once, a replay is refused, a missing number too.
    assert!(try_decap(good.clone()).is_ok());
    assert_eq!(try_decap(good.clone()), Err(Error::BadSequence), "replayed");
    let mut other = s.clone();
    other.sequence = false;
    assert_eq!(
        try_decap(encapsulate(&pair(other).0, &inner_v4(0, 64))),
        Err(Error::BadSequence),
        "no sequence number"
    );

    // Version 1, routing flag.
    let mut p = encapsulate(&tx, &inner_v4(0, 64));
    p[21] |= 1;
    assert_eq!(try_decap(p), Err(Error::BadVersion));
    let mut p = encapsulate(&tx, &inner_v4(0, 64));
    p[20] |= 0x40;
    assert_eq!(try_decap(p), Err(Error::BadFlags));

    // Not IP inside.
    let plain = spec(Kind::Gre);
    let (ptx, prx) = pair(plain);
    let mut p = encapsulate(&ptx, &inner_v4(0, 64));
    p[22..24].copy_from_slice(&0x6558u16.to_be_bytes()); // transparent Ethernet bridging
    assert_eq!(decap(&prx, &mut p), Err(Error::BadPayload));

    // IPIP carrying IPv6 (protocol 4 but version 6 inside).
    let (itx, irx) = pair(spec(Kind::Ipip));
    let mut p = encapsulate(&itx, &inner_v4(0, 64));
    p[20] = 0x60;
    assert_eq!(decap(&irx, &mut p), Err(Error::BadPayload));

    // An outer fragment.
    let mut p = encapsulate(&itx, &inner_v4(0, 64));
    p[6] |= 0x20;
    wire::ipv4::fill_checksum(&mut p);
    assert_eq!(decap(&irx, &mut p), Err(Error::OuterFragment));

    // Truncated inside the inner header.
    let mut p = encapsulate(&itx, &inner_v4(0, 64));
    p.truncate(30);
    assert_eq!(decap(&irx, &mut p), Err(Error::Truncated));
}

#[test]
fn ecn_on_real_headers_all_sixteen_combinations() {
    use tunnels::ecn::{CE, ECT0, ECT1, NOT_ECT};
    let expected = |inner: u8, outer: u8| tunnels::ecn::decap(outer, inner);
    for kind in [Kind::Ipip, Kind::Gre6] {
        let (tx, rx) = pair(spec(kind));
        let mut seen = 0;
        for inner_ecn in [NOT_ECT, ECT0, ECT1, CE] {
            for outer_ecn in [NOT_ECT, ECT0, ECT1, CE] {
                let inner = inner_v4(0x20 | inner_ecn, 32);
                let mut p = encapsulate(&tx, &inner);
                if kind.outer_v6() {
                    p[1] = (p[1] & 0xcf) | outer_ecn << 4;
                } else {
                    p[1] = (p[1] & !3) | outer_ecn;
                    wire::ipv4::fill_checksum(&mut p);
                }
                match (decap(&rx, &mut p), expected(inner_ecn, outer_ecn)) {
                    (Err(Error::EcnDrop), None) => {}
                    (Ok(d), Some(e)) => {
                        let ip = &p[d.inner..];
                        assert_eq!(ip[1] & 3, e, "inner {inner_ecn} outer {outer_ecn}");
                        assert_eq!(ip[1] & !3, 0x20, "DSCP untouched");
                        assert_eq!(wire::checksum(&ip[..20]), 0, "inner checksum updated");
                    }
                    (got, want) => {
                        panic!("inner {inner_ecn} outer {outer_ecn}: {got:?}, want {want:?}")
                    }
                }
                seen += 1;
            }
        }
        assert_eq!(seen, 16);
    }
}

#[test]
fn icmp_about_outer_packets_lowers_mtu_and_relays() {
    let mut s = spec(Kind::Gre);
    s.key = Some(5);
    let (tx, _) = pair(s.clone());
    let outer = encapsulate(&tx, &inner_v4(0, 1000));
    // A router on the path quotes the outer packet (576-byte quote, RFC 1812).
    let quoted = &outer[..548];
    let e = outer_error(&tx, quoted, Some(1300)).expect("ours");
    assert_eq!(e.tunnel, 0);
    assert_eq!(e.inner, 28);
    assert_eq!(e.relay, Some(Relay::TooBig { mtu: 1300 - 28 }));
    assert_eq!(tx.get(0).unwrap().mtu(), 1272);
    // Other errors: host unreachable to the inner source.
    let e = outer_error(&tx, quoted, None).expect("ours");
    assert_eq!(e.relay, Some(Relay::Unreachable));
    // An 8-byte quote (RFC 792) still finds the tunnel and lowers the MTU, but cannot relay.
    let e = outer_error(&tx, &outer[..28], Some(1200)).expect("ours");
    assert_eq!(e.relay, None);
    assert_eq!(tx.get(0).unwrap().mtu(), 1172);
    // Not ours: someone else's GRE.
    let mut foreign = outer.clone();
    foreign[12] = 10;
    assert!(outer_error(&tx, &foreign[..548], Some(1000)).is_none());
    assert_eq!(
        tx.get(0).unwrap().mtu(),
        1172,
        "unchanged by foreign errors"
    );
}

/// The decap path as a fuzz target: random bytes and mutations of valid packets, for every
/// kind, never panic (cargo-fuzz needs a nightly toolchain this project does not require;
/// this runs in every test run instead).
#[test]
fn arbitrary_bytes_never_panic() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut s = spec(Kind::Gre);
    s.checksum = true;
    s.key = Some(1);
    let tables: Vec<(TunnelTable, TunnelTable)> =
        [spec(Kind::Ipip), spec(Kind::SixInFour), s, spec(Kind::Gre6)]
            .into_iter()
            .map(pair)
            .collect();
    let mut accepted = 0;
    for round in 0..200_000u32 {
        let (tx, rx) = &tables[(round % 4) as usize];
        let kind = tx.get(0).unwrap().spec.kind;
        let inner = if kind.carries(false) {
            inner_v4(0, (rand() % 64) as usize)
        } else {
            inner_v6(0, 16)
        };
        let mut p = encapsulate(tx, &inner);
        match rand() % 3 {
            0 => {
                for _ in 0..1 + rand() % 4 {
                    let i = (rand() as usize) % p.len();
                    p[i] = rand() as u8;
                }
            }
            1 => p.truncate((rand() as usize) % (p.len() + 1)),
            _ => {
                let n = (rand() % 120) as usize;
                p = (0..n).map(|_| rand() as u8).collect();
                if let Some(b) = p.first_mut() {
                    *b = if kind.outer_v6() { 0x60 } else { 0x45 };
                }
            }
        }
        if let Ok(d) = decap(rx, &mut p) {
            assert!(d.inner < p.len());
            accepted += 1;
        }
        let _ = outer_error(tx, &p, Some((rand() % 2000) as u32));
        let _ = wire::gre::Header::parse(&p);
    }
    assert!(
        accepted > 0,
        "some mutations leave a valid packet (e.g. payload bytes)"
    );
}

/// `decap`'s shortcut for packets of the common shape and the general path give the same
/// answer and leave the same bytes, on valid packets of every kind and option (keyed and
/// unkeyed GRE between the same endpoints, checksum, sequence) and on mutations of their
/// headers. Each path has its own receive table, so sequence state advances alike.
#[test]
fn shortcut_and_general_path_agree() {
    let mut rng = wire::XorShift64::new(0x2545_f491_4f6c_dd1d);
    let mut rand = move || rng.next_u64();
    let mut specs = Vec::new();
    for kind in [Kind::Ipip, Kind::SixInFour, Kind::Gre, Kind::Gre6] {
        specs.push(spec(kind));
    }
    for (key, checksum, sequence) in [
        (Some(7), false, false),
        (Some(8), true, false),
        (Some(9), false, true),
    ] {
        let mut s = spec(Kind::Gre);
        s.name = format!("gre-{key:?}");
        (s.key, s.checksum, s.sequence) = (key, checksum, sequence);
        specs.push(s);
    }
    let receiver = || TunnelTable::new(specs.iter().map(mirror).collect()).unwrap();
    let (shortcut, general) = (receiver(), receiver());
    let senders: Vec<TunnelTable> = specs
        .iter()
        .map(|s| TunnelTable::new(vec![s.clone()]).unwrap())
        .collect();
    let mut outcomes = std::collections::HashSet::new();
    // The shortcut keeps its memo of the last shape across packets, as a worker does.
    let mut last = LastShape::default();
    for round in 0..100_000u32 {
        // Runs of three packets per sender: the memo both hits and misses.
        let tx = &senders[(round / 3) as usize % senders.len()];
        let kind = tx.get(0).unwrap().spec.kind;
        let inner = if !kind.carries(false) || (rand() % 2 == 0 && kind.carries(true)) {
            inner_v6((rand() % 4) as u8, (rand() % 32) as usize)
        } else {
            inner_v4((rand() % 4) as u8, (rand() % 32) as usize)
        };
        let mut p = encapsulate(tx, &inner);
        p[1] ^= (rand() % 4) as u8; // outer ECN
                                    // Mostly header bytes: that is where the shortcut looks.
        for _ in 0..rand() % 3 {
            let reach = if rand() % 4 == 0 {
                p.len()
            } else {
                p.len().min(48)
            };
            let i = (rand() as usize) % reach;
            p[i] = rand() as u8;
        }
        if rand() % 8 == 0 {
            p.truncate((rand() as usize) % (p.len() + 1));
        }
        let mut q = p.clone();
        let a = tunnels::decap(&shortcut, &mut p, &mut last);
        let b = decap_general(&general, &mut q);
        assert_eq!(a, b, "round {round}: {q:02x?}");
        assert_eq!(p, q, "round {round}: same bytes after");
        outcomes.insert(format!("{:?}", a.map(|d| d.tunnel)));
    }
    // The packets reached every tunnel and several refusals, or the comparison says little.
    for t in 0..specs.len() {
        assert!(
            outcomes.contains(&format!("Ok({t})")),
            "tunnel {t}: {outcomes:?}"
        );
    }
    assert!(outcomes.len() >= specs.len() + 5, "{outcomes:?}");
}
